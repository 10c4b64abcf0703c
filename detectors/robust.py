"""Robust individuals chart for non-normal data: median centre, limits from MAD or quantiles.

The chart keeps the last ``window`` accepted points twice: in arrival order (a deque, to
know which point leaves) and sorted (a list kept sorted with ``bisect``). Memory is bounded
by the window; an update costs one ``insort`` and one deletion (O(window) memory moves, fast
in C) and O(log window) Python steps for the median and MAD; the state holds the window's
values (about 10 kB of JSON for the default 500).

- ``method="mad"``: σ̂ = 1.4826·MAD, limits median ± k·σ̂ (symmetric).
- ``method="quantile"``: one σ̂ per side from the quantiles ``q`` and ``1 − q`` of the
  window, ``σ̂_low = (median − Q(q)) / Φ⁻¹(1 − q)`` and ``σ̂_high = (Q(1 − q) − median) /
  Φ⁻¹(1 − q)``, limits median − k·σ̂_low and median + k·σ̂_high: skewed data get
  asymmetric limits, and for normal data both σ̂ estimate σ.

When over half the window is one value the MAD (or a side's quantile spread) is 0; σ̂ then
falls back to 1.2533 × the mean absolute deviation from the median (O(window) per point
while that lasts; each deviation counts at most six times the typical non-zero one, so one
wild value cannot blind the chart), and is 0 when fewer than two values differ from it.
``k`` keeps its meaning of "σ for normal data" throughout, so ``arl0`` sets it as for the
Shewhart chart (exact for normal data, not for the skewed data this chart is for).

>>> chart = RobustChart(k=3.0, warmup=5, window=50)
>>> for v in [10.0, 11.0, 9.0, 10.0, 10.5, 9.5, 10.0]:
...     _ = chart.update(v, 0.0)
>>> r = chart.update(1000.0, 0.0)
>>> r.anomaly, r.centre, round(r.upper, 3), r.n
(True, 10.0, 12.224, 7)
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Mapping, Sequence
from functools import partial
from statistics import NormalDist
from typing import Any, Self

from vigil.detectors.base import PointResult, register, score_from_ratio
from vigil.detectors.budget import shewhart_k_for_arl
from vigil.detectors.seasonal import Season, Seasonal, check_season
from vigil.detectors.shewhart import (
    check_arl0,
    check_outliers,
    check_positive,
    check_warmup,
    limit_crossed,
)
from vigil.detectors.stats import WARMUP_SCREEN

METHODS = ("mad", "quantile")
MAD_SCALE = 1.4826
"""σ̂ / MAD for normal data."""
MEAN_DEVIATION_SCALE = math.sqrt(math.pi / 2.0)
"""σ̂ / mean absolute deviation for normal data (1.2533)."""


def median_of(ordered: Sequence[float]) -> float:
    """Median of a non-empty sorted sequence."""
    n = len(ordered)
    half = n // 2
    return ordered[half] if n % 2 else 0.5 * (ordered[half - 1] + ordered[half])


def quantile_of(ordered: Sequence[float], q: float) -> float:
    """Quantile ``q`` of a non-empty sorted sequence, linearly interpolated (type 7)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    if low + 1 >= len(ordered):
        return ordered[low]
    return ordered[low] + (position - low) * (ordered[low + 1] - ordered[low])


def kth_distance(ordered: Sequence[float], centre: float, k: int) -> float:
    """The k-th smallest (from 0) of ``abs(x - centre)`` over a sorted sequence, O(log n).

    The distances below and above ``centre`` are two sorted runs; this is the k-th element
    of their merge, found by bisecting how many come from the lower run.

    >>> kth_distance([1.0, 2.0, 4.0, 7.0, 8.0], 4.0, 2), kth_distance([1.0, 9.0], 4.0, 1)
    (3.0, 5.0)
    """
    split = bisect_left(ordered, centre)  # ordered[split:] >= centre
    n_low, n_high = split, len(ordered) - split
    lo, hi = max(0, k + 1 - n_high), min(k + 1, n_low)
    while True:
        i = (lo + hi) // 2  # taken from below the centre; k + 1 - i from above
        j = k + 1 - i
        if i < n_low and j > 0 and (
            ordered[split + j - 1] - centre > centre - ordered[split - 1 - i]
        ):
            lo = i + 1
        elif i > 0 and j < n_high and centre - ordered[split - i] > ordered[split + j] - centre:
            hi = i - 1
        else:
            below = centre - ordered[split - i] if i > 0 else -math.inf
            above = ordered[split + j - 1] - centre if j > 0 else -math.inf
            return below if below > above else above


def mad_of(ordered: Sequence[float], centre: float) -> float:
    """Median absolute deviation of a non-empty sorted sequence from ``centre``."""
    n = len(ordered)
    half = n // 2
    if n % 2:
        return kth_distance(ordered, centre, half)
    return 0.5 * (kth_distance(ordered, centre, half - 1) + kth_distance(ordered, centre, half))


@register("robust")
class RobustChart:
    """Individuals chart with a median centre and MAD- or quantile-based limits over a window.

    ``k`` is the limit width in (robust) σ, ``window`` the number of recent accepted points
    the statistics rest on, ``method`` ``"mad"`` or ``"quantile"`` (with tail probability
    ``q`` in (0, 0.5)); ``outliers``, ``arl0`` and ``season`` are as for
    :class:`~detectors.shewhart.ShewhartChart` (clip winsorises to the limits).
    """

    name: str = "robust"

    def __init__(
        self,
        k: float = 3.0,
        warmup: int = 30,
        window: int = 500,
        method: str = "mad",
        q: float = 0.25,
        outliers: str = "clip",
        arl0: float | None = None,
        season: Season | None = None,
    ) -> None:
        k = check_positive("k", k, "limit width in σ")
        self.arl0 = check_arl0(arl0)
        self.k = k if self.arl0 is None else shewhart_k_for_arl(self.arl0)
        self.warmup = check_warmup(warmup)
        if isinstance(window, bool) or not isinstance(window, int) or window < self.warmup:
            raise ValueError(f"window must be an integer >= warmup ({self.warmup}), got {window!r}")
        self.window = window
        if method not in METHODS:
            choices = ", ".join(map(repr, METHODS))
            raise ValueError(f"method must be one of {choices}, got {method!r}")
        self.method = str(method)
        q = check_positive("q", q, "tail probability of the quantile limits")
        if not q < 0.5:
            raise ValueError(f"q must be a number in (0, 0.5), got {q!r}")
        self.q = q
        self._q_sigmas = NormalDist().inv_cdf(1.0 - q)  # σ between the median and Q(1 − q)
        self.outliers = check_outliers(outliers)
        self.season = None if season is None else check_season(season)
        self._arrivals: deque[float] = deque()
        self._sorted: list[float] = []
        self._seasonal: Seasonal[RobustChart] | None = None
        if self.season is not None:
            make = partial(
                RobustChart,
                k=self.k,
                warmup=self.warmup,
                window=self.window,
                method=self.method,
                q=self.q,
                outliers=self.outliers,
            )
            self._seasonal = Seasonal(self.season, make, RobustChart.from_state)

    def _mean_deviation_sigma(self, centre: float) -> float:
        """1.2533 × the mean absolute deviation from ``centre``, each deviation counting at
        most WARMUP_SCREEN times the typical non-zero one (their median without the largest),
        so that one wild value in the window cannot blind the chart."""
        ordered = self._sorted
        deviations = sorted(abs(v - centre) for v in ordered if v != centre)[:-1]
        cap = WARMUP_SCREEN * median_of(deviations) if deviations else 0.0
        return MEAN_DEVIATION_SCALE * sum(min(abs(v - centre), cap) for v in ordered) / len(
            ordered)

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against the window of points before it, then learn from it."""
        if self._seasonal is not None:
            return self._seasonal.update(value, timestamp)
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite number, got {value!r}")
        value_in = value
        ordered = self._sorted
        n = len(ordered)
        if n < 2:
            self._learn(value)
            return PointResult(
                0.0, False, ordered[0] if n else value, -math.inf, math.inf, 0.0, n
            )

        centre = median_of(ordered)
        if self.method == "mad":
            sigma_low = sigma_high = MAD_SCALE * mad_of(ordered, centre)
            if sigma_low == 0.0:
                sigma_low = sigma_high = self._mean_deviation_sigma(centre)
        else:
            sigma_low = (centre - quantile_of(ordered, self.q)) / self._q_sigmas
            sigma_high = (quantile_of(ordered, 1.0 - self.q) - centre) / self._q_sigmas
            if sigma_low == 0.0 or sigma_high == 0.0:
                fallback = self._mean_deviation_sigma(centre)
                sigma_low = sigma_low or fallback
                sigma_high = sigma_high or fallback
        k = self.k
        lower = centre - k * sigma_low
        upper = centre + k * sigma_high
        sigma = sigma_high if value >= centre else sigma_low
        if sigma > 0.0:
            z = (value - centre) / sigma
        elif value == centre:
            z = 0.0
        else:
            z = math.inf if value > centre else -math.inf
        ratio = abs(z) / k
        warm = n >= self.warmup

        policy = self.outliers
        if policy == "clip":
            if warm:
                value = lower if value < lower else upper if value > upper else value
            self._learn(value)
        elif policy == "learn" or not (warm and ratio > 1.0):
            self._learn(value)
        anomaly = warm and ratio > 1.0
        return PointResult(score_from_ratio(ratio), anomaly, centre, lower, upper, z, n,
                           explanation=limit_crossed("robust", value_in, centre, lower, upper)
                           if anomaly else None)

    def _learn(self, value: float) -> None:
        arrivals, ordered = self._arrivals, self._sorted
        arrivals.append(value)
        insort(ordered, value)
        if len(arrivals) > self.window:
            del ordered[bisect_left(ordered, arrivals.popleft())]

    def state_dict(self) -> dict[str, Any]:
        """Parameters and the window in arrival order; ``from_state`` continues exactly."""
        state: dict[str, Any] = {
            "k": self.k,
            "warmup": self.warmup,
            "window": self.window,
            "method": self.method,
            "q": self.q,
            "outliers": self.outliers,
            "arl0": self.arl0,
            "season": self.season,
        }
        if self._seasonal is not None:
            state["buckets"] = self._seasonal.state_dict()["buckets"]
        else:
            state["values"] = list(self._arrivals)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a chart whose future outputs equal those of the one that saved ``state``."""
        season = state.get("season")
        chart = cls(
            k=state["k"],
            warmup=state["warmup"],
            window=state["window"],
            method=state["method"],
            q=state["q"],
            outliers=state["outliers"],
            season=season,
        )
        chart.arl0 = check_arl0(state.get("arl0"))  # k is saved: no recomputation from arl0
        if chart._seasonal is not None:
            chart._seasonal.load_state({"season": season, "buckets": state["buckets"]})
            return chart
        values = [float(v) for v in state["values"]]
        if len(values) > chart.window or not all(math.isfinite(v) for v in values):
            raise ValueError(f"bad robust state: need at most {chart.window} finite values")
        chart._arrivals = deque(values)
        chart._sorted = sorted(values)
        return chart

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (("arl0", self.arl0), ("season", self.season))
            if value is not None
        )
        return (
            f"RobustChart(k={self.k!r}, warmup={self.warmup!r}, window={self.window!r}, "
            f"method={self.method!r}, q={self.q!r}, outliers={self.outliers!r}{extra})"
        )
