"""EWMA control chart: an exponentially weighted moving average of the points, against limits.

``ewma = λ·x + (1 − λ)·ewma`` starts at the baseline mean. Its limits are
``mean ± L·σ·sqrt(λ/(2−λ)·[1 − (1−λ)^(2i)])`` with ``i`` the points since the EWMA started
(``limits="exact"``), or the same without the bracket (``limits="asymptotic"``, the limits
the textbook ARL tables assume; the exact ones are narrower for the first points, which
catches a shift present from the start sooner and lowers ARL0 by 2.6% at λ = 0.1).

The baseline mean and σ are learned online from the individual points before each one,
as by the Shewhart chart; the outlier policy screens individual points at mean ± 3σ. After
an alarm the EWMA restarts at the baseline mean (so run lengths are independent, as the ARL
tables assume). During warm-up the chart runs, restarts included, but raises no alarm.

``centre``, ``lower`` and ``upper`` are the limits *of the EWMA statistic*, whose value is
``details["ewma"]``; ``z`` is the EWMA's distance from the centre in its own σ.

>>> chart = EwmaChart(lambda_=0.2, L=3.0, warmup=10)
>>> for i in range(40):
...     _ = chart.update(10.0 + (i % 5 - 2) * 0.5, float(i))
>>> results = [chart.update(11.5, 40.0 + i) for i in range(4)]
>>> [r.anomaly for r in results]
[False, False, True, False]
>>> after = results[3]  # the EWMA restarted at the baseline mean after the alarm
>>> after.details["ewma"] == 0.2 * 11.5 + 0.8 * after.centre, after.n  # 30 points wait
(True, 10)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from vigil.detectors.base import PointResult, register, score_from_ratio
from vigil.detectors.budget import EWMA_LIMITS, ewma_L_for_arl
from vigil.detectors.chart import (
    Columns,
    ColumnStep,
    Floats,
    MeanChart,
    deviation,
    deviations,
    limit_crossed,
)
from vigil.detectors.checks import (
    check_arl0,
    check_lag,
    check_outliers,
    check_positive,
    check_warmup,
)
from vigil.detectors.seasonal import Season
from vigil.detectors.stats import LAG, ChartBaseline

MAX_EWMA_TABLE = 1 << 20
"""Longest table of exact EWMA limit factors; a smaller ``λ`` stays on the object path."""


@register("ewma")
class EwmaChart(MeanChart):
    """EWMA chart (Roberts 1959; Lucas & Saccucci 1990) with a baseline learned online.

    ``lambda_`` is the smoothing weight in (0, 1], ``L`` the limit width in σ of the EWMA,
    ``limits`` ``"exact"`` (time-varying) or ``"asymptotic"``; ``arl0``, when given, sets
    ``L`` for that in-control ARL with the chosen limits. ``outliers`` and ``season`` are as
    for :class:`~detectors.shewhart.ShewhartChart`.
    """

    name: str = "ewma"
    COLUMNS: ClassVar[Mapping[str, type]] = {"ewma": np.float64, "i": np.int64}

    def __init__(
        self,
        lambda_: float = 0.1,
        L: float = 2.814,
        warmup: int = 30,
        limits: str = "exact",
        outliers: str = "clip",
        arl0: float | None = None,
        season: Season | None = None,
        lag: int = LAG,
    ) -> None:
        lambda_ = check_positive("lambda_", lambda_, "smoothing weight in (0, 1]")
        if lambda_ > 1.0:
            raise ValueError(f"lambda_ must be a number in (0, 1], got {lambda_!r}")
        if limits not in EWMA_LIMITS:
            raise ValueError(
                f"limits must be one of {', '.join(map(repr, EWMA_LIMITS))}, got {limits!r}"
            )
        L = check_positive("L", L, "limit width in σ of the EWMA")
        self.lambda_ = lambda_
        self.limits = str(limits)
        self.arl0 = check_arl0(arl0)
        self.L = L if self.arl0 is None else ewma_L_for_arl(self.arl0, lambda_, self.limits)
        self.warmup = check_warmup(warmup)
        self.outliers = check_outliers(outliers)
        self._spread = lambda_ / (2.0 - lambda_)  # variance of the EWMA over σ², asymptotic
        self._decay = (1.0 - lambda_) ** 2
        self._exact = self.limits == "exact"
        self.lag = check_lag(lag)
        self._baseline = ChartBaseline(self.warmup, self.lag)
        self._ewma: float | None = None  # None: (re)start at the baseline mean next point
        self._i = 0  # points in the EWMA since it (re)started
        self._factors: Floats | None = None  # the vectorised step's table, made when needed
        self._start_season(season)

    def _judge(self, value: float, n: int, mean: float, sigma: float) -> PointResult:
        lam = self.lambda_
        previous = self._ewma
        if previous is None:
            previous = mean
            i = 1
        else:
            i = self._i + 1
        ewma = lam * value + (1.0 - lam) * previous
        if self._exact:
            sd = sigma * math.sqrt(self._spread * (1.0 - self._decay**i))
        else:
            sd = sigma * math.sqrt(self._spread)
        L = self.L
        width = L * sd
        z = (ewma - mean) / sd if sd > 0.0 else deviation(ewma, mean, sd)
        ratio = abs(z) / L
        warm = n >= self.warmup
        if ratio > 1.0:
            self._ewma = None
            self._i = 0
        else:
            self._ewma = ewma
            self._i = i
        if warm and self.outliers != "learn":
            self._offer_screened(value, mean, sigma)
        else:
            self._baseline.offer(value)
        anomaly = warm and ratio > 1.0
        return PointResult(
            score_from_ratio(ratio),
            anomaly,
            mean,
            mean - width,
            mean + width,
            z,
            n,
            details={"ewma": ewma},
            explanation=limit_crossed("ewma", ewma, mean, mean - width, mean + width)
            if anomaly else None,
        )

    def _statistics(self) -> dict[str, Any]:
        return {**self._baseline.state_dict(), "ewma": self._ewma, "i": self._i}

    def _load(self, state: Mapping[str, Any]) -> None:
        self._baseline.load_state(state)
        ewma, i = state["ewma"], int(state["i"])
        if (ewma is None) != (i == 0) or i < 0:
            raise ValueError(f"bad EWMA state: ewma={ewma!r}, i={i!r}")
        self._ewma = None if ewma is None else float(ewma)
        self._i = i

    def limit_factors(self) -> Floats:
        """σ of the EWMA over σ after ``i`` points, for ``i`` up to where it stops changing:
        the expressions of :meth:`_judge`, evaluated by Python; ValueError past MAX_EWMA_TABLE."""
        if self._factors is None:
            spread = self._spread
            if not self._exact:
                self._factors = np.array([math.sqrt(spread)] * 2)
                return self._factors
            decay = self._decay
            factors = [0.0]
            for i in range(1, MAX_EWMA_TABLE):
                factors.append(math.sqrt(spread * (1.0 - decay**i)))
                if 1.0 - decay**i == 1.0:
                    self._factors = np.array(factors)
                    return self._factors
            raise ValueError(f"EWMA weight {self.lambda_!r} too small for a table of exact limits")
        return self._factors

    def check_columns(self) -> None:
        super().check_columns()
        self.limit_factors()

    def load_columns(self, columns: Columns, slot: int, state: Mapping[str, Any]) -> None:
        ewma = state["ewma"]
        columns["ewma"][slot] = 0.0 if ewma is None else float(ewma)
        columns["i"][slot] = int(state["i"])

    def export_columns(self, values: Mapping[str, npt.NDArray[Any]], at: int,
                       state: dict[str, Any]) -> None:
        i = int(values["i"][at])
        state["ewma"] = None if i == 0 else float(values["ewma"][at])
        state["i"] = i

    def step_columns(self, columns: Columns, pre: Columns, slots: npt.NDArray[np.intp],
                     x: Floats, sigma: Floats) -> ColumnStep:
        lam, L = self.lambda_, self.L  # noqa: N806 - the SPC name
        n, mean, i, previous = pre["n"], pre["mean"], pre["i"], pre["ewma"]
        fresh = i == 0
        previous = np.where(fresh, mean, previous)
        i = np.where(fresh, 1, i + 1)
        ewma = lam * x + (1.0 - lam) * previous
        factors = self.limit_factors()
        sd = sigma * factors[np.minimum(i, len(factors) - 1)]
        width = L * sd
        z = deviations(ewma, mean, sd)
        ratio = np.abs(z) / L
        reset = ratio > 1.0
        cold = n < 2
        columns["ewma"][slots] = np.where(cold, pre["ewma"], np.where(reset, 0.0, ewma))
        columns["i"][slots] = np.where(cold, pre["i"], np.where(reset, 0, i))
        warm = n >= self.warmup
        learn, keep = self._screened_columns(x, mean, sigma, warm)
        return ColumnStep(pre, mean - width, mean + width, z, ratio, warm & reset,
                          {"ewma": ewma}, learn, keep)

    def column_result(self, step: ColumnStep, at: int, value: float) -> PointResult:
        mean = float(step.pre["mean"][at])
        anomaly = bool(step.anomaly[at])
        lower, upper = float(step.lower[at]), float(step.upper[at])
        ewma = float(step.figures["ewma"][at])
        return PointResult(score_from_ratio(float(step.ratio[at])), anomaly, mean, lower, upper,
                           float(step.z[at]), int(step.pre["n"][at]), details={"ewma": ewma},
                           explanation=limit_crossed("ewma", ewma, mean, lower, upper)
                           if anomaly else None)
