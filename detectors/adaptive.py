"""The default detector: calibrated judgement of real-world series, learned from the series alone.

Real metrics are not Gaussian noise around a level: they are quantised, flat for hours, on/off,
bursty and heavy-tailed, seasonal, and they wander. The adaptive detector asks two questions of
every point, each answered as a probability under the series' own history, and combines them
into one calibrated score.

**Is the value beyond what the series does?** (the *extreme* test) Against a long memory of
the series' block maxima and minima (:mod:`detectors.extremes`), kept as deviations from the
baseline level: the second-largest block maximum is the edge of what the series does
repeatedly, and the probability per point of a value past it falls off exponentially with the
tail's own scale, but at least a visible share of the series' range and at least its
resolution. Two or a few levels, flat stretches and regular bursts are all inside the memory,
so they are normal; a value that leaves it is rare.

**Has the level moved?** (the *shift* test) A two-sided CUSUM (reference ``k = 0.5``) of the
points' deviations from the baseline in units of its spread, whose in-control average run
length gives the probability (Siegmund's approximation, :func:`shift_evidence`). Real series
wander and their points are correlated, which would make a CUSUM alarm all the time: each
deviation is shrunk by ``√((1 − ρ) / (1 + ρ))`` (ρ the lag-1 autocorrelation of the
deviations, so that their sum has the variance of independent ones), and the test counts only
while the smoothed level (an EWMA of span :data:`SPAN`) is beyond the range of smoothed
levels the series has had, by at least one tail scale, and at least the smoothed level's own
noise (a young series has seen a narrow range of levels). Even so, a series whose deviations
are correlated over long stretches (residuals of an imperfect season, a level that wanders)
reaches CUSUM values that independent points would not: the test keeps its own *record*, a
block-extremes memory of the CUSUM at every point where it counted (0 elsewhere), and its
nominal evidence is lowered by as much as the record's anchor (its second-largest block
maximum) is more frequent in the series than nominally, so a CUSUM is judged against what
this series' CUSUM does. The baseline (mean, spread, ρ) learns every point :data:`LAG` points
late and never from an open anomaly, so a shift is judged against the level before it, not
chased.

**Seasons.** A :class:`~detectors.seasonal.SeasonalProfile` finds a daily or weekly season by
itself (``season="auto"``) and both tests see the series minus its seasonal component; name
``"hour_of_day"`` or ``"hour_of_week"`` to impose one, ``None`` for none.

**Score.** The evidence of a test is ``−log10 p``; the detector's is the larger of the two
(each two-sided), less ``log10 4`` (Bonferroni over the four one-sided tests), so ``p`` is
the probability per point, under the series' history, of evidence at least this strong. The
score is ``r / (1 + r)`` with ``r = log p / log alpha``: 0.5 exactly when ``p = alpha`` (the
alert threshold, default 5e-5: once per 20,000 points), 2/3 when ``p = alpha²``, the same
rarity on every series.

**Episodes.** The first point at the threshold opens an episode and has ``anomaly=True``.
Inside it, the score measures escalation only: values are judged against the memory widened
by the episode's own extremes, the shift test rests, and the score stays below the alert
level (:data:`BELOW_ALERT`): an episode is one alert, however long it lasts, so a threshold on
the score counts episodes as the alerts do. One escalation alerts again: a value extreme
enough to alarm against that widened memory while a *shift* opened the episode, and
:data:`CLEAR_AFTER` points or more after it did, is another event (a spike on a shifted
level), and the episode goes on as an extreme one. The episode
resolves after :data:`CLEAR_AFTER` quiet points (the value within the memory's anchors and
the CUSUM below its quiet level), or, when it has lasted ``rebaseline_after`` points without
that, the series has a new normal: the baseline moves to the episode's level and spread, an
episode opened by an extreme keeps only the memory of its own time, and the closing point has
``rebaselined=True``.

``centre`` is the baseline (plus the season), ``lower``/``upper`` the values at which a point
would be extreme enough to alarm, ``z`` the deviation from the baseline in its spread, ``n``
the points in the memory. ``details`` holds each test's evidence (``extreme``, ``shift``, in
−log10 p after the Bonferroni factor, alert at ``threshold``), the CUSUM against the value
that alarms (``cusum``, ``cusum_limit``), the test that opened an episode (``test``: 1 extreme
high, −1 extreme low, 2 shift), the season followed (``season``: 0 none, 1 daily, 2 weekly)
and the open episode's length (``episode``).

>>> import random
>>> rng = random.Random(3)
>>> det = AdaptiveDetector()
>>> values = [rng.gauss(10, 1) for _ in range(700)]
>>> values[400] = 25.0                              # a spike
>>> values[500:] = [v + 4 for v in values[500:]]    # a lasting shift
>>> results = [det.update(v, 60.0 * t) for t, v in enumerate(values)]
>>> [(t, int(r.details["test"])) for t, r in enumerate(results) if r.anomaly]
[(400, 1), (503, 2)]
>>> [t for t, r in enumerate(results) if r.resolved or r.rebaselined]
[430, 630]
>>> results[630].rebaselined, round(results[-1].centre, 1)
(True, 14.0)
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Self

from vigil.detectors.base import Explanation, PointResult, register
from vigil.detectors.chart import limit_crossed
from vigil.detectors.checks import check_positive
from vigil.detectors.extremes import BLOCKS, BlockExtremes, scale_floor
from vigil.detectors.seasonal import PROFILE_CHOICES, SEASON_NONE, SeasonalProfile
from vigil.detectors.stats import START_POINTS, WARMUP_SCREEN, robust_start

DEFAULT_ALPHA = 5e-5
"""False-alarm probability per point at the alert threshold: one per 20,000 in-control points."""
SPAN = 16
"""Span of the EWMA whose range gates the shift test (points)."""
LAG = 64
"""The baseline learns each point this many points late (longer than a 1σ shift takes to be
judged)."""
CLEAR_AFTER = 30
"""Quiet points that end an anomaly episode."""
REFERENCE = 0.5
"""CUSUM reference value k, in units of the spread (optimal for a 1σ shift)."""
Z_CLIP = 5.0
"""One point's deviation counts at most this much in the CUSUM."""
GATE = 1.0
"""The smoothed level must be this many tail scales (at least its own standard deviations)
beyond the range of smoothed levels for the shift test to count."""
HORIZON = 2000
"""The baseline averages over about this many points."""
WINSOR = 4.0
"""After warm-up, a point moves the baseline as if it were at most this many spreads away."""
LEVEL_BLOCKS = BLOCKS
"""Blocks of the memory of smoothed levels."""
SPREAD_CHANGE = 2.0
"""A re-baseline whose spread differs by this factor or more also restarts the memory of
extremes from the episode (the old extremes were of another spread)."""
TESTS = 4
"""One-sided tests combined (extreme high and low, shift up and down): the Bonferroni factor."""
BELOW_ALERT = math.nextafter(0.5, 0.0)
"""The highest score inside an open episode: just below the alert level (0.5)."""
EXTREME_HIGH, EXTREME_LOW, SHIFT = 1, -1, 2
_LOG_TESTS = math.log10(TESTS)
_SIEGMUND = 1.166
_LN10 = math.log(10.0)
_MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)  # σ / mean absolute deviation, for normal data


def shift_evidence(cusum: float) -> float:
    """−log10 of the false-alarm probability per point of a two-sided CUSUM (k = 0.5) at
    ``cusum``: ``log10 ARL`` by Siegmund's approximation, ``ARL = e^b − b − 1``, ``b = cusum +
    1.166`` (469 for h = 5, the exact value is 465; 0 at 0).

    >>> round(shift_evidence(5.0), 2), round(shift_evidence(0.0), 2)
    (2.67, 0.02)
    """
    b = cusum + _SIEGMUND
    if b > 50.0:
        return (b + math.log1p(-(b + 1.0) * math.exp(-b))) / _LN10
    return math.log10(math.expm1(b) - b)


def cusum_for(evidence: float) -> float:
    """The CUSUM value whose :func:`shift_evidence` is ``evidence`` (its inverse, by bisection).

    >>> round(cusum_for(shift_evidence(7.0)), 6)
    7.0
    """
    low, high = 0.0, _LN10 * max(evidence, 1.0) + 10.0
    for _ in range(60):
        middle = 0.5 * (low + high)
        if shift_evidence(middle) < evidence:
            low = middle
        else:
            high = middle
    return high


class Baseline:
    """The series' level, spread and lag-1 autocorrelation, learned :data:`LAG` points late;
    they start from the first points held and screened together
    (:func:`~detectors.stats.robust_start`), so one wild point cannot set them."""

    __slots__ = ("mean", "spread", "lagged_square", "lagged_product", "last_z", "count",
                 "pending", "start")

    def __init__(self) -> None:
        self.mean = 0.0
        self.spread = 0.0
        """Mean absolute deviation from the mean."""
        self.lagged_square = 0.0  # average z_{t-1}²
        self.lagged_product = 0.0  # average z_{t-1}·z_t
        self.last_z = 0.0
        self.count = 0
        """Points learned (reset to a few by a re-baseline, so the new level settles fast)."""
        self.pending = array("f")
        """Points waiting to be learned, oldest first (single precision: they count 1/2,000)."""
        self.start: list[float] = []
        """The first points, held until there are ``min(START_POINTS, warmup)`` of them."""

    def centre(self, value: float) -> float:
        """The level: the mean, or before it starts the median of the points held (``value``
        if none)."""
        if self.count:
            return self.mean
        return _median(sorted(self.start)) if self.start else value

    def sigma(self, floor: float) -> float:
        """The spread as a standard deviation, at least ``floor``."""
        return max(_MAD_TO_SIGMA * self.spread, floor)

    def autocorrelation(self) -> float:
        """Lag-1 autocorrelation of the learned deviations, in [0, 0.995]."""
        if self.lagged_square <= 0.0:
            return 0.0
        rho = self.lagged_product / self.lagged_square
        return 0.0 if rho < 0.0 else 0.995 if rho > 0.995 else rho

    def offer(self, value: float, warmup: int) -> None:
        """Hold ``value`` among the first points, or queue it and learn the point that has
        waited :data:`LAG` points (at once while fewer than :data:`LAG` points are learned)."""
        if not self.count:
            self.start.append(value)
            if len(self.start) >= min(START_POINTS, warmup):
                for held in robust_start(self.start):  # screened together already
                    self._learn(held, warmup, screen=False)
                self.start = []
            return
        pending = self.pending
        pending.append(value)
        if len(pending) > LAG or self.count < LAG:
            self._learn(pending.pop(0), warmup)

    def _learn(self, x: float, warmup: int, screen: bool = True) -> None:
        self.count += 1
        if self.count == 1:
            self.mean = x
            return
        weight = 1.0 / min(self.count, HORIZON)
        sigma = self.sigma(scale_floor(0.0, self.mean))
        deviation = x - self.mean
        if screen:  # one wild point moves the baseline by a bounded step (wider in warm-up)
            bound = (WINSOR if self.count > warmup else WARMUP_SCREEN) * sigma
            deviation = -bound if deviation < -bound else bound if deviation > bound \
                else deviation
        self.mean += weight * deviation
        self.spread += weight * (abs(deviation) - self.spread)
        z = deviation / sigma  # clipped: the first points, judged with a spread still
        z = Z_CLIP if z > Z_CLIP else -Z_CLIP if z < -Z_CLIP else z  # near 0, must not dominate
        self.lagged_square += weight * (self.last_z * self.last_z - self.lagged_square)
        self.lagged_product += weight * (self.last_z * z - self.lagged_product)
        self.last_z = z

    def move(self, level: float, spread: float) -> None:
        """Accept ``level`` and ``spread`` as the new normal (a re-baseline)."""
        self.mean, self.spread = level, spread
        self.count = min(self.count, SPAN)
        self.pending = array("f")

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "spread": self.spread, "lagged_square": self.lagged_square,
                "lagged_product": self.lagged_product, "last_z": self.last_z,
                "count": self.count, "pending": list(self.pending), "start": list(self.start)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Baseline:
        baseline = cls()
        for name in ("mean", "spread", "lagged_square", "lagged_product", "last_z"):
            setattr(baseline, name, float(state[name]))
        baseline.count = int(state["count"])
        baseline.pending = array("f", (float(v) for v in state["pending"]))
        baseline.start = [float(v) for v in state.get("start", [])]
        if baseline.count < 0 or len(baseline.pending) > LAG or len(baseline.start) >= \
                START_POINTS or (baseline.count and baseline.start) or not all(
                math.isfinite(v) for v in (baseline.mean, baseline.spread, *baseline.pending,
                                           *baseline.start)):
            raise ValueError("bad adaptive baseline state")
        return baseline


class Episode:
    """An open anomaly episode: how long, how quiet, what opened it, where it went, and the
    range it has to come back to."""

    __slots__ = ("length", "quiet", "test", "level", "spread", "high", "low", "normal_low",
                 "normal_high")

    def __init__(self, test: int, value: float, spread: float,
                 normal: tuple[float, float]) -> None:
        self.length = 1
        self.quiet = 0
        self.test = test
        """What opened it: 1 extreme high, −1 extreme low, 2 shift."""
        self.level = value
        """EWMA (span :data:`SPAN`) of its values."""
        self.spread = spread
        """Mean absolute deviation of its values from that level."""
        self.high = value
        self.low = value
        self.normal_low, self.normal_high = normal
        """The memory's anchors when it opened (deviations from the baseline): the values
        are back to normal inside them."""

    def add(self, value: float, deviation: float, quiet: bool) -> None:
        """One more point: ``quiet`` if its other tests are quiet; it must also be inside the
        range it came from."""
        self.length += 1
        self.spread += (abs(value - self.level) - self.spread) / self.length
        self.level += (value - self.level) / SPAN
        self.high = max(self.high, value)
        self.low = min(self.low, value)
        back = self.normal_low <= deviation <= self.normal_high
        self.quiet = self.quiet + 1 if quiet and back else 0

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Episode:
        episode = cls(int(state["test"]), float(state["level"]), float(state["spread"]),
                      (float(state["normal_low"]), float(state["normal_high"])))
        episode.length, episode.quiet = int(state["length"]), int(state["quiet"])
        episode.high, episode.low = float(state["high"]), float(state["low"])
        if episode.test not in (EXTREME_HIGH, EXTREME_LOW, SHIFT) or episode.length < 1 \
                or not 0 <= episode.quiet < episode.length:
            raise ValueError(f"bad adaptive episode state {dict(state)!r}")
        return episode


@register("adaptive")
class AdaptiveDetector:
    """Extreme and shift tests against the series' own history, with a calibrated score."""

    name: str = "adaptive"
    __slots__ = ("alpha", "season", "visibility", "warmup", "rebaseline_after", "_limits",
                 "_profile", "_values", "_levels", "_baseline", "_episode", "_cusum_up",
                 "_cusum_down", "_ewma", "_previous", "_resolution", "_seen", "_shifts")

    def __init__(
        self,
        alpha: float = DEFAULT_ALPHA,
        season: str | None = "auto",
        visibility: float = 0.02,
        warmup: int = 32,
        rebaseline_after: int = 128,
    ) -> None:
        alpha = check_positive("alpha", alpha, "false-alarm probability per point")
        if not alpha < 0.5:
            raise ValueError(f"alpha must be a probability below 0.5, got {alpha!r}")
        self.alpha = alpha
        if season is not None and season not in PROFILE_CHOICES:
            raise ValueError(f"season must be one of {', '.join(map(repr, PROFILE_CHOICES))} "
                             f"or None, got {season!r}")
        self.season = season
        self.visibility = check_positive("visibility", visibility,
                                         "share of the range an extreme must clear", zero=True)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 2:
            raise ValueError(f"warmup must be an integer >= 2, got {warmup!r}")
        self.warmup = warmup
        if isinstance(rebaseline_after, bool) or not isinstance(rebaseline_after, int) \
                or rebaseline_after <= CLEAR_AFTER:
            raise ValueError(f"rebaseline_after must be an integer > {CLEAR_AFTER} (the quiet "
                             f"wait), got {rebaseline_after!r}")
        self.rebaseline_after = rebaseline_after
        self._limits = _limits(alpha)
        self._profile = None if season is None else SeasonalProfile(season)
        self._values = BlockExtremes()  # deviations of the (deseasonalised) values
        self._levels = _level_memory()  # deviations of the EWMA, 1 in SPAN
        self._shifts = _shift_memory()  # the shift test's CUSUM where it counted, else 0
        self._baseline = Baseline()
        self._episode: Episode | None = None
        self._cusum_up = 0.0
        self._cusum_down = 0.0
        self._ewma = math.nan
        self._previous = math.nan
        self._resolution = math.inf  # smallest step between two different values
        self._seen = 0

    # --- scoring ------------------------------------------------------------------------

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against the series' history, then learn it."""
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite number, got {value!r}")
        threshold, target, alarm_cusum, quiet_cusum = self._limits
        profile = self._profile
        component = 0.0
        season = SEASON_NONE
        if profile is not None:
            season = profile.season
            component = profile.component(timestamp)
        x = value - component
        baseline = self._baseline
        mean = baseline.centre(x)
        floor = scale_floor(0.0 if self._resolution == math.inf else self._resolution, mean)
        sigma = baseline.sigma(floor)
        episode = self._episode
        if profile is not None and baseline.count:
            # the profile learns the value screened like the baseline's warm-up: one wild
            # point moves a bucket's mean by a bounded step
            anchors = self._values.anchors()
            bound = WARMUP_SCREEN * max(sigma, 0.0 if anchors is None else anchors[1] - anchors[0])
            expected = mean + component
            profile.learn(min(max(value, expected - bound), expected + bound), timestamp)

        # the extreme test, against the memory widened by the open episode's extremes
        deviation = x - mean
        tail = self._values.tail(deviation, self.visibility, floor, target,
                                 None if episode is None else
                                 (episode.low - mean, episode.high - mean))
        extreme = tail.evidence

        # the shift test, counting only while the smoothed level is beyond its range
        ewma = x if math.isnan(self._ewma) else self._ewma + (x - self._ewma) / SPAN
        self._ewma = ewma
        z = deviation / sigma
        rho = baseline.autocorrelation()
        # the smoothed level's own noise: the standard deviation of an EWMA of span SPAN of
        # points with this spread and lag-1 autocorrelation
        level_noise = max(floor, sigma * math.sqrt((1.0 + rho) / ((1.0 - rho) * (2 * SPAN - 1))))
        step = (Z_CLIP if z > Z_CLIP else -Z_CLIP if z < -Z_CLIP else z) \
            * math.sqrt((1.0 - rho) / (1.0 + rho))
        up = max(0.0, self._cusum_up + step - REFERENCE)
        down = max(0.0, self._cusum_down - step - REFERENCE)
        if episode is None and (baseline.count < 2 * LAG or self._seen < self.warmup):
            # no test yet (a young baseline, or a warm-up after a season
            # restart, whose baseline is ready long before): nothing accumulates
            up = down = 0.0
        cusum = up if up > down else down
        shift = 0.0
        counted = 0.0  # the CUSUM where the test counts, signed by its direction
        if episode is None and baseline.count >= 2 * LAG and self._seen >= SPAN \
                and self._levels.tail(ewma - mean, self.visibility, level_noise).beyond >= GATE:
            counted = cusum if up > down else -cusum
            shift = shift_evidence(cusum) - self._excess(up > down)

        evidence = max(extreme, shift) - _LOG_TESTS
        opened = escalated = resolved = rebaselined = warming = False
        test = 0
        explanation = None
        if episode is None:
            warming = self._seen < self.warmup
            if not warming and evidence >= threshold:
                opened = True
                test = SHIFT if shift >= extreme else tail.side
                anchors = self._values.anchors() or (-math.inf, math.inf)
                episode = self._episode = Episode(test, x, baseline.spread, anchors)
                if test == SHIFT:
                    explanation = Explanation("shift up" if up > down else "shift down", cusum,
                                              alarm_cusum)
                    up = down = 0.0
                else:
                    explanation = limit_crossed(
                        "extreme high" if test == EXTREME_HIGH else "extreme low", value,
                        mean + component, tail.lower + mean + component,
                        tail.upper + mean + component)
        else:
            if episode.test == SHIFT and tail.side and extreme >= target \
                    and episode.length >= CLEAR_AFTER:
                # a value far beyond a level that shifted a while ago is another event: it
                # alerts, and the episode goes on as an extreme one (later ones do not alert)
                escalated = True
                test = episode.test = tail.side
                explanation = limit_crossed(
                    "extreme high" if test == EXTREME_HIGH else "extreme low", value,
                    mean + component, tail.lower + mean + component,
                    tail.upper + mean + component)
            episode.add(x, deviation, cusum < quiet_cusum)
            resolved = episode.quiet >= CLEAR_AFTER
            rebaselined = not resolved and episode.length >= self.rebaseline_after
        self._cusum_up, self._cusum_down = up, down
        if (episode is None or opened) and baseline.count >= 2 * LAG:
            self._shifts.learn(counted)
        length = 0 if episode is None else episode.length

        # learn: the memories everything, the baseline what is not in an episode
        self._seen += 1
        self._values.learn(deviation)
        if self._seen % SPAN == 0:
            self._levels.learn(ewma - mean)
        if not math.isnan(self._previous) and x != self._previous:
            self._resolution = min(self._resolution, abs(x - self._previous))
        self._previous = x
        if episode is None:
            baseline.offer(x, self.warmup)
        if resolved:
            self._episode = None
            self._cusum_up = self._cusum_down = 0.0
        elif rebaselined:
            self._rebaseline()
        if profile is not None and (profile.season == SEASON_NONE) != (season == SEASON_NONE):
            self._restart(max(profile.period_points(season),
                              profile.period_points(profile.season)))

        details = {"extreme": max(0.0, extreme - _LOG_TESTS),
                   "shift": max(0.0, shift - _LOG_TESTS), "threshold": threshold,
                   "extreme_score": _score(extreme - _LOG_TESTS, threshold),
                   "shift_score": _score(shift - _LOG_TESTS, threshold),
                   "cusum": cusum, "cusum_limit": alarm_cusum, "test": float(test),
                   "season": float(season), "episode": float(length)}
        score = _score(evidence, threshold)
        if warming or (length and not (opened or escalated)):
            score = min(score, BELOW_ALERT)
        return PointResult(score, opened or escalated, mean + component,
                           tail.lower + mean + component, tail.upper + mean + component, z,
                           self._values.count, resolved=resolved, rebaselined=rebaselined,
                           details=details, explanation=explanation)

    def _excess(self, upward: bool) -> float:
        """How much the series' own record of the shift test's CUSUM (in that direction)
        overstates its nominal evidence: the nominal evidence of the record's anchor less the
        anchor's rarity in the record (0 if the record is as rare as nominal or rarer)."""
        shifts = self._shifts
        anchors = shifts.anchors()
        if anchors is None:
            return 0.0
        anchor = anchors[1] if upward else -anchors[0]
        if anchor <= 0.0:
            return 0.0
        return max(0.0, shift_evidence(anchor) - shifts.anchor_evidence())

    def _rebaseline(self) -> None:
        """Accept the episode's level and spread as the new normal. The memories hold
        deviations from the level: the episode's are moved to the new level, and when the
        episode changed the spread they replace the older ones."""
        episode = self._episode
        assert episode is not None  # noqa: S101 - only called with an open episode
        baseline = self._baseline
        spread = baseline.spread
        same = spread / SPREAD_CHANGE < episode.spread < spread * SPREAD_CHANGE
        if not same:
            self._values.keep_recent(episode.length)
        moved = baseline.mean - episode.level if baseline.count else 0.0
        self._values.shift_recent(episode.length, moved)
        self._levels.shift_recent(-(-episode.length // SPAN), moved)
        baseline.move(episode.level, episode.spread)
        self._episode = None
        self._cusum_up = self._cusum_down = 0.0

    def _restart(self, settle: int) -> None:
        """Forget what was learned before the series gained or lost a season: the values the
        tests see are another stream now (only the resolution is kept). The warm-up is longer
        by ``settle`` points (a period of the season): what is left of the series after its
        season varies with the season's phase, and the tests alarm once they have seen every
        phase."""
        self._values = BlockExtremes()
        self._levels = _level_memory()
        self._shifts = _shift_memory()
        self._baseline = Baseline()
        self._episode = None
        self._cusum_up = self._cusum_down = 0.0
        self._ewma = math.nan
        self._seen = -settle  # a warm-up again

    # --- state --------------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "season": self.season, "visibility": self.visibility,
                "warmup": self.warmup, "rebaseline_after": self.rebaseline_after}

    def state_dict(self) -> dict[str, Any]:
        """Parameters, memories, baseline and episode; JSON-serialisable, exact round-trip."""
        return {
            **self._params(),
            "profile": None if self._profile is None else self._profile.state_dict(),
            "values": self._values.state_dict(),
            "levels": self._levels.state_dict(),
            "shifts": self._shifts.state_dict(),
            "baseline": self._baseline.state_dict(),
            "episode": None if self._episode is None else self._episode.state_dict(),
            "cusum": [self._cusum_up, self._cusum_down],
            "ewma": None if math.isnan(self._ewma) else self._ewma,
            "previous": None if math.isnan(self._previous) else self._previous,
            "resolution": None if math.isinf(self._resolution) else self._resolution,
            "seen": self._seen,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector whose future outputs equal those of the one that saved it."""
        det = cls(**{name: state[name] for name in ("alpha", "season", "visibility", "warmup",
                                                    "rebaseline_after")})
        if state["profile"] is not None:
            if det._profile is None:
                raise ValueError("bad adaptive state: a seasonal profile without a season")
            det._profile = SeasonalProfile.from_state(state["profile"])
        det._values = BlockExtremes.from_state(state["values"])
        det._levels = BlockExtremes.from_state(state["levels"])
        det._shifts = BlockExtremes.from_state(state["shifts"])
        det._baseline = Baseline.from_state(state["baseline"])
        if state["episode"] is not None:
            det._episode = Episode.from_state(state["episode"])
        up, down = (float(v) for v in state["cusum"])
        if not (0.0 <= up < math.inf and 0.0 <= down < math.inf):
            raise ValueError(f"bad adaptive state: CUSUM sums {up!r}, {down!r}")
        det._cusum_up, det._cusum_down = up, down
        det._ewma = math.nan if state["ewma"] is None else float(state["ewma"])
        det._previous = math.nan if state["previous"] is None else float(state["previous"])
        resolution = state["resolution"]
        det._resolution = math.inf if resolution is None else float(resolution)
        det._seen = int(state["seen"])
        return det

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"AdaptiveDetector({args})"


def _level_memory() -> BlockExtremes:
    """The memory of smoothed levels: one EWMA value in :data:`SPAN` points, in half as many
    blocks as the memory of values and without runners-up (it only bounds the levels seen)."""
    return BlockExtremes(runners_up=False, capacity=LEVEL_BLOCKS, single=True)


def _shift_memory() -> BlockExtremes:
    """The record of the shift test: its CUSUM at each point where the test counted, signed by
    direction (0 elsewhere); without runners-up (only its anchors are used), in single
    precision."""
    return BlockExtremes(runners_up=False, single=True)


@lru_cache(maxsize=64)
def _limits(alpha: float) -> tuple[float, float, float, float]:
    """For ``alpha``: the evidence at the alert threshold, one test's evidence there (with the
    Bonferroni factor), the CUSUM that reaches it, and the CUSUM below which a point is quiet
    (half that evidence). Shared by every detector with that ``alpha``."""
    threshold = -math.log10(alpha)
    target = threshold + _LOG_TESTS
    return threshold, target, cusum_for(target), cusum_for(0.5 * target)


def _median(ordered: list[float]) -> float:
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else 0.5 * (ordered[half - 1] + ordered[half])


def _score(evidence: float, threshold: float) -> float:
    """``r / (1 + r)`` with ``r = evidence / threshold`` (both −log10 of a probability)."""
    if evidence <= 0.0:
        return 0.0
    ratio = evidence / threshold
    return ratio / (1.0 + ratio)
