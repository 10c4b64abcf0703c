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
from functools import partial
from typing import Any, Self

from vigil.detectors.base import Explanation, PointResult, register, score_from_ratio
from vigil.detectors.budget import cusum_h_for_arl
from vigil.detectors.ewma import SCREEN_K
from vigil.detectors.seasonal import Season, Seasonal, check_season
from vigil.detectors.shewhart import (
    _starting,
    check_arl0,
    check_lag,
    check_outliers,
    check_positive,
    check_warmup,
)
from vigil.detectors.stats import LAG, ChartBaseline

_HUGE = 1e300  # a deviation from a σ of 0 adds this to a sum: score 1.0, still finite


def cusum_crossed(pos: float, neg: float, h: float) -> Explanation:
    """The explanation of a CUSUM alarm: the larger sum against the decision interval."""
    return Explanation("cusum up", pos, h) if pos > neg else Explanation("cusum down", neg, h)


@register("cusum")
class CusumChart:
    """Two-sided tabular CUSUM chart with reference value ``k`` and decision interval ``h``.

    Both are in σ units; ``arl0``, when given, sets ``h`` for that in-control ARL at this
    ``k``. ``outliers`` and ``season`` are as for :class:`~detectors.shewhart.ShewhartChart`.
    """

    name: str = "cusum"

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
        self.season = None if season is None else check_season(season)
        self.lag = check_lag(lag)
        self._baseline = ChartBaseline(self.warmup, self.lag)
        self._pos = 0.0
        self._neg = 0.0
        self._seasonal: Seasonal[CusumChart] | None = None
        if self.season is not None:
            make = partial(
                CusumChart, k=self.k, h=self.h, warmup=self.warmup, outliers=self.outliers,
                lag=self.lag,
            )
            self._seasonal = Seasonal(self.season, make, CusumChart.from_state)

    def update(self, value: float, timestamp: float) -> PointResult:
        """Add ``value``'s deviation from the baseline to the sums, then learn ``value``."""
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
        k, h = self.k, self.h
        pos, neg = self._pos, self._neg
        if sigma > 0.0:
            z = step = (value - mean) / sigma
        elif value == mean:
            z = step = 0.0
        else:
            z = math.inf if value > mean else -math.inf
            step = _HUGE if value > mean else -_HUGE
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
            lower,
            upper,
            z,
            n,
            details={"cusum_pos": pos, "cusum_neg": neg},
            explanation=cusum_crossed(pos, neg, h) if anomaly else None,
        )

    def state_dict(self) -> dict[str, Any]:
        """Parameters, baseline and sums, JSON-serialisable; ``from_state`` continues exactly."""
        state: dict[str, Any] = {
            "k": self.k,
            "h": self.h,
            "warmup": self.warmup,
            "outliers": self.outliers,
            "arl0": self.arl0,
            "season": self.season,
            "lag": self.lag,
        }
        if self._seasonal is not None:
            state["buckets"] = self._seasonal.state_dict()["buckets"]
        else:
            state.update(self._baseline.state_dict(), pos=self._pos, neg=self._neg)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a chart whose future outputs equal those of the one that saved ``state``."""
        season = state.get("season")
        chart = cls(
            k=state["k"],
            h=state["h"],
            warmup=state["warmup"],
            outliers=state["outliers"],
            season=season,
            lag=state.get("lag", 0),
        )
        chart.arl0 = check_arl0(state.get("arl0"))  # h is saved: no recomputation from arl0
        if chart._seasonal is not None:
            chart._seasonal.load_state({"season": season, "buckets": state["buckets"]})
            return chart
        chart._baseline.load_state(state)
        pos, neg = float(state["pos"]), float(state["neg"])
        if not (0.0 <= pos < math.inf and 0.0 <= neg < math.inf):
            raise ValueError(f"bad CUSUM state: need finite sums >= 0, got {pos!r}, {neg!r}")
        chart._pos, chart._neg = pos, neg
        return chart

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (("arl0", self.arl0), ("season", self.season), ("lag", self.lag))
            if value is not None
        )
        return (
            f"CusumChart(k={self.k!r}, h={self.h!r}, warmup={self.warmup!r}, "
            f"outliers={self.outliers!r}{extra})"
        )
