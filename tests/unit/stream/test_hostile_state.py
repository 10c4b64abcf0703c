"""Snapshots written by someone else: whatever the state topic holds, a restore never stops the
loop, never runs code, and falls back to an older snapshot or warm-up, counted and logged."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.stream.test_models import OLD, Stream
from tests.unit.stream.test_runtime import FakeConsumer, FakeProducer, MemoryStore, Record
from vigil.stream.config import load_config
from vigil.stream.engine.events import PredictionEvent, TelemetryEvent
from vigil.stream.engine.monitor import Monitor
from vigil.stream.errors import StateError
from vigil.stream.loop.runner import Runner
from vigil.stream.metrics import VigilMetrics
from vigil.stream.state import Snapshot

PREDICTIONS = ("predictions", 0)


def _config(tmp_path: Path, extra: str = "") -> Any:
    path = tmp_path / "vigil.toml"
    path.write_text("[models]\nenabled = true\npublish_interval_s = 0.0\n"
                    "[alerts]\ncooldown_s = 60.0\n" + extra)
    return load_config(path, environ={})


def _runner(cfg: Any, batches: list[list[Record]], store: MemoryStore) -> Runner:
    return Runner(cfg, FakeConsumer(batches, []), FakeProducer(), VigilMetrics(), store,
                  retry_backoff_s=0.0)


def _rejected(runner: Runner) -> float:
    return runner.metrics.registry.get_sample_value("vigil_snapshots_rejected_total") or 0.0


class Scene:
    """Two genuine snapshots of predictions/0 (models on), then whatever a test appends."""

    def __init__(self, tmp_path: Path, extra: str = "") -> None:
        self.cfg = _config(tmp_path, extra)
        self.records = Stream().records(0, 700, OLD)
        self.store = MemoryStore([])
        first = _runner(self.cfg, [self.records[:600], self.records[600:1000]], self.store)
        for _ in range(2):
            first.run_once()
            first.checkpointer.checkpoint()
        snapshots = self.store.read([PREDICTIONS])[PREDICTIONS]
        assert [s.sequence for s in snapshots] == [1, 0]
        self.genuine = snapshots[0]
        assert isinstance(self.genuine, Snapshot)

    def append(self, body: Any, *, offset: int | None = None) -> None:
        """A newer snapshot of predictions/0 with this body, as a foreign writer would add."""
        latest = self.genuine
        assert isinstance(latest, Snapshot)
        self.store.messages.extend(self.store.encode(Snapshot(
            latest.topic, latest.partition, latest.offset if offset is None else offset,
            latest.sequence + 1, body)))

    def body(self) -> dict[str, Any]:
        assert isinstance(self.genuine, Snapshot)
        return copy.deepcopy(dict(self.genuine.body))

    def restore(self) -> Runner:
        """A new instance takes predictions/0 and labels/0 and runs the rest of the stream."""
        runner = _runner(self.cfg, [self.records[1000:]], self.store)
        runner.restorer.on_partitions_assigned([PREDICTIONS, ("labels", 0)])
        runner.run_once()
        runner.run_once()
        return runner


def _model(body: dict[str, Any]) -> dict[str, Any]:
    model: dict[str, Any] = body["models"]["models"]["m"]
    return model


EDITS = {
    "labels_offset -1": lambda b: b.update(labels_offset=-1),
    "labels_offset a string": lambda b: b.update(labels_offset="7"),
    "last_alert a string": lambda b: b["series"][0].update(last_alert="x"),
    "last_seen infinite": lambda b: b["series"][0].update(last_seen=math.inf),
    "watermark a list": lambda b: b.update(watermark=[1]),
    "series not a list": lambda b: b.update(series={"a": 1}),
    "a detector of another type": lambda b: b["series"][0].update(kind="cusum"),
    "guard counters not numbers": lambda b: _model(b)["guard"].update(
        counters={"rollbacks": "x"}),
    "guard counters naming attributes": lambda b: _model(b)["guard"].update(
        counters={"learner": 1, "__class__": 2}),
    "label buffer a string": lambda b: b["models"].update(buffer="payload"),
    "waiting payload a string": lambda b: b["models"]["buffer"].update(
        predictions=[["p1", 1.0, "payload"]]),
    "model version a string": lambda b: _model(b).update(version="x"),
    "ten thousand models": lambda b: b["models"].update(
        models={f"m{i}": _model(b) for i in range(10_000)}),
    "models a list": lambda b: b.update(models=[1, 2]),
    "body a string": lambda b: b.clear() or b.update(series="x"),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_a_crafted_snapshot_is_skipped_for_the_genuine_one(tmp_path: Path, edit: str) -> None:
    scene = Scene(tmp_path)
    body = scene.body()
    EDITS[edit](body)
    scene.append(body)
    runner = scene.restore()  # did not raise
    assert _rejected(runner) == 1
    assert runner.consumer.seeks[PREDICTIONS] == scene.genuine.offset  # type: ignore[union-attr]
    models = runner.processor.models
    assert models is not None and models.models_of(PREDICTIONS) == ["m"]
    assert runner.processor.monitor.series_count > 0


def test_a_snapshot_with_offset_minus_one_is_skipped(tmp_path: Path) -> None:
    scene = Scene(tmp_path)
    scene.append(scene.body(), offset=-1)
    runner = scene.restore()
    assert _rejected(runner) == 1
    assert runner.consumer.seeks[PREDICTIONS] == scene.genuine.offset  # type: ignore[union-attr]


def test_a_reader_that_fails_unexpectedly_means_warm_up_not_a_stopped_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = Scene(tmp_path)

    def broken(partitions: Any) -> Any:
        raise MemoryError("a state message the reader did not expect")

    monkeypatch.setattr(scene.store, "read", broken)
    runner = scene.restore()
    assert _rejected(runner) == 1
    assert PREDICTIONS not in runner.consumer.seeks and not runner.consumer.paused


def test_a_watermark_from_the_far_future_is_held_to_the_clock(tmp_path: Path) -> None:
    """A saved watermark of 2199 used to expire every series of the partition for good."""
    scene = Scene(tmp_path, "[state]\nseries_ttl_s = 34560000.0\n")  # 400 days: the data is
    # from 2026-01-01, so a watermark held to the clock leaves its series within the TTL
    body = scene.body()
    body["watermark"] = 7_258_000_000.0
    body["models"]["watermark"] = 7_258_000_000.0
    scene.append(body)
    runner = scene.restore()
    assert _rejected(runner) == 0
    monitor = runner.processor.monitor
    assert monitor.expired == 0  # the series learned on, none restarted
    part = monitor._partitions[PREDICTIONS]  # noqa: SLF001
    assert part.watermark <= time.time() + scene.cfg.runtime.max_clock_skew_s + 1


# --- property: any mutation of a genuine snapshot --------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**64, max_value=2**64)
    | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document (dict keys and list indices)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            found += _paths(item, (*prefix, index))
    return found


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return Scene(tmp_path_factory.mktemp("scene"))


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_of_a_snapshot_restores_or_is_skipped_and_the_stream_goes_on(
        scene: Scene, data: st.DataObject) -> None:
    body = scene.body()
    paths = _paths(body)[1:]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = body
        try:
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced the way there
    store = MemoryStore([], messages=list(scene.store.messages))
    genuine = scene.genuine
    assert isinstance(genuine, Snapshot)
    store.messages.extend(store.encode(Snapshot(genuine.topic, genuine.partition,
                                                genuine.offset, genuine.sequence + 1,
                                                json.loads(json.dumps(body)))))
    runner = _runner(scene.cfg, [scene.records[1000:1200]], store)
    runner.restorer.on_partitions_assigned([PREDICTIONS, ("labels", 0)])
    runner.run_once()
    batch = runner.run_once()  # the stream goes on from whichever snapshot was used
    assert batch.records == 200
    assert _rejected(runner) <= 1


@pytest.mark.parametrize(("detector", "setting", "value"), [
    ("shewhart", "k", 1e300),  # never alarms again
    ("ewma", "L", 1e300),
    ("robust", "window", 10**9),
    ("hst", "n_trees", 10**9),  # a billion trees to build
])
def test_a_detector_with_settings_the_configuration_does_not_give_is_refused(
        detector: str, setting: str, value: float) -> None:
    """The snapshot's own settings of a detector used to be restored as written."""
    monitor = Monitor(detector)
    vector = detector == "hst"
    for i in range(40):
        event = PredictionEvent("m", 1767225600.0 + i, {"a": float(i % 5), "b": 1.0}, 0.5) \
            if vector else TelemetryEvent("s", 1767225600.0 + i, {"x": float(i % 5)})
        list(monitor.observe(event, ("t", 0)))
    body = monitor.export_partition(("t", 0))
    chosen = next(s for s in body["series"] if setting in s["state"])
    chosen["state"][setting] = value
    restored = Monitor(detector)
    with pytest.raises(StateError, match="other settings|expected"):
        restored.import_partition(("t", 0), body)
    assert restored.series_count == 0
