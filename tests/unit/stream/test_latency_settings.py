"""Latency settings: their configuration keys, both clients' use of them, and checkpoints that
hold back the loop's output by one partition at most while events flow."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.stream.test_runtime import (
    FakeConsumer,
    FakeProducer,
    MemoryStore,
    Record,
    steady_then,
)
from vigil.stream.config import VigilConfig, load_config
from vigil.stream.errors import ConfigError
from vigil.stream.kafka import confluent, kafka_python
from vigil.stream.loop.runner import Runner
from vigil.stream.metrics import VigilMetrics
from vigil.stream.state import PartitionId

# --- configuration ------------------------------------------------------------------------------


def test_defaults_are_chosen_for_latency() -> None:
    config = load_config(environ={})
    kafka = config.kafka
    assert (kafka.fetch_min_bytes, kafka.linger_ms, kafka.fetch_max_wait_ms) == (1, 0, 20)
    assert config.runtime.max_poll_records == 250
    assert config.state.checkpoint_interval_s == 30.0


def test_latency_settings_are_read_from_the_file(tmp_path: Any) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text("[kafka]\nfetch_min_bytes = 65536\nlinger_ms = 5\nfetch_max_wait_ms = 20\n"
                    "[runtime]\nmax_poll_records = 250\n")
    config = load_config(path, environ={})
    assert (config.kafka.fetch_min_bytes, config.kafka.linger_ms) == (65536, 5)
    assert (config.kafka.fetch_max_wait_ms, config.runtime.max_poll_records) == (20, 250)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"kafka.fetch_min_bytes": 0},
     "kafka.fetch_min_bytes = 0 is invalid: use 1 (lowest latency) up to 1,048,576 bytes"),
    ({"kafka.fetch_min_bytes": 2**30}, "kafka.fetch_min_bytes = 1073741824 is invalid"),
    ({"kafka.linger_ms": -1},
     "kafka.linger_ms = -1 is invalid: use 0 (send at once) up to 1,000 milliseconds"),
    ({"kafka.linger_ms": 5_000}, "kafka.linger_ms = 5000 is invalid"),
    ({"kafka.linger_ms": "soon"}, "kafka.linger_ms"),
    ({"runtime.max_poll_records": 0}, "runtime.max_poll_records = 0 is invalid: use a positive"),
])
def test_a_bad_latency_setting_names_the_key_and_the_fix(overrides: dict[str, object],
                                                         message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(environ={}, overrides=overrides)


# --- both clients take them ---------------------------------------------------------------------


class Captured:
    """A stand-in client class that keeps the settings it was built with."""

    settings: dict[str, Any] = {}

    def __init__(self, settings: dict[str, Any] | None = None, **kwargs: Any) -> None:
        Captured.settings = dict(settings or kwargs)


def _latency_config() -> VigilConfig:
    return load_config(environ={}, overrides={
        "kafka.fetch_min_bytes": 4096, "kafka.linger_ms": 3, "kafka.fetch_max_wait_ms": 25,
        "runtime.max_poll_records": 200})


def test_kafka_python_clients_take_the_latency_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _latency_config()
    monkeypatch.setattr(kafka_python, "KafkaConsumer", Captured)
    kafka_python.make_consumer(config)
    assert {k: Captured.settings[k] for k in (
        "fetch_min_bytes", "fetch_max_wait_ms", "max_poll_records")} == {
        "fetch_min_bytes": 4096, "fetch_max_wait_ms": 25, "max_poll_records": 200}
    monkeypatch.setattr(kafka_python, "KafkaProducer", Captured)
    kafka_python.make_producer(config)
    assert Captured.settings["linger_ms"] == 3


def test_confluent_clients_take_the_latency_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _latency_config()
    native = confluent._confluent()  # noqa: SLF001 - the module the adapters build from
    monkeypatch.setattr(native, "Consumer", Captured)
    confluent.make_confluent_consumer(config)
    assert (Captured.settings["fetch.min.bytes"], Captured.settings["fetch.wait.max.ms"]) == (
        4096, 25)
    confluent.make_confluent_consumer(config, fetch_min_bytes=1)  # an override, renamed
    assert Captured.settings["fetch.min.bytes"] == 1
    monkeypatch.setattr(native, "Producer", Captured)
    confluent.make_confluent_producer(config)
    assert Captured.settings["linger.ms"] == 3


# --- checkpoints while events flow --------------------------------------------------------------

PARTITIONS = [("telemetry", p) for p in range(4)]


class Consumer(FakeConsumer):
    """Batches on partition 0, and four partitions assigned."""

    def assignment(self) -> set[PartitionId]:
        return set(PARTITIONS)


def _runner(batches: list[list[Record]], log: list[str], config: VigilConfig | None = None,
            ) -> tuple[Runner, MemoryStore]:
    store = MemoryStore(log)
    runner = Runner(config or load_config(environ={}), Consumer(batches, log),
                    FakeProducer(log=log), VigilMetrics(), store, retry_backoff_s=0.0)
    return runner, store


def _all_due(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every partition has moved on and its checkpoint interval has passed."""
    runner.checkpointer.positions.update({p: 10 for p in PARTITIONS})
    runner.checkpointer.due_partitions()  # their first due times, within one interval
    later = runner.checkpointer.interval_s * 2
    clock = __import__("time").monotonic
    monkeypatch.setattr("vigil.stream.loop.checkpoint.time.monotonic", lambda: clock() + later)


def test_while_events_flow_each_poll_snapshots_one_due_partition(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    records = steady_then(900.0)
    runner, store = _runner([records[:20], records[20:40], records[40:]], log)
    _all_due(runner, monkeypatch)
    runner.run_once()
    assert log.count("state") == 1 and log.count("commit") == 1
    assert list(runner.checkpointer.checkpointed) == [("telemetry", 0)]  # one, not four
    runner.run_once()
    assert log.count("commit") == 2
    assert len(runner.checkpointer.checkpointed) == 2
    runner.run_once()
    runner.run_once()  # an empty poll: nothing waits for output, so the rest is done now
    assert set(runner.checkpointer.checkpointed) == set(PARTITIONS)
    assert log.count("commit") == len(PARTITIONS)
    assert log[-2:] == ["state", "commit"]  # still in order: state acknowledged, then commit
    assert all(store.read(PARTITIONS).values())


def test_after_checkpoint_every_events_all_partitions_are_snapshotted_one_per_poll(
        tmp_path: Any) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text("[state]\ncheckpoint_every_events = 30\ncheckpoint_interval_s = 3600\n")
    log: list[str] = []
    records = steady_then(900.0)
    runner, _ = _runner([records[:40], records[40:50], records[50:]], log,
                        load_config(path, environ={}))
    runner.checkpointer.positions.update({p: 10 for p in PARTITIONS[1:]})
    runner.run_once()  # 40 events: every partition is now waiting, one is snapshotted
    assert len(runner.checkpointer.checkpointed) == 1
    runner.run_once()
    runner.run_once()
    assert len(runner.checkpointer.checkpointed) == 3
    runner.run_once()  # empty poll
    assert set(runner.checkpointer.checkpointed) == set(PARTITIONS)
    assert runner.checkpointer.checkpointed[("telemetry", 0)] == 61  # its latest offset


def test_while_the_loop_is_behind_snapshots_wait_at_most_one_more_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("vigil.stream.loop.checkpoint.time.monotonic", lambda: clock[0])
    log: list[str] = []
    runner, _ = _runner([], log)
    checkpointer = runner.checkpointer
    checkpointer.positions.update({p: 10 for p in PARTITIONS})
    checkpointer.due_partitions()  # their first due times, within one interval
    clock[0] += checkpointer.interval_s  # every partition has come due
    checkpointer.checkpoint_if_due(behind=True)  # a full poll: the backlog goes first
    assert checkpointer.checkpointed == {}
    clock[0] += checkpointer.interval_s / 2
    checkpointer.checkpoint_if_due(behind=True)
    assert checkpointer.checkpointed == {}
    checkpointer.checkpoint_if_due()  # no longer behind: one partition, as events flow
    assert len(checkpointer.checkpointed) == 1
    clock[0] += checkpointer.interval_s / 2  # the others have now waited a whole interval
    checkpointer.checkpoint_if_due(behind=True)
    assert len(checkpointer.checkpointed) == 2
    assert log.count("commit") == 2


def test_a_full_poll_counts_as_behind(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text("[runtime]\nmax_poll_records = 20\n")
    clock = [1000.0]
    monkeypatch.setattr("vigil.stream.loop.checkpoint.time.monotonic", lambda: clock[0])
    records = steady_then(900.0)
    runner, _ = _runner([records[:20], records[20:30]], [], load_config(path, environ={}))
    runner.checkpointer.positions.update({p: 10 for p in PARTITIONS})
    runner.checkpointer.due_partitions()
    clock[0] += runner.checkpointer.interval_s
    runner.run_once()  # 20 of at most 20 records: behind, nothing snapshotted
    assert runner.checkpointer.checkpointed == {}
    runner.run_once()  # 10 records: caught up, one partition snapshotted
    assert len(runner.checkpointer.checkpointed) == 1


# --- the cyclic garbage collector ---------------------------------------------------------------


class Node:
    """An object that can be part of a reference cycle and be watched with a weak reference."""

    peer: Node | None = None


def test_the_loop_freezes_what_is_alive_and_collects_young_cycles_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import weakref

    clock = [1000.0]
    monkeypatch.setattr("vigil.stream.loop.runner.time.monotonic", lambda: clock[0])
    runner, _ = _runner([steady_then(900.0)], [])
    runner.run_once()
    gc.unfreeze()
    clock[0] += runner.heap.interval_s / 2
    runner.run_once()  # within the interval: nothing frozen
    assert gc.get_freeze_count() == 0
    cycle = Node()
    cycle.peer = cycle
    watched = weakref.ref(cycle)
    del cycle
    clock[0] += runner.heap.interval_s
    try:
        runner.run_once()
        assert gc.get_freeze_count() > 0  # the state is out of full collections' way ...
        assert watched() is None  # ... and the young cycle was collected, not frozen
    finally:
        gc.unfreeze()


def test_a_cycle_among_frozen_objects_is_freed_at_the_next_release(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen objects are out of every collection; one that later joins a garbage cycle is
    freed when the freezer releases and collects everything."""
    import gc
    import weakref

    from vigil.stream.loop.runner import HeapFreezer

    clock = [1000.0]
    monkeypatch.setattr("vigil.stream.loop.runner.time.monotonic", lambda: clock[0])
    freezer = HeapFreezer(5.0, release_s=60.0)
    cycle = Node()
    cycle.peer = cycle
    watched = weakref.ref(cycle)
    try:
        clock[0] += 5.0
        freezer.freeze_if_due()  # the node is alive: frozen
        del cycle
        gc.collect()
        assert watched() is not None  # frozen garbage: no collection sees it
        clock[0] += 60.0
        freezer.freeze_if_due()  # the release
        assert watched() is None
    finally:
        gc.unfreeze()
