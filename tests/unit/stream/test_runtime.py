"""The batch logic and the commit order, through the runtime's I/O seam (no broker here)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka.errors import MessageSizeTooLargeError

from tests.per_event import PerEventProcessor
from vigil.detectors import PointResult
from vigil.detectors import base as detectors_base
from vigil.detectors.shewhart import ShewhartChart
from vigil.stream.config import load_config
from vigil.stream.engine.processor import BatchProcessor, build_engine
from vigil.stream.errors import BrokerError
from vigil.stream.kafka.kafka_python import KafkaPythonProducer
from vigil.stream.loop.runner import Runner
from vigil.stream.metrics import VigilMetrics
from vigil.stream.state import (
    PartitionId,
    Snapshot,
    StateMessage,
    encode_snapshot,
    latest_snapshots,
)
from vigil.updaters import LabelJoinBuffer

CONFIG = load_config(environ={})


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def telemetry(offset: int, latency: float, *, partition: int = 0) -> Record:
    body = {"source": "web-1", "timestamp": 1767225600 + offset, "metrics": {"latency": latency}}
    return Record("telemetry", partition, offset, b"web-1", json.dumps(body).encode())


def steady_then(spike: float, count: int = 60) -> list[Record]:
    values = [100.0 + (i % 5) for i in range(count)] + [spike]
    return [telemetry(i, v) for i, v in enumerate(values)]


def test_spike_after_warm_up_becomes_one_alert_with_its_own_offset() -> None:
    batch = build_engine(CONFIG, clock=lambda: 1767229999.0).process(steady_then(500.0))
    assert len(batch.alerts) == 1
    alert = batch.alerts[0]
    assert (alert.key, alert.metric, alert.source.offset) == ("web-1", "latency", 60)
    assert alert.upper is not None and alert.value > alert.upper
    assert batch.messages[-1].topic == "alerts"
    assert json.loads(batch.messages[-1].value or b"")["alert_id"] == alert.alert_id
    assert batch.next_offsets == {("telemetry", 0): 61}
    assert batch.valid_by_topic == {"telemetry": 61}
    assert alert.kind == "anomaly" and alert.episode_id == alert.alert_id


def test_bad_record_becomes_a_dead_letter_and_processing_goes_on() -> None:
    records = [telemetry(0, 1.0), Record("telemetry", 0, 1, b"k", b"{oops"), telemetry(2, 1.0)]
    batch = build_engine(CONFIG).process(records)
    (letter,) = batch.messages
    headers = dict(letter.headers)
    assert letter.topic == "vigil-dlq"
    assert letter.value == b"{oops" and letter.key == b"k"
    assert headers["vigil.error.reason"] == b"invalid_json"
    assert headers["vigil.source.offset"] == b"1"
    assert batch.invalid_by_reason == {"invalid_json": 1}
    assert batch.valid_by_topic == {"telemetry": 2}
    assert batch.next_offsets == {("telemetry", 0): 3}


def test_empty_and_null_values_are_dead_lettered() -> None:
    batch = build_engine(CONFIG).process([Record("predictions", 0, 0, None, None)])
    assert sum(batch.invalid_by_reason.values()) == 1


class FakeFuture:
    def __init__(self, error: Exception | None) -> None:
        self.exception = error

    def failed(self) -> bool:
        return self.exception is not None


@dataclass
class FakeProducer:
    failures: int = 0
    sent: list[tuple[str, bytes | None]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    headers: list[dict[str, bytes]] = field(default_factory=list)

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: list[Any], partition: int | None = None) -> FakeFuture:
        if self.failures:
            self.failures -= 1
            return FakeFuture(TimeoutError("not acknowledged"))
        self.sent.append((topic, value))
        return FakeFuture(None)

    def flush(self, timeout: float | None = None) -> None:
        self.log.append("flush")


@dataclass
class FakeConsumer:
    batches: list[list[Record]]
    log: list[str]
    commits: list[dict[PartitionId, int]] = field(default_factory=list)
    seeks: dict[PartitionId, int] = field(default_factory=dict)
    paused: set[PartitionId] = field(default_factory=set)

    def poll(self, timeout_ms: int, max_records: int) -> dict[tuple[str, int], list[Record]]:
        """The next batch (its records name their own topics), nothing while paused."""
        if self.paused or not self.batches:
            return {}
        return {("telemetry", 0): self.batches.pop(0)}

    def assignment(self) -> set[PartitionId]:
        return {("telemetry", 0)}

    def topics(self) -> set[str]:
        return {"telemetry", "predictions", "labels"}

    def highwater(self, partition: PartitionId) -> int | None:
        return None

    def seek(self, partition: PartitionId, offset: int) -> None:
        self.seeks[partition] = offset

    def pause(self, *partitions: PartitionId) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: PartitionId) -> None:
        self.paused.difference_update(partitions)

    def commit(self, offsets: dict[PartitionId, int]) -> None:
        self.log.append("commit")
        self.commits.append(dict(offsets))


@dataclass
class MemoryStore:
    """The state topic as a list: what was written is what is read back."""

    log: list[str]
    messages: list[StateMessage] = field(default_factory=list)
    failures: int = 0

    def encode(self, snapshot: Snapshot) -> list[StateMessage]:
        return encode_snapshot("vigil", snapshot, 1)

    def write(self, messages: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise BrokerError("state not acknowledged")
        self.log.append("state")
        self.messages.extend(messages)

    def read(self, partitions: Any) -> dict[PartitionId, list[Snapshot]]:
        return {p: latest_snapshots("vigil", p[0], p[1], self.messages) for p in partitions}


def _runner(consumer: FakeConsumer, producer: Any, store: MemoryStore) -> Runner:
    return Runner(CONFIG, consumer, producer, VigilMetrics(), store, retry_backoff_s=0.0)


def test_alerts_are_acknowledged_before_state_and_state_before_the_commit() -> None:
    log: list[str] = []
    producer = FakeProducer(failures=1, log=log)
    consumer = FakeConsumer([steady_then(900.0)], log)
    store = MemoryStore(log, failures=1)
    runner = _runner(consumer, producer, store)
    batch = runner.run_once()
    assert len(batch.alerts) == 1
    assert log == []  # handed to the producer; the loop does not wait for it per batch
    assert runner.checkpointer.checkpoint() == [("telemetry", 0)]
    # the alert is retried until acknowledged, then the state written, then the commit
    assert log == ["flush", "flush", "state", "commit"]
    (offsets,) = consumer.commits
    assert [(topic, partition, offset) for (topic, partition), offset in offsets.items()] == [
        ("telemetry", 0, 61)]
    metrics = runner.metrics.registry
    assert metrics.get_sample_value("vigil_produce_errors_total") == 2
    assert metrics.get_sample_value("vigil_alerts_produced_total", {"kind": "anomaly"}) == 1
    assert metrics.get_sample_value(
        "vigil_events_processed_total", {"topic": "telemetry"}) == 61
    assert runner.checkpointer.checkpoint() == []  # nothing moved on: nothing to snapshot


def test_a_restored_partition_continues_exactly_where_the_snapshot_left_off() -> None:
    records = steady_then(900.0, count=80)
    log: list[str] = []
    store = MemoryStore(log)

    uninterrupted = _runner(FakeConsumer([records], log), FakeProducer(log=log), MemoryStore(log))
    expected = [a.alert_id for a in uninterrupted.run_once().alerts]

    first = _runner(FakeConsumer([records[:50]], log), FakeProducer(log=log), store)
    first.run_once()
    first.restorer.on_partitions_revoked([("telemetry", 0)])
    assert [s.offset for s in store.read([("telemetry", 0)])[("telemetry", 0)]] == [50]

    consumer = FakeConsumer([records[50:]], log)
    second = _runner(consumer, FakeProducer(log=log), store)
    second.restorer.on_partitions_assigned([("telemetry", 0)])
    assert consumer.paused == {("telemetry", 0)}  # no records before its state is back
    assert second.run_once().records == 0
    assert consumer.seeks == {("telemetry", 0): 50} and not consumer.paused
    assert second.processor.monitor.series_count == 1
    assert [a.alert_id for a in second.run_once().alerts] == expected


def test_stop_while_output_is_undelivered_leaves_offsets_uncommitted() -> None:
    log: list[str] = []
    consumer = FakeConsumer([steady_then(900.0)], log)
    runner = _runner(consumer, FakeProducer(failures=10**6, log=log), MemoryStore(log))
    stop = threading.Event()
    stop.set()
    runner.delivery.stop = stop
    runner.delivery.stop_deadline = 0.0
    runner.run_once()
    with pytest.raises(BrokerError, match="not committed"):
        runner.checkpointer.checkpoint(force=True)
    assert "state" not in log and "commit" not in log


def test_alerts_are_routed_by_kind_and_severity(tmp_path: Any) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[alerts]\n'
                    'routes = { "severity:critical" = "pager", "kind:resolved" = "quiet" }\n')
    config = load_config(path, environ={})
    batch = build_engine(config).process(steady_then(900.0) + [telemetry(61, 100.5)])
    assert [(m.topic, a.severity) for m, a in zip(batch.messages, batch.alerts, strict=True)] == [
        ("pager", "critical")]
    assert config.alerts.topic_for("anomaly", "warning", "alerts") == "alerts"
    assert config.alerts.topic_for("resolved", "info", "alerts") == "quiet"


def test_a_series_override_applies_and_survives_a_checkpoint(tmp_path: Any) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[detector.overrides]\n'
                    '"telemetry/web-1/latency" = { name = "shewhart", params = { k = 50.0 } }\n')
    config = load_config(path, environ={})
    processor = build_engine(config)
    assert processor.process(steady_then(130.0)).alerts == []  # z≈20: no alarm at k=50
    assert len(build_engine(CONFIG).process(steady_then(130.0)).alerts) == 1
    monitor = processor.monitor
    body = monitor.export_partition(("telemetry", 0))
    assert body["series"][0]["params"] == {"k": 50.0}
    plain = build_engine(CONFIG).monitor
    assert plain.import_partition(("telemetry", 0), body) == 0  # other spec: not reused
    assert monitor.import_partition(("telemetry", 0), body) == 1


def prediction(offset: int, amount: float, items: float) -> Record:
    body = {"model": "fraud", "timestamp": 1767225600 + offset, "prediction": 0.5,
            "features": {"amount": amount, "items": items}}
    return Record("predictions", 0, offset, b"fraud", json.dumps(body).encode())


def test_a_models_feature_vector_gets_its_own_series_when_configured(tmp_path: Any) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[detector]\nname = "shewhart"\n'
                    '[detector.multivariate]\nname = "hst"\n'
                    'params = { window_size = 50, threshold = 0.95 }\n')
    config = load_config(path, environ={})
    processor = build_engine(config)
    rng = __import__("random").Random(4)
    records = [prediction(i, rng.gauss(50, 5), rng.gauss(3, 0.5)) for i in range(400)]
    processor.process(records)
    assert ("prediction", "fraud", "features") in {
        sid for part in [processor.monitor.export_partition(("predictions", 0))]
        for sid in [(s["event_type"], s["key"], s["metric"]) for s in part["series"]]}
    batch = processor.process([prediction(400, 5000.0, 90.0)])
    vector_alerts = [a for a in batch.alerts if a.metric == "features"]
    assert [a.detector for a in vector_alerts] == ["hst"]
    assert 0.95 < vector_alerts[0].value <= 1.0
    with pytest.raises(Exception, match="feature vectors"):
        path.write_text('[detector.multivariate]\nname = "shewhart"\n')
        load_config(path, environ={})


class FailingDetector(ShewhartChart):
    """A Shewhart chart that fails on the value 2.0, as a buggy detector might."""

    name = "failing"

    def update(self, value: float, timestamp: float) -> PointResult:
        if value == 2.0:
            raise ArithmeticError("math domain error")
        return super().update(value, timestamp)


@pytest.mark.parametrize("per_event", [False, True])
def test_a_failing_detector_dead_letters_the_event_and_the_stream_goes_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, per_event: bool
) -> None:
    monkeypatch.setitem(detectors_base.DETECTORS._classes, "failing", FailingDetector)  # noqa: SLF001
    path = tmp_path / "vigil.toml"
    path.write_text('[detector.overrides]\n"telemetry/web-1/latency" = { name = "failing" }\n')
    processor = build_engine(load_config(path, environ={}),
                             processor=PerEventProcessor if per_event else BatchProcessor)
    batch = processor.process([telemetry(0, 1.0), telemetry(1, 2.0), telemetry(2, 3.0)])
    assert batch.invalid_by_reason == {"detector_error": 1}
    assert batch.valid_by_topic == {"telemetry": 2}
    (letter,) = batch.messages
    assert dict(letter.headers)["vigil.source.offset"] == b"1"


def host_point(host: str, offset: int, latency: float) -> Record:
    body = {"source": host, "timestamp": 1767225600 + offset, "metrics": {"latency": latency}}
    return Record("telemetry", 0, offset, host.encode(), json.dumps(body).encode())


def test_a_new_member_of_a_group_starts_from_the_groups_pooled_statistics(tmp_path: Any) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text("[detector.groups]\ntelemetry = '^(?P<group>.+)-\\d+$'\n")
    config = load_config(path, environ={})
    warm = [host_point(f"web-{h}", 2 * i + h, 100.0 + (i % 5)) for i in range(80) for h in (1, 2)]
    newcomer = host_point("web-3", 500, 160.0)

    grouped = build_engine(config)
    grouped.process(warm)
    (alert,) = grouped.process([newcomer]).alerts  # judged on its first point
    assert (alert.key, alert.kind) == ("web-3", "anomaly")

    blind = build_engine(CONFIG)
    blind.process(warm)
    assert blind.process([newcomer]).alerts == []  # without a group it cannot judge it yet

    body = grouped.monitor.export_partition(("telemetry", 0))
    assert body["pool"] is not None
    restored = build_engine(config)
    assert restored.monitor.import_partition(("telemetry", 0), body) == 3
    (again,) = restored.process([host_point("web-4", 501, 160.0)]).alerts
    assert again.key == "web-4"


def test_the_cooldown_holds_back_repeated_alerts_of_a_series(tmp_path: Any) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[detector]\nname = "shewhart"\nparams = { outliers = "exclude" }\n'
                    "[alerts]\ncooldown_s = 10.0\n")
    records = steady_then(900.0) + [telemetry(61 + i, 900.0) for i in range(15)]
    batch = build_engine(load_config(path, environ={})).process(records)
    # Offsets 60..75 are 1 s apart and all alarm: one alert, then one 10 s later.
    assert [a.source.offset for a in batch.alerts] == [60, 70]
    assert batch.suppressed == 14


def test_a_dead_letter_too_large_for_the_topic_is_cut_and_says_so() -> None:
    huge = b"{" + b"x" * 5_000_000
    batch = build_engine(CONFIG).process([Record("telemetry", 0, 7, b"k", huge)])
    (letter,) = batch.messages
    headers = dict(letter.headers)
    assert letter.value == huge[:1_000_000]
    assert headers["vigil.original.size"] == b"5000001"
    assert headers["vigil.source.offset"] == b"7"


def test_partitions_are_checkpointed_at_spread_out_times(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("vigil.stream.loop.checkpoint.time.monotonic", lambda: clock[0])
    log: list[str] = []
    runner = _runner(FakeConsumer([], log), FakeProducer(log=log), MemoryStore(log))
    partitions = [("telemetry", p) for p in range(6)]
    runner.checkpointer.positions.update({p: 10 for p in partitions})
    interval = CONFIG.state.checkpoint_interval_s
    seen: dict[PartitionId, float] = {}
    for step in range(200):  # two intervals in steps of a hundredth of one
        clock[0] = 1000.0 + step * interval / 100
        for partition in runner.checkpointer.due_partitions():
            seen.setdefault(partition, clock[0])
    assert sorted(seen) == partitions  # every partition comes due within an interval ...
    assert max(seen.values()) - 1000.0 <= interval
    assert len(set(seen.values())) >= 5  # ... at its own moment, not all at once


@pytest.mark.parametrize("per_event", [False, True])
def test_only_a_detector_with_episodes_keeps_one_open_after_its_alert(
    tmp_path: Any, per_event: bool
) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[detector.overrides]\n"telemetry/web-2/*" = { name = "shewhart" }\n')
    processor = build_engine(load_config(path, environ={}),
                             processor=PerEventProcessor if per_event else BatchProcessor)
    values = [100.0 + (i % 5) for i in range(60)] + [900.0] + [100.0 + (i % 5) for i in range(3)]
    records: list[Record] = []
    for i, value in enumerate(values):
        for host in ("web-1", "web-2"):  # web-1: the default ensemble; web-2: shewhart
            body = {"source": host, "timestamp": 1767225600 + i, "metrics": {"latency": value}}
            records.append(Record("telemetry", 0, len(records), host.encode(),
                                  json.dumps(body).encode()))
    batch = processor.process(records)
    assert sorted(a.key for a in batch.alerts if a.kind == "anomaly") == ["web-1", "web-2"]
    series = {key: s for (_, key, _), s in
              processor.monitor._partitions[("telemetry", 0)].series.items()}  # noqa: SLF001
    assert series["web-1"].episode is not None  # the ensemble's episode is still open
    assert series["web-2"].episode is None  # a Shewhart alarm is a point, not an episode


def test_a_revocation_with_unacknowledged_output_writes_no_snapshot() -> None:
    log: list[str] = []
    store = MemoryStore(log)
    runner = _runner(FakeConsumer([steady_then(900.0)], log),
                     FakeProducer(failures=10**6, log=log), store)
    assert len(runner.run_once().alerts) == 1
    # the alert failed: the snapshot would skip it
    runner.restorer.on_partitions_revoked([("telemetry", 0)])
    assert store.messages == [] and "commit" not in log


# --- hostile inputs and a refusing broker ----------------------------------------------------


def test_one_event_from_the_far_future_is_dead_lettered_and_blinds_nothing() -> None:
    """An event stamped 2199 used to become the partition's clock: every series then idled past
    its TTL on each point and nothing alerted again."""
    far = {"source": "other", "timestamp": 7_258_000_000, "metrics": {"x": 1.0}}
    records = steady_then(900.0)
    records.insert(30, Record("telemetry", 0, 999, b"x", json.dumps(far).encode()))
    processor = build_engine(CONFIG, clock=lambda: 1767229999.0)
    batch = processor.process(records)
    assert batch.invalid_by_reason == {"future_timestamp": 1}
    assert [a.source.offset for a in batch.alerts] == [60]
    assert processor.monitor.expired == 0


class FailingLabels(LabelJoinBuffer):
    """A label buffer whose label path fails, as a bug (or bad restored state) might."""

    def add_label(self, prediction_id: Any, label: Any, timestamp: float) -> Any:
        raise KeyError("boom")


def test_a_failure_on_the_label_path_dead_letters_that_event_only(tmp_path: Any) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text("[models]\nenabled = true\n")
    processor = build_engine(load_config(path, environ={}))
    processor.models.builder.buffer = FailingLabels  # type: ignore[method-assign,union-attr]
    label = b'{"prediction_id": "p1", "label": 1.0, "timestamp": 1767225600}'
    batch = processor.process([Record("labels", 0, 0, b"m", label), telemetry(1, 1.0)])
    assert batch.invalid_by_reason == {"model_error": 1}
    assert batch.valid_by_topic == {"telemetry": 1}
    (letter,) = batch.messages
    assert letter.value == label and dict(letter.headers)["vigil.error.reason"] == b"model_error"


def test_a_dead_letter_key_too_large_for_the_topic_is_cut_and_says_so() -> None:
    """Dead letters used to copy the key whole: a 5 MB key could never be delivered."""
    batch = build_engine(CONFIG).process([Record("telemetry", 0, 7, b"k" * 5_000_000, b"{")])
    (letter,) = batch.messages
    assert letter.key == b"k" * 1024
    assert dict(letter.headers)["vigil.original.key_size"] == b"5000000"


@dataclass
class RefusingProducer(FakeProducer):
    """A kafka-python producer whose broker refuses messages as a real one does: over
    ``local_limit`` bytes at once in ``send`` (max_request_size), over ``limit`` or to
    ``refused_topic`` in the future (the loop gets it through the kafka-python adapter)."""

    limit: int = 10**9
    local_limit: int = 10**9
    refused_topic: str = ""

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: list[Any], partition: int | None = None) -> FakeFuture:
        size = len(key or b"") + len(value or b"")
        if size > self.local_limit:
            raise MessageSizeTooLargeError(f"{size} bytes is larger than max_request_size")
        if size > self.limit or topic == self.refused_topic:
            return FakeFuture(MessageSizeTooLargeError("the broker refused it"))
        self.sent.append((topic, value))
        self.headers.append(dict(headers))
        return FakeFuture(None)


def _refused(runner: Runner) -> float | None:
    return runner.metrics.registry.get_sample_value("vigil_events_invalid_total",
                                                    {"reason": "output_refused"})


def test_an_alert_the_broker_refuses_goes_to_the_dead_letters_not_round_for_ever() -> None:
    """A message the broker refused for its size used to be retried for ever."""
    log: list[str] = []
    producer = RefusingProducer(log=log, refused_topic="alerts")
    runner = _runner(FakeConsumer([steady_then(900.0)], log), KafkaPythonProducer(producer),
                     MemoryStore(log))
    (alert,) = runner.run_once().alerts
    assert runner.checkpointer.checkpoint() == [("telemetry", 0)]  # settled, snapshotted, committed
    ((topic, value),) = producer.sent
    assert topic == "vigil-dlq" and json.loads(value or b"")["alert_id"] == alert.alert_id
    headers = producer.headers[0]
    assert headers["vigil.error.reason"] == b"output_refused"
    assert (headers["vigil.output.topic"], headers["vigil.source.offset"]) == (b"alerts", b"60")
    assert _refused(runner) == 1 and "commit" in log


def test_a_message_send_refuses_at_once_does_not_stop_the_loop() -> None:
    """kafka-python raises in ``send`` for a message over max_request_size: that stopped vigil
    run. A dead letter refused so goes again without its key and value."""
    log: list[str] = []
    producer = RefusingProducer(log=log, local_limit=50_000)
    runner = _runner(FakeConsumer([[Record("telemetry", 0, 3, b"k", b"x" * 100_000)]], log),
                     KafkaPythonProducer(producer), MemoryStore(log))
    runner.run_once()
    assert runner.checkpointer.checkpoint() == [("telemetry", 0)]
    assert producer.sent == [("vigil-dlq", None)]
    assert producer.headers[0]["vigil.original.size"] == b"100000"
    assert producer.headers[0]["vigil.source.offset"] == b"3"
    assert _refused(runner) == 1


def test_a_bare_dead_letter_refused_is_dropped_not_retried_for_ever() -> None:
    log: list[str] = []
    producer = RefusingProducer(log=log, refused_topic="vigil-dlq")
    runner = _runner(FakeConsumer([[Record("telemetry", 0, 3, b"k", b"{")]], log),
                     KafkaPythonProducer(producer), MemoryStore(log))
    runner.run_once()
    assert runner.checkpointer.checkpoint() == [("telemetry", 0)]  # dropped (and logged), not stuck
    assert producer.sent == [] and "commit" in log


def test_one_key_cannot_evict_the_series_of_the_others(tmp_path: Any) -> None:
    """About 20 events of 50,000 names used to evict every other series."""
    path = tmp_path / "vigil.toml"
    path.write_text("[state]\nmax_series = 1000\nmax_series_per_key = 200\n")
    processor = build_engine(load_config(path, environ={}))
    processor.process([host_point(f"web-{h}", h, 100.0) for h in range(50)])
    flood = [Record("telemetry", 0, 100 + i, b"x", json.dumps(
        {"source": "flood", "timestamp": 1767225700 + i,
         "metrics": {f"m{i}-{j}": 1.0 for j in range(900)}}).encode()) for i in range(20)]
    processor.process(flood)
    monitor = processor.monitor
    part = monitor._partitions[("telemetry", 0)]  # noqa: SLF001
    keys = [key for _, key, _ in part.series]
    assert sum(key.startswith("web-") for key in keys) == 50  # every other series is still there
    assert keys.count("flood") <= 200
    assert monitor.evicted > 0 and monitor.series_count <= 1000
