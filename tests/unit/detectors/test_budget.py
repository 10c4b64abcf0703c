"""False-alarm budget: ARL computations against published values, their inverses, the charts."""

from __future__ import annotations

import math
from typing import Any

import pytest

from vigil.detectors import CusumChart, EwmaChart, RobustChart, ShewhartChart, build_detector
from vigil.detectors.budget import (
    arl_for_budget,
    cusum_arl,
    cusum_h_for_arl,
    ewma_arl,
    ewma_L_for_arl,
    shewhart_arl,
    shewhart_k_for_arl,
)


def test_shewhart_closed_form() -> None:
    assert shewhart_arl(3.0) == pytest.approx(370.398, rel=1e-5)
    assert shewhart_arl(3.0, 1.0) == pytest.approx(43.895, rel=1e-4)
    assert shewhart_k_for_arl(370.398347) == pytest.approx(3.0, abs=1e-6)
    assert shewhart_arl(shewhart_k_for_arl(10_000.0)) == pytest.approx(10_000.0, rel=1e-9)


@pytest.mark.parametrize(
    ("h", "k", "shift", "published"),
    [
        (5.0, 0.5, 0.0, 930.89 / 2),  # one-sided 930.89 by integral equation, halved
        (5.0, 0.5, 1.0, 10.4),  # Montgomery
        (4.0, 0.5, 0.0, 168.0),  # Montgomery
    ],
)
def test_cusum_arl_matches_published_values(
    h: float, k: float, shift: float, published: float
) -> None:
    assert cusum_arl(h, k, shift) == pytest.approx(published, rel=3e-3)


@pytest.mark.parametrize(
    ("lambda_", "L", "shift", "published"),
    [
        # Lucas & Saccucci (1990), zero-state ARLs with asymptotic limits.
        (0.1, 2.814, 0.0, 500.0),
        (0.1, 2.814, 1.0, 10.3),
        (0.05, 2.615, 0.0, 500.0),
        (0.2, 2.962, 0.0, 500.0),
        (1.0, 3.0, 0.0, 370.4),  # λ = 1 is the Shewhart chart
    ],
)
def test_ewma_arl_matches_published_values(
    lambda_: float, L: float, shift: float, published: float
) -> None:
    assert ewma_arl(L, lambda_, shift) == pytest.approx(published, rel=5e-3)


def test_exact_ewma_limits_lower_the_in_control_arl() -> None:
    asymptotic, exact = ewma_arl(2.814, 0.1), ewma_arl(2.814, 0.1, limits="exact")
    assert exact == pytest.approx(486.4, rel=1e-3)
    assert exact < asymptotic
    assert ewma_arl(2.814, 0.1, 1.0, "exact") == pytest.approx(8.16, rel=2e-3)


def test_inverses_recover_the_textbook_widths() -> None:
    assert cusum_h_for_arl(465.44, 0.5) == pytest.approx(5.0, abs=1e-3)
    assert ewma_L_for_arl(499.58, 0.1) == pytest.approx(2.814, abs=1e-3)
    for arl in (50.0, 370.0, 20_000.0):
        if arl != 50.0:  # each CUSUM inversion solves a dozen 400-state chains
            assert cusum_arl(cusum_h_for_arl(arl, 0.5), 0.5) == pytest.approx(arl, rel=1e-6)
        assert ewma_arl(ewma_L_for_arl(arl, 0.2), 0.2) == pytest.approx(arl, rel=1e-6)
        L = ewma_L_for_arl(arl, 0.2, "exact")
        assert ewma_arl(L, 0.2, limits="exact") == pytest.approx(arl, rel=1e-6)


def test_budget_is_events_per_day_times_days() -> None:
    assert arl_for_budget(1440, 30) == 43_200.0
    assert arl_for_budget(0.5, 7) == 3.5
    chart = ShewhartChart(arl0=arl_for_budget(events_per_day=24, days=365))
    assert chart.k == pytest.approx(shewhart_k_for_arl(8760.0))


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: arl_for_budget(0, 30), "events_per_day"),
        (lambda: arl_for_budget(1440, -1), "days"),
        (lambda: arl_for_budget(0.1, 5), "exceed 1"),
        (lambda: shewhart_k_for_arl(1.0), "arl"),
        (lambda: shewhart_k_for_arl(math.inf), "arl"),
        (lambda: cusum_h_for_arl(100.0, -1.0), "k"),
        (lambda: cusum_h_for_arl(1.2, 0.5), "shortest ARL"),
        (lambda: ewma_L_for_arl(100.0, 1.5), "lambda_"),
        (lambda: ewma_L_for_arl(100.0, 0.1, "steady"), "limits"),
        (lambda: ewma_arl(2.8, 0.1, math.nan), "shift"),
    ],
)
def test_bad_arguments_raise_value_error(call: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        call()


@pytest.mark.parametrize(
    ("name", "attribute", "expected"),
    [
        ("shewhart", "k", lambda: shewhart_k_for_arl(1000.0)),
        ("robust", "k", lambda: shewhart_k_for_arl(1000.0)),
        ("cusum", "h", lambda: cusum_h_for_arl(1000.0, 0.5)),
        ("ewma", "L", lambda: ewma_L_for_arl(1000.0, 0.1, "exact")),
    ],
)
def test_arl0_overrides_the_limit_width_of_every_chart(
    name: str, attribute: str, expected: Any
) -> None:
    chart = build_detector(name, {"arl0": 1000.0})
    assert isinstance(chart, ShewhartChart | RobustChart | CusumChart | EwmaChart)
    assert getattr(chart, attribute) == expected()
    assert chart.state_dict()["arl0"] == 1000.0


def test_derived_widths_are_computed_once_per_setting() -> None:
    CusumChart(arl0=1000.0)
    before = cusum_h_for_arl.cache_info()
    for _ in range(50):
        CusumChart(arl0=1000.0)
    after = cusum_h_for_arl.cache_info()
    assert (after.misses, after.hits) == (before.misses, before.hits + 50)


def test_an_arl_that_would_take_hours_is_refused_at_once() -> None:
    """lambda_ = 1e-6 with arl0 used to keep check-config and replay busy for hours."""
    with pytest.raises(ValueError, match="7712470 steps"):
        ewma_L_for_arl(1000.0, 1e-6, "exact")
