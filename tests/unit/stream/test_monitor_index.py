"""A partition's name index (event type → key → metric → series) holds exactly its series,
through creation, eviction, per-key shares, TTL restarts, expiry, export/import and drops."""

from __future__ import annotations

import random

from vigil.stream.engine.events import Event, PredictionEvent, TelemetryEvent
from vigil.stream.engine.monitor import Monitor
from vigil.stream.state import PartitionId

T0 = 1_767_225_600.0


def assert_index_matches(monitor: Monitor) -> None:
    for partition, part in monitor.table.partitions.items():
        flat = {(event_type, key, metric): series
                for event_type, keys in part.index.items()
                for key, metrics in keys.items()
                for metric, series in metrics.items()}
        assert flat == part.series, partition
        assert all(metrics for keys in part.index.values() for metrics in keys.values())


def random_batch(rng: random.Random, start: float, size: int) -> list[tuple[Event, PartitionId]]:
    batch: list[tuple[Event, PartitionId]] = []
    for i in range(size):
        timestamp = start + i * rng.choice([1.0, 1.0, 1.0, 500.0])
        partition = ("in", rng.randrange(3))
        names = rng.sample(["a", "b", "c", "d", "e"], rng.randint(1, 4))
        values = {name: rng.gauss(0.0, 1.0) for name in names}
        if rng.random() < 0.5:
            event: Event = TelemetryEvent(f"s{rng.randrange(6)}", timestamp, values)
        else:
            event = PredictionEvent(f"m{rng.randrange(4)}", timestamp, values, rng.random())
        batch.append((event, partition))
    return batch


def test_the_index_follows_every_change_of_the_series() -> None:
    rng = random.Random(7)
    monitor = Monitor("shewhart", max_series=40, max_series_per_key=6, series_ttl_s=900.0)
    start = T0
    for round_ in range(30):
        monitor.observe_many(random_batch(rng, start, 50))
        start += 60 * 50
        assert_index_matches(monitor)
        if round_ % 5 == 4:
            monitor.expire_idle()
            assert_index_matches(monitor)
        if round_ % 7 == 6:
            partition = ("in", round_ % 3)
            body = monitor.export_partition(partition)
            monitor.import_partition(partition, body)
            assert_index_matches(monitor)
        if round_ % 11 == 10:
            monitor.drop_partition(("in", 0))
            assert_index_matches(monitor)
    assert monitor.evicted and monitor.expired  # the run reached both kinds of removal
