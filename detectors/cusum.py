"""Two-sided tabular CUSUM: cumulative sums of standardised deviations beyond a slack of k·σ.

``C⁺ = max(0, C⁺ + (x − μ)/σ − k)`` and ``C⁻ = max(0, C⁻ − (x − μ)/σ − k)`` (Page 1954; the
tabular form of Montgomery); the chart alarms when either exceeds ``h`` and then resets
both to 0. μ and σ are learned online from the individual points before each one, as by
the Shewhart chart; the outlier policy screens individual points at μ ± 3σ. During warm-up
the sums run, resets included, but raise no alarm.

``lower``/``upper`` are the values that would have raised an alarm at this point given the
sums before it (``μ ± σ·(h + k − C)``), ``z`` is the point's own standardised deviation, and
``details`` holds the sums after the point (before any reset).

>>> chart = CusumChart(k=0.5, h=4.0, warmup=10)
>>> for i in range(40):
...     _ = chart.update(10.0 + (i % 5 - 2) * 0.5, float(i))
>>> results = [chart.update(11.0, 40.0 + i) for i in range(5)]
>>> [r.anomaly for r in results]
[False, False, False, True, False]
>>> alarm, after = results[3:]
>>> round(alarm.details["cusum_pos"], 2), after.details["cusum_pos"] == after.z - 0.5
(4.38, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from vigil.detectors.base import Explanation, PointResult, register, score_from_ratio
from vigil.detectors.budget import cusum_h_for_arl
from vigil.detectors.chart import Columns, ColumnStep, Floats, MeanChart, deviation, deviations
from vigil.detectors.checks import (
    check_arl0,
    check_lag,
    check_outliers,
    check_positive,
    check_warmup,
)
from vigil.detectors.seasonal import Season
from vigil.detectors.stats import LAG, ChartBaseline

_HUGE = 1e300  # a deviation from a σ of 0 adds this to a sum: score 1.0, still finite


def cusum_crossed(pos: float, neg: float, h: float) -> Explanation:
    """The explanation of a CUSUM alarm: the larger sum against the decision interval."""
    return Explanation("cusum up", pos, h) if pos > neg else Explanation("cusum down", neg, h)


@register("cusum")
class CusumChart(MeanChart):
    """Two-sided tabular CUSUM chart with reference value ``k`` and decision interval ``h``.

    Both are in σ units; ``arl0``, when given, sets ``h`` for that in-control ARL at this
    ``k``. ``outliers`` and ``season`` are as for :class:`~detectors.shewhart.ShewhartChart`.
    """

    name: str = "cusum"
    COLUMNS: ClassVar[Mapping[str, type]] = {"pos": np.float64, "neg": np.float64}

    def __init__(
        self,
        k: float = 0.5,
        h: float = 5.0,
        warmup: int = 30,
        outliers: str = "clip",
        arl0: float | None = None,
        season: Season | None = None,
        lag: int = LAG,
    ) -> None:
        self.k = check_positive("k", k, "reference value (slack) in σ", zero=True)
        h = check_positive("h", h, "decision interval in σ")
        self.arl0 = check_arl0(arl0)
        self.h = h if self.arl0 is None else cusum_h_for_arl(self.arl0, self.k)
        self.warmup = check_warmup(warmup)
        self.outliers = check_outliers(outliers)
        self.lag = check_lag(lag)
        self._baseline = ChartBaseline(self.warmup, self.lag)
        self._pos = 0.0
        self._neg = 0.0
        self._start_season(season)

    def _judge(self, value: float, n: int, mean: float, sigma: float) -> PointResult:
        k, h = self.k, self.h
        pos, neg = self._pos, self._neg
        if sigma > 0.0:
            z = step = (value - mean) / sigma
        else:
            z, step = deviation(value, mean, sigma), deviation(value, mean, sigma, _HUGE)
        lower = mean - sigma * (h + k - neg)
        upper = mean + sigma * (h + k - pos)
        pos = pos + step - k
        if pos < 0.0:
            pos = 0.0
        neg = neg - step - k
        if neg < 0.0:
            neg = 0.0
        ratio = (pos if pos > neg else neg) / h
        warm = n >= self.warmup
        if ratio > 1.0:
            self._pos = self._neg = 0.0
        else:
            self._pos, self._neg = pos, neg
        if warm and self.outliers != "learn":
            self._offer_screened(value, mean, sigma)
        else:
            self._baseline.offer(value)
        anomaly = warm and ratio > 1.0
        return PointResult(
            score_from_ratio(ratio),
            anomaly,
            mean,
            lower,
            upper,
            z,
            n,
            details={"cusum_pos": pos, "cusum_neg": neg},
            explanation=cusum_crossed(pos, neg, h) if anomaly else None,
        )

    def _statistics(self) -> dict[str, Any]:
        return {**self._baseline.state_dict(), "pos": self._pos, "neg": self._neg}

    def _load(self, state: Mapping[str, Any]) -> None:
        self._baseline.load_state(state)
        pos, neg = float(state["pos"]), float(state["neg"])
        if not (0.0 <= pos < math.inf and 0.0 <= neg < math.inf):
            raise ValueError(f"bad CUSUM state: need finite sums >= 0, got {pos!r}, {neg!r}")
        self._pos, self._neg = pos, neg

    def load_columns(self, columns: Columns, slot: int, state: Mapping[str, Any]) -> None:
        columns["pos"][slot] = float(state["pos"])
        columns["neg"][slot] = float(state["neg"])

    def export_columns(self, values: Mapping[str, npt.NDArray[Any]], at: int,
                       state: dict[str, Any]) -> None:
        state["pos"] = float(values["pos"][at])
        state["neg"] = float(values["neg"][at])

    def step_columns(self, columns: Columns, pre: Columns, slots: npt.NDArray[np.intp],
                     x: Floats, sigma: Floats) -> ColumnStep:
        k, h = self.k, self.h
        n, mean, pos, neg = pre["n"], pre["mean"], pre["pos"], pre["neg"]
        z = deviations(x, mean, sigma)
        step = deviations(x, mean, sigma, _HUGE)
        lower = mean - sigma * (h + k - neg)
        upper = mean + sigma * (h + k - pos)
        pos = pos + step - k
        pos = np.where(pos < 0.0, 0.0, pos)
        neg = neg - step - k
        neg = np.where(neg < 0.0, 0.0, neg)
        ratio = np.where(pos > neg, pos, neg) / h
        reset = ratio > 1.0
        cold = n < 2
        columns["pos"][slots] = np.where(cold, pre["pos"], np.where(reset, 0.0, pos))
        columns["neg"][slots] = np.where(cold, pre["neg"], np.where(reset, 0.0, neg))
        warm = n >= self.warmup
        learn, keep = self._screened_columns(x, mean, sigma, warm)
        return ColumnStep(pre, lower, upper, z, ratio, warm & reset, {"pos": pos, "neg": neg},
                          learn, keep)

    def column_result(self, step: ColumnStep, at: int, value: float) -> PointResult:
        anomaly = bool(step.anomaly[at])
        pos, neg = float(step.figures["pos"][at]), float(step.figures["neg"][at])
        return PointResult(score_from_ratio(float(step.ratio[at])), anomaly,
                           float(step.pre["mean"][at]), float(step.lower[at]),
                           float(step.upper[at]), float(step.z[at]), int(step.pre["n"][at]),
                           details={"cusum_pos": pos, "cusum_neg": neg},
                           explanation=cusum_crossed(pos, neg, self.h) if anomaly else None)
