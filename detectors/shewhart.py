"""Shewhart individuals chart: alarm when a point falls outside mean ± k·σ of the points before it.

Before two points there is no spread: the limits are ±inf, ``z`` and the score are 0 and the
centre is the mean so far (the value itself for the very first point). Once σ is known, a
constant series that changes is an anomaly: with σ == 0 any value off the mean gets
``z = ±inf`` and score 1.0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.detectors.base import Explanation, PointResult, register, score_from_ratio
from vigil.detectors.budget import shewhart_k_for_arl
from vigil.detectors.chart import (
    Columns,
    ColumnStep,
    Floats,
    MeanChart,
    deviation,
    deviations,
    limit_crossed,
    screened_columns,
)
from vigil.detectors.checks import (
    check_arl0,
    check_lag,
    check_outliers,
    check_positive,
    check_warmup,
)
from vigil.detectors.rules import RunRules, check_rules
from vigil.detectors.seasonal import Season
from vigil.detectors.stats import LAG, ChartBaseline


@register("shewhart")
class ShewhartChart(MeanChart):
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
        self.lag = check_lag(lag)
        self._baseline = ChartBaseline(self.warmup, self.lag)
        self._rules = None if self.rules is None else RunRules(self.rules, self.k)
        self._start_season(season)

    def _judge(self, value: float, n: int, mean: float, sigma: float) -> PointResult:
        k = self.k
        lower = mean - k * sigma
        upper = mean + k * sigma
        z = (value - mean) / sigma if sigma > 0.0 else deviation(value, mean, sigma)
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
        policy = self.outliers
        if not warm or policy == "learn":  # screened(), inlined: this runs once per point
            self._baseline.offer(value)
        elif policy == "clip":
            self._baseline.offer(lower if value < lower else upper if value > upper else value)
        else:
            self._baseline.offer(None if beyond else value)
        return PointResult(score, anomaly, mean, lower, upper, z, n, details=details,
                           explanation=explanation)

    def _statistics(self) -> dict[str, Any]:
        state = self._baseline.state_dict()
        if self._rules is not None:
            state["history"] = self._rules.state_dict()
        return state

    def _load(self, state: Mapping[str, Any]) -> None:
        self._baseline.load_state(state)
        if self._rules is not None:
            self._rules.load_state(state["history"])

    def check_columns(self) -> None:
        super().check_columns()
        if self.rules is not None:
            raise ValueError("run rules stay on the object path")

    def step_columns(self, columns: Columns, pre: Columns, slots: npt.NDArray[np.intp],
                     x: Floats, sigma: Floats) -> ColumnStep:
        k = self.k
        mean = pre["mean"]
        lower = mean - k * sigma
        upper = mean + k * sigma
        z = deviations(x, mean, sigma)
        ratio = np.abs(z) / k
        beyond = np.abs(z) > k
        warm = pre["n"] >= self.warmup
        anomaly = warm & beyond
        learn, keep = screened_columns(self.outliers, x, lower, upper, warm, beyond)
        return ColumnStep(pre, lower, upper, z, ratio, anomaly, {}, learn, keep)

    def column_result(self, step: ColumnStep, at: int, value: float) -> PointResult:
        mean = float(step.pre["mean"][at])
        z = float(step.z[at])
        anomaly = bool(step.anomaly[at])
        lower, upper = float(step.lower[at]), float(step.upper[at])
        return PointResult(score_from_ratio(abs(z) / self.k), anomaly, mean, lower, upper, z,
                           int(step.pre["n"][at]), details={"rule": 1.0} if anomaly else None,
                           explanation=limit_crossed("shewhart", value, mean, lower, upper)
                           if anomaly else None)
