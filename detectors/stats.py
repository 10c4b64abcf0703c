"""Online summary statistics, updated one point at a time and mergeable across partitions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class RunningStats:
    """Count, mean and sample variance by Welford's update; Chan et al.'s formula merges two.

    >>> s = RunningStats.of([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    >>> s.count, s.mean, round(s.variance, 4)
    (8, 5.0, 4.5714)
    >>> s.merge(RunningStats.of([5.0])).count
    9
    """

    __slots__ = ("count", "mean", "m2")

    count: int
    mean: float
    m2: float  # sum of squared deviations from the mean

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.count = count
        self.mean = mean
        self.m2 = m2

    @classmethod
    def of(cls, values: Iterable[float]) -> RunningStats:
        """Statistics of ``values``, added in order."""
        stats = cls()
        for x in values:
            stats.update(x)
        return stats

    def update(self, x: float) -> None:
        """Add one point."""
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        # Deviations from the old and the new mean: no cancellation of large squares.
        self.m2 += delta * (x - self.mean)

    def merge(self, other: RunningStats) -> RunningStats:
        """Statistics of both inputs' points together, as a new object (inputs unchanged)."""
        if other.count == 0:
            return RunningStats(self.count, self.mean, self.m2)
        if self.count == 0:
            return RunningStats(other.count, other.mean, other.m2)
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + delta * delta * (self.count * other.count / count)
        return RunningStats(count, mean, m2)

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1); 0.0 with fewer than two points."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); 0.0 with fewer than two points."""
        return math.sqrt(self.variance)

    def state_dict(self) -> dict[str, Any]:
        """A plain JSON-serialisable dict that ``from_state`` turns back into equal statistics."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RunningStats:
        """Rebuild the statistics saved by ``state_dict``."""
        count, mean, m2 = int(state["count"]), float(state["mean"]), float(state["m2"])
        if count < 0 or not m2 >= 0.0:
            raise ValueError(f"bad RunningStats state {dict(state)!r}: need count >= 0, m2 >= 0")
        return cls(count, mean, m2)

    def __repr__(self) -> str:
        return f"RunningStats(count={self.count}, mean={self.mean!r}, m2={self.m2!r})"


START_POINTS = 32
"""A chart holds its first points (this many, or its whole warm-up if shorter) and starts its
statistics from them, screened together."""
WARMUP_SCREEN = 6.0
"""Until a chart is warm, a point counts at most this many robust σ from the centre."""
LAG = 64
"""Once a chart is warm, each point enters its statistics this many points late."""
_MAD_SCALE = 1.4826  # σ / MAD for normal data


def robust_start(points: Sequence[float]) -> list[float]:
    """``points`` winsorised at their median ± :data:`WARMUP_SCREEN` robust σ, so that one
    (or a few) wild values among them cannot set the scale of everything after them.

    The robust σ is 1.4826 × their median absolute deviation; when more than half are tied at
    the median it is the median of the other deviations without the largest one (a deviation
    seen once could be the wild value itself), and with none left a millionth of the level.

    >>> robust_start([10.0, 11.0, 9.0, 10.0, 1e150])
    [10.0, 11.0, 9.0, 10.0, 18.8956]
    >>> robust_start([0.0, 0.0, 0.0, 1.0, 1.0, 0.0])  # an on/off series keeps both levels
    [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    >>> robust_start([20.0, 20.0, 20.0, 20.0, 1e150])[-1]  # seen once: maybe the wild value
    20.00012
    """
    ordered = sorted(points)
    centre = _middle(ordered)
    deviations = sorted(abs(v - centre) for v in points)
    scale = _MAD_SCALE * _middle(deviations)
    if scale == 0.0:
        others = [d for d in deviations if d > 0.0][:-1]
        scale = _middle(others) if others else 1e-6 * abs(centre)
    bound = WARMUP_SCREEN * scale
    return [centre - bound if v < centre - bound else centre + bound if v > centre + bound
            else v for v in points]


def _middle(ordered: Sequence[float]) -> float:
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else 0.5 * (ordered[half - 1] + ordered[half])


class ChartBaseline:
    """The mean and variance a control chart's limits rest on, learned so that neither one wild
    point in warm-up nor a shift still being judged moves them much.

    - The first ``min(START_POINTS, warmup)`` points are held, and the statistics start from
      them after :func:`robust_start`.
    - Until ``warmup`` points are learned, each point is learned at once, winsorised at the
      mean ± :data:`WARMUP_SCREEN` σ of the points before it.
    - Once warm, each point (as the chart's outlier policy makes it, or none) waits ``lag``
      points before it is learned, so the points of a shift the chart is still judging do not
      move the limits they are judged against.

    >>> baseline = ChartBaseline(warmup=4, lag=2)
    >>> for v in (10.0, 11.0, 9.0, 10.0):
    ...     baseline.offer(v)
    >>> baseline.stats.count, baseline.warm
    (4, True)
    >>> for v in (30.0, 31.0):
    ...     baseline.offer(v)
    >>> baseline.stats.count, baseline.pending
    (4, [30.0, 31.0])
    """

    __slots__ = ("stats", "warmup", "lag", "start", "pending")

    def __init__(self, warmup: int, lag: int = LAG) -> None:
        self.stats = RunningStats()
        self.warmup = warmup
        self.lag = lag
        self.start: list[float] = []
        """The first points, held until there are ``min(START_POINTS, warmup)`` of them."""
        self.pending: list[float | None] = []
        """Points waiting to be learned, oldest first (None: the policy learns nothing)."""

    @property
    def started(self) -> bool:
        """Whether the statistics have started (they have two points or more)."""
        return self.stats.count > 0

    @property
    def warm(self) -> bool:
        """Whether ``warmup`` points are learned."""
        return self.stats.count >= self.warmup

    def offer(self, value: float | None) -> None:
        """Learn ``value`` as this baseline does: held among the first points, winsorised in
        warm-up, ``lag`` points late once warm (None: learn nothing for this point)."""
        stats = self.stats
        if not stats.count:
            if value is None:
                return
            self.start.append(value)
            if len(self.start) >= min(START_POINTS, self.warmup):
                for v in robust_start(self.start):
                    stats.update(v)
                self.start = []
            return
        if stats.count < 2:  # statistics saved before there was a start (one point)
            if value is not None:
                stats.update(value)
            return
        if stats.count < self.warmup:
            if value is not None:
                bound = WARMUP_SCREEN * max(stats.std, 1e-6 * abs(stats.mean))
                low, high = stats.mean - bound, stats.mean + bound
                stats.update(low if value < low else high if value > high else value)
            return
        if not self.lag:
            if value is not None:
                stats.update(value)
            return
        pending = self.pending
        pending.append(value)
        if len(pending) > self.lag:
            oldest = pending.pop(0)
            if oldest is not None:
                stats.update(oldest)

    def state_dict(self) -> dict[str, Any]:
        """Statistics, held and pending points, JSON-serialisable."""
        return {"stats": self.stats.state_dict(), "start": list(self.start),
                "pending": list(self.pending)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take the statistics and points saved by :meth:`state_dict`."""
        stats = RunningStats.from_state(state["stats"])
        start = [float(v) for v in state.get("start", [])]
        pending = [None if v is None else float(v) for v in state.get("pending", [])]
        if (stats.count and start) or len(start) >= min(START_POINTS, self.warmup) \
                or len(pending) > self.lag or (pending and stats.count < self.warmup) \
                or not all(math.isfinite(v) for v in (*start, *(p for p in pending
                                                               if p is not None))):
            raise ValueError("bad chart baseline state: held or pending points do not fit")
        self.stats, self.start, self.pending = stats, start, pending
