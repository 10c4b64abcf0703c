"""Cold start: a new series of a group starts from the group's pooled statistics, not blind.

A group is a set of series that should behave alike — the hosts of one service, the versions
of one model — per metric. :class:`GroupPool` keeps each member series' running statistics
and pools those of the warmed-up members with :meth:`RunningStats.merge`. When a new series
appears, :meth:`GroupPool.seed` wraps its fresh detector in a :class:`ColdStart`: until the
series has its own ``warmup`` points, each point is judged by an individuals chart on the
pooled statistics (``provisional=True`` on every such result), while the inner detector learns
the series from its first point (except points beyond the provisional limits); from then on
the inner detector's results pass through.

The pooled σ includes the spread *between* members' means, so a new host that runs a little
higher than the others is not an anomaly; the pool counts as ``prior_points`` observations
(by default the warm-up), so the series' own points soon outweigh it.

How the runtime uses it::

    pool = GroupPool()                                   # one per process, checkpointed
    detector = pool.seed(build_detector(name, params), group, metric)   # on a new series
    result = detector.update(value, timestamp)
    if not result.anomaly:
        pool.learn(group, metric, member, value)         # pool only what was not flagged

>>> pool = GroupPool(warmup=20)
>>> for host in ("web-1", "web-2"):
...     for i in range(40):
...         pool.learn("web", "latency_ms", host, 100.0 + (i % 5))
>>> from vigil.detectors.shewhart import ShewhartChart
>>> fresh = pool.seed(ShewhartChart(warmup=20), "web", "latency_ms")
>>> first = fresh.update(130.0, 0.0)         # a blind chart cannot judge its first point
>>> first.anomaly, first.provisional, first.centre
(True, True, 102.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, Self

from vigil.detectors.base import (
    Detector,
    PointResult,
    build_detector,
    register,
    restore_detector,
    score_from_ratio,
)
from vigil.detectors.budget import shewhart_k_for_arl
from vigil.detectors.shewhart import limit_crossed
from vigil.detectors.stats import RunningStats

PROVISIONAL_ARL0 = 20_000.0
"""In-control points per false alarm of the provisional chart (the default ensemble's)."""


@register("coldstart")
class ColdStart:
    """A detector that judges its first ``warmup`` points against borrowed statistics.

    ``detector`` is the inner detector, built or by name (with ``params``); ``prior`` is the pooled
    statistics (a :class:`RunningStats` or its ``state_dict``), weighted as ``prior_points``
    observations (default: ``warmup``). While provisional the limits are
    ``mean ± k·σ`` of the prior merged with the series' own points so far, and a run of
    consecutive points beyond them raises one alarm, at its first point. Without a prior
    (fewer than two pooled points) the inner detector judges from the start.
    """

    name: str = "coldstart"

    def __init__(
        self,
        detector: str | Detector = "ensemble",
        params: Mapping[str, Any] | None = None,
        prior: RunningStats | Mapping[str, Any] | None = None,
        warmup: int | None = None,
        k: float | None = None,
        prior_points: int | None = None,
    ) -> None:
        if isinstance(detector, str):
            inner, inner_name = build_detector(detector, params), detector
        elif params is not None:
            raise ValueError("params only apply when detector is a name")
        else:
            inner, inner_name = detector, detector.name
        if warmup is None:
            warmup = getattr(inner, "warmup", 30)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 2:
            raise ValueError(f"warmup must be an integer >= 2, got {warmup!r}")
        k = shewhart_k_for_arl(PROVISIONAL_ARL0) if k is None else k
        if isinstance(k, bool) or not isinstance(k, int | float) or not 0.0 < k < math.inf:
            raise ValueError(f"k must be a finite number > 0 (limit width in σ), got {k!r}")
        prior_points = warmup if prior_points is None else prior_points
        if isinstance(prior_points, bool) or not isinstance(prior_points, int) or (
                prior_points < 2):
            raise ValueError(f"prior_points must be an integer >= 2, got {prior_points!r}")
        if prior is None:
            stats = RunningStats()
        elif isinstance(prior, RunningStats):
            stats = prior
        else:
            stats = RunningStats.from_state(prior)
        self.inner = inner
        self.inner_name = inner_name
        self.warmup = warmup
        self.k = float(k)
        self.prior_points = prior_points
        self.prior = RunningStats(stats.count, stats.mean, stats.m2)
        self._basis = _weighted(self.prior, prior_points)  # prior, then the series' own points
        self._own = 0 if self.prior.count >= 2 else warmup  # no prior: the inner one judges
        self._beyond = False  # was the previous provisional point beyond the limits?

    @property
    def provisional(self) -> bool:
        """True while the series has fewer than ``warmup`` points of its own."""
        return self._own < self.warmup

    def update(self, value: float, timestamp: float) -> PointResult:
        """Judge ``value`` on the pooled statistics while provisional, else by the inner one.

        While provisional the inner detector does not learn points beyond the provisional
        limits, so a point flagged then does not widen the limits the series starts with."""
        if self._own >= self.warmup:
            return self.inner.update(value, timestamp)
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite number, got {value!r}")
        self._own += 1
        basis = self._basis
        n = basis.count
        mean = basis.mean if n else value
        if n < 2:
            basis.update(value)
            inner = self.inner.update(value, timestamp)
            return PointResult(0.0, False, mean, -math.inf, math.inf, 0.0, n, provisional=True,
                               details=inner.details)
        sigma = basis.std
        lower, upper = mean - self.k * sigma, mean + self.k * sigma
        if sigma > 0.0:
            z = (value - mean) / sigma
        else:
            z = 0.0 if value == mean else math.copysign(math.inf, value - mean)
        beyond = abs(z) > self.k
        anomaly = beyond and not self._beyond
        self._beyond = beyond
        basis.update(min(max(value, lower), upper))  # as the Shewhart chart's "clip" policy
        details = None if beyond else self.inner.update(value, timestamp).details
        return PointResult(score_from_ratio(abs(z) / self.k), anomaly, mean, lower, upper, z, n,
                           provisional=True, details=details,
                           explanation=limit_crossed("provisional", value, mean, lower, upper)
                           if anomaly else None)

    def state_dict(self) -> dict[str, Any]:
        """The inner detector's name and state, the prior and the provisional chart."""
        return {
            "detector": self.inner_name,
            "inner": self.inner.state_dict(),
            "prior": self.prior.state_dict(),
            "warmup": self.warmup,
            "k": self.k,
            "prior_points": self.prior_points,
            "basis": self._basis.state_dict(),
            "own": self._own,
            "beyond": self._beyond,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector whose future outputs equal those of the one that saved ``state``."""
        inner = restore_detector(str(state["detector"]), state["inner"])
        det = cls(inner, prior=state["prior"], warmup=int(state["warmup"]),
                  k=float(state["k"]), prior_points=int(state["prior_points"]))
        det._basis = RunningStats.from_state(state["basis"])
        det._own = int(state["own"])
        det._beyond = bool(state["beyond"])
        return det

    def __repr__(self) -> str:
        return (f"ColdStart({self.inner!r}, prior={self.prior!r}, warmup={self.warmup!r}, "
                f"k={self.k!r}, prior_points={self.prior_points!r})")


def _weighted(stats: RunningStats, points: int) -> RunningStats:
    """``stats`` with the same mean and variance, counting as at most ``points`` points."""
    if stats.count <= points:
        return RunningStats(stats.count, stats.mean, stats.m2)
    return RunningStats(points, stats.mean, stats.variance * (points - 1))


class GroupPool:
    """Running statistics of every member series of every (group, metric), pooled on demand.

    A member counts towards its group's pool once it has ``warmup`` points of its own; a pool
    needs ``min_members`` such members before :meth:`seed` uses it. Pure and in memory:
    checkpoint it with ``state_dict``; pools of two processes combine with :meth:`merge`.
    """

    def __init__(self, warmup: int = 50, min_members: int = 2, k: float | None = None) -> None:
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 2:
            raise ValueError(f"warmup must be an integer >= 2, got {warmup!r}")
        if isinstance(min_members, bool) or not isinstance(min_members, int) or min_members < 1:
            raise ValueError(f"min_members must be an integer >= 1, got {min_members!r}")
        self.warmup = warmup
        self.min_members = min_members
        self.k = k
        self._members: dict[tuple[str, str], dict[str, RunningStats]] = {}

    def learn(self, group: str, metric: str, member: str, value: float) -> None:
        """Add one in-control point of ``member``'s series of ``metric`` to the pool."""
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite number, got {value!r}")
        members = self._members.setdefault((group, metric), {})
        stats = members.get(member)
        if stats is None:
            stats = members[member] = RunningStats()
        stats.update(value)

    def forget(self, group: str, metric: str, member: str) -> None:
        """Drop a member (e.g. a decommissioned host) from its group's pool."""
        self._members.get((group, metric), {}).pop(member, None)

    def pooled(self, group: str, metric: str, *, exclude: str | None = None) -> RunningStats | None:
        """Merged statistics of the group's warmed-up members (but ``exclude``), or None when
        fewer than ``min_members`` are warm."""
        warm = [s for name, s in sorted(self._members.get((group, metric), {}).items())
                if name != exclude and s.count >= self.warmup]
        if len(warm) < self.min_members:
            return None
        pooled = RunningStats()
        for stats in warm:
            pooled = pooled.merge(stats)
        return pooled

    def seed(self, detector: Detector, group: str, metric: str,
             member: str | None = None) -> Detector:
        """``detector`` wrapped in a :class:`ColdStart` on the group's pool, or unchanged when
        the pool is not ready, or the detector has a configured season or takes vectors (a pool
        of plain values would mislead those; a season found by the detector itself, ``"auto"``,
        is not known yet on a new series)."""
        if getattr(detector, "season", None) not in (None, "auto") or getattr(
                detector, "input_kind", "scalar") != "scalar":
            return detector
        prior = self.pooled(group, metric, exclude=member)
        if prior is None:
            return detector
        return ColdStart(detector, prior=prior, k=self.k)

    def merge(self, other: GroupPool) -> GroupPool:
        """A pool holding both pools' members (statistics of a member in both are merged)."""
        merged = GroupPool(self.warmup, self.min_members, self.k)
        for source in (self, other):
            for group, metric, name, stats in source.members():
                target = merged._members.setdefault((group, metric), {})
                target[name] = target.get(name, RunningStats()).merge(stats)
        return merged

    def members(self) -> Iterator[tuple[str, str, str, RunningStats]]:
        """(group, metric, member, statistics) of every member series, sorted."""
        for (group, metric), members in sorted(self._members.items()):
            for name, stats in sorted(members.items()):
                yield group, metric, name, stats

    def state_dict(self) -> dict[str, Any]:
        """Settings and every member's statistics, JSON-serialisable."""
        return {
            "warmup": self.warmup,
            "min_members": self.min_members,
            "k": self.k,
            "groups": [
                {"group": group, "metric": metric,
                 "members": {name: s.state_dict() for name, s in sorted(members.items())}}
                for (group, metric), members in sorted(self._members.items())
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> GroupPool:
        """Rebuild the pool saved by ``state_dict``."""
        pool = cls(int(state["warmup"]), int(state["min_members"]), state.get("k"))
        for entry in state["groups"]:
            pool._members[(str(entry["group"]), str(entry["metric"]))] = {
                str(name): RunningStats.from_state(s) for name, s in entry["members"].items()}
        return pool
