"""Model maintenance of a whole poll gives what maintenance one event at a time gives, poll by
poll: the same parameters, published updates, guard decisions, alerts and counts."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from tests.per_event import PerEventProcessor
from tests.unit.stream.test_runtime import Record
from vigil.stream.config import load_config
from vigil.stream.engine.models import ModelMaintainer
from vigil.stream.engine.processor import BatchProcessor, build_engine
from vigil.stream.generate import generate_events

GUARD = """publish_every = 40
block = 10
snapshot_every = 60
accept_after = 30
alert_cooldown_s = 1.0
chart_params = { warmup = 10 }
"""
CONFIGS = {
    "regressor": f'[models]\nenabled = true\nlearner = "sgd_regressor"\n{GUARD}',
    "classifier": f'[models]\nenabled = true\nlearner = "sgd_classifier"\n{GUARD}',
    "limits": f"""[models]
enabled = true
learner = "sgd_regressor"
params = {{ learning_rate = "adagrad", eta0 = 0.05, clip_norm = 3.0 }}
max_models = 3
max_waiting_predictions = 40
label_ttl_s = 2.0
max_step = 0.5
{GUARD}""",
}


def hostile_records(count: int, seed: int, classifier: bool) -> list[Record]:
    """Predictions, telemetry and labels with everything the join and the guard meet: labels
    before their prediction, labels in the prediction, unknown and repeated ids, wild and stuck
    labels, gross feature errors, bad label values."""
    topics = {"prediction": "predictions", "telemetry": "telemetry", "label": "labels"}
    rng = random.Random(seed)
    bodies: list[tuple[str, str, dict[str, Any]]] = []
    for event in generate_events(count, models=5, sources=3, seed=seed, anomaly_rate=0.01,
                                 interval_s=0.05, labels=True, label_lag=20):
        body = dict(event.body)
        if event.kind == "label":
            roll = rng.random()
            if not classifier and roll < 0.04:
                body["label"] = body["label"] * 1e5 + 7.0  # a wild label
            elif 0.3 < len(bodies) / (1.2 * count) < 0.35:
                body["label"] = 1  # a stuck feed
            elif roll < 0.06:
                body["prediction_id"] = f"unknown-{len(bodies)}"
            elif roll < 0.07:
                body["label"] = 2 if classifier else "x"  # refused by the learner
            if not classifier and isinstance(body["label"], int):
                body["label"] = body["label"] + rng.gauss(0.0, 0.1)
        elif event.kind == "prediction":
            roll = rng.random()
            if roll < 0.05:
                body["label"] = int(rng.random() < body["prediction"])  # labelled at once
            elif roll < 0.07:
                body["features"] = {**body["features"], "items": 1e7}  # a gross error
        bodies.append((topics[event.kind], event.key, body))
    for index in range(0, len(bodies) - 30, 37):  # some labels come before their prediction
        if bodies[index][0] == "predictions" and bodies[index + 25][0] == "labels":
            bodies[index], bodies[index + 25] = bodies[index + 25], bodies[index]
    records, offsets = [], {}
    for topic, key, body in bodies:
        partition = sum(key.encode()) % 2
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        records.append(Record(topic, partition, offset, key.encode(), json.dumps(body).encode()))
    return records


def models_of(processor: BatchProcessor) -> ModelMaintainer:
    assert processor.models is not None
    return processor.models


def coefficients(models: ModelMaintainer) -> dict[tuple[Any, str], list[float]]:
    """Every maintained model's intercept and coefficients, by partition and model."""
    found = {}
    for partition in models.partitions():
        for model in models.models_of(partition):
            guard = models.guard_of(partition, model)
            assert guard is not None
            learner: Any = guard.learner
            found[(partition, model)] = [learner.intercept, *learner.coef]
    return found


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_poll_maintained_at_once_equals_one_event_at_a_time(tmp_path: Path, name: str) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text(CONFIGS[name])
    config = load_config(path, environ={})
    batched = build_engine(config, clock=lambda: 2e9)
    one_by_one = build_engine(config, clock=lambda: 2e9, processor=PerEventProcessor)
    records = hostile_records(6_000, seed=len(name), classifier=name == "classifier")
    rng = random.Random(7)
    start, signals = 0, {"model-updates": 0, "alerts": 0, "model_error": 0}
    while start < len(records):
        poll = records[start:start + rng.choice([1, 3, 50, 400, 1000])]
        start += len(poll)
        got, want = batched.process(poll), one_by_one.process(poll)
        assert got.messages == want.messages
        assert [a.to_json() for a in got.alerts] == [a.to_json() for a in want.alerts]
        assert (got.valid_by_topic, got.invalid_by_reason) == (want.valid_by_topic,
                                                               want.invalid_by_reason)
        ours, theirs = models_of(batched), models_of(one_by_one)
        params, reference = coefficients(ours), coefficients(theirs)
        assert params.keys() == reference.keys()
        for key, values in params.items():
            assert all(math.isclose(a, b, rel_tol=0.0, abs_tol=1e-12)
                       for a, b in zip(values, reference[key], strict=True)), key
        for partition in theirs.partitions():
            for model in theirs.models_of(partition):
                guard, their_guard = ours.guard_of(partition, model), theirs.guard_of(partition,
                                                                                      model)
                assert guard is not None and their_guard is not None
                assert guard.counters() == their_guard.counters()
        assert (ours.counts, ours.updates, ours.held, ours.losses) == (
            theirs.counts, theirs.updates, theirs.held, theirs.losses)
        for message in got.messages:
            kind = message.topic if message.topic != "vigil-dlq" else dict(
                message.headers)["vigil.error.reason"].decode()
            signals[kind] = signals.get(kind, 0) + 1
    assert {p: models_of(batched).export_partition(p) for p in models_of(batched).partitions()} \
        == {p: models_of(one_by_one).export_partition(p)
            for p in models_of(one_by_one).partitions()}
    totals: dict[str, int] = {}
    for partition in models_of(batched).partitions():
        for model in models_of(batched).models_of(partition):
            guard = models_of(batched).guard_of(partition, model)
            for counter, value in guard.counters().items():  # type: ignore[union-attr]
                totals[counter] = totals.get(counter, 0) + value
    assert signals["model-updates"] >= 5 and signals["alerts"] >= 5, signals
    assert totals["held"] and totals["changes"] and totals["skipped_anomalous"], totals
    assert name == "classifier" or totals["rollbacks"], totals
