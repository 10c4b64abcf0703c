"""Model maintenance in the batch logic and the runtime: joins, learning, alerts, state."""

from __future__ import annotations

import base64
import json
import math
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.unit.stream.test_runtime import FakeConsumer, FakeProducer, MemoryStore, Record
from vigil.stream.config import load_config
from vigil.stream.engine.processor import BatchProcessor, build_engine
from vigil.stream.errors import ConfigError
from vigil.stream.loop.runner import Runner
from vigil.stream.metrics import VigilMetrics
from vigil.stream.state import Snapshot

SCHEMAS = Path(__file__).resolve().parents[3] / "deploy" / "schemas"
START = 1_767_225_600.0
OLD = {"a": 2.0, "b": -1.0}
NEW = {"a": -1.0, "b": 2.0}


def config(tmp_path: Path, extra: str = "") -> Any:
    path = tmp_path / "vigil.toml"
    path.write_text(
        "[models]\nenabled = true\npublish_every = 500\npublish_interval_s = 0.0\n"
        'params = { learning_rate = "constant", eta0 = 0.01 }\n' + extra)
    return load_config(path, environ={})


@dataclass
class Stream:
    """Predictions of a frozen served model (``OLD``), then their labels, per partition 0."""

    rng: random.Random = field(default_factory=lambda: random.Random(7))
    offset: int = 0
    label_offset: int = 0

    def pair(self, i: int, truth: dict[str, float], *, label_delay: float = 1.0,
             carried: bool = False) -> tuple[Record, Record | None]:
        x = {"a": self.rng.gauss(0, 1), "b": self.rng.gauss(0, 1)}
        served = 3.0 + sum(OLD[k] * v for k, v in x.items())
        y = 3.0 + sum(truth[k] * v for k, v in x.items()) + self.rng.gauss(0, 0.1)
        body: dict[str, Any] = {"model": "m", "timestamp": START + i, "features": x,
                                "prediction": served, "prediction_id": f"p{i}"}
        if carried:
            body["label"] = y
        prediction = Record("predictions", 0, self.offset, b"m", json.dumps(body).encode())
        self.offset += 1
        if carried:
            return prediction, None
        label = {"prediction_id": f"p{i}", "label": y, "timestamp": START + i + label_delay}
        record = Record("labels", 0, self.label_offset, b"m", json.dumps(label).encode())
        self.label_offset += 1
        return prediction, record

    def records(self, start: int, stop: int, truth: dict[str, float]) -> list[Record]:
        out: list[Record] = []
        for i in range(start, stop):
            prediction, label = self.pair(i, truth)
            out.append(prediction)
            if label is not None:
                out.append(label)
        return out


def _messages(processor: BatchProcessor, records: list[Record], topic: str) -> list[Any]:
    found = []
    for start in range(0, len(records), 500):
        batch = processor.process(records[start:start + 500])
        found += [json.loads(m.value or b"") for m in batch.messages if m.topic == topic]
    return found


def test_labels_join_their_predictions_and_the_model_learns_and_publishes(tmp_path: Path) -> None:
    processor = build_engine(config(tmp_path))
    updates = _messages(processor, Stream().records(0, 1500, OLD), "model-updates")
    assert [u["version"] for u in updates] == [1, 2, 3]
    assert [u["n_updates"] for u in updates] == [500, 1000, 1500]
    schema = json.loads((SCHEMAS / "model-update.schema.json").read_text())
    for update in updates:
        jsonschema.validate(update, schema)
        assert set(update["coef"]) == set(update["feature_names"]) == {"a", "b"}
    last = updates[-1]
    assert last["coef"]["a"] == pytest.approx(2.0, abs=0.05)
    assert last["coef"]["b"] == pytest.approx(-1.0, abs=0.05)
    assert last["intercept"] == pytest.approx(3.0, abs=0.05)
    assert last["estimator"] == "SGDRegressor" and last["loss"] < 0.05
    assert processor.models is not None
    assert processor.models.counts["joined"] == 1500


def test_a_concept_change_raises_one_performance_alert_with_both_losses(tmp_path: Path) -> None:
    # 27,000 Gaussian points: the default detector's calibrated rate (one false alarm per
    # 20,000 points) would expect about one series alert; the ensemble, built for Gaussian
    # data, keeps the stream free of them, so that every alert here is model maintenance's.
    processor = build_engine(config(tmp_path, '[detector]\nname = "ensemble"\n'))
    stream = Stream()
    before = stream.records(0, 3000, OLD)
    after = stream.records(3000, 9000, NEW)
    alerts = []
    losses: list[tuple[float, float]] = []  # (served, maintained) rolling losses, per batch
    models = processor.models
    assert models is not None
    for records in (before, after):
        for start in range(0, len(records), 500):
            alerts += processor.process(records[start:start + 500]).alerts
            maintained = models._partitions[("predictions", 0)].models["m"]  # noqa: SLF001
            losses.append((maintained.performance.served_loss,  # type: ignore[arg-type]
                           maintained.maintained_loss))
    kinds = [a.kind for a in alerts]
    assert set(kinds) == {"performance"}, kinds  # a concept change is learned, not rolled back
    # the maintained model's prequential loss is back within 10% of its level before the
    # change (last 2,000 events of each part), the frozen served model's is far above it
    pre = [m for _, m in losses[4:12]]
    post = [m for _, m in losses[-8:]]
    assert sum(post) / 8 == pytest.approx(sum(pre) / 8, rel=0.10)
    assert min(s for s, _ in losses[-8:]) > 100 * max(post)
    performance = [a for a in alerts if a.kind == "performance"]
    assert len(performance) == 2  # a reminder once models.alert_cooldown_s has passed
    assert performance[1].source.offset - performance[0].source.offset >= 3600
    alert = performance[0]
    assert alert.key == "m" and alert.metric == "loss" and alert.event_type == "prediction"
    assert alert.source.topic == "labels" and alert.source.offset >= 3000
    assert alert.details is not None
    assert alert.details["served_loss"] > alert.details["maintained_loss"] > 0  # type: ignore[operator]
    assert not [a for a in alerts if a.kind == "anomaly"]  # inputs and outputs did not change
    schema = json.loads((SCHEMAS / "alert.schema.json").read_text())
    jsonschema.validate(json.loads(alert.to_json()), schema)


def _relabelled(records: list[Record], change: Any) -> list[Record]:
    """``records`` with each label event's label replaced by ``change(label)``."""
    out = []
    for record in records:
        if record.topic == "labels":
            body = json.loads(record.value)
            body["label"] = change(body["label"])
            record = Record(record.topic, record.partition, record.offset, record.key,
                            json.dumps(body).encode())
        out.append(record)
    return out


def test_labels_turned_against_the_model_are_rolled_back_once_clean_labels_return(
        tmp_path: Path) -> None:
    processor = build_engine(config(tmp_path))
    stream = Stream()
    records = (stream.records(0, 3000, OLD)
               + _relabelled(stream.records(3000, 3400, OLD), lambda y: -5.0 * y + 20.0)
               + stream.records(3400, 5000, OLD))
    alerts = []
    for start in range(0, len(records), 500):
        alerts += processor.process(records[start:start + 500]).alerts
    rollbacks = [a for a in alerts if a.kind == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0].source.offset >= 3400  # once clean again
    assert rollbacks[0].details is not None
    assert rollbacks[0].details["restored_n_updates"] <= 3000  # type: ignore[operator]
    models = processor.models
    assert models is not None
    guard = models.guard_of(("predictions", 0), "m")
    assert guard is not None and guard.rollbacks == 1
    assert guard.learner.coef == pytest.approx([2.0, -1.0], abs=0.05)  # type: ignore[attr-defined]


def test_a_stuck_label_feed_is_held_back_without_alerts(tmp_path: Path) -> None:
    processor = build_engine(config(tmp_path))
    stream = Stream()
    records = (stream.records(0, 2000, OLD)
               + _relabelled(stream.records(2000, 2500, OLD), lambda y: 7.0)
               + stream.records(2500, 3000, OLD))
    alerts = []
    for start in range(0, len(records), 500):
        alerts += processor.process(records[start:start + 500]).alerts
    models = processor.models
    assert models is not None
    guard = models.guard_of(("predictions", 0), "m")
    assert guard is not None and 490 <= guard.held < 500
    assert models.held == {("m", "stuck_label"): guard.held}  # drained into the metrics
    assert not [a for a in alerts if a.kind in ("rollback", "rebaselined")]
    assert guard.learner.coef == pytest.approx([2.0, -1.0], abs=0.05)  # type: ignore[attr-defined]


def test_a_prediction_carrying_its_label_is_learned_at_once(tmp_path: Path) -> None:
    processor = build_engine(config(tmp_path))
    stream = Stream()
    records = [stream.pair(i, OLD, carried=True)[0] for i in range(600)]
    updates = _messages(processor, records, "model-updates")
    assert [u["n_updates"] for u in updates] == [500]


def test_predictions_flagged_by_a_detector_are_not_learned(tmp_path: Path) -> None:
    processor = build_engine(config(tmp_path, "[detector]\nparams = { warmup = 20 }\n"))
    stream = Stream()
    records = stream.records(0, 100, OLD)
    spike = {"model": "m", "timestamp": START + 100, "features": {"a": 50.0, "b": 0.0},
             "prediction": 0.0, "prediction_id": "spike"}
    records.append(Record("predictions", 0, 100, b"m", json.dumps(spike).encode()))
    records.append(Record("labels", 0, 100, b"m", json.dumps(
        {"prediction_id": "spike", "label": 1e6, "timestamp": START + 101}).encode()))
    batch = processor.process(records)
    flagged = {a.metric for a in batch.alerts if a.kind == "anomaly"}
    assert "features.a" in flagged
    models = processor.models
    assert models is not None
    guarded = models.guard_of(("predictions", 0), "m")
    assert guarded is not None and guarded.skipped_anomalous == 1
    assert guarded.learner.n_updates == 100  # type: ignore[attr-defined]


def test_unmatched_expired_and_bad_labels_are_counted_or_dead_lettered(tmp_path: Path) -> None:
    processor = build_engine(config(tmp_path, "label_ttl_s = 10.0\n"))
    waiting = {"model": "m", "timestamp": START, "features": {"a": 1.0, "b": 1.0},
               "prediction": 1.0, "prediction_id": "never-labelled"}
    late = {"model": "m", "timestamp": START + 100, "features": {"a": 1.0, "b": 1.0},
            "prediction": 1.0, "prediction_id": "p2"}
    batch = processor.process([
        Record("predictions", 0, 0, b"m", json.dumps(waiting).encode()),
        Record("labels", 0, 0, b"m", b'{"prediction_id": "p1", "label": "x", "timestamp": 1}'),
        Record("labels", 0, 1, b"m", b'{"prediction_id": "p2", "label": 1.0}'),
        Record("predictions", 0, 1, b"m", json.dumps(late).encode()),
    ])
    assert batch.invalid_by_reason == {"wrong_type": 1, "missing_field": 1}
    assert [m.topic for m in batch.messages] == ["vigil-dlq", "vigil-dlq"]
    models = processor.models
    assert models is not None and models.counts["expired"] == 1


def _runner(cfg: Any, consumer: Any, store: MemoryStore) -> Runner:
    return Runner(cfg, consumer, FakeProducer(), VigilMetrics(), store, retry_backoff_s=0.0)


def test_models_and_the_labels_offset_survive_a_rebalance_exactly(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    records = Stream().records(0, 1200, OLD)
    store = MemoryStore([])

    uninterrupted = _runner(cfg, FakeConsumer([records[:1000], records[1000:]], []),
                            MemoryStore([]))
    uninterrupted.run_once()
    expected = [m.value for m in uninterrupted.run_once().messages]
    assert expected  # the second batch publishes (n_updates 1000)

    first = _runner(cfg, FakeConsumer([records[:1000]], []), store)
    first.run_once()
    assert sorted(first.checkpointer.checkpoint()) == [("labels", 0), ("predictions", 0)]
    (offsets,) = first.consumer.commits
    assert offsets == {("predictions", 0): 500, ("labels", 0): 500}

    consumer = FakeConsumer([records[1000:]], [])
    second = _runner(cfg, consumer, store)
    second.restorer.on_partitions_assigned([("predictions", 0), ("labels", 0)])
    second.run_once()
    assert consumer.seeks == {("predictions", 0): 500, ("labels", 0): 500}
    assert [m.value for m in second.run_once().messages] == expected
    registry = second.metrics.registry
    assert registry.get_sample_value("vigil_labels_joined_total") == 700
    assert registry.get_sample_value("vigil_model_updates_total", {"model": "m"}) == 700
    loss = registry.get_sample_value("vigil_model_loss", {"model": "m", "kind": "maintained"})
    assert loss is not None and math.isfinite(loss)


def test_model_settings_are_checked_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="models.learner"):
        load_config(overrides={"models.learner": "svm"}, environ={})
    with pytest.raises(ConfigError, match="warm_start"):
        config(tmp_path, '[models.overrides."fraud*"]\nwarm_start = "/nonexistent.joblib"\n')
    with pytest.raises(ConfigError, match="models.loss"):
        load_config(overrides={"models.loss": "hinge"}, environ={})
    with pytest.raises(ConfigError, match="topics.labels"):
        load_config(overrides={"topics.labels": "predictions"}, environ={})
    with pytest.raises(ConfigError, match="models.chart_params"):
        load_config(overrides={"models.chart_params": {"k": -1.0}}, environ={})
    with pytest.raises(ConfigError, match="models.accept_after"):
        load_config(overrides={"models.accept_after": 0}, environ={})
    with pytest.raises(ConfigError, match="models.influence"):
        load_config(overrides={"models.influence": -1.0}, environ={})


class _Payload:
    """Unpickling this records that it ran: proof that code from the state topic ran."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_mark, ("ran",))


_ran: list[str] = []


def _mark(what: str) -> None:
    _ran.append(what)


def _tampered(store: MemoryStore, edit: Any) -> None:
    """Append a newer snapshot of predictions/0 whose body ``edit`` changed (a foreign writer)."""
    (latest, *_) = store.read([("predictions", 0)])[("predictions", 0)]
    body = json.loads(json.dumps(latest.body))
    edit(body)
    store.messages.extend(store.encode(Snapshot(latest.topic, latest.partition, latest.offset,
                                                latest.sequence + 1, body)))


@pytest.mark.parametrize("configured", ["sgd_regressor", "river"])
def test_a_snapshot_never_unpickles_a_model_whatever_it_names(tmp_path: Path,
                                                              configured: str) -> None:
    learner = ('learner = "river"\nparams = { model = "linear_model.LinearRegression" }\n'
               if configured == "river" else "")
    path = tmp_path / "vigil.toml"
    path.write_text(f"[models]\nenabled = true\npublish_interval_s = 0.0\n{learner}")
    cfg = load_config(path, environ={})
    records = Stream().records(0, 600, OLD)
    store = MemoryStore([])
    first = _runner(cfg, FakeConsumer([records[:1000]], []), store)
    first.run_once()
    first.checkpointer.checkpoint()
    blob = base64.b64encode(pickle.dumps(_Payload())).decode("ascii")

    def to_river(body: dict[str, Any]) -> None:
        guard = body["models"]["models"]["m"]["guard"]
        guard["learner"] = "river"
        for key in ("learner_state", "good"):
            guard[key] = {"model": blob, "classes": [False, True], "n_updates": 1}

    _tampered(store, to_river)
    second = _runner(cfg, FakeConsumer([records[1000:]], []), store)
    second.restorer.on_partitions_assigned([("predictions", 0), ("labels", 0)])
    second.run_once()
    assert _ran == []
    assert second.processor.models is not None
    assert second.processor.models.models_of(("predictions", 0)) == ["m"]


def test_held_back_events_are_counted_per_model_and_reason(tmp_path: Path) -> None:
    stream = Stream()
    records = stream.records(0, 1000, OLD) + _relabelled(stream.records(1000, 1300, OLD),
                                                        lambda y: 7.0)
    runner = _runner(config(tmp_path), FakeConsumer([records], []), MemoryStore([]))
    runner.run_once()
    held = runner.metrics.registry.get_sample_value(
        "vigil_model_held_total", {"model": "m", "reason": "stuck_label"})
    assert held is not None and 290 <= held < 300
    assert runner.processor.models is not None and not runner.processor.models.held
