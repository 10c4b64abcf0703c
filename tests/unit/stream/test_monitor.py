"""Monitor: per-partition state, the series cap, event-time expiry, and checkpoint bodies."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.stream.engine.monitor import Monitor, Observation
from vigil.stream.errors import StateError
from vigil.stream.state import PartitionId

P0: PartitionId = ("telemetry", 0)
P1: PartitionId = ("telemetry", 1)
T0 = 1_767_225_600.0
WAVE = [100.0, 103.0, 98.0, 101.0, 97.0, 102.0, 99.0, 104.0, 96.0, 100.5]
COUNTING = {"warmup": 2, "lag": 0}
"""A chart whose ``n`` counts every point it has seen (after its first, held one)."""


def feed(monitor: Monitor, points: Iterable[tuple[float, float]], *, key: str = "web-1",
         metric: str = "latency_ms", partition: PartitionId = P0) -> list[Observation]:
    """Observe (timestamp, value) points of one telemetry series."""
    return [monitor.observe_point("telemetry", key, metric, value, timestamp, partition)
            for timestamp, value in points]


def history(count: int, start: float = T0, step: float = 1.0) -> list[tuple[float, float]]:
    return [(start + i * step, WAVE[i % len(WAVE)]) for i in range(count)]


def seen(monitor: Monitor, *, key: str = "web-1", partition: PartitionId = P0,
         timestamp: float = T0 + 10_000.0) -> int:
    """How many points the series' limits rest on, learned before this probe (0: new)."""
    return feed(monitor, [(timestamp, 100.0)], key=key, partition=partition)[0].result.n


def outcome(observation: Observation) -> tuple[Any, ...]:
    r = observation.result
    return (observation.key, observation.metric, r.score, r.anomaly, r.centre, r.lower,
            r.upper, r.z, r.n, r.resolved, r.rebaselined)


# --- partitions -------------------------------------------------------------------------------


def test_the_same_series_in_two_partitions_has_two_independent_detectors() -> None:
    monitor = Monitor("shewhart", COUNTING)
    feed(monitor, history(20), partition=P0)
    assert feed(monitor, [(T0 + 20, 100.0)], partition=P1)[0].result.n == 0
    assert feed(monitor, [(T0 + 21, 100.0)], partition=P0)[0].result.n == 20
    assert monitor.series_count == 2
    assert sorted(monitor.partitions()) == [P0, P1]


def test_event_time_and_expiry_are_per_partition() -> None:
    monitor = Monitor("shewhart", COUNTING, series_ttl_s=60.0)
    feed(monitor, history(10), partition=P0)
    feed(monitor, [(T0 + 1e6, 1.0)], key="far-ahead", partition=P1)  # P1's clock, not P0's
    assert feed(monitor, [(T0 + 10, 100.0)], partition=P0)[0].result.n == 10
    assert monitor.expire_idle() == 0
    assert monitor.expired == 0


def test_dropping_or_exporting_a_partition_leaves_the_others_alone() -> None:
    monitor = Monitor("shewhart", COUNTING)
    feed(monitor, history(10), partition=P0)
    feed(monitor, history(7), partition=P1)
    monitor.export_partition(P0)
    assert not monitor.is_dirty(P0) and monitor.is_dirty(P1)
    monitor.drop_partition(P1)
    assert monitor.partitions() == [P0]
    assert monitor.series_count == 1
    assert seen(monitor, partition=P0) == 10
    assert seen(monitor, partition=P1) == 0
    assert monitor.is_dirty(P0)


# --- the series cap ---------------------------------------------------------------------------


def test_the_least_recently_seen_series_is_evicted_at_the_cap_and_counted() -> None:
    monitor = Monitor("shewhart", COUNTING, max_series=3)
    for key, count in (("a", 3), ("b", 4), ("c", 5)):
        feed(monitor, history(count), key=key)
    feed(monitor, [(T0 + 50, 100.0)], key="a")  # a is now the most recent, b the least
    feed(monitor, [(T0 + 51, 100.0), (T0 + 52, 101.0)], key="d")
    assert (monitor.series_count, monitor.evicted) == (3, 1)
    # Order now c, a, d: c, then a, then d are the ones to go.
    assert seen(monitor, key="a") == 4
    assert seen(monitor, key="b") == 0  # b was evicted; coming back evicts c
    assert (monitor.series_count, monitor.evicted) == (3, 2)
    assert seen(monitor, key="d") == 2
    assert seen(monitor, key="c") == 0


def test_the_cap_spans_partitions() -> None:
    monitor = Monitor("shewhart", COUNTING, max_series=2)
    feed(monitor, history(5), key="old", partition=P1)
    feed(monitor, history(5), key="x", partition=P0)
    feed(monitor, history(5), key="y", partition=P0)
    assert (monitor.series_count, monitor.evicted) == (2, 1)
    assert seen(monitor, key="x") == 5
    assert seen(monitor, key="old", partition=P1) == 0


def test_an_imported_partition_is_trimmed_to_the_cap() -> None:
    source = Monitor("shewhart", COUNTING)
    for key in "abcd":
        feed(source, history(3), key=key)
    target = Monitor("shewhart", COUNTING, max_series=3)
    feed(target, history(3), key="mine", partition=P1)
    target.import_partition(P0, source.export_partition(P0))
    assert target.series_count == 3
    assert target.evicted == 2


# --- event-time expiry ------------------------------------------------------------------------


def test_a_series_idle_past_the_ttl_restarts_from_warm_up_and_is_counted() -> None:
    monitor = Monitor("shewhart", COUNTING, series_ttl_s=60.0)
    feed(monitor, history(10))  # last seen at T0 + 9
    feed(monitor, [(T0 + 69, 1.0)], key="other")  # exactly the TTL later: not yet idle
    assert feed(monitor, [(T0 + 69, 100.0)])[0].result.n == 10
    assert monitor.expired == 0
    feed(monitor, [(T0 + 129.5, 1.0)], key="other-2")  # now 60.5 s idle
    assert feed(monitor, [(T0 + 129.5, 100.0)])[0].result.n == 0
    assert monitor.expired == 1


def test_a_point_from_far_ahead_expires_its_own_series_and_a_late_one_moves_no_clock() -> None:
    monitor = Monitor("shewhart", COUNTING, series_ttl_s=60.0)
    feed(monitor, history(10))
    assert feed(monitor, [(T0 - 5_000, 100.0)])[0].result.n == 10  # late: keeps the series
    assert feed(monitor, [(T0 + 1_000, 100.0)])[0].result.n == 0
    assert monitor.expired == 1


def test_ttl_zero_keeps_every_series() -> None:
    monitor = Monitor("shewhart", COUNTING, series_ttl_s=0.0)
    feed(monitor, history(10))
    feed(monitor, [(T0 + 1e9, 1.0)], key="other")
    assert monitor.expire_idle() == 0
    assert seen(monitor, timestamp=T0 + 1e9) == 10


def test_expire_idle_frees_what_lazy_expiry_would_restart() -> None:
    monitor = Monitor("shewhart", COUNTING, series_ttl_s=60.0)
    feed(monitor, history(10), key="idle")
    feed(monitor, history(10, start=T0 + 100), key="busy")
    assert monitor.expire_idle() == 1
    assert (monitor.series_count, monitor.expired) == (1, 1)
    assert seen(monitor, key="busy", timestamp=T0 + 110) == 10


operations = st.lists(
    st.tuples(
        st.sampled_from([P0, P1]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(-30, 90),  # seconds since the previous point: late ones too
        st.floats(-50.0, 50.0),
        st.booleans(),  # sweep with expire_idle before this point
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_sweeping_with_expire_idle_changes_no_future_result(
    ops: list[tuple[PartitionId, str, int, float, bool]],
) -> None:
    lazy = Monitor("shewhart", COUNTING, series_ttl_s=60.0)
    swept = Monitor("shewhart", COUNTING, series_ttl_s=60.0)
    clock = T0
    for partition, key, step, value, sweep in ops:
        clock += step
        if sweep:
            swept.expire_idle()
        observed = [m.observe_point("telemetry", key, "x", value, clock, partition)
                    for m in (lazy, swept)]
        assert outcome(observed[0]) == outcome(observed[1])
    # Once both have swept, they hold and have counted exactly the same.
    lazy.expire_idle()
    swept.expire_idle()
    assert (lazy.series_count, lazy.expired) == (swept.series_count, swept.expired)
    for partition in (P0, P1):
        assert _by_series(lazy.export_partition(partition)) == \
            _by_series(swept.export_partition(partition))


def _by_series(body: dict[str, Any]) -> tuple[Any, list[Any]]:
    """A body with its series in a fixed order (a restarted series may sit elsewhere)."""
    series = sorted(body["series"], key=lambda s: (s["event_type"], s["key"], s["metric"]))
    return body["watermark"], series


def test_a_series_restarted_after_its_ttl_counts_as_just_seen() -> None:
    monitor = Monitor("shewhart", COUNTING, max_series=2, series_ttl_s=60.0)
    feed(monitor, history(3), key="a")
    feed(monitor, history(3, start=T0 + 100), key="b")
    restarted = feed(monitor, [(T0 + 103, 100.0), (T0 + 103.5, 101.0)], key="a")
    assert restarted[0].result.n == 0
    feed(monitor, [(T0 + 104, 100.0)], key="c")  # evicts the least recently seen: b
    assert seen(monitor, key="a", timestamp=T0 + 105) == 2


# --- checkpoint bodies ------------------------------------------------------------------------


def test_export_then_import_continues_with_identical_observations() -> None:
    config: dict[str, Any] = {"params": {"warmup": 5}, "series_ttl_s": 300.0}
    original = Monitor("shewhart", config["params"], series_ttl_s=config["series_ttl_s"])
    for key in ("web-1", "web-2", "db"):
        feed(original, history(40, step=2.0), key=key)
    feed(original, history(12), key="elsewhere", partition=P1)
    spike = feed(original, [(T0 + 80, 500.0)], key="web-1")[0]
    assert spike.result.anomaly
    spike.series.episode = "episode-1"

    body = json.loads(json.dumps(original.export_partition(P0), allow_nan=True))
    restored = Monitor("shewhart", config["params"], series_ttl_s=config["series_ttl_s"])
    feed(restored, history(3), key="stale-here")  # replaced by the import
    assert restored.import_partition(P0, body) == 3
    assert restored.series_count == 3

    future = [(T0 + 81 + i, WAVE[i % len(WAVE)] + (400.0 if i == 7 else 0.0)) for i in range(20)]
    future += [(T0 + 500, 100.0)]  # long enough after web-2 and db were last seen: both expire
    for key in ("web-1", "web-2", "db", "stale-here"):
        a = feed(original, future, key=key)
        b = feed(restored, future, key=key)
        if key == "stale-here":  # only ever in `restored` before its import: gone now
            assert b[0].result.n == 0
            continue
        assert [outcome(o) for o in a] == [outcome(o) for o in b]
        assert a[0].series.episode == b[0].series.episode
    assert original.expired == restored.expired > 0


def test_a_body_for_another_detector_configuration_is_not_restored() -> None:
    original = Monitor("shewhart", {"k": 3.0})
    feed(original, history(30))
    body = original.export_partition(P0)
    for name, params in (("shewhart", {"k": 4.0}), ("ewma", {})):
        other = Monitor(name, params)
        assert other.import_partition(P0, copy.deepcopy(body)) == 0
        assert other.series_count == 0
        assert seen(other) == 0


def _good_body() -> dict[str, Any]:
    monitor = Monitor("shewhart", COUNTING)
    for key in ("a", "b", "c"):
        feed(monitor, history(10), key=key)
    return json.loads(json.dumps(monitor.export_partition(P0)))


def _corrupt(body: dict[str, Any], how: str) -> dict[str, Any]:
    last = body["series"][-1]  # the others would import fine: none of them may stay
    if how == "no state":
        del last["state"]
    elif how == "state not an object":
        last["state"] = "garbage"
    elif how == "negative count":
        last["state"]["stats"]["count"] = -1
    elif how == "bad last_seen":
        last["last_seen"] = "yesterday"
    elif how == "no watermark":
        del body["watermark"]
    elif how == "bad watermark":
        body["watermark"] = "later"
    elif how == "series not a list":
        body["series"] = 7
    elif how == "series item not an object":
        body["series"].append("junk")
    return body


@pytest.mark.parametrize("how", [
    "no state", "state not an object", "negative count", "bad last_seen", "no watermark",
    "bad watermark", "series not a list", "series item not an object",
])
def test_a_corrupt_body_raises_state_error_and_imports_nothing(how: str) -> None:
    monitor = Monitor("shewhart", COUNTING)
    feed(monitor, history(6), key="before", partition=P0)
    feed(monitor, history(8), key="kept", partition=P1)
    with pytest.raises(StateError):
        monitor.import_partition(P0, _corrupt(_good_body(), how))
    assert monitor.series_count == 1
    assert P0 not in monitor.partitions()
    for key in ("a", "b", "c", "before"):
        assert seen(monitor, key=key) == 0
    assert seen(monitor, key="kept", partition=P1) == 8


@pytest.mark.parametrize("name", ["shewhart", "ensemble"])
def test_values_at_the_edge_of_the_accepted_range_keep_state_finite_and_restorable(
    name: str,
) -> None:
    # stream.engine.events refuses magnitudes beyond 1e150, so a detector sees at most this.
    edge = [1e150, -1e150, 0.0, 5e-324, -1e150, 1e150, 100.0]
    original = Monitor(name)
    for key in ("ordinary", "hostile"):
        feed(original, history(40), key=key)
    feed(original, [(T0 + 40 + i, edge[i % len(edge)]) for i in range(70)], key="hostile")
    body = json.loads(json.dumps(original.export_partition(P0)), parse_constant=_refuse)
    restored = Monitor(name)
    assert restored.import_partition(P0, body) == 2
    future = [(T0 + 200 + i, edge[i % len(edge)] if i % 4 else 100.0) for i in range(30)]
    for key in ("ordinary", "hostile"):
        a, b = feed(original, future, key=key), feed(restored, future, key=key)
        assert [outcome(o) for o in a] == [outcome(o) for o in b]


def _refuse(constant: str) -> Any:
    raise AssertionError(f"the exported state holds {constant}")
