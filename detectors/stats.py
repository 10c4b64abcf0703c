"""Online summary statistics, updated one point at a time and mergeable across partitions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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
