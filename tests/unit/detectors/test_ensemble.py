"""The default ensemble: one score, one alarm per episode, resolve once, rebaseline once."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from vigil.detectors.base import PointResult, build_detector, restore_detector
from vigil.detectors.budget import cusum_h_for_arl, ewma_L_for_arl, shewhart_k_for_arl
from vigil.detectors.cusum import CusumChart
from vigil.detectors.ensemble import DEFAULT_ARL0, EnsembleDetector, member_limits
from vigil.detectors.ewma import EwmaChart
from vigil.detectors.shewhart import ShewhartChart


def noise(n: int, seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(10.0, 1.0, n)


def feed(detector: Any, values: Any, start: int = 0) -> list[PointResult]:
    return [detector.update(float(v), float(start + t)) for t, v in enumerate(values)]


def flags(results: list[PointResult], attribute: str) -> list[int]:
    return [t for t, r in enumerate(results) if getattr(r, attribute)]


def test_registered_with_limits_from_the_false_alarm_budget() -> None:
    detector = build_detector("ensemble")
    assert isinstance(detector, EnsembleDetector) and detector.name == "ensemble"
    share = 3 * DEFAULT_ARL0
    # The stored defaults are the budget's own results (recomputed here, ~2 s).
    assert member_limits(DEFAULT_ARL0, 0.5, 0.2) == pytest.approx(
        (shewhart_k_for_arl(share), cusum_h_for_arl(share, 0.5),
         ewma_L_for_arl(share, 0.2, "exact")), abs=1e-6)
    assert (detector.shewhart_k, detector.cusum_h, detector.ewma_L) == member_limits(
        DEFAULT_ARL0, 0.5, 0.2)


def test_explicit_limits_replace_the_derived_ones() -> None:
    detector = EnsembleDetector(shewhart_k=3.0, cusum_h=5.0, ewma_L=2.814, ewma_lambda=0.1)
    assert (detector.shewhart_k, detector.cusum_h, detector.ewma_L) == (3.0, 5.0, 2.814)
    state = detector.state_dict()["members"]
    assert (state["shewhart"]["k"], state["cusum"]["h"], state["ewma"]["L"]) == (3.0, 5.0, 2.814)


def test_score_is_the_members_maximum_and_limits_are_shewharts() -> None:
    values = noise(300)
    values[200] += 6.0
    ensemble = EnsembleDetector(warmup=50)
    k, h, L = ensemble.shewhart_k, ensemble.cusum_h, ensemble.ewma_L
    members = (ShewhartChart(k=k, warmup=50, lag=0), CusumChart(h=h, warmup=50, lag=0),
               EwmaChart(lambda_=0.2, L=L, warmup=50, lag=0))
    for t, v in enumerate(values[:201]):  # up to the spike: its episode changes what they learn
        result = ensemble.update(float(v), float(t))
        alone = [m.update(float(v), float(t)) for m in members]
        assert result.score == max(r.score for r in alone)
        assert (result.centre, result.lower, result.upper, result.z, result.n) == (
            alone[0].centre, alone[0].lower, alone[0].upper, alone[0].z, alone[0].n)
        assert result.details is not None
        assert result.details["cusum_score"] == alone[1].score
        if result.n >= 2:  # before two points the charts have no details
            assert {"cusum_pos", "cusum_neg", "ewma", "episode"} <= set(result.details)


def test_points_of_a_resolved_episode_are_not_learned() -> None:
    values = noise(400, seed=3)
    values[200] += 8.0
    values[201:205] += 5.0
    ensemble = EnsembleDetector(warmup=50)
    alone = ShewhartChart(k=ensemble.shewhart_k, warmup=50, lag=0)
    results = feed(ensemble, values)
    spread = [alone.update(float(v), float(t)).upper for t, v in enumerate(values)]
    resolved = flags(results, "resolved")[0]
    assert results[resolved + 1].upper < spread[resolved + 1]
    # Only the opening point (winsorised) and the quiet tail were learned from the episode.
    before = results[199].upper - results[199].centre
    after = results[resolved + 1].upper - results[resolved + 1].centre
    assert after == pytest.approx(before, rel=0.03)


def test_in_control_series_raises_no_alarm() -> None:
    results = feed(EnsembleDetector(), noise(5000, seed=8))
    assert flags(results, "anomaly") == []
    assert flags(results, "resolved") == flags(results, "rebaselined") == []


def test_a_spike_opens_one_episode_that_resolves_once() -> None:
    values = noise(600)
    values[300] += 9.0
    values[302] += 8.0  # a second spike inside the same episode raises nothing new
    results = feed(EnsembleDetector(clear_after=30), values)
    assert flags(results, "anomaly") == [300]
    resolved = flags(results, "resolved")
    assert len(resolved) == 1 and 332 <= resolved[0] < 345
    assert flags(results, "rebaselined") == []
    assert results[300].score > 0.5 and results[301].details is not None
    assert results[301].details["episode"] == 2.0
    after = results[resolved[0] + 1].details
    assert after is not None and after["episode"] == 0.0


@pytest.mark.parametrize("shift", [1.5, 3.0, -5.0])
def test_a_sustained_shift_alarms_once_and_rebaselines_once(shift: float) -> None:
    values = noise(3000, seed=12)
    values[500:] += shift
    results = feed(EnsembleDetector(rebaseline_after=100), values)
    alarms, rebaselines = flags(results, "anomaly"), flags(results, "rebaselined")
    assert len(alarms) == 1 and 500 <= alarms[0] < 530
    assert len(rebaselines) == 1 and rebaselines[0] >= alarms[0] + 99
    assert flags(results, "resolved") == []
    # The new level is the baseline now: the centre moved there.
    assert results[-1].centre == pytest.approx(10.0 + shift, abs=0.3)


def test_two_shifts_rebaseline_once_each() -> None:
    values = noise(3000, seed=13)
    values[800:] += 4.0
    values[2000:] -= 8.0
    results = feed(EnsembleDetector(), values)
    assert len(flags(results, "anomaly")) == 2
    assert len(flags(results, "rebaselined")) == 2


def test_without_rebaselining_the_episode_resolves_when_the_shift_ends() -> None:
    values = noise(1200, seed=14)
    values[400:460] += 4.0  # over before rebaseline_after
    results = feed(EnsembleDetector(rebaseline_after=200), values)
    assert len(flags(results, "anomaly")) == 1
    resolved = flags(results, "resolved")
    assert len(resolved) == 1 and 460 + 20 <= resolved[0] < 520
    assert flags(results, "rebaselined") == []


@pytest.mark.parametrize("cut", [0, 150, 301, 320, 540, 700])
def test_state_round_trip_mid_episode_gives_identical_futures(cut: int) -> None:
    values = noise(900, seed=15)
    values[300] += 8.0
    values[500:] += 3.0
    params = {"warmup": 40, "clear_after": 20, "rebaseline_after": 60}
    reference = feed(EnsembleDetector(**params), values)
    detector = EnsembleDetector(**params)
    feed(detector, values[:cut])
    state = json.loads(json.dumps(detector.state_dict(), allow_nan=False))
    restored = restore_detector("ensemble", state)
    assert feed(restored, values[cut:], cut) == reference[cut:]


def test_seasonal_members_keep_one_baseline_per_hour() -> None:
    detector = EnsembleDetector(season="hour_of_day", warmup=10)
    rng = np.random.default_rng(2)
    t0 = 1_767_225_600.0
    results = []
    for day in range(30):
        for hour in range(24):
            level = 100.0 if 9 <= hour < 18 else 10.0
            results.append(detector.update(level + rng.normal(), t0 + day * 86400 + hour * 3600))
    assert flags(results, "anomaly") == []
    spike = detector.update(10.0, t0 + 30 * 86400 + 12 * 3600)  # night level at noon
    assert spike.anomaly
    assert detector.state_dict()["members"]["cusum"]["season"] == "hour_of_day"


def test_a_seasonal_shift_moves_the_level_and_keeps_the_hourly_baselines() -> None:
    detector = EnsembleDetector(season="hour_of_day", warmup=10)
    rng = np.random.default_rng(6)
    t0 = 1_767_225_600.0
    results = []
    for i in range(40 * 24 * 2):  # 40 days, a point every 30 minutes
        t = t0 + 1800.0 * i
        hour = (i // 2) % 24
        value = (100.0 if 9 <= hour < 18 else 10.0) + rng.normal()
        if i >= 25 * 48:
            value += 5.0  # from day 25 on, every hour runs 5σ higher
        if i == 35 * 48 + 24:
            value += 10.0  # a spike on day 35, long after the re-baseline
        results.append(detector.update(value, t))
    alarms, rebaselines = flags(results, "anomaly"), flags(results, "rebaselined")
    assert alarms[0] in range(25 * 48, 25 * 48 + 10) and len(rebaselines) == 1
    assert alarms[1:] == [35 * 48 + 24]  # hourly baselines survived: the spike is seen
    assert results[-1].centre == pytest.approx(15.0, abs=0.5)  # 23:30, night level + 5


@pytest.mark.parametrize(
    "params",
    [{"arl0": 1.0}, {"warmup": 1}, {"clear_after": 0}, {"clear_score": 0.6},
     {"rebaseline_after": 20, "clear_after": 30}, {"ewma_lambda": 1.5}, {"outliers": "keep"},
     {"season": "daily"}, {"shewhart_k": -1.0}],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_detector("ensemble", params)


def test_bad_episode_state_is_refused() -> None:
    state = EnsembleDetector().state_dict()
    with pytest.raises(ValueError, match="episode"):
        EnsembleDetector.from_state({**state, "episode": 0, "quiet": 5})
