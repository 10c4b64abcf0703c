"""Western Electric run rules: each rule, graded ratios, restarts, and the Shewhart option."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.detectors import PointResult, ShewhartChart, build_detector, restore_detector
from vigil.detectors.rules import RULES, RunRules, check_rules

ALL = ["we1", "we2", "we3", "we4"]
KNOWN = {"count": 10**12, "mean": 0.0, "m2": float(10**12 - 1)}


def evaluate(rules: RunRules, zs: list[float]) -> list[int]:
    fired = []
    for z in zs:
        rules.evaluate(z)
        fired.append(rules.fired)
    return fired


def counted(enabled: list[str], zs: list[float], k: float = 3.0) -> list[int]:
    """The rules as the textbook words them, by counting points in zones."""
    since: list[float] = []
    fired = []
    for z in zs:
        since.append(z)
        last3, last5, last8 = since[-3:], since[-5:], since[-8:]
        hits = {
            "we1": abs(z) > k,
            "we2": sum(v > 2 for v in last3) >= 2 or sum(v < -2 for v in last3) >= 2,
            "we3": sum(v > 1 for v in last5) >= 4 or sum(v < -1 for v in last5) >= 4,
            "we4": len(last8) == 8 and (all(v > 0 for v in last8) or all(v < 0 for v in last8)),
        }
        number = next((i + 1 for i, rule in enumerate(RULES) if rule in enabled and hits[rule]), 0)
        fired.append(number)
        if number:
            since = []
    return fired


def test_check_rules_normalises_and_validates() -> None:
    assert check_rules(None) is None
    assert check_rules(["we1"]) is None  # the plain chart
    assert check_rules(["we4", "we1"]) == ("we1", "we4")
    for bad in ("we1", [], ["we5"], ["we1", "we1"], [1]):
        with pytest.raises(ValueError, match="^rules must"):
            check_rules(bad)


@pytest.mark.parametrize(
    ("rule", "zs", "fires_at"),
    [
        ("we1", [2.9, -2.9, 3.1], 2),
        ("we2", [2.1, 0.0, -2.5, 2.2, 2.3], 4),  # 2.1 and 2.2 are 4 points apart
        ("we2", [2.1, -2.1, 2.1], 2),  # 2 of 3 on the same side, not necessarily adjacent
        ("we2", [-2.1, -2.1], 1),  # 2 of the first 2
        ("we3", [1.1, 1.1, 0.5, 1.1, 1.1], 4),
        ("we3", [-1.1, -1.1, -1.1, -1.1], 3),
        ("we4", [0.1] * 7 + [0.0] + [0.1] * 8, 15),  # a zero breaks the run
        ("we4", [-0.1] * 8, 7),
    ],
)
def test_each_rule_fires_where_the_textbook_says(rule: str, zs: list[float], fires_at: int) -> None:
    fired = evaluate(RunRules([rule], k=3.0), zs)
    number = RULES.index(rule) + 1
    assert fired == [number if i == fires_at else 0 for i in range(len(zs))]


def test_ratios_are_graded_and_reach_one_exactly_at_the_threshold() -> None:
    rules = RunRules(ALL, k=3.0)
    assert rules.evaluate(1.5) == 0.5  # we1: 1.5/3 (we4: 1/8)
    assert rules.evaluate(1.8) == 0.75  # we2: the 2nd-largest z of (1.5, 1.8), over 2
    assert rules.evaluate(-0.3) == 0.75
    rules = RunRules(ALL, k=3.0)
    assert [rules.evaluate(z) for z in (2.0, 0.0, 2.0, 2.2)] == [2.0 / 3.0, 0.0, 1.0, 1.0]
    assert rules.fired == 0  # "beyond" 2σ is strict
    # we2 fires (2.1/2) and so does we3 (4 of 5 beyond 1σ, ratio 2.0/1): the score takes the
    # largest ratio, details the lowest rule number.
    assert rules.evaluate(2.1) == 2.0 and rules.fired == 2
    rules = RunRules(["we4"], k=3.0)
    assert [rules.evaluate(0.1) for _ in range(8)][-2:] == [7 / 8, 1.0]
    assert rules.fired == 4  # "8 in a row" is reached at 8


def test_the_lowest_numbered_rule_is_reported_and_the_history_restarts() -> None:
    rules = RunRules(ALL, k=3.0)
    evaluate(rules, [2.5, 2.5])
    assert rules.fired == 2
    assert rules.state_dict() == {"recent": [], "run": 0}
    rules.evaluate(5.0)
    assert rules.fired == 1  # 5 is also a second point beyond 2σ, were the history kept


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(RULES), min_size=1, max_size=4, unique=True),
    st.lists(st.floats(-4.0, 4.0, allow_nan=False), max_size=60),
)
def test_agrees_with_counting_points_in_zones(enabled: list[str], zs: list[float]) -> None:
    rules = RunRules(enabled, k=3.0)
    fired = []
    for z in zs:
        ratio = rules.evaluate(z)
        fired.append(rules.fired)
        assert (ratio >= 1.0) if rules.fired else True
    assert fired == counted(enabled, zs)


def test_infinite_z_is_kept_finite_in_the_state() -> None:
    rules = RunRules(["we2"], k=3.0)
    rules.evaluate(math.inf)
    json.dumps(rules.state_dict(), allow_nan=False)
    rules.evaluate(math.inf)
    assert rules.fired == 2


# --- ShewhartChart(rules=...) --------------------------------------------------------------


def known_chart(rules: list[str] | None) -> ShewhartChart:
    return ShewhartChart.from_state({
        "k": 3.0, "warmup": 2, "outliers": "clip", "rules": rules, "stats": KNOWN,
        "history": {"recent": [], "run": 0},
    })


def test_default_chart_is_the_we1_chart() -> None:
    values = np.random.default_rng(1).standard_normal(3_000).tolist()
    plain, we1 = ShewhartChart(), ShewhartChart(rules=["we1"])
    assert [plain.update(v, 0.0) for v in values] == [we1.update(v, 0.0) for v in values]
    assert we1.rules is None and "history" not in we1.state_dict()


@pytest.mark.parametrize(
    ("values", "rule"),
    [([3.5], 1), ([2.5, 2.5], 2), ([1.5, 1.5, 1.5, 1.5], 3), ([0.5] * 8, 4), ([-0.5] * 8, 4)],
)
def test_chart_reports_the_rule_that_fired(values: list[float], rule: int) -> None:
    chart = known_chart(ALL)
    results = [chart.update(v, 0.0) for v in values]
    assert [r.anomaly for r in results] == [False] * (len(values) - 1) + [True]
    assert results[-1].details == {"rule": float(rule)}
    assert results[-1].score >= 0.5
    assert all(r.details is None for r in results[:-1])


def test_rules_only_fire_once_warm() -> None:
    chart = ShewhartChart(warmup=50, rules=ALL)
    values = np.random.default_rng(2).uniform(-1, 1, 32).tolist()
    results = [chart.update(v, 0.0) for v in values + [0.9] * 9]
    assert not any(r.anomaly for r in results)
    assert any(r.score >= 0.5 for r in results)  # 8 in a row, muted


def test_state_round_trip_keeps_the_run_history() -> None:
    values = np.random.default_rng(3).standard_normal(800).tolist()
    values[500:] = [v + 1.0 for v in values[500:]]
    chart = ShewhartChart(warmup=50, rules=ALL)
    [chart.update(v, 0.0) for v in values[:520]]
    state = json.loads(json.dumps(chart.state_dict(), allow_nan=False))
    assert state["history"]["recent"]
    restored = restore_detector("shewhart", state)
    expected = [chart.update(v, 0.0) for v in values[520:]]
    assert [restored.update(v, 0.0) for v in values[520:]] == expected
    assert any(r.details == {"rule": 4.0} for r in expected)


def test_rules_from_config_and_bad_rules() -> None:
    chart = build_detector("shewhart", {"rules": ["we2", "we1"]})
    assert isinstance(chart, ShewhartChart) and chart.rules == ("we1", "we2")
    with pytest.raises(ValueError, match="rules must"):
        build_detector("shewhart", {"rules": ["nelson5"]})


def run_length(chart: ShewhartChart, rng: np.random.Generator, shift: float) -> int:
    update = chart.update
    for t, x in enumerate((rng.standard_normal(4_000) + shift).tolist(), start=1):
        result: PointResult = update(x, 0.0)
        if result.anomaly:
            return t
    return 4_001


@pytest.mark.parametrize(
    ("rules", "arl0", "runs"),
    [(["we1", "we2"], 225.44, 1_000), (ALL, 91.75, 2_000)],  # Champ & Woodall (1987)
)
def test_in_control_arl_with_run_rules_matches_champ_and_woodall(
    rules: list[str], arl0: float, runs: int
) -> None:
    rng = np.random.default_rng(17)
    lengths = [run_length(known_chart(rules), rng, 0.0) for _ in range(runs)]
    measured = float(np.mean(lengths))
    assert abs(measured / arl0 - 1.0) < 0.08, measured
