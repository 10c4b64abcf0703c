"""Seasonal baselines: one inner detector per season bucket, chosen by the event's UTC time.

A season is ``"hour_of_day"`` (24 buckets, one per UTC hour), ``"hour_of_week"`` (168 buckets,
bucket 0 is Monday 00:00–01:00 UTC) or a period in seconds, split into 24 equal buckets whose
phase is counted from the Unix epoch (so ``86400`` buckets exactly like ``"hour_of_day"``).
Each bucket learns only from its own points, so a daily cycle is not an anomaly; the price is
a warm-up per bucket (24 or 168 times as many points before every bucket can alarm).

The charts take the option as ``season=...`` and then delegate to a :class:`Seasonal`:

>>> from vigil.detectors.shewhart import ShewhartChart
>>> chart = ShewhartChart(warmup=5, season="hour_of_day")
>>> for day in range(6):  # quiet at 03:00, busy at 15:00, every day
...     _ = chart.update(10.0 + day % 2, day * 86400.0 + 3 * 3600)
...     _ = chart.update(100.0 + day % 2, day * 86400.0 + 15 * 3600)
>>> r = chart.update(100.0, 6 * 86400.0 + 15 * 3600)
>>> r.anomaly, r.centre, r.details
(False, 100.4, {'bucket': 15.0})
>>> chart.update(100.0, 6 * 86400.0 + 3 * 3600).anomaly
True
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from vigil.detectors.base import Detector, PointResult

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


PROFILE_CHOICES = ("auto", "hour_of_day", "hour_of_week")
"""How a :class:`SeasonalProfile` picks its season: by itself, or always the one named."""
SEASON_NONE, SEASON_DAY, SEASON_WEEK = 0, 1, 2
PROFILE_WEEKS = 4.0
"""The profile, the level and the prediction errors average over about this many weeks."""
EXPLAINED = 0.5
"""``auto`` takes a season only when it predicts the series with at most this share of the
squared error of its level alone: the season must explain at least half of the variance."""
KEEP = 0.75
"""``auto`` keeps a season it follows while its squared error stays at most this share of
the level's (it takes one at :data:`EXPLAINED`)."""
WEEKLY_GAIN = 0.8
"""``auto`` prefers the weekly season to the daily one only when its squared error is at most
this share of the daily one's: the days of the week must differ, not just the noise."""
_WEEK = 7 * 86400.0


class SeasonalProfile:
    """The hour-of-week profile of one series, and the season it follows: none, daily or weekly.

    Each of the 168 hour-of-week buckets (bucket 0 is Monday 00:00–01:00 UTC) keeps the mean of
    its points over about :data:`PROFILE_WEEKS` weeks; the daily profile of an hour is the mean
    of its seven weekly buckets. Three predictions of every point are scored before it is
    learned (prequential): the series' level, the daily profile, the weekly profile. With
    ``choice="auto"`` the profile follows the season whose squared prediction error, averaged
    over the same weeks, is smallest, if it is at most :data:`EXPLAINED` times that of the level
    (and the series has spanned two of its periods; the weekly one must also beat the daily one
    by :data:`WEEKLY_GAIN`), and keeps it while it is at most :data:`KEEP` times that; a series
    without a season, or without real timestamps, keeps none.
    :meth:`component` is the chosen season's deviation from the profile's mean at a time: the
    series minus its component keeps its level and loses its season. The means are kept in
    single precision (168 × 4 bytes).

    >>> profile = SeasonalProfile()
    >>> for i in range(14 * 24):  # two weeks, hourly: high by day, low by night
    ...     hour = 3600.0 * i
    ...     profile.learn(100.0 if 8 <= i % 24 < 20 else 10.0, hour)
    >>> profile.season, round(profile.component(3600.0 * (14 * 24 + 12)), 1)
    (1, 45.0)
    """

    __slots__ = ("choice", "season", "_means", "_unit", "_total", "_filled", "_level", "_seen",
                 "_errors", "_interval", "_first", "_last")

    def __init__(self, choice: str = "auto") -> None:
        if choice not in PROFILE_CHOICES:
            raise ValueError(f"season must be one of {', '.join(map(repr, PROFILE_CHOICES))} or "
                             f"None, got {choice!r}")
        self.choice = choice
        self.season = SEASON_NONE
        """The season followed now: 0 none, 1 daily, 2 weekly."""
        # in units of _unit, a power of two near the series' magnitude, single precision;
        # NaN: no point in the bucket yet
        self._means = array("f", (math.nan,) * 168)
        self._unit = 0.0  # set by the first point
        self._total = 0.0  # sum of the filled buckets' means
        self._filled = 0
        self._level = 0.0
        self._seen = 0
        self._errors = array("d", (0.0, 0.0, 0.0))  # mean squared errors: level, daily, weekly
        self._interval = 0.0  # mean seconds between points
        self._first = math.nan
        self._last = math.nan

    @staticmethod
    def _bucket(timestamp: float) -> int:
        return int((timestamp + _MONDAY) % _WEEK // _HOUR) % 168

    def _daily(self, bucket: int) -> float:
        """The daily profile's value at the bucket's hour (the level if no day has it yet)."""
        hour = bucket % 24
        total, seen = 0.0, 0
        means = self._means
        for day in range(7):
            mean = means[day * 24 + hour]
            if mean == mean:  # not NaN
                total += mean
                seen += 1
        return total * self._unit / seen if seen else self._level

    def _predictions(self, bucket: int) -> tuple[float, float, float]:
        daily = self._daily(bucket)
        weekly = self._means[bucket]
        return (self._level, daily, weekly * self._unit if weekly == weekly else daily)

    def component(self, timestamp: float) -> float:
        """The followed season's deviation from the profile's mean at ``timestamp`` (0 with no
        season)."""
        if self.season == SEASON_NONE or not self._filled:
            return 0.0
        value = self._predictions(self._bucket(timestamp))[self.season]
        return value - self._total / self._filled

    def learn(self, value: float, timestamp: float) -> None:
        """Score the three predictions of ``value``, then learn it; re-choose the season."""
        if not math.isfinite(timestamp):
            raise ValueError(f"timestamp must be a finite number of seconds, got {timestamp!r}")
        bucket = self._bucket(timestamp)
        horizon = self._horizon()
        if self._seen:
            gap = timestamp - self._last
            if gap > 0.0:
                self._interval += (gap - self._interval) / min(self._seen, 1000)
            errors = self._errors
            for model, predicted in enumerate(self._predictions(bucket)):
                errors[model] += ((value - predicted) ** 2 - errors[model]) / min(self._seen,
                                                                                 horizon)
        else:
            self._first = timestamp
        self._last = timestamp
        self._seen += 1
        self._level += (value - self._level) / min(self._seen, horizon)
        self._fit_unit(value)
        unit = self._unit
        old = self._means[bucket]
        if old != old:  # the bucket's first point
            self._means[bucket] = value / unit
            self._total += self._means[bucket] * unit
            self._filled += 1
        else:
            self._means[bucket] = old + (value / unit - old) / self._bucket_points()
            self._total += (self._means[bucket] - old) * unit
        self.season = self._chosen()

    def _fit_unit(self, value: float) -> None:
        """Make ``value`` representable in units of ``_unit`` in single precision: the unit
        starts at the first value's power of two and grows by 2^32 while a value is over
        2^96 units (the means are divided exactly by the same power of two)."""
        if self._unit == 0.0:
            self._unit = math.ldexp(1.0, math.frexp(value)[1]) if value else 1.0
        while abs(value) > math.ldexp(self._unit, 96):
            self._unit = math.ldexp(self._unit, 32)
            self._means = array("f", (math.ldexp(m, -32) if m == m else m for m in self._means))

    def _bucket_points(self) -> float:
        """Points a bucket's mean averages over: the points it has had (about one hour's
        worth per week seen), up to :data:`PROFILE_WEEKS` weeks' worth."""
        per_hour = _HOUR / self._interval if self._interval > 0.0 else 1.0
        weeks = math.ceil((self._last - self._first) / _WEEK + 1e-9)
        return max(1.0, per_hour * min(float(weeks), PROFILE_WEEKS))

    def period_points(self, season: int) -> int:
        """Points in one period of ``season`` at the series' pace (0 for none or an unknown
        pace)."""
        if season == SEASON_NONE or self._interval <= 0.0:
            return 0
        return round((_WEEK if season == SEASON_WEEK else 86400.0) / self._interval)

    def _horizon(self) -> float:
        """Points in :data:`PROFILE_WEEKS` weeks at the series' pace (1,000 until it is known)."""
        if self._interval <= 0.0:
            return 1000.0
        return max(1.0, PROFILE_WEEKS * _WEEK / self._interval)

    def _chosen(self) -> int:
        if self.choice == "hour_of_day":
            return SEASON_DAY
        if self.choice == "hour_of_week":
            return SEASON_WEEK
        span = self._last - self._first
        level, daily, weekly = self._errors
        best, error = SEASON_NONE, level
        if span >= 2 * 86400.0 and daily < error:
            best, error = SEASON_DAY, daily
        if span >= 2 * _WEEK and weekly < WEEKLY_GAIN * error:
            best, error = SEASON_WEEK, weekly
        if error <= EXPLAINED * level:
            return best
        # a season followed is kept while it still explains a quarter of the variance, so a
        # series near the bar does not flip in and out of it (each flip restarts the tests)
        if self.season != SEASON_NONE and self._errors[self.season] <= KEEP * level:
            return self.season
        return SEASON_NONE

    def state_dict(self) -> dict[str, Any]:
        """Everything, JSON-serialisable (an empty bucket as None); :meth:`from_state`
        continues exactly."""
        return {"choice": self.choice, "season": self.season,
                "means": [None if v != v else v for v in self._means], "unit": self._unit,
                "total": self._total, "filled": self._filled, "level": self._level,
                "seen": self._seen, "errors": list(self._errors), "interval": self._interval,
                "first": None if math.isnan(self._first) else self._first,
                "last": None if math.isnan(self._last) else self._last}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SeasonalProfile:
        """Rebuild the profile saved by :meth:`state_dict`."""
        profile = cls(state["choice"])
        means = [math.nan if v is None else float(v) for v in state["means"]]
        errors = [float(v) for v in state["errors"]]
        if len(means) != 168 or len(errors) != 3 or int(state["season"]) not in (
                SEASON_NONE, SEASON_DAY, SEASON_WEEK):
            raise ValueError("bad seasonal profile state: need 168 means, 3 errors, a season")
        profile._means = array("f", means)
        profile._unit = float(state["unit"])
        if not (profile._unit == 0.0 or (math.isfinite(profile._unit)
                                         and math.frexp(profile._unit)[0] == 0.5)):
            raise ValueError(f"bad seasonal profile state: unit {profile._unit!r} is not a power "
                             "of two")
        profile._errors = array("d", errors)
        profile.season = int(state["season"])
        profile._total = float(state["total"])
        profile._filled = int(state["filled"])
        profile._level = float(state["level"])
        profile._seen = int(state["seen"])
        profile._interval = float(state["interval"])
        first, last = state["first"], state["last"]
        profile._first = math.nan if first is None else float(first)
        profile._last = math.nan if last is None else float(last)
        return profile
