"""Cold start: pooled group statistics judge a new series until its own warm-up is done."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from vigil.detectors.base import PointResult, build_detector, restore_detector
from vigil.detectors.coldstart import ColdStart, GroupPool
from vigil.detectors.ensemble import EnsembleDetector
from vigil.detectors.multivariate import HalfSpaceTreesDetector
from vigil.detectors.shewhart import ShewhartChart
from vigil.detectors.stats import RunningStats

HOSTS = ("web-1", "web-2", "web-3")


def host_values(n: int, level: float, seed: int) -> list[float]:
    values: list[float] = np.random.default_rng(seed).normal(level, 5.0, n).tolist()
    return values


def warm_pool(warmup: int = 30, points: int = 200) -> GroupPool:
    pool = GroupPool(warmup=warmup)
    for i, host in enumerate(HOSTS):
        for v in host_values(points, 100.0 + 2.0 * i, seed=i):
            pool.learn("web", "latency_ms", host, v)
    return pool


def feed(detector: Any, values: list[float], start: int = 0) -> list[PointResult]:
    return [detector.update(v, float(start + t)) for t, v in enumerate(values)]


def test_pool_merges_only_warmed_up_members() -> None:
    pool = GroupPool(warmup=10, min_members=2)
    for v in range(10):
        pool.learn("svc", "cpu", "a", float(v))
    for v in range(9):
        pool.learn("svc", "cpu", "b", float(v))
    assert pool.pooled("svc", "cpu") is None  # b is not warm yet: one member only
    pool.learn("svc", "cpu", "b", 9.0)
    pooled = pool.pooled("svc", "cpu")
    assert pooled is not None
    expected = RunningStats.of([float(v) for v in range(10)] * 2)
    assert pooled.count == expected.count and pooled.mean == pytest.approx(expected.mean)
    assert pooled.m2 == pytest.approx(expected.m2)
    assert pool.pooled("svc", "cpu", exclude="b") is None
    assert pool.pooled("svc", "memory") is None
    pool.forget("svc", "cpu", "a")
    assert pool.pooled("svc", "cpu") is None


def test_seed_wraps_only_when_the_pool_is_ready() -> None:
    detector = ShewhartChart()
    assert GroupPool().seed(detector, "web", "latency_ms") is detector
    seeded = warm_pool().seed(ShewhartChart(), "web", "latency_ms")
    assert isinstance(seeded, ColdStart)
    seasonal = ShewhartChart(season="hour_of_day")
    assert warm_pool().seed(seasonal, "web", "latency_ms") is seasonal
    vector: Any = HalfSpaceTreesDetector()
    assert warm_pool().seed(vector, "web", "latency_ms") is vector


def test_provisional_until_the_series_own_warmup_then_the_inner_detector() -> None:
    seeded = warm_pool().seed(EnsembleDetector(warmup=50), "web", "latency_ms")
    results = feed(seeded, host_values(120, 104.0, seed=7))
    assert all(r.provisional for r in results[:50])
    assert not any(r.provisional for r in results[50:])
    assert not any(r.anomaly for r in results)
    # From the switch on, results are the inner ensemble's own.
    blind = feed(EnsembleDetector(warmup=50), host_values(120, 104.0, seed=7))
    assert results[50:] == blind[50:]


def test_first_alarms_come_sooner_than_a_blind_detectors() -> None:
    values = host_values(100, 103.0, seed=9)
    values[4] += 60.0  # a 12σ spike on the new host's fifth point
    seeded = feed(warm_pool().seed(EnsembleDetector(warmup=50), "web", "latency_ms"), values)
    blind = feed(EnsembleDetector(warmup=50), values)
    assert [t for t, r in enumerate(seeded) if r.anomaly] == [4]
    assert seeded[4].provisional and seeded[4].score > 0.5
    assert not any(r.anomaly for r in blind)


def test_a_point_flagged_while_provisional_does_not_widen_the_series_own_limits() -> None:
    values = host_values(80, 103.0, seed=9)
    spiked = list(values)
    spiked[4] += 60.0
    clean = feed(warm_pool().seed(EnsembleDetector(warmup=50), "web", "latency_ms"), values)
    dirty = feed(warm_pool().seed(EnsembleDetector(warmup=50), "web", "latency_ms"), spiked)
    assert dirty[4].anomaly and not dirty[50].provisional
    width = [r.upper - r.centre for r in (clean[50], dirty[50])]
    assert width[1] == pytest.approx(width[0], rel=0.03)


def test_pooled_limits_include_the_spread_between_members() -> None:
    seeded = warm_pool().seed(ShewhartChart(), "web", "latency_ms")
    first = seeded.update(100.0, 0.0)
    between = RunningStats()
    for i in range(len(HOSTS)):
        between = between.merge(RunningStats.of(host_values(200, 100.0 + 2.0 * i, seed=i)))
    assert first.centre == pytest.approx(between.mean)
    assert first.upper - first.centre == pytest.approx(seeded.k * between.std)  # type: ignore[attr-defined]
    assert first.n == 30  # the pool weighs as the warm-up's worth of points


def test_a_run_beyond_the_limits_alarms_once() -> None:
    seeded = warm_pool().seed(ShewhartChart(), "web", "latency_ms")
    results = feed(seeded, [100.0, 100.0, 180.0, 181.0, 182.0, 100.0, 185.0])
    assert [t for t, r in enumerate(results) if r.anomaly] == [2, 6]


@pytest.mark.parametrize("cut", [0, 10, 29, 30, 60])
def test_state_round_trip_gives_identical_futures(cut: int) -> None:
    values = host_values(100, 104.0, seed=3)
    values[12] += 50.0
    reference = feed(warm_pool().seed(EnsembleDetector(warmup=30), "web", "latency_ms"), values)
    detector = warm_pool().seed(EnsembleDetector(warmup=30), "web", "latency_ms")
    feed(detector, values[:cut])
    state = json.loads(json.dumps(detector.state_dict(), allow_nan=False))
    restored = restore_detector("coldstart", state)
    assert feed(restored, values[cut:], cut) == reference[cut:]


def test_built_by_name_with_a_prior() -> None:
    prior = RunningStats.of(host_values(100, 50.0, seed=1)).state_dict()
    detector = build_detector("coldstart", {"detector": "shewhart", "params": {"k": 3.0},
                                            "prior": prior, "warmup": 10})
    assert isinstance(detector, ColdStart) and detector.provisional
    assert detector.update(90.0, 0.0).anomaly
    no_prior = build_detector("coldstart", {"detector": "shewhart"})
    assert isinstance(no_prior, ColdStart) and not no_prior.provisional


def test_pool_state_round_trip_and_merge() -> None:
    pool = warm_pool()
    restored = GroupPool.from_state(json.loads(json.dumps(pool.state_dict())))
    assert restored.state_dict() == pool.state_dict()
    other = GroupPool(warmup=30)
    for v in host_values(50, 120.0, seed=5):
        other.learn("web", "latency_ms", "web-9", v)
    merged = pool.merge(other)
    names = [member for _, _, member, _ in merged.members()]
    assert names == [*HOSTS, "web-9"]
    both = pool.merge(pool).pooled("web", "latency_ms")
    single = pool.pooled("web", "latency_ms")
    assert both is not None and single is not None and both.count == 2 * single.count


@pytest.mark.parametrize(
    "params",
    [{"warmup": 1}, {"k": 0.0}, {"prior_points": 1}, {"detector": "nope"},
     {"params": {"k": 2.0}, "detector": ShewhartChart()}],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ColdStart(**params)


def test_bad_pool_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        GroupPool(warmup=1)
    with pytest.raises(ValueError):
        GroupPool(min_members=0)
    with pytest.raises(ValueError, match="finite"):
        GroupPool().learn("g", "m", "a", float("nan"))
