"""Shewhart individuals chart: alarm when a point falls outside mean ± k·σ of the points before it.

Before two points there is no spread: the limits are ±inf, ``z`` and the score are 0 and the
centre is the mean so far (the value itself for the very first point). Once σ is known, a
constant series that changes is an anomaly: with σ == 0 any value off the mean gets
``z = ±inf`` and score 1.0.

This module also holds the parameter checks and the outlier policies the other charts share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any, Self

from vigil.detectors.base import Explanation, PointResult, register, score_from_ratio
from vigil.detectors.budget import shewhart_k_for_arl
from vigil.detectors.rules import RunRules, check_rules
from vigil.detectors.seasonal import Season, Seasonal, check_season
from vigil.detectors.stats import LAG, ChartBaseline

OUTLIER_POLICIES = ("clip", "exclude", "learn")
"""How a point beyond the limits feeds the statistics once warm-up is over."""


def check_positive(name: str, value: object, meaning: str, *, zero: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (>= 0 with ``zero``), else ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (0.0 <= value < math.inf if zero else 0.0 < value < math.inf)
    ):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound} ({meaning}), got {value!r}")
    return float(value)


def check_warmup(warmup: object) -> int:
    """``warmup`` if it is an integer >= 2, else ValueError."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 2:
        raise ValueError(f"warmup must be an integer >= 2, got {warmup!r}")
    return warmup


def check_outliers(outliers: object) -> str:
    """``outliers`` if it names an outlier policy, else ValueError."""
    if outliers not in OUTLIER_POLICIES:
        choices = ", ".join(map(repr, OUTLIER_POLICIES))
        raise ValueError(f"outliers must be one of {choices}, got {outliers!r}")
    return str(outliers)


def check_lag(lag: object) -> int:
    """``lag`` if it is an integer from 0 to 4,096, else ValueError."""
    if isinstance(lag, bool) or not isinstance(lag, int) or not 0 <= lag <= 4096:
        raise ValueError(f"lag must be an integer from 0 to 4096 (points before a point is "
                         f"learned, once warm), got {lag!r}")
    return lag


def limit_crossed(test: str, value: float, centre: float, lower: float,
                  upper: float) -> Explanation:
    """The explanation of an alarm on limits for the values: ``value`` against the limit on
    its side of ``centre``."""
    return Explanation(test, value, upper if value >= centre else lower)


def _starting(baseline: ChartBaseline, value: float) -> PointResult:
    """The result of a point while a chart holds its first points (no limits yet); the point
    is held."""
    centre = baseline.start[0] if baseline.start else value
    baseline.offer(value)
    return PointResult(0.0, False, centre, -math.inf, math.inf, 0.0, 0)


def check_arl0(arl0: object) -> float | None:
    """``arl0`` if it is None or a finite number > 1, else ValueError."""
    if arl0 is None:
        return None
    if isinstance(arl0, bool) or not isinstance(arl0, int | float) or not 1.0 < arl0 < math.inf:
        raise ValueError(
            f"arl0 must be None or a finite number > 1 (points per false alarm), got {arl0!r}"
        )
    return float(arl0)


@register("shewhart")
class ShewhartChart:
    """Individuals control chart with limits learned online from the points before each one.

    ``outliers`` keeps one outlier from inflating σ for the points after it: ``"clip"``
    learns the value winsorised to [lower, upper], ``"exclude"`` skips points beyond the
    limits, ``"learn"`` learns everything. ``rules`` adds Western Electric run rules
    (:mod:`detectors.rules`); ``details["rule"]`` says which one fired. ``arl0``, when
    given, sets ``k`` for that in-control ARL (of rule we1 alone). ``season`` keeps one
    chart per season bucket (:mod:`detectors.seasonal`).

    >>> chart = ShewhartChart(k=3.0, warmup=4)
    >>> for v in [10.0, 11.0, 9.0, 10.0]:
    ...     _ = chart.update(v, 0.0)
    >>> r = chart.update(20.0, 0.0)
    >>> r.anomaly, r.centre, round(r.upper, 3), round(r.z, 2), r.n, r.details
    (True, 10.0, 12.449, 12.25, 4, {'rule': 1.0})
    >>> round(ShewhartChart(arl0=1000).k, 4)
    3.2905
    """

    name: str = "shewhart"

    def __init__(
        self,
        k: float = 3.0,
        warmup: int = 30,
        outliers: str = "clip",
        rules: list[str] | None = None,
        arl0: float | None = None,
        season: Season | None = None,
        lag: int = LAG,
    ) -> None:
        k = check_positive("k", k, "limit width in σ")
        self.arl0 = check_arl0(arl0)
        self.k = k if self.arl0 is None else shewhart_k_for_arl(self.arl0)
        self.warmup = check_warmup(warmup)
        self.outliers = check_outliers(outliers)
        self.rules = check_rules(rules)
        self.season = None if season is None else check_season(season)
        self.lag = check_lag(lag)
        self._baseline = ChartBaseline(self.warmup, self.lag)
        self._rules = None if self.rules is None else RunRules(self.rules, self.k)
        self._seasonal: Seasonal[ShewhartChart] | None = None
        if self.season is not None:
            make = partial(
                ShewhartChart,
                k=self.k,
                warmup=self.warmup,
                outliers=self.outliers,
                rules=None if self.rules is None else list(self.rules),
                lag=self.lag,
            )
            self._seasonal = Seasonal(self.season, make, ShewhartChart.from_state)

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against the limits from the points before it, then learn from it."""
        if self._seasonal is not None:
            return self._seasonal.update(value, timestamp)
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite number, got {value!r}")
        baseline = self._baseline
        stats = baseline.stats
        n = stats.count
        mean = stats.mean
        if n < 2:
            return _starting(baseline, value)

        k = self.k
        sigma = math.sqrt(stats.m2 / (n - 1))
        lower = mean - k * sigma
        upper = mean + k * sigma
        if sigma > 0.0:
            z = (value - mean) / sigma
        elif value == mean:
            z = 0.0
        else:
            z = math.inf if value > mean else -math.inf
        beyond = abs(z) > k
        warm = n >= self.warmup
        details = explanation = None
        rules = self._rules
        if rules is None:
            score = score_from_ratio(abs(z) / k)
            anomaly = warm and beyond
            if anomaly:
                details = {"rule": 1.0}
                explanation = limit_crossed("shewhart", value, mean, lower, upper)
        else:
            ratio = rules.evaluate(z)
            score = score_from_ratio(ratio)
            anomaly = warm and rules.fired > 0
            if anomaly:
                details = {"rule": float(rules.fired)}
                explanation = Explanation(f"rule we{rules.fired}", ratio, 1.0)

        if not warm:
            baseline.offer(value)
        elif self.outliers == "clip":
            baseline.offer(lower if value < lower else upper if value > upper else value)
        else:
            baseline.offer(None if self.outliers == "exclude" and beyond else value)
        return PointResult(score, anomaly, mean, lower, upper, z, n, details=details,
                           explanation=explanation)

    def state_dict(self) -> dict[str, Any]:
        """Parameters and statistics, JSON-serialisable; ``from_state`` continues exactly."""
        state: dict[str, Any] = {
            "k": self.k,
            "warmup": self.warmup,
            "outliers": self.outliers,
            "rules": None if self.rules is None else list(self.rules),
            "arl0": self.arl0,
            "season": self.season,
            "lag": self.lag,
        }
        if self._seasonal is not None:
            state["buckets"] = self._seasonal.state_dict()["buckets"]
            return state
        state.update(self._baseline.state_dict())
        if self._rules is not None:
            state["history"] = self._rules.state_dict()
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a chart whose future outputs equal those of the one that saved ``state``."""
        season = state.get("season")
        chart = cls(
            k=state["k"],
            warmup=state["warmup"],
            outliers=state["outliers"],
            rules=state.get("rules"),
            season=season,
            lag=state.get("lag", 0),
        )
        chart.arl0 = check_arl0(state.get("arl0"))  # k is saved: no recomputation from arl0
        if chart._seasonal is not None:
            chart._seasonal.load_state({"season": season, "buckets": state["buckets"]})
            return chart
        chart._baseline.load_state(state)
        if chart._rules is not None:
            chart._rules.load_state(state["history"])
        return chart

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (("rules", self.rules), ("arl0", self.arl0), ("season", self.season),
                                ("lag", self.lag))
            if value is not None
        )
        return (
            f"ShewhartChart(k={self.k!r}, warmup={self.warmup!r}, outliers={self.outliers!r}"
            f"{extra})"
        )
