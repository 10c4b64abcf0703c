"""Seasonal baselines: one inner detector per season bucket, chosen by the event's UTC time.

A season is ``"hour_of_day"`` (24 buckets, one per UTC hour), ``"hour_of_week"`` (168 buckets,
bucket 0 is Monday 00:00–01:00 UTC) or a period in seconds, split into 24 equal buckets whose
phase is counted from the Unix epoch (so ``86400`` buckets exactly like ``"hour_of_day"``).
Each bucket learns only from its own points, so a daily cycle is not an anomaly; the price is
a warm-up per bucket (24 or 168 times as many points before every bucket can alarm).

The charts take the option as ``season=...`` and then delegate to a :class:`Seasonal`:

>>> from detectors.shewhart import ShewhartChart
>>> chart = ShewhartChart(warmup=3, season="hour_of_day")
>>> for day in range(5):  # quiet at 03:00, busy at 15:00, every day
...     _ = chart.update(10.0 + day % 2, day * 86400.0 + 3 * 3600)
...     _ = chart.update(100.0 + day % 2, day * 86400.0 + 15 * 3600)
>>> r = chart.update(100.0, 5 * 86400.0 + 15 * 3600)
>>> r.anomaly, r.centre, r.details
(False, 100.4, {'bucket': 15.0})
>>> chart.update(100.0, 5 * 86400.0 + 3 * 3600).anomaly
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from detectors.base import Detector, PointResult

SEASONS = ("hour_of_day", "hour_of_week")
"""Named seasons; a number is a period in seconds."""
BUCKETS_PER_PERIOD = 24
"""Buckets of a season given as a period in seconds."""

_HOUR = 3600.0
_MONDAY = 3 * 86400.0  # 1970-01-01 was a Thursday: shift so that buckets start on Monday

Season = str | int | float

D = TypeVar("D", bound=Detector)


def check_season(season: object) -> Season:
    """``season`` if it names a season or is a period > 0 in seconds, else ``ValueError``."""
    if season in SEASONS:
        return str(season)
    if (
        not isinstance(season, bool)
        and isinstance(season, int | float)
        and 0.0 < season < math.inf
    ):
        return season
    raise ValueError(
        f"season must be one of {', '.join(map(repr, SEASONS))} or a period in seconds > 0, "
        f"got {season!r}"
    )


class SeasonBuckets:
    """Maps an epoch-seconds timestamp to its season bucket.

    >>> SeasonBuckets("hour_of_week").bucket(0.0)  # the epoch: Thursday 00:00 UTC
    72
    >>> SeasonBuckets(600).bucket(1234.0), SeasonBuckets(600).count  # 25-second buckets
    (1, 24)
    """

    __slots__ = ("count", "offset", "period", "width")

    def __init__(self, season: Season) -> None:
        season = check_season(season)
        if season == "hour_of_day":
            self.period, self.count, self.offset = 24 * _HOUR, 24, 0.0
        elif season == "hour_of_week":
            self.period, self.count, self.offset = 168 * _HOUR, 168, _MONDAY
        else:
            self.period, self.count, self.offset = float(season), BUCKETS_PER_PERIOD, 0.0
        self.width = self.period / self.count

    def bucket(self, timestamp: float) -> int:
        """The bucket, 0 ≤ bucket < count, of ``timestamp`` (epoch seconds, UTC)."""
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be a finite number of seconds, got {timestamp!r}")
        index = int((timestamp + self.offset) % self.period // self.width)
        return index if index < self.count else self.count - 1  # float rounding at the edge


class Seasonal(Generic[D]):
    """One detector per season bucket, built on first use; delegates each point to its bucket.

    ``make`` builds a fresh inner detector and ``restore`` rebuilds one from its state (both
    picklable, e.g. ``functools.partial(cls, ...)`` and ``cls.from_state``). Each result is
    the inner detector's, with ``details["bucket"]`` added.
    """

    __slots__ = ("_buckets", "_make", "_restore", "inner", "season")

    def __init__(
        self,
        season: Season,
        make: Callable[[], D],
        restore: Callable[[Mapping[str, Any]], D],
    ) -> None:
        self._buckets = SeasonBuckets(season)
        self.season = season
        self._make = make
        self._restore = restore
        self.inner: dict[int, D] = {}
        """The inner detector of every bucket seen so far."""

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score and learn ``value`` in the bucket of ``timestamp``."""
        bucket = self._buckets.bucket(timestamp)
        detector = self.inner.get(bucket)
        if detector is None:
            detector = self._make()
            result = detector.update(value, timestamp)
            self.inner[bucket] = detector  # only once it accepted the value
        else:
            result = detector.update(value, timestamp)
        if result.details is None:
            result.details = {"bucket": float(bucket)}
        else:
            result.details["bucket"] = float(bucket)
        return result

    def state_dict(self) -> dict[str, Any]:
        """The season and each bucket's state, keyed by the bucket number as a string."""
        return {
            "season": self.season,
            "buckets": {str(b): self.inner[b].state_dict() for b in sorted(self.inner)},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Replace the buckets by those saved by ``state_dict`` (the season must match)."""
        if state["season"] != self.season:
            raise ValueError(
                f"saved season {state['season']!r} differs from this detector's {self.season!r}"
            )
        buckets: dict[int, D] = {}
        for key, inner in state["buckets"].items():
            bucket = int(key)
            if not 0 <= bucket < self._buckets.count:
                raise ValueError(f"bucket {key!r} is outside season {self.season!r}")
            buckets[bucket] = self._restore(inner)
        self.inner = buckets
