"""EwmaChart: the recurrence, exact and asymptotic limits, restarts, policies, state, params."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from vigil.detectors import EwmaChart, PointResult, RunningStats, build_detector, restore_detector
from vigil.detectors.budget import ewma_L_for_arl


def in_control(n: int, seed: int = 7) -> list[float]:
    values: list[float] = np.random.default_rng(seed).uniform(-1.0, 1.0, size=n).tolist()
    return values


def feed(chart: EwmaChart, values: list[float]) -> list[PointResult]:
    return [chart.update(v, float(t)) for t, v in enumerate(values)]


def test_registered_and_built_by_name() -> None:
    chart = build_detector("ewma", {"lambda_": 0.2, "L": 3.0})
    assert isinstance(chart, EwmaChart) and chart.name == "ewma"
    assert (chart.lambda_, chart.L, chart.limits) == (0.2, 3.0, "exact")


@pytest.mark.parametrize("limits", ["exact", "asymptotic"])
def test_statistic_and_limits_follow_the_textbook_formulas(limits: str) -> None:
    lam, L = 0.2, 3.0
    chart = EwmaChart(lambda_=lam, L=L, warmup=5, limits=limits, lag=0)
    values = in_control(60)
    results = feed(chart, values)
    ewma = None
    i = 0
    for t in range(5, 60):  # the first 5 points are held: they start the statistics
        before = RunningStats.of(values[:t])
        ewma = lam * values[t] + (1 - lam) * (before.mean if ewma is None else ewma)
        i += 1
        bracket = 1 - (1 - lam) ** (2 * i) if limits == "exact" else 1.0
        sd = before.std * math.sqrt(lam / (2 - lam) * bracket)
        r = results[t]
        assert r.centre == pytest.approx(before.mean, rel=1e-12, abs=1e-12)
        assert r.details is not None
        assert r.details["ewma"] == pytest.approx(ewma, rel=1e-12, abs=1e-12)
        assert r.upper - r.centre == pytest.approx(L * sd, rel=1e-12)
        assert r.z == pytest.approx((ewma - before.mean) / sd, rel=1e-9, abs=1e-9)
        assert r.n == t and r.anomaly == (t >= 5 and abs(r.z) > L)
        if abs(r.z) > L:  # restarted, alarm or muted alarm
            ewma, i = None, 0
    first = results[5]  # i = 1: the EWMA is λ·x, its σ is λ·σ
    assert first.upper - first.centre == pytest.approx(
        L * lam * RunningStats.of(values[:5]).std if limits == "exact" else
        L * math.sqrt(lam / (2 - lam)) * RunningStats.of(values[:5]).std,
        rel=1e-12,
    )


def test_first_points_are_held_with_open_limits_and_no_ewma() -> None:
    first, second, third, fourth = feed(EwmaChart(warmup=3), [4.0, 6.0, 5.0, 5.0])
    assert first == PointResult(0.0, False, 4.0, -math.inf, math.inf, 0.0, 0)
    assert second == third == PointResult(0.0, False, 4.0, -math.inf, math.inf, 0.0, 0)
    assert fourth.n == 3 and fourth.details == {"ewma": 0.1 * 5.0 + 0.9 * 5.0}


def test_restarts_at_the_baseline_mean_after_an_alarm() -> None:
    chart = EwmaChart(lambda_=0.3, L=3.0, warmup=30)
    feed(chart, in_control(100))
    results = feed(chart, [3.0] * 10)
    alarms = [i for i, r in enumerate(results) if r.anomaly]
    assert alarms and alarms[0] <= 3
    after = results[alarms[0] + 1]
    assert after.details is not None
    assert after.details["ewma"] == pytest.approx(0.3 * 3.0 + 0.7 * after.centre, rel=1e-12)
    # Its limits are those of a fresh EWMA again: λ·σ wide at the first point.
    sigma = (results[alarms[0]].upper - results[alarms[0]].centre)
    assert after.upper - after.centre < sigma


def test_warm_up_mutes_alarms_but_still_scores_and_restarts() -> None:
    chart = EwmaChart(lambda_=0.5, L=2.0, warmup=40)
    feed(chart, in_control(34))
    muted = chart.update(50.0, 34.0)
    assert not muted.anomaly and muted.score > 0.5 and muted.n == 34
    nxt = chart.update(0.0, 21.0)
    assert nxt.details is not None
    assert nxt.details["ewma"] == pytest.approx(0.5 * nxt.centre, rel=1e-12)  # restarted


def test_one_sigma_shift_is_caught_sooner_than_by_shewhart_limits() -> None:
    rng = np.random.default_rng(5)
    delays = []
    for _ in range(40):
        chart = EwmaChart(lambda_=0.1, L=2.814, warmup=500)
        feed(chart, rng.standard_normal(500).tolist())
        shifted = (rng.standard_normal(200) + 1.0).tolist()
        delays.append(next(i for i, r in enumerate(feed(chart, shifted)) if r.anomaly) + 1)
    assert 5 < float(np.mean(delays)) < 20  # 10.3 with known parameters, vs 44 for Shewhart


def test_clip_keeps_sigma_sane_after_a_huge_outlier_where_learn_does_not() -> None:
    base = in_control(200)
    width: dict[str, float] = {}
    for policy in ("clip", "exclude", "learn"):
        chart = EwmaChart(warmup=30, outliers=policy, lag=0)
        feed(chart, base)
        chart.update(1e6, 200.0)
        r = chart.update(0.0, 201.0)
        width[policy] = r.upper - r.centre
    assert width["clip"] < 1.0 and width["exclude"] < 1.0 and width["learn"] > 1e3


def test_exclude_skips_points_beyond_three_sigma() -> None:
    chart = EwmaChart(warmup=30, outliers="exclude", lag=0)
    feed(chart, in_control(100))
    before = chart.update(0.0, 100.0).n
    chart.update(40.0, 101.0)
    assert chart.update(0.0, 102.0).n == before + 1  # the 40 was not learned


def test_constant_series_that_changes_is_an_anomaly() -> None:
    chart = EwmaChart(warmup=5)
    results = feed(chart, [5.0] * 10)
    assert all(r.score == 0.0 and r.z == 0.0 and not r.anomaly for r in results)
    up = chart.update(5.1, 10.0)
    assert up.anomaly and up.z == math.inf and up.score == 1.0
    assert up.lower == up.centre == up.upper == 5.0


def test_arl0_sets_L_for_the_chosen_limits() -> None:
    exact = EwmaChart(lambda_=0.2, arl0=400.0)
    asymptotic = EwmaChart(lambda_=0.2, arl0=400.0, limits="asymptotic")
    assert exact.L == ewma_L_for_arl(400.0, 0.2, "exact")
    assert asymptotic.L == ewma_L_for_arl(400.0, 0.2, "asymptotic")
    assert exact.L > asymptotic.L  # the narrower early limits need a wider L for the same ARL0
    assert EwmaChart.from_state(exact.state_dict()).L == exact.L


@pytest.mark.parametrize("params", [{}, {"limits": "asymptotic", "outliers": "exclude"},
                                    {"arl0": 200.0, "outliers": "learn"}])
def test_state_round_trip_gives_identical_future_outputs(params: dict[str, Any]) -> None:
    values = in_control(600, seed=11)
    for i in range(100, 600, 97):
        values[i] = 8.0 * (-1) ** i
    values[400:] = [v + 0.8 for v in values[400:]]
    chart = EwmaChart(warmup=50, **params)
    feed(chart, values[:300])
    state = json.loads(json.dumps(chart.state_dict(), allow_nan=False))
    restored = EwmaChart.from_state(state)
    by_name = restore_detector("ewma", state)
    expected = feed(chart, values[300:])
    assert feed(restored, values[300:]) == expected
    assert [by_name.update(v, float(t)) for t, v in enumerate(values[300:])] == expected
    assert any(r.anomaly for r in expected)
    assert restored.state_dict() == chart.state_dict()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"lambda_": 0.0}, "lambda_"),
        ({"lambda_": 1.5}, "lambda_"),
        ({"lambda_": "0.1"}, "lambda_"),
        ({"L": 0.0}, "L"),
        ({"L": math.inf}, "L"),
        ({"warmup": 1}, "warmup"),
        ({"limits": "steady"}, "limits"),
        ({"outliers": "drop"}, "outliers"),
        ({"arl0": 1.0}, "arl0"),
        ({"arl0": True}, "arl0"),
        ({"season": "minute_of_hour"}, "season"),
        ({"season": -60}, "season"),
    ],
)
def test_invalid_params_raise_value_error_naming_the_parameter(
    params: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=f"^{named} must"):
        EwmaChart(**params)
    with pytest.raises(ValueError, match=named):
        build_detector("ewma", params)


def test_non_finite_values_raise_and_leave_no_trace() -> None:
    chart = EwmaChart()
    feed(chart, in_control(10))
    state = chart.state_dict()
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            chart.update(bad, 0.0)
    assert chart.state_dict() == state


def test_bad_state_is_refused() -> None:
    state = EwmaChart().state_dict()
    with pytest.raises(ValueError, match="EWMA state"):
        EwmaChart.from_state({**state, "ewma": 1.0, "i": 0})
