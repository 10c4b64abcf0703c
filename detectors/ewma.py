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
from functools import partial
from typing import Any, Self

from vigil.detectors.base import PointResult, register, score_from_ratio
from vigil.detectors.budget import EWMA_LIMITS, ewma_L_for_arl
from vigil.detectors.seasonal import Season, Seasonal, check_season
from vigil.detectors.shewhart import (
    _starting,
    check_arl0,
    check_lag,
    check_outliers,
    check_positive,
    check_warmup,
    limit_crossed,
)
from vigil.detectors.stats import LAG, ChartBaseline

SCREEN_K = 3.0
"""Individual points beyond mean ± SCREEN_K·σ are clipped or excluded from the baseline."""


@register("ewma")
class EwmaChart:
    """EWMA chart (Roberts 1959; Lucas & Saccucci 1990) with a baseline learned online.

    ``lambda_`` is the smoothing weight in (0, 1], ``L`` the limit width in σ of the EWMA,
    ``limits`` ``"exact"`` (time-varying) or ``"asymptotic"``; ``arl0``, when given, sets
    ``L`` for that in-control ARL with the chosen limits. ``outliers`` and ``season`` are as
    for :class:`~detectors.shewhart.ShewhartChart`.
    """

    name: str = "ewma"

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
        self.season = None if season is None else check_season(season)
        self._spread = lambda_ / (2.0 - lambda_)  # variance of the EWMA over σ², asymptotic
        self._decay = (1.0 - lambda_) ** 2
        self._exact = self.limits == "exact"
        self.lag = check_lag(lag)
        self._baseline = ChartBaseline(self.warmup, self.lag)
        self._ewma: float | None = None  # None: (re)start at the baseline mean next point
        self._i = 0  # points in the EWMA since it (re)started
        self._seasonal: Seasonal[EwmaChart] | None = None
        if self.season is not None:
            make = partial(
                EwmaChart,
                lambda_=self.lambda_,
                L=self.L,
                warmup=self.warmup,
                limits=self.limits,
                outliers=self.outliers,
                lag=self.lag,
            )
            self._seasonal = Seasonal(self.season, make, EwmaChart.from_state)

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score the EWMA including ``value`` against its limits, then learn ``value``."""
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

        sigma = math.sqrt(stats.m2 / (n - 1))
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
        if sd > 0.0:
            z = (ewma - mean) / sd
        elif ewma == mean:
            z = 0.0
        else:
            z = math.inf if ewma > mean else -math.inf
        ratio = abs(z) / L
        warm = n >= self.warmup
        if ratio > 1.0:
            self._ewma = None
            self._i = 0
        else:
            self._ewma = ewma
            self._i = i

        if self.outliers == "learn" or not warm:
            baseline.offer(value)
        else:
            screen = SCREEN_K * sigma
            if self.outliers == "clip":
                low, high = mean - screen, mean + screen
                baseline.offer(low if value < low else high if value > high else value)
            else:
                baseline.offer(value if abs(value - mean) <= screen else None)
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

    def state_dict(self) -> dict[str, Any]:
        """Parameters, baseline and EWMA, JSON-serialisable; ``from_state`` continues exactly."""
        state: dict[str, Any] = {
            "lambda_": self.lambda_,
            "L": self.L,
            "warmup": self.warmup,
            "limits": self.limits,
            "outliers": self.outliers,
            "arl0": self.arl0,
            "season": self.season,
            "lag": self.lag,
        }
        if self._seasonal is not None:
            state["buckets"] = self._seasonal.state_dict()["buckets"]
        else:
            state.update(self._baseline.state_dict(), ewma=self._ewma, i=self._i)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a chart whose future outputs equal those of the one that saved ``state``."""
        season = state.get("season")
        chart = cls(
            lambda_=state["lambda_"],
            L=state["L"],
            warmup=state["warmup"],
            limits=state["limits"],
            outliers=state["outliers"],
            season=season,
            lag=state.get("lag", 0),
        )
        chart.arl0 = check_arl0(state.get("arl0"))  # L is saved: no recomputation from arl0
        if chart._seasonal is not None:
            chart._seasonal.load_state({"season": season, "buckets": state["buckets"]})
            return chart
        chart._baseline.load_state(state)
        ewma, i = state["ewma"], int(state["i"])
        if (ewma is None) != (i == 0) or i < 0:
            raise ValueError(f"bad EWMA state: ewma={ewma!r}, i={i!r}")
        chart._ewma = None if ewma is None else float(ewma)
        chart._i = i
        return chart

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (("arl0", self.arl0), ("season", self.season), ("lag", self.lag))
            if value is not None
        )
        return (
            f"EwmaChart(lambda_={self.lambda_!r}, L={self.L!r}, warmup={self.warmup!r}, "
            f"limits={self.limits!r}, outliers={self.outliers!r}{extra})"
        )
