"""`vigil alerts`: filters, the readable line, and the group-less reader over a fake consumer.

The fake consumer keeps per-partition logs in memory and can answer ``seek_to_end`` wrongly,
as the embedded broker does, to show the reader relies on fetched high water marks instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition

from vigil.detectors import PointResult
from vigil.stream.cli import main
from vigil.stream.engine.alerts import SourceRef, build_alert
from vigil.stream.errors import BrokerError
from vigil.stream.kafka.subscribe import (
    MODEL_UPDATES,
    AlertFilter,
    format_alert_line,
    read_alerts,
    read_json_objects,
    read_model_updates,
)


def _alert(key: str = "web-1", metric: str = "latency_ms", *, kind: str = "anomaly",
           score: float = 0.58, z: float = 4.2, offset: int = 5,
           event_type: str = "telemetry") -> dict[str, Any]:
    prediction = event_type == "prediction"
    alert = build_alert(
        result=PointResult(score, kind == "anomaly", 120.0, 75.0, 165.0, z, 250),
        source=SourceRef(event_type, 0, offset), event_type=event_type, key=key,
        metric=metric, detector="shewhart", value=412.0, event_timestamp=1767225600.25,
        detected_at=1767225601.0, critical_score=2 / 3,
        model_version="2.3.0" if prediction else None,
        prediction_id="req-8f1c" if prediction else None, kind=kind,
    )
    decoded: dict[str, Any] = json.loads(alert.to_json())
    return decoded


# --- filter ----------------------------------------------------------------------------------


def test_an_empty_filter_lets_everything_through() -> None:
    assert AlertFilter().matches(_alert())
    assert AlertFilter().matches({})


@pytest.mark.parametrize(("alert_filter", "expected"), [
    (AlertFilter(kinds=frozenset({"anomaly"})), True),
    (AlertFilter(kinds=frozenset({"resolved", "rollback"})), False),
    (AlertFilter(severities=frozenset({"warning"})), True),
    (AlertFilter(severities=frozenset({"critical"})), False),
    (AlertFilter(key_glob="web-*"), True),
    (AlertFilter(key_glob="db-*"), False),
    (AlertFilter(key_glob="web-1/latency_*"), True),
    (AlertFilter(key_glob="web-1/cpu*"), False),
    (AlertFilter(key_glob="latency_ms"), False),  # without a slash: the key only
    (AlertFilter(frozenset({"anomaly"}), frozenset({"warning", "critical"}), "web-?"), True),
    (AlertFilter(frozenset({"anomaly"}), frozenset({"critical"}), "web-?"), False),
])
def test_filter_conditions_all_have_to_hold(alert_filter: AlertFilter, expected: bool) -> None:
    assert _alert()["severity"] == "warning"
    assert alert_filter.matches(_alert()) is expected


def test_key_glob_is_case_sensitive_and_matches_the_whole_key() -> None:
    assert not AlertFilter(key_glob="WEB-*").matches(_alert())
    assert not AlertFilter(key_glob="web").matches(_alert())


# --- the readable line ---------------------------------------------------------------------


def test_line_of_an_anomaly() -> None:
    alert = _alert(score=0.76, z=9.6)
    line = format_alert_line(alert)
    assert line.startswith("2026-01-01T00:00:00.250Z CRITICAL anomaly     telemetry "
                           "web-1/latency_ms value=412 z=+9.60 limits=[75, 165] n=250 "
                           "score=0.760 shewhart")
    if alert.get("episode_id"):
        assert line.endswith(f" episode={alert['alert_id'][:8]}")


def test_line_of_a_prediction_alert_names_model_version_and_prediction() -> None:
    line = format_alert_line(_alert("fraud", "features.amount", event_type="prediction"))
    assert " prediction fraud/features.amount " in line
    assert "model_version=2.3.0 prediction_id=req-8f1c" in line


def test_line_of_an_anomaly_on_a_constant_series_says_z_is_infinite() -> None:
    assert " z=inf " in format_alert_line(_alert(z=float("inf"), score=1.0))


def test_line_of_a_resolution() -> None:
    alert = _alert(kind="resolved", score=0.2, z=0.3)
    alert["z"] = None
    line = format_alert_line(alert)
    assert " INFO     resolved    telemetry web-1/latency_ms " in line
    assert " z=- " in line


def test_line_of_a_message_missing_fields_still_prints() -> None:
    assert format_alert_line({"kind": "performance", "key": "fraud", "value": "x"}) == (
        "- -        performance - fraud/- value=- z=- limits=[-, -] n=- score=- -")


# --- the reader ------------------------------------------------------------------------------


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None


@dataclass
class FakeConsumer:
    """Partition logs in memory; ``lying_end`` makes seek_to_end land on offset 1 (as tansu's
    ListOffsets answer does); ``on_poll`` runs a step of the test before each poll."""

    logs: dict[str, dict[int, list[bytes]]]
    keys: bytes | None = None
    """The key of every record."""
    lying_end: bool = False
    answers: bool = True
    per_poll: int = 2
    on_poll: Callable[[FakeConsumer, int], None] = lambda consumer, polls: None
    assigned: list[TopicPartition] = field(default_factory=list)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    highwaters: dict[TopicPartition, int] = field(default_factory=dict)
    polls: int = 0
    metadata_requests: int = 0

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        self.metadata_requests += 1
        return set(self.logs[topic]) if topic in self.logs else None

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for partition in partitions:
            self.positions[partition] = 0

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        for partition in partitions:
            end = len(self.logs[partition.topic][partition.partition])
            self.positions[partition] = min(1, end) if self.lying_end else end

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[FakeRecord]]:
        self.polls += 1
        self.on_poll(self, self.polls)
        if not self.answers:
            return {}
        batch = {}
        for partition in self.assigned:
            log = self.logs[partition.topic][partition.partition]
            self.highwaters[partition] = len(log)
            start = self.positions[partition]
            values = log[start:start + self.per_poll]
            if values:
                batch[partition] = [FakeRecord(partition.topic, partition.partition, start + i, v,
                                               self.keys) for i, v in enumerate(values)]
                self.positions[partition] = start + len(values)
        return batch

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.highwaters.get(partition)

    def position(self, partition: TopicPartition) -> int | None:
        return self.positions.get(partition)


def _encoded(*alerts: dict[str, Any]) -> list[bytes]:
    return [json.dumps(alert).encode() for alert in alerts]


def _read(consumer: FakeConsumer, topics: list[str] | None = None,
          **options: Any) -> tuple[list[dict[str, Any]], list[str], Any]:
    shown: list[dict[str, Any]] = []
    warnings: list[str] = []
    summary = read_alerts(consumer, topics or ["alerts"], lambda alert, _: shown.append(alert),
                          warn=warnings.append, **options)
    return shown, warnings, summary


def test_reads_every_partition_to_its_end_and_stops() -> None:
    consumer = FakeConsumer({"alerts": {
        0: _encoded(*(_alert(offset=i) for i in range(5))),
        1: _encoded(_alert("web-2", offset=10)),
        2: [],
    }})
    shown, warnings, summary = _read(consumer)
    assert sorted(a["source"]["offset"] for a in shown) == [0, 1, 2, 3, 4, 10]
    assert (summary.read, summary.shown, summary.unreadable) == (6, 6, 0)
    assert warnings == []
    assert {tp.partition for tp in consumer.assigned} == {0, 1, 2}


def test_filters_and_counts_what_it_could_not_read() -> None:
    consumer = FakeConsumer({"alerts": {0: [
        *_encoded(_alert("web-1"), _alert("db-1", offset=6)),
        b"{not json", b"[1, 2]", b"",
        *_encoded(_alert("web-2", offset=7, score=0.9, z=9.0)),
    ]}})
    shown, warnings, summary = _read(consumer, alert_filter=AlertFilter(key_glob="web-*"))
    assert [a["key"] for a in shown] == ["web-1", "web-2"]
    assert (summary.read, summary.shown, summary.unreadable) == (6, 2, 3)
    assert [w.split(":")[0] for w in warnings] == [
        "skipping alerts/0/2", "skipping alerts/0/3", "skipping alerts/0/4"]


def test_reads_several_topics() -> None:
    consumer = FakeConsumer({"alerts-critical": {0: _encoded(_alert(score=0.9, z=9.0))},
                             "alerts-warning": {0: _encoded(_alert(), _alert(offset=6))}})
    shown, _, _ = _read(consumer, ["alerts-critical", "alerts-warning"])
    assert sorted(a["severity"] for a in shown) == ["critical", "warning", "warning"]


def test_a_missing_topic_is_an_error_without_follow() -> None:
    with pytest.raises(BrokerError, match="'alerts' does not exist"):
        _read(FakeConsumer({"other": {0: []}}), topic_wait_s=0.1)


def test_a_silent_broker_is_an_error_after_the_idle_timeout() -> None:
    consumer = FakeConsumer({"alerts": {0: _encoded(_alert())}}, answers=False)
    with pytest.raises(BrokerError, match="no answer from the broker"):
        _read(consumer, idle_timeout_s=0.5)


def _stop_after(stop: threading.Event, polls: int,
                appends: dict[int, list[bytes]]) -> Callable[[FakeConsumer, int], None]:
    def step(consumer: FakeConsumer, count: int) -> None:
        consumer.logs["alerts"][0].extend(appends.get(count, []))
        if count >= polls:
            stop.set()
    return step


@pytest.mark.parametrize("lying_end", [False, True])
def test_follow_prints_only_what_arrives_after_it_started(lying_end: bool) -> None:
    stop = threading.Event()
    old = _encoded(*(_alert(offset=i) for i in range(6)))
    new = _encoded(_alert(offset=100), _alert(offset=101))
    consumer = FakeConsumer({"alerts": {0: list(old)}}, lying_end=lying_end,
                            on_poll=_stop_after(stop, 8, {4: new}))
    shown, warnings, _ = _read(consumer, follow=True, stop=stop)
    assert [a["source"]["offset"] for a in shown] == [100, 101]
    assert warnings == ["following alerts; Ctrl-C stops"]


def test_follow_from_beginning_prints_the_history_then_new_alerts() -> None:
    stop = threading.Event()
    consumer = FakeConsumer({"alerts": {0: _encoded(_alert(offset=1), _alert(offset=2))}},
                            on_poll=_stop_after(stop, 6, {3: _encoded(_alert(offset=3))}))
    shown, _, _ = _read(consumer, follow=True, from_beginning=True, stop=stop)
    assert [a["source"]["offset"] for a in shown] == [1, 2, 3]


def test_follow_waits_for_a_missing_topic() -> None:
    stop = threading.Event()
    consumer = FakeConsumer({})

    original = consumer.partitions_for_topic

    def partitions_for_topic(topic: str) -> set[int] | None:
        if consumer.metadata_requests == 4:  # after the reader's first wait ran out
            consumer.logs["alerts"] = {0: _encoded(_alert())}
        return original(topic)

    consumer.partitions_for_topic = partitions_for_topic  # type: ignore[method-assign]
    consumer.on_poll = _stop_after(stop, 3, {})
    shown, warnings, _ = _read(consumer, follow=True, from_beginning=True, stop=stop,
                               topic_wait_s=0.3)
    assert warnings == ["topic 'alerts' does not exist yet; waiting for it",
                        "following alerts; Ctrl-C stops"]
    assert len(shown) == 1


# --- the command line -----------------------------------------------------------------------


def test_alerts_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["alerts", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: vigil alerts" in out
    for flag in ("--follow", "--kind", "--severity", "--key", "--json", "--from-beginning"):
        assert flag in out


def test_alerts_command_rejects_an_unknown_severity(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["alerts", "--severity", "page"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'page'" in capsys.readouterr().err


# --- text from Kafka is printed, not obeyed -------------------------------------------------


def test_control_characters_in_an_alert_are_escaped_in_the_line() -> None:
    """A key with a newline forged a second alert line; an escape sequence drove the terminal."""
    line = format_alert_line(_alert("web-1\n2026-01-01T00:00:00Z CRITICAL fake\x1b[2J\u202e",
                                    "cpu\x85"))
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert "\x85" not in line
    assert "web-1\\n2026" in line and "\\x1b[2J" in line and "\\u202e" in line


def test_json_output_escapes_them_too_and_stays_the_same_data(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    alert = _alert("evil\u202e\x85key")
    consumer = FakeConsumer({"alerts": {0: _encoded(alert)}})
    monkeypatch.setattr("vigil.stream.kafka.subscribe.topic_reader", lambda config: consumer)
    consumer.close = lambda: None  # type: ignore[attr-defined]
    assert main(["alerts", "--json"]) == 0
    out = capsys.readouterr().out.strip()
    assert "\u202e" not in out and "\x85" not in out
    assert json.loads(out) == alert


# --- vigil export-model ----------------------------------------------------------------------


def _update(version: Any, coef: float = 2.0, model: str = "fraud") -> dict[str, Any]:
    return {"model": model, "version": version, "feature_names": ["a"], "coef": {"a": coef},
            "intercept": 1.0, "n_updates": 10, "loss": 0.1,
            "timestamp": "2026-01-01T00:00:00.000Z", "estimator": "SGDRegressor"}


def _export(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, updates: list[dict[str, Any]],
            key: bytes = b"fraud") -> tuple[int, Any]:
    consumer = FakeConsumer({"model-updates": {0: [json.dumps(u).encode() for u in updates]}},
                            keys=key)
    consumer.close = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setattr("vigil.stream.kafka.subscribe.topic_reader", lambda config: consumer)
    out = tmp_path / "model.joblib"
    code = main(["export-model", "--model", "fraud", "-o", str(out)])
    if code != 0:
        return code, None
    import joblib

    return code, joblib.load(out)


@pytest.mark.parametrize("bad", [
    _update("x"), _update(None), _update(True), _update(0), _update(2, coef=float("inf")),
    {**_update(3), "coef": "x"}, {**_update(3), "intercept": None},
])
def test_export_model_skips_unusable_updates_for_the_usable_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str],
        bad: dict[str, Any]) -> None:
    """A version of "x" or null gave a traceback; infinite coefficients were exported."""
    code, estimator = _export(monkeypatch, tmp_path, [_update(1, coef=5.0), bad])
    assert code == 0 and estimator.coef_.tolist() == [5.0]
    assert "unusable" in capsys.readouterr().err
    assert _export(monkeypatch, tmp_path, [bad])[0] == 1


def test_export_model_takes_the_newest_by_offset_not_the_largest_version(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """A message with version 10**30 used to beat every newer one."""
    updates = [_update(1, coef=1.0), _update(10**30, coef=666.0), _update(2, coef=3.0)]
    code, estimator = _export(monkeypatch, tmp_path, updates)
    assert code == 0 and estimator.coef_.tolist() == [3.0]


def test_export_model_ignores_updates_not_keyed_by_the_model(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    assert _export(monkeypatch, tmp_path, [_update(1)], key=b"other")[0] == 1


def test_export_model_speaks_of_model_updates_not_alerts(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """export-model read through the alert reader, whose notes spoke of alerts."""
    consumer = FakeConsumer({"model-updates": {0: [b"[1]", json.dumps(_update(1)).encode()]}},
                            keys=b"fraud")
    warnings: list[str] = []
    kept: list[dict[str, Any]] = []
    summary = read_model_updates(consumer, "model-updates", lambda u, _: kept.append(u),
                                 warn=warnings.append)
    assert (summary.read, summary.shown, summary.unreadable) == (2, 1, 1)
    assert kept == [_update(1)]
    assert warnings == ["skipping model-updates/0/0: not a model update (JSON object)"]
    with pytest.raises(BrokerError, match="topics.model_updates"):
        read_json_objects(FakeConsumer({}), ["model-updates"], lambda u, _: None,
                          MODEL_UPDATES, topic_wait_s=0.0)
