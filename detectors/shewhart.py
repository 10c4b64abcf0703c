"""Shewhart individuals chart: alarm when a point falls outside mean ± k·σ of the points before it.

Before two points there is no spread: the limits are ±inf, ``z`` and the score are 0 and the
centre is the mean so far (the value itself for the very first point). Once σ is known, a
constant series that changes is an anomaly: with σ == 0 any value off the mean gets
``z = ±inf`` and score 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Self

from detectors.base import PointResult, register, score_from_ratio
from detectors.stats import RunningStats

OUTLIER_POLICIES = ("clip", "exclude", "learn")
"""How a point beyond the limits feeds the statistics once warm-up is over."""


@register("shewhart")
class ShewhartChart:
    """Individuals control chart with limits learned online from the points before each one.

    ``outliers`` keeps one outlier from inflating σ for the points after it: ``"clip"``
    learns the value winsorised to [lower, upper], ``"exclude"`` skips alarmed points,
    ``"learn"`` learns everything.

    >>> chart = ShewhartChart(k=3.0, warmup=4)
    >>> for v in [10.0, 11.0, 9.0, 10.0]:
    ...     _ = chart.update(v, 0.0)
    >>> r = chart.update(20.0, 0.0)
    >>> r.anomaly, r.centre, round(r.upper, 3), round(r.z, 2), r.n
    (True, 10.0, 12.449, 12.25, 4)
    """

    name: str = "shewhart"

    def __init__(self, k: float = 3.0, warmup: int = 30, outliers: str = "clip") -> None:
        if isinstance(k, bool) or not isinstance(k, int | float) or not 0.0 < k < math.inf:
            raise ValueError(f"k must be a finite number > 0 (limit width in σ), got {k!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 2:
            raise ValueError(f"warmup must be an integer >= 2, got {warmup!r}")
        if outliers not in OUTLIER_POLICIES:
            choices = ", ".join(map(repr, OUTLIER_POLICIES))
            raise ValueError(f"outliers must be one of {choices}, got {outliers!r}")
        self.k = float(k)
        self.warmup = warmup
        self.outliers = outliers
        self._stats = RunningStats()

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against the limits from the points before it, then learn from it."""
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite number, got {value!r}")
        stats = self._stats
        n = stats.count
        mean = stats.mean
        if n < 2:
            stats.update(value)
            return PointResult(0.0, False, mean if n else value, -math.inf, math.inf, 0.0, n)

        k = self.k
        sigma = math.sqrt(stats.m2 / (n - 1))
        lower = mean - k * sigma
        upper = mean + k * sigma
        if sigma > 0.0:
            z = (value - mean) / sigma
            score = score_from_ratio(abs(z) / k)
        elif value == mean:
            z = score = 0.0
        else:
            z = math.inf if value > mean else -math.inf
            score = 1.0
        warm = n >= self.warmup
        anomaly = warm and (value > upper or value < lower)

        policy = self.outliers
        if policy == "clip":
            if warm:
                value = lower if value < lower else upper if value > upper else value
            stats.update(value)
        elif policy == "learn" or not anomaly:
            stats.update(value)
        return PointResult(score, anomaly, mean, lower, upper, z, n)

    def state_dict(self) -> dict[str, Any]:
        """Parameters and statistics, JSON-serialisable; ``from_state`` continues exactly."""
        return {
            "k": self.k,
            "warmup": self.warmup,
            "outliers": self.outliers,
            "stats": self._stats.state_dict(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a chart whose future outputs equal those of the one that saved ``state``."""
        chart = cls(k=state["k"], warmup=state["warmup"], outliers=state["outliers"])
        chart._stats = RunningStats.from_state(state["stats"])
        return chart

    def __repr__(self) -> str:
        return f"ShewhartChart(k={self.k!r}, warmup={self.warmup!r}, outliers={self.outliers!r})"
