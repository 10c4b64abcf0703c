"""ShewhartChart: limits from the points before, warm-up, outlier policies, state, ARL."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from vigil import detectors
from vigil.detectors import (
    Detector,
    PointResult,
    RunningStats,
    ShewhartChart,
    build_detector,
    detector_names,
    restore_detector,
    score_from_ratio,
)

POLICIES = ["clip", "exclude", "learn"]


def in_control(n: int, seed: int = 7) -> list[float]:
    """Uniform on [-1, 1]: |z| stays below sqrt(3) < 3, so these points never alarm."""
    values: list[float] = np.random.default_rng(seed).uniform(-1.0, 1.0, size=n).tolist()
    return values


def feed(chart: ShewhartChart, values: list[float]) -> list[PointResult]:
    return [chart.update(v, float(t)) for t, v in enumerate(values)]


def test_public_surface_and_registry() -> None:
    assert all(hasattr(detectors, name) for name in detectors.__all__)
    assert "shewhart" in detector_names()
    assert isinstance(build_detector("shewhart", {"k": 2.5}), ShewhartChart)
    assert isinstance(ShewhartChart(), Detector)
    assert ShewhartChart.name == "shewhart"


def test_limits_come_from_the_points_before() -> None:
    chart = ShewhartChart(k=3.0, warmup=30, lag=0)
    base = in_control(50)
    assert not any(r.anomaly for r in feed(chart, base))
    before = RunningStats.of(base)

    spike = chart.update(10.0, 50.0)

    assert spike.anomaly
    assert spike.n == 50
    assert spike.centre == before.mean
    assert spike.upper == before.mean + 3.0 * before.std
    assert spike.lower == before.mean - 3.0 * before.std
    assert spike.z == (10.0 - before.mean) / before.std
    assert spike.score == score_from_ratio(abs(spike.z) / 3.0)
    assert 0.5 < spike.score < 1.0


def test_first_points_are_held_with_open_limits_then_start_the_statistics() -> None:
    first, second, third, fourth = feed(ShewhartChart(warmup=3), [4.0, 6.0, 5.0, 5.0])
    assert first == PointResult(0.0, False, 4.0, -math.inf, math.inf, 0.0, 0)
    assert second == PointResult(0.0, False, 4.0, -math.inf, math.inf, 0.0, 0)
    assert third == PointResult(0.0, False, 4.0, -math.inf, math.inf, 0.0, 0)
    assert fourth.n == 3 and fourth.centre == 5.0
    assert math.isfinite(fourth.lower) and math.isfinite(fourth.upper)
    held = ShewhartChart()  # 30 points of warm-up: it holds them all
    feed(held, in_control(29))
    assert held.update(0.0, 29.0).n == 0 and held.update(0.0, 30.0).n == 30


def test_one_wild_point_in_warm_up_cannot_blind_the_chart() -> None:
    values = in_control(30)
    values[7] = 1e150
    chart = ShewhartChart()
    feed(chart, values)
    spike = chart.update(1e6, 30.0)
    assert spike.anomaly and spike.score > 0.99 and spike.upper < 10.0
    late = ShewhartChart(warmup=100)  # past its first 32 points: screened by the statistics
    late_values = in_control(100)
    late_values[60] = 1e150
    feed(late, late_values)
    assert late.update(1e6, 100.0).anomaly


def test_points_enter_the_limits_lag_points_late_once_warm() -> None:
    chart = ShewhartChart(warmup=30, lag=5, outliers="learn")
    feed(chart, in_control(30))
    assert chart.state_dict()["stats"]["count"] == 30
    shifted = feed(chart, [1.0 + v for v in in_control(5, seed=8)])
    assert [r.n for r in shifted] == [30] * 5
    assert chart.state_dict()["pending"] == [1.0 + v for v in in_control(5, seed=8)]
    assert chart.update(0.0, 35.0).n == 30 and chart.update(0.0, 36.0).n == 31


def test_warmup_suppresses_alarms_but_still_scores() -> None:
    base = in_control(40)
    early = ShewhartChart(warmup=39)
    feed(early, base[:38])
    muted = early.update(10.0, 38.0)
    assert muted.n == 38
    assert not muted.anomaly
    assert muted.score > 0.5 and muted.z > 3.0 and muted.upper < 10.0

    warm = ShewhartChart(warmup=39)
    feed(warm, base[:39])
    assert warm.update(10.0, 39.0).anomaly


def test_clip_keeps_sigma_sane_after_a_huge_outlier_where_learn_does_not() -> None:
    base = in_control(200)
    after: dict[str, PointResult] = {}
    for policy in POLICIES:
        chart = ShewhartChart(warmup=30, outliers=policy, lag=0)
        feed(chart, base)
        assert chart.update(1e6, 200.0).anomaly
        after[policy] = chart.update(2.5, 201.0)

    assert after["clip"].anomaly and after["clip"].upper < 2.0
    assert after["exclude"].anomaly and after["exclude"].upper < 2.0
    assert not after["learn"].anomaly and after["learn"].upper > 1e4


def test_exclude_does_not_learn_from_alarmed_points() -> None:
    chart = ShewhartChart(warmup=30, outliers="exclude", lag=0)
    feed(chart, in_control(100))
    spike = chart.update(50.0, 100.0)
    nxt = chart.update(0.0, 101.0)
    assert spike.anomaly
    assert (nxt.n, nxt.centre, nxt.lower, nxt.upper) == (
        spike.n,
        spike.centre,
        spike.lower,
        spike.upper,
    )


def test_constant_series_that_changes_is_an_anomaly() -> None:
    chart = ShewhartChart(warmup=5)
    results = feed(chart, [5.0] * 10)
    assert all(r.score == 0.0 and r.z == 0.0 and not r.anomaly for r in results)
    up = chart.update(5.1, 10.0)
    assert up.anomaly and up.z == math.inf and up.score == 1.0
    assert up.lower == up.centre == up.upper == 5.0
    down = chart.update(4.9, 11.0)
    assert down.anomaly and down.z == -math.inf and down.score == 1.0

    early = ShewhartChart(warmup=40)
    feed(early, [5.0] * 32)
    muted = early.update(6.0, 32.0)
    assert not muted.anomaly and muted.z == math.inf and muted.score == 1.0


@pytest.mark.parametrize("policy", POLICIES)
def test_state_round_trip_gives_identical_future_outputs(policy: str) -> None:
    values = in_control(600, seed=11)
    for i in range(100, 600, 97):
        values[i] = 8.0 * (-1) ** i
    chart = ShewhartChart(k=2.5, warmup=50, outliers=policy)
    feed(chart, values[:300])

    state = json.loads(json.dumps(chart.state_dict(), allow_nan=False))
    restored = ShewhartChart.from_state(state)
    by_name = restore_detector("shewhart", state)

    expected = feed(chart, values[300:])
    assert feed(restored, values[300:]) == expected
    assert [by_name.update(v, 0.0) for v in values[300:]] == expected
    assert any(r.anomaly for r in expected)
    assert not any(math.isnan(x) for r in expected for x in (r.score, r.z, r.lower, r.upper))
    assert restored.state_dict() == chart.state_dict()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"k": 0.0}, "k"),
        ({"k": -1.0}, "k"),
        ({"k": math.inf}, "k"),
        ({"k": math.nan}, "k"),
        ({"k": "3"}, "k"),
        ({"warmup": 1}, "warmup"),
        ({"warmup": 2.5}, "warmup"),
        ({"warmup": True}, "warmup"),
        ({"outliers": "drop"}, "outliers"),
    ],
)
def test_invalid_params_raise_value_error_naming_the_parameter(
    params: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=f"^{named} must"):
        ShewhartChart(**params)
    with pytest.raises(ValueError, match=named):
        build_detector("shewhart", params)


def test_unknown_param_and_non_finite_value_raise_value_error() -> None:
    with pytest.raises(ValueError, match="bad parameters"):
        build_detector("shewhart", {"sigma": 3})
    chart = ShewhartChart()
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            chart.update(bad, 0.0)
    assert chart.state_dict()["stats"]["count"] == 0


def test_in_control_arl_is_near_the_textbook_370() -> None:
    # Clip winsorises at ±3σ̂, so σ̂ settles near 0.9975σ and ARL0 near 361 (not 370.4).
    warmup, points = 1_000, 2_000_000
    data = np.random.default_rng(20240601).standard_normal(warmup + points).tolist()
    chart = ShewhartChart(k=3.0, warmup=warmup)
    update = chart.update
    for v in data[:warmup]:
        update(v, 0.0)
    alarms = 0
    for v in data[warmup:]:
        if update(v, 0.0).anomaly:
            alarms += 1
    arl0 = points / alarms
    assert 0.9 * 370.4 <= arl0 <= 1.1 * 370.4, arl0


def test_arl_for_a_one_sigma_shift_is_near_the_textbook_43_9() -> None:
    # Known in-control mean 0 and σ 1, as in the textbook figure; a run ends at its first alarm.
    baseline = {"count": 10**9, "mean": 0.0, "m2": float(10**9 - 1)}
    state = {"k": 3.0, "warmup": 2, "outliers": "clip", "stats": baseline}
    rng = np.random.default_rng(43)
    runs, lengths = 2_000, []
    for _ in range(runs):
        chart = ShewhartChart.from_state(state)
        length = 0
        alarmed = False
        while not alarmed:
            for v in rng.normal(1.0, 1.0, size=64).tolist():
                length += 1
                if chart.update(v, 0.0).anomaly:
                    alarmed = True
                    break
        lengths.append(length)
    arl1 = sum(lengths) / runs
    assert 0.9 * 43.9 <= arl1 <= 1.1 * 43.9, arl1
