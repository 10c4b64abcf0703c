"""CusumChart: the tabular sums, reset, alarm thresholds on the value scale, state, params."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from vigil.detectors import CusumChart, PointResult, RunningStats, build_detector, restore_detector
from vigil.detectors.budget import cusum_h_for_arl


def in_control(n: int, seed: int = 7) -> list[float]:
    values: list[float] = np.random.default_rng(seed).uniform(-1.0, 1.0, size=n).tolist()
    return values


def feed(chart: CusumChart, values: list[float]) -> list[PointResult]:
    return [chart.update(v, float(t)) for t, v in enumerate(values)]


def test_registered_and_built_by_name() -> None:
    chart = build_detector("cusum", {"k": 0.25, "h": 8})
    assert isinstance(chart, CusumChart) and chart.name == "cusum"
    assert (chart.k, chart.h) == (0.25, 8.0)


def test_sums_follow_the_tabular_recurrence() -> None:
    k, h = 0.5, 4.0
    values = in_control(80)
    values[40:50] = [v + 0.9 for v in values[40:50]]
    results = feed(CusumChart(k=k, h=h, warmup=5, lag=0), values)
    pos = neg = 0.0
    for t in range(5, 80):  # the first 5 points are held: they start the statistics
        before = RunningStats.of(values[:t])
        u = (values[t] - before.mean) / before.std
        r = results[t]
        assert r.upper == pytest.approx(before.mean + before.std * (h + k - pos), rel=1e-12)
        assert r.lower == pytest.approx(before.mean - before.std * (h + k - neg), rel=1e-12)
        pos, neg = max(0.0, pos + u - k), max(0.0, neg - u - k)
        assert r.details is not None
        assert r.details["cusum_pos"] == pytest.approx(pos, rel=1e-9, abs=1e-12)
        assert r.details["cusum_neg"] == pytest.approx(neg, rel=1e-9, abs=1e-12)
        assert r.z == pytest.approx(u, rel=1e-12)
        assert r.score == pytest.approx(max(pos, neg) / h / (1 + max(pos, neg) / h), rel=1e-9)
        assert r.anomaly == (t >= 5 and max(pos, neg) > h)
        if max(pos, neg) > h:
            pos = neg = 0.0


def test_upper_is_the_value_that_would_alarm_now() -> None:
    base = in_control(200)
    probe = CusumChart(k=0.5, h=5.0)
    feed(probe, base)
    upper = probe.update(0.0, 200.0).upper
    for value, alarms in ((upper - 1e-9, False), (upper + 1e-9, True)):
        chart = CusumChart(k=0.5, h=5.0)
        feed(chart, base)
        assert chart.update(value, 200.0).anomaly is alarms


def test_both_sums_reset_after_an_alarm() -> None:
    chart = CusumChart(k=0.5, h=3.0, warmup=30)
    feed(chart, in_control(100))
    results = feed(chart, [-2.0] * 6)
    first = next(i for i, r in enumerate(results) if r.anomaly)
    alarm, after = results[first], results[first + 1]
    assert alarm.details is not None and alarm.details["cusum_neg"] > 3.0
    assert after.details is not None
    assert after.details["cusum_neg"] == pytest.approx(-after.z - 0.5)
    assert after.details["cusum_pos"] == 0.0


def test_warm_up_mutes_alarms_and_resets_so_the_first_warm_point_starts_clean() -> None:
    chart = CusumChart(k=0.5, h=2.0, warmup=40)
    feed(chart, in_control(32))
    muted = feed(chart, [1.5] * 6)
    assert not any(r.anomaly for r in muted) and any(r.score > 0.5 for r in muted)
    assert all(r.details is not None and r.details["cusum_pos"] <= 2.0 + 1.5 / 0.5
               for r in muted)


def test_one_sigma_shift_is_caught_in_about_ten_points() -> None:
    rng = np.random.default_rng(5)
    delays = []
    for _ in range(40):
        chart = CusumChart(warmup=500)
        feed(chart, rng.standard_normal(500).tolist())
        shifted = (rng.standard_normal(200) + 1.0).tolist()
        delays.append(next(i for i, r in enumerate(feed(chart, shifted)) if r.anomaly) + 1)
    assert 5 < float(np.mean(delays)) < 20  # 10.4 with known parameters


def test_constant_series_that_changes_is_an_anomaly_and_the_state_stays_finite() -> None:
    chart = CusumChart(warmup=5)
    assert not any(r.anomaly or r.score for r in feed(chart, [5.0] * 10))
    up = chart.update(5.1, 10.0)
    assert up.anomaly and up.z == math.inf and up.score == 1.0
    json.dumps(chart.state_dict(), allow_nan=False)

    early = CusumChart(warmup=50)
    feed(early, [5.0] * 10)
    assert not early.update(6.0, 10.0).anomaly
    json.dumps(early.state_dict(), allow_nan=False)


def test_policies_screen_individual_points_at_three_sigma() -> None:
    base = in_control(200)
    n_after: dict[str, int] = {}
    width: dict[str, float] = {}
    for policy in ("clip", "exclude", "learn"):
        chart = CusumChart(outliers=policy, lag=0)
        feed(chart, base)
        chart.update(1e6, 200.0)
        r = chart.update(0.0, 201.0)
        n_after[policy], width[policy] = r.n, r.upper - r.centre
    assert n_after == {"clip": 201, "exclude": 200, "learn": 201}
    assert width["clip"] < 10.0 and width["exclude"] < 10.0 and width["learn"] > 1e4


def test_arl0_sets_h() -> None:
    chart = CusumChart(k=0.5, arl0=1000.0)
    assert chart.h == cusum_h_for_arl(1000.0, 0.5)
    assert 5.5 < chart.h < 6.0
    assert CusumChart.from_state(chart.state_dict()).h == chart.h


@pytest.mark.parametrize("params", [{}, {"k": 0.0, "h": 10.0}, {"outliers": "exclude"}])
def test_state_round_trip_gives_identical_future_outputs(params: dict[str, Any]) -> None:
    values = in_control(600, seed=11)
    for i in range(100, 600, 97):
        values[i] = 8.0 * (-1) ** i
    values[400:] = [v + 0.8 for v in values[400:]]
    chart = CusumChart(warmup=50, **params)
    feed(chart, values[:300])
    state = json.loads(json.dumps(chart.state_dict(), allow_nan=False))
    restored = CusumChart.from_state(state)
    by_name = restore_detector("cusum", state)
    expected = feed(chart, values[300:])
    assert feed(restored, values[300:]) == expected
    assert [by_name.update(v, float(t)) for t, v in enumerate(values[300:])] == expected
    assert any(r.anomaly for r in expected)
    assert restored.state_dict() == chart.state_dict()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"k": -0.1}, "k"),
        ({"k": math.nan}, "k"),
        ({"h": 0.0}, "h"),
        ({"h": "5"}, "h"),
        ({"warmup": 0}, "warmup"),
        ({"outliers": None}, "outliers"),
        ({"arl0": -5}, "arl0"),
        ({"season": 0}, "season"),
    ],
)
def test_invalid_params_raise_value_error_naming_the_parameter(
    params: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=f"^{named} must"):
        CusumChart(**params)
    with pytest.raises(ValueError, match=named):
        build_detector("cusum", params)


def test_non_finite_values_and_bad_state_raise() -> None:
    chart = CusumChart()
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            chart.update(bad, 0.0)
    with pytest.raises(ValueError, match="CUSUM state"):
        CusumChart.from_state({**chart.state_dict(), "pos": -1.0})
