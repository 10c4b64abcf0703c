"""RobustChart: median/MAD and quantile limits over a bounded window, fallbacks, state, params."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.detectors import (
    Detector,
    PointResult,
    RobustChart,
    ShewhartChart,
    build_detector,
    restore_detector,
)
from vigil.detectors.robust import kth_distance, mad_of, median_of, quantile_of

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def feed(chart: Detector, values: list[float]) -> list[PointResult]:
    return [chart.update(v, float(t)) for t, v in enumerate(values)]


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40), finite, st.data())
def test_kth_distance_is_the_kth_smallest_absolute_deviation(
    values: list[float], centre: float, data: st.DataObject
) -> None:
    ordered = sorted(values)
    k = data.draw(st.integers(0, len(values) - 1))
    assert kth_distance(ordered, centre, k) == sorted(abs(v - centre) for v in values)[k]


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40))
def test_median_mad_and_quantiles_match_numpy(values: list[float]) -> None:
    ordered = sorted(values)
    median = median_of(ordered)
    assert median == pytest.approx(float(np.median(values)), rel=1e-12, abs=1e-9)
    mad = float(np.median(np.abs(np.array(values) - median)))
    assert mad_of(ordered, median) == pytest.approx(mad, rel=1e-12, abs=1e-9)
    for q in (0.05, 0.25, 0.5, 0.9):
        assert quantile_of(ordered, q) == pytest.approx(
            float(np.quantile(values, q)), rel=1e-9, abs=1e-6
        )


def test_registered_and_built_by_name() -> None:
    chart = build_detector("robust", {"method": "quantile", "q": 0.1, "window": 200})
    assert isinstance(chart, RobustChart) and chart.name == "robust"


def test_mad_limits_rest_on_the_window_of_points_before() -> None:
    values = np.random.default_rng(1).normal(50.0, 4.0, size=300).tolist()
    chart = RobustChart(k=3.0, warmup=30, window=100, outliers="learn")
    results = feed(chart, values)
    for t in (2, 50, 100, 299):
        window = np.array(values[max(0, t - 100) : t])
        median = float(np.median(window))
        sigma = 1.4826 * float(np.median(np.abs(window - median)))
        r = results[t]
        assert r.n == len(window)
        assert r.centre == pytest.approx(median, rel=1e-12)
        assert r.upper == pytest.approx(median + 3.0 * sigma, rel=1e-9)
        assert r.lower == pytest.approx(median - 3.0 * sigma, rel=1e-9)
        assert r.z == pytest.approx((values[t] - median) / sigma, rel=1e-9)
    assert chart.state_dict()["values"] == values[-100:]


def test_quantile_limits_follow_a_skewed_distribution() -> None:
    values = np.random.default_rng(2).lognormal(0.0, 0.6, size=2_000).tolist()
    chart = RobustChart(method="quantile", q=0.1, window=2_000)
    r = feed(chart, values)[-1]
    assert r.upper - r.centre > 1.8 * (r.centre - r.lower)  # the long right tail
    mad = RobustChart(window=2_000)
    m = feed(mad, values)[-1]
    assert m.upper - m.centre == pytest.approx(m.centre - m.lower)


def test_gross_outliers_in_the_baseline_do_not_blind_it() -> None:
    rng = np.random.default_rng(5)
    caught = {"robust": 0, "shewhart": 0}
    for _ in range(20):
        values = rng.standard_normal(600)
        values[rng.random(600) < 0.05] += 30.0  # 5% gross errors
        for name, chart in (("robust", RobustChart()), ("shewhart", ShewhartChart())):
            feed(chart, values.tolist())
            caught[name] += chart.update(4.0, 600.0).anomaly
    assert caught["robust"] >= 19 and caught["shewhart"] <= 10, caught


def test_quantile_limits_give_fewer_false_alarms_than_shewhart_on_skewed_data() -> None:
    values = np.random.default_rng(3).lognormal(0.0, 0.5, size=60_000).tolist()
    robust = RobustChart(warmup=500, method="quantile", q=0.05)
    plain = ShewhartChart(warmup=500)
    robust_alarms = sum(r.anomaly for r in feed(robust, values))
    plain_alarms = sum(r.anomaly for r in feed(plain, values))
    assert robust_alarms < 0.6 * plain_alarms, (robust_alarms, plain_alarms)


def test_zero_mad_falls_back_to_the_mean_absolute_deviation() -> None:
    values = [0.0, 0.0, 1.0] * 30  # two thirds of the window are 0: MAD is 0
    chart = RobustChart(warmup=30, window=100)
    feed(chart, values)
    r = chart.update(1.0, 90.0)
    expected = math.sqrt(math.pi / 2) * 30 / 90
    assert r.upper == pytest.approx(3.0 * expected)
    assert not r.anomaly  # a count series of mostly zeros does not alarm on every 1
    for method in ("mad", "quantile"):
        flat = RobustChart(warmup=5, method=method)
        feed(flat, [2.0] * 10)
        up = flat.update(2.5, 10.0)
        assert up.anomaly and up.z == math.inf and up.score == 1.0


def test_window_is_bounded_and_exclude_keeps_outliers_out() -> None:
    base = np.random.default_rng(4).normal(0.0, 1.0, size=300).tolist()
    for policy, learned in (("exclude", False), ("clip", True), ("learn", True)):
        chart = RobustChart(window=50, outliers=policy)
        feed(chart, base)
        assert chart.update(100.0, 300.0).anomaly
        window = chart.state_dict()["values"]
        assert len(window) == 50
        assert (window[-1] != base[-1]) is learned
        assert (window[-1] == 100.0) is (policy == "learn")


@pytest.mark.parametrize(
    "params",
    [{}, {"method": "quantile"}, {"window": 40, "outliers": "exclude"}, {"arl0": 1000.0}],
)
def test_state_round_trip_gives_identical_future_outputs(params: dict[str, Any]) -> None:
    values = np.random.default_rng(11).gamma(2.0, size=600).tolist()
    for i in range(100, 600, 97):
        values[i] = 30.0
    chart = RobustChart(warmup=30, **params)
    feed(chart, values[:300])
    state = json.loads(json.dumps(chart.state_dict(), allow_nan=False))
    restored = RobustChart.from_state(state)
    by_name = restore_detector("robust", state)
    expected = feed(chart, values[300:])
    assert feed(restored, values[300:]) == expected
    assert [by_name.update(v, float(t)) for t, v in enumerate(values[300:])] == expected
    assert any(r.anomaly for r in expected)
    assert restored.state_dict() == chart.state_dict()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"k": 0}, "k"),
        ({"warmup": 1}, "warmup"),
        ({"window": 10}, "window"),
        ({"window": 100.0}, "window"),
        ({"method": "iqr"}, "method"),
        ({"q": 0.5}, "q"),
        ({"q": 0.0}, "q"),
        ({"outliers": "winsorise"}, "outliers"),
        ({"arl0": 0.5}, "arl0"),
        ({"season": "day"}, "season"),
    ],
)
def test_invalid_params_raise_value_error_naming_the_parameter(
    params: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=f"^{named} must"):
        RobustChart(**params)
    with pytest.raises(ValueError, match=named):
        build_detector("robust", params)


def test_non_finite_values_and_bad_state_raise() -> None:
    chart = RobustChart()
    with pytest.raises(ValueError, match="finite"):
        chart.update(math.nan, 0.0)
    with pytest.raises(ValueError, match="robust state"):
        RobustChart.from_state({**chart.state_dict(), "values": [0.0] * 501})
