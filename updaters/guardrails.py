"""Guardrails around a learner: it follows a changing world and still refuses poison.

A concept change and a poisoning both raise the loss; what tells them apart is how the
models compare on the same labelled events and what the data looks like. Per labelled event
:class:`GuardedLearner`:

1. skips invalid events (a learner feature that is not a finite number, a label
   ``encode_label`` refuses) and those the caller flags as anomalous — scored, never learned;
2. scores the event with the maintained model M before learning it (prequential loss), and
   with R, a frozen reference: the last good snapshot of M;
3. **screens** it against the data M has learned from (:class:`DataScreen`) and holds it
   back when it is implausible — a feature, or a regression label, more than ``iqrs``
   spreads (:class:`QuartileRange`) beyond the quartiles of the accepted values: a gross
   error such as a stuck sensor or a unit mix-up; or a label repeated in a run that the
   accepted labels make improbable (a stuck label feed). Held back, it changes nothing. A
   held-back kind of data that persists (more than half of the events, for ``accept_after``
   events) is the new normal: the screen restarts from it (a ``rebaseline`` event);
4. **bounds each regression label's influence**: M learns the label moved to within
   ``influence`` × the running median absolute residual of its prediction (Huber's bound).
   The scale follows a real change within some tens of events; a minority of wild labels
   cannot move it. A classifier's log-loss gradient is bounded by construction;
5. **rolls back only when rolling back helps**: a CUSUM of M's block loss in excess of R's on
   the same events (:class:`ExcessLoss`). Under a concept change every model gets worse and
   learning makes M better than R, so it stays quiet; a model that learned poison falls
   behind R on the labels that follow. Then M is restored to R (a ``rollback`` event);
6. charts M's loss (:class:`~updaters.performance.LossChart`): a rise while M is not behind R
   is a **concept change** (a ``change`` event, for a performance alert): learning goes on,
   the chart restarts at the new level, and a learner with a decaying learning rate restarts
   its schedule (``restart_schedule``), so that it learns fast again;
7. learns the event; ``max_step`` caps each update's parameter change (set on the learner,
   which must support it: the SGD learners do).

Snapshots: every ``snapshot_every`` learned events without a rollback or a change, the
snapshot taken at the start of that span becomes R and a new one is taken — so R has been
followed by at least one quiet span. The first R is the learner as it was given (e.g.
warm-started). Snapshots are copies of the learner object, so rollback works for every
learner, river's included. A rollback replaces the learner object: read ``guarded.learner``
afresh rather than keeping a reference to it. After ``max_rollbacks`` rollbacks without a
quiet span between them, M is taken as it is (R becomes M: a ``rebaseline`` event).

State: the learner's type never comes from a saved state. :meth:`GuardedLearner.from_state`
takes a ``restore`` function from the caller, who builds learners from its configuration, and
reads everything else through :class:`~updaters.statecheck.StateReader`: a state that is not
exactly one this class writes raises ``ValueError``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from vigil.detectors import PointResult
from vigil.detectors.checks import check_positive
from vigil.updaters.base import Label, Learner, RowLearner
from vigil.updaters.performance import LOSSES, LossChart, check_block, loss_function
from vigil.updaters.statecheck import StateReader, check_number, restored_exactly

FloatArray = NDArray[np.float64]

EVENT_KINDS = ("rollback", "change", "rebaseline")
HOLD_REASONS = ("feature", "label", "stuck_label")
"""Why the screen held an event back: a feature or a label out of range, a stuck label run."""
MIN_COUNT = 30
"""Accepted events a statistic of the screen (or the residual scale) needs before it is used."""
MAX_SCREENED = 1_000
"""Features screened, at most (a learner without ``feature_names`` screens what it sees)."""
BANK_MIN_FEATURES = 100
"""From this many named features on, the screen keeps them in numpy arrays (a
:class:`QuartileBank`): the loop over features costs more beyond ~80 of them."""
SCALE_STEP = 0.2
"""Step of the running median of absolute residuals, in log space (10× in ~12 events)."""
_SCALE_UP, _SCALE_DOWN = math.exp(SCALE_STEP), math.exp(-SCALE_STEP)
QUARTILE_STEP = 0.01
INNER_FENCE = 3.0
"""The screen's quartiles move by steps of QUARTILE_STEP spreads; values within INNER_FENCE
spreads of them widen its range (see :class:`QuartileRange`)."""


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class GuardEvent:
    """A rollback, a concept change or a re-baselining, to be turned into an alert."""

    kind: str
    """``"rollback"`` (R was restored), ``"change"`` (a concept change: learning goes on) or
    ``"rebaseline"`` (held-back data or a run of rollbacks accepted as the new normal)."""
    timestamp: float
    loss: float
    """M's mean loss over the block that raised the event (NaN for the screen's)."""
    baseline: float
    """What that loss was compared with: R's over the block for a rollback, the chart's
    in-control level for a change."""
    n_updates: int
    """Updates of the learner when the event came."""
    restored_n_updates: int
    """Updates of the learner after the event (R's, for a rollback)."""
    rollbacks: int
    """Rollbacks so far, this one included."""
    reason: str = ""
    """For a ``rebaseline``: the screen's hold reason, or ``"rollbacks"``."""


@dataclass(slots=True)
class GuardResult:
    """What happened to one labelled event."""

    prediction: float
    """M's prediction before learning (NaN when the features are invalid)."""
    loss: float | None
    """Prequential loss of that prediction (None when the event is invalid)."""
    learned: bool
    skipped: str | None = None
    """``"invalid"``, ``"anomalous"`` or a hold reason when the event was not learned."""
    event: GuardEvent | None = None
    chart: PointResult | None = None
    """The loss chart's result when this event completed a block."""
    reference_loss: float | None = None
    """R's loss on the event (None when it was not compared)."""
    target: float = math.nan
    """The label as the loss takes it (``encode_label``; NaN when the event is invalid)."""


def _finite(value: object) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    )


class QuartileRange:
    """Where accepted values lie, and which values lie far outside: gross errors.

    The spread ``w`` is the larger of the interquartile range and a quarter of the range;
    a value more than ``widths`` × ``w`` beyond the quartiles is far out (none before
    ``MIN_COUNT`` values, nor while ``w`` is 0). The quartiles are exact over the first
    ``MIN_COUNT`` values, then each value moves them a step of ``QUARTILE_STEP`` × ``w`` (a
    stochastic approximation); the range widens only with values within ``INNER_FENCE`` ×
    ``w`` of the quartiles. So a minority of wild values cannot widen the spread — were it
    the range of all accepted values, every wild value let in would let wilder ones in, until
    the screen stood open — while values on few levels (a flag, a rate that moves in steps:
    quartiles that coincide) are judged by their range.

    >>> spread = QuartileRange(100.0)
    >>> for i in range(100):
    ...     spread.add(float(i % 10))
    >>> spread.outside(400.0), spread.outside(-400.0), spread.outside(1e6)
    (False, False, True)
    """

    __slots__ = ("widths", "count", "q1", "q3", "low", "high", "first", "fence_low",
                 "fence_high")

    def __init__(self, widths: float) -> None:
        self.widths = widths
        self.count = 0
        self.q1 = self.q3 = self.low = self.high = 0.0
        self.first: list[float] = []
        """The values before the quartiles are estimated."""
        self.fence_low, self.fence_high = -math.inf, math.inf
        """Values outside are far out (derived from the rest, kept for speed)."""

    def spread(self) -> float:
        """The larger of the interquartile range and a quarter of the range."""
        return max(self.q3 - self.q1, (self.high - self.low) / 4.0)

    def outside(self, value: float) -> bool:
        """``value`` is far out."""
        return not self.fence_low <= value <= self.fence_high

    def add(self, value: float) -> None:
        """Learn one accepted value."""
        count = self.count = self.count + 1
        q1, q3, low, high = self.q1, self.q3, self.low, self.high
        if count <= MIN_COUNT:
            if count == 1 or value < low:
                self.low = value
            if count == 1 or value > high:
                self.high = value
            if count < MIN_COUNT:
                self.first.append(value)
                return
            ordered = sorted([*self.first, value])
            q1, q3 = self.q1, self.q3 = _quantile(ordered, 0.25), _quantile(ordered, 0.75)
            self.first = []
        else:
            spread = q3 - q1
            quarter = (high - low) * 0.25
            if quarter > spread:
                spread = quarter
            reach = INNER_FENCE * spread
            if spread <= 0.0 or q1 - reach <= value <= q3 + reach:
                if value < low:
                    self.low = value
                elif value > high:
                    self.high = value
            step = QUARTILE_STEP * spread  # towards the quartiles: 1/4 and 3/4 of the mass
            q1 += -0.75 * step if value < q1 else 0.25 * step
            q3 += -0.25 * step if value < q3 else 0.75 * step
            if q1 > q3:
                q1 = q3 = (q1 + q3) / 2.0
            self.q1, self.q3 = q1, q3
        spread = q3 - q1
        quarter = (self.high - self.low) * 0.25
        slack = self.widths * (quarter if quarter > spread else spread)
        if slack > 0.0:
            self.fence_low, self.fence_high = q1 - slack, q3 + slack

    def _fence(self) -> None:
        slack = self.widths * self.spread()
        if self.count < MIN_COUNT or slack <= 0.0:
            self.fence_low, self.fence_high = -math.inf, math.inf
        else:
            self.fence_low, self.fence_high = self.q1 - slack, self.q3 + slack

    def state(self) -> list[Any]:
        """[count, q1, q3, low, high, first values]; JSON-serialisable."""
        return [self.count, self.q1, self.q3, self.low, self.high, list(self.first)]

    @classmethod
    def from_list(cls, values: object, widths: float, where: str) -> QuartileRange:
        """Rebuild from :meth:`state`; ValueError unless it is consistent."""
        if not isinstance(values, list) or len(values) != 6 or not isinstance(values[5], list):
            raise ValueError(f"bad {where}: expected [count, q1, q3, low, high, first values]")
        count, first = values[0], values[5]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"bad {where}: the count must be an integer >= 0, got {count!r}")
        q1, q3, low, high = (check_number(v, where) for v in values[1:5])
        spread = cls(widths)
        spread.count, spread.q1, spread.q3, spread.low, spread.high = count, q1, q3, low, high
        spread.first = [check_number(v, where) for v in first]
        expected = count if count < MIN_COUNT else 0
        if len(first) != expected or not (q1 <= q3 and low <= high) or (
                count == 0 and (q1, q3, low, high) != (0.0, 0.0, 0.0, 0.0)):
            raise ValueError(f"bad {where}: inconsistent quartiles, range or first values")
        spread._fence()
        return spread


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly (numpy's default)."""
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


class QuartileBank:
    """The :class:`QuartileRange` of many named features in numpy arrays: the same numbers,
    the same decisions, for learners with ``BANK_MIN_FEATURES`` features or more."""

    def __init__(self, names: Sequence[str], widths: float) -> None:
        self.names = list(names)
        d = len(self.names)
        self.widths = widths
        self.count = np.zeros(d, dtype=np.int64)
        self.q1, self.q3, self.low, self.high = (np.zeros(d) for _ in range(4))
        self.first = np.zeros((MIN_COUNT, d))
        self.fence_low, self.fence_high = np.full(d, -math.inf), np.full(d, math.inf)
        self._steady = False
        """Every feature is past its first values."""
        self._get = itemgetter(*self.names)

    def values(self, x: Mapping[str, float]) -> FloatArray:
        """The features of ``x`` in order, NaN for a missing one."""
        try:
            return np.fromiter(self._get(x), np.float64, len(self.names))
        except KeyError:
            return np.array([x.get(name, math.nan) for name in self.names])

    def outside(self, values: FloatArray) -> bool:
        """Some present value is far out (NaN, missing, never is)."""
        return bool(((values < self.fence_low) | (values > self.fence_high)).any())

    def add(self, values: FloatArray) -> None:
        """Learn the present values, as :meth:`QuartileRange.add` each."""
        present = ~np.isnan(values)
        if self._steady and present.all():  # the common case, in place
            self.count += 1
            self._learn(values)
            return
        count = self.count + present
        early = np.flatnonzero(present & (count <= MIN_COUNT))
        if early.size:  # the first values: kept, and the range widened by each
            v, c = values[early], count[early]
            self.first[c - 1, early] = v
            low, high = self.low[early], self.high[early]
            self.low[early] = np.where((c == 1) | (v < low), v, low)
            self.high[early] = np.where((c == 1) | (v > high), v, high)
            for j in early[c == MIN_COUNT].tolist():  # then the exact quartiles
                ordered = sorted(self.first[:, j].tolist())
                q1, q3 = self.q1[j], self.q3[j] = (_quantile(ordered, 0.25),
                                                   _quantile(ordered, 0.75))
                slack = self.widths * max(q3 - q1, (self.high[j] - self.low[j]) * 0.25)
                if slack > 0.0:
                    self.fence_low[j], self.fence_high[j] = q1 - slack, q3 + slack
        late = present & (count > MIN_COUNT)
        self.count = count
        self._steady = bool((count >= MIN_COUNT).all())
        if late.any():
            self._learn(values, late)

    def _learn(self, v: FloatArray, late: NDArray[np.bool_] | None = None) -> None:
        """The step of :meth:`QuartileRange.add` after the first values, for the features in
        ``late`` (all when None)."""
        q1, q3, low, high = self.q1, self.q3, self.low, self.high
        spread = q3 - q1
        np.maximum(spread, (high - low) * 0.25, out=spread)
        reach = INNER_FENCE * spread
        widen = ((q1 - reach <= v) & (v <= q3 + reach)) | (spread <= 0.0)
        if late is not None:
            widen &= late
        np.minimum(low, v, out=low, where=widen)
        np.maximum(high, v, out=high, where=widen)
        step = QUARTILE_STEP * spread
        move1 = np.where(v < q1, -0.75 * step, 0.25 * step)
        move3 = np.where(v < q3, -0.25 * step, 0.75 * step)
        if late is not None:
            move1[~late] = 0.0
            move3[~late] = 0.0
        q1 += move1
        q3 += move3
        crossed = q1 > q3
        if crossed.any():
            middle = (q1 + q3) / 2.0
            q1[crossed] = middle[crossed]
            q3[crossed] = middle[crossed]
        slack = q3 - q1
        np.maximum(slack, (high - low) * 0.25, out=slack)
        slack *= self.widths
        fenced = slack > 0.0
        if late is not None:
            fenced &= late
        np.subtract(q1, slack, out=self.fence_low, where=fenced)
        np.add(q3, slack, out=self.fence_high, where=fenced)

    def range(self, j: int) -> QuartileRange:
        """Feature ``j``'s statistics as a :class:`QuartileRange` (a copy)."""
        count = int(self.count[j])
        spread = QuartileRange.from_list(
            [count, float(self.q1[j]), float(self.q3[j]), float(self.low[j]),
             float(self.high[j]), self.first[:count, j].tolist() if count < MIN_COUNT else []],
            self.widths, f"screen state: {self.names[j]}")
        return spread

    def _put(self, j: int, spread: QuartileRange) -> None:
        self.count[j] = spread.count
        self.q1[j], self.q3[j], self.low[j], self.high[j] = (spread.q1, spread.q3, spread.low,
                                                             spread.high)
        self.first[:len(spread.first), j] = spread.first
        self.fence_low[j], self.fence_high[j] = spread.fence_low, spread.fence_high

    def state(self) -> dict[str, list[Any]]:
        """Per feature, what :meth:`QuartileRange.state` gives."""
        return {name: self.range(j).state() for j, name in enumerate(self.names)}

    @classmethod
    def from_ranges(cls, ranges: Mapping[str, QuartileRange], widths: float) -> QuartileBank:
        bank = cls(list(ranges), widths)
        for j, spread in enumerate(ranges.values()):
            bank._put(j, spread)
        bank._steady = bool((bank.count >= MIN_COUNT).all())
        return bank


class DataScreen:
    """Holds back events unlike the data accepted so far; restarts when they persist.

    Per screened feature (and the label, for regressors) a :class:`QuartileRange` of the
    accepted values: a value more than ``iqrs`` spreads (interquartile ranges, or quarter
    ranges if larger) beyond the quartiles is out of range. Labels: a run of equal labels is
    a stuck feed when its probability at the repeat rate of the accepted labels (a Beta
    posterior from their repeats, so a short history is judged leniently) falls below
    ``run_alpha``. ``pressure`` rises by one per held
    event and falls by one per accepted one; at ``accept_after`` the screen restarts.

    >>> screen = DataScreen(["a"], regression=True, accept_after=50)
    >>> for i in range(100):
    ...     screen.accept({"a": float(i % 10)}, float(i % 7))
    >>> screen.check({"a": 5.0}, 3.0), screen.check({"a": 1e6}, 3.0)
    (None, 'feature')
    >>> screen.check({"a": 5.0}, -5000.0)
    'label'
    """

    def __init__(self, feature_names: Sequence[str] | None, *, regression: bool,
                 iqrs: float = 100.0, run_alpha: float = 1e-6, accept_after: int = 1_000,
                 ) -> None:
        self.fixed = feature_names is not None
        self.regression = regression
        self.iqrs = check_positive("iqrs", iqrs, "interquartile ranges beyond the quartiles")
        self.run_alpha = check_number(run_alpha, "run_alpha", above=0.0, maximum=0.5)
        self.accept_after = _check_count("accept_after", accept_after)
        self.log_alpha = math.log(self.run_alpha)
        self._spreads: dict[str, QuartileRange] = {}
        self._bank: QuartileBank | None = None
        """The features' statistics when there are many (then ``_spreads`` is empty)."""
        if feature_names is not None:
            names = list(feature_names[:MAX_SCREENED])
            if len(names) >= BANK_MIN_FEATURES:
                self._bank = QuartileBank(names, self.iqrs)
            else:
                self._spreads = {name: QuartileRange(self.iqrs) for name in names}
        self._row_width = len(self._spreads) if self.fixed and self._bank is None else -1
        """The length of a row of the screened features (-1: none, the features are not
        fixed or in a bank); such a row is read in place of ``x``."""
        self._values: FloatArray | None = None
        """The bank's view of the event last checked, for :meth:`accept`."""
        self._label = QuartileRange(self.iqrs)
        self.last_label: float | None = None
        self.run = 0
        """Labels in a row equal to the one before them (0: the last label differed)."""
        self.pairs = 0
        self.repeats = 0
        """Accepted labels compared with the label before them, and how many equalled it."""
        self.pressure = 0

    def check(self, x: Mapping[str, float], label: float,
              row: Sequence[float] | None = None) -> str | None:
        """Why the event should be held back, or None; follows the run of equal labels.

        ``row``: ``x``'s values of the screened features in their order, if the caller has
        them (a learner's row), so that they are not looked up again.
        """
        if label == self.last_label:
            self.run += 1
        else:
            self.run = 0
        self.last_label = label
        bank = self._bank
        if bank is not None:
            self._values = bank.values(x)
            if bank.outside(self._values):
                return "feature"
        elif type(row) is tuple and len(row) == self._row_width:
            for screened, value in zip(self._spreads.values(), row, strict=True):
                if not screened.fence_low <= value <= screened.fence_high:
                    return "feature"
        else:
            spreads = self._spreads
            for name, value in x.items():
                spread = spreads.get(name)
                if spread is not None and not spread.fence_low <= value <= spread.fence_high:
                    return "feature"
        if self.regression and self._label.outside(label):
            return "label"
        if self.run and self.pairs >= MIN_COUNT and self._run_log_probability() < self.log_alpha:
            return "stuck_label"
        return None

    def _run_log_probability(self) -> float:
        """log P(``run`` repeats in a row) under a Beta(1 + repeats, 1 + others) repeat rate."""
        a, b, r = self.repeats + 1.0, self.pairs - self.repeats + 1.0, float(self.run)
        return (math.lgamma(a + r) - math.lgamma(a) + math.lgamma(a + b)
                - math.lgamma(a + b + r))

    def accept(self, x: Mapping[str, float], label: float,
               row: Sequence[float] | None = None) -> None:
        """Learn the quartiles and repeat rate from an event that passed :meth:`check`
        (``row`` as there)."""
        if self._bank is not None:
            self._bank.add(self._bank.values(x) if self._values is None else self._values)
            self._values = None
        elif type(row) is tuple and len(row) == self._row_width:
            for screened, value in zip(self._spreads.values(), row, strict=True):
                screened.add(value)
        else:
            spreads = self._spreads
            for name, value in x.items():
                spread = spreads.get(name)
                if spread is None:
                    if self.fixed or len(spreads) >= MAX_SCREENED:
                        continue
                    spread = spreads[name] = QuartileRange(self.iqrs)
                spread.add(value)
        if self.regression:
            self._label.add(label)
        if self.last_label is not None:
            self.pairs += 1
            self.repeats += self.run > 0
        if self.pressure:
            self.pressure -= 1

    def hold(self) -> bool:
        """Count a held-back event; True when holding has lasted and the screen restarted."""
        self.pressure += 1
        if self.pressure < self.accept_after:
            return False
        self._spreads = {name: QuartileRange(self.iqrs) for name in self._spreads}
        if self._bank is not None:
            self._bank = QuartileBank(self._bank.names, self.iqrs)
        self._label = QuartileRange(self.iqrs)
        self.run = self.pairs = self.repeats = self.pressure = 0
        return True

    def features(self) -> list[str]:
        """The names of the features screened."""
        return list(self._spreads) if self._bank is None else list(self._bank.names)

    def state_dict(self) -> dict[str, Any]:
        """Settings, quartiles, label run and pressure; JSON-serialisable."""
        return {
            "iqrs": self.iqrs, "run_alpha": self.run_alpha,
            "accept_after": self.accept_after, "fixed": self.fixed,
            "regression": self.regression,
            "features": ({name: spread.state() for name, spread in self._spreads.items()}
                         if self._bank is None else self._bank.state()),
            "label": self._label.state(), "last_label": self.last_label, "run": self.run,
            "pairs": self.pairs, "repeats": self.repeats, "pressure": self.pressure,
        }

    @classmethod
    def from_state(cls, state: object) -> DataScreen:
        """Rebuild a screen that continues exactly as the one that saved ``state``."""
        r = StateReader(state, "screen")
        r.keys("iqrs", "run_alpha", "accept_after", "fixed", "regression", "features",
               "label", "last_label", "run", "pairs", "repeats", "pressure")
        features = r.mapping("features")
        if len(features.state) > MAX_SCREENED:
            raise r.fail(f"more than {MAX_SCREENED} features")
        fixed = r.boolean("fixed")
        try:
            screen = cls(list(features.state) if fixed else None,
                         regression=r.boolean("regression"), iqrs=r.number("iqrs"),
                         run_alpha=r.number("run_alpha"),
                         accept_after=r.integer("accept_after", minimum=1))
        except ValueError as exc:
            raise r.fail(str(exc)) from exc
        spreads = {name: QuartileRange.from_list(values, screen.iqrs, f"screen state: {name}")
                   for name, values in features.state.items()}
        if screen._bank is None:
            screen._spreads = spreads
        else:
            screen._bank = QuartileBank.from_ranges(spreads, screen.iqrs)
        screen._label = QuartileRange.from_list(r.value("label"), screen.iqrs,
                                                "screen state: label")
        screen.last_label = r.optional_number("last_label")
        screen.pairs = r.integer("pairs")
        screen.repeats = r.integer("repeats", maximum=screen.pairs)
        screen.run = r.integer("run")
        if screen.run and screen.last_label is None:
            raise r.fail("a label run without a last label")
        screen.pressure = r.integer("pressure", maximum=screen.accept_after - 1)
        return screen


class ExcessLoss:
    """A one-sided CUSUM of M's loss in excess of R's, relative to R's, per block of events.

    Each block of ``block`` compared events gives ``x = (ΣM − ΣR) / ΣR``;
    ``S = max(0, S + x − margin)`` and an alarm when ``S > limit`` (S then restarts). With the
    defaults, M must be behind R by more than 5% block after block: by 55% over one block,
    15% over ten.

    >>> test = ExcessLoss(block=2)
    >>> [test.observe(1.0, 1.0) for _ in range(4)]
    [False, False, False, False]
    >>> [test.observe(3.0, 1.0) for _ in range(2)]
    [False, True]
    """

    def __init__(self, block: int = 50, margin: float = 0.05, limit: float = 0.5) -> None:
        self.block = check_block(block)
        self.margin = check_positive("margin", margin, "relative excess allowed", zero=True)
        self.limit = check_positive("limit", limit, "CUSUM decision interval")
        self.sum = 0.0
        self._model = 0.0
        self._reference = 0.0
        self._count = 0
        self.last_model: float | None = None
        self.last_reference: float | None = None
        """Mean losses of M and R over the last completed block."""

    @property
    def behind(self) -> bool:
        """M has lately been behind R by more than the margin."""
        return self.sum > 0.0

    def observe(self, model_loss: float, reference_loss: float) -> bool:
        """Add one event's losses; True when this completes a block that raises an alarm."""
        self._model += model_loss
        self._reference += reference_loss
        self._count += 1
        if self._count < self.block:
            return False
        excess = (self._model - self._reference) / max(self._reference, 1e-12 * self._count)
        self.last_model = self._model / self._count
        self.last_reference = self._reference / self._count
        self._model = self._reference = 0.0
        self._count = 0
        self.sum = max(0.0, self.sum + excess - self.margin)
        if self.sum > self.limit:
            self.sum = 0.0
            return True
        return False

    def restart(self) -> None:
        """Forget the comparison so far (M and R just changed)."""
        self.sum = self._model = self._reference = 0.0
        self._count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"block": self.block, "margin": self.margin, "limit": self.limit,
                "sum": self.sum, "model": self._model, "reference": self._reference,
                "count": self._count, "last_model": self.last_model,
                "last_reference": self.last_reference}

    @classmethod
    def from_state(cls, state: object) -> ExcessLoss:
        """Rebuild a test that continues exactly as the one that saved ``state``."""
        r = StateReader(state, "excess-loss test")
        r.keys("block", "margin", "limit", "sum", "model", "reference", "count", "last_model",
               "last_reference")
        try:
            test = cls(r.integer("block", minimum=1), r.number("margin"), r.number("limit"))
        except ValueError as exc:
            raise r.fail(str(exc)) from exc
        test.sum = r.number("sum", minimum=0.0, maximum=test.limit)
        test._model = r.number("model", minimum=0.0)
        test._reference = r.number("reference", minimum=0.0)
        test._count = r.integer("count", maximum=test.block - 1)
        test.last_model = r.optional_number("last_model", minimum=0.0)
        test.last_reference = r.optional_number("last_reference", minimum=0.0)
        return test


class GuardedLearner:
    """A learner that learns from plausible events only and rolls back only for poison.

    ``loss`` is the loss charted and compared (default ``"squared"`` for regressors, ``"log"``
    for classifiers); ``block``, ``chart`` and ``chart_params`` configure the
    :class:`~updaters.performance.LossChart` (``block`` also the rollback test's blocks);
    ``accept_after``, ``iqrs`` and ``run_alpha`` the :class:`DataScreen`; ``influence`` the
    bound on a regression label's residual (0: none); ``margin`` and ``limit`` the
    :class:`ExcessLoss` test.

    >>> from vigil.updaters.sgd import LinearRegressor
    >>> guarded = GuardedLearner(LinearRegressor(["a"]), block=10, snapshot_every=100,
    ...                          chart_params={"warmup": 5})
    >>> guarded.update({"a": 1.0}, 2.0, timestamp=0.0).learned
    True
    >>> guarded.update({"a": float("nan")}, 2.0, timestamp=1.0).skipped
    'invalid'
    >>> guarded.update({"a": 1.0}, 2.0, timestamp=2.0, anomalous=True).skipped
    'anomalous'
    """

    def __init__(
        self,
        learner: Learner,
        *,
        loss: str | None = None,
        max_step: float | None = None,
        block: int = 50,
        chart: str = "cusum",
        chart_params: Mapping[str, Any] | None = None,
        snapshot_every: int = 1000,
        max_rollbacks: int = 20,
        accept_after: int = 1000,
        iqrs: float = 100.0,
        run_alpha: float = 1e-6,
        influence: float = 10.0,
        margin: float = 0.05,
        limit: float = 0.5,
    ) -> None:
        self.loss = loss or ("log" if learner.kind == "classifier" else "squared")
        self._loss = loss_function(self.loss)
        if max_step is not None:
            if not hasattr(type(learner), "max_step"):
                raise ValueError(f"{type(learner).__name__} cannot cap its step (no max_step)")
            learner.max_step = max_step  # type: ignore[attr-defined]
        self.max_step = max_step
        self.snapshot_every = _check_count("snapshot_every", snapshot_every)
        self.max_rollbacks = _check_count("max_rollbacks", max_rollbacks)
        self.influence = check_positive("influence", influence, "residual bound in median "
                                        "absolute residuals, 0 for none", zero=True)
        self.regression = learner.kind == "regressor"
        self._chart_settings = (chart, dict(chart_params or {}), check_block(block))
        self.chart = LossChart(chart, chart_params, block)
        names = getattr(learner, "feature_names", None)
        self.screen = DataScreen(names, regression=self.regression, iqrs=iqrs,
                                 run_alpha=run_alpha, accept_after=accept_after)
        self.excess = ExcessLoss(block, margin, limit)
        self.learner = learner
        self._rows = isinstance(learner, RowLearner)
        """The learner (and so its snapshots, copies of it) takes rows."""
        self._good: Learner = copy.deepcopy(learner)
        self._candidate: Learner | None = None
        self._since = 0
        self._consecutive = 0
        self.scale = 0.0
        """Running median of the absolute residuals of accepted regression labels."""
        self._scaled = 0
        self.rollbacks = 0
        self.changes = 0
        self.rebaselines = 0
        self.skipped_invalid = 0
        self.skipped_anomalous = 0
        self.held = 0
        """Events the screen held back."""
        self.bounded = 0
        """Regression labels whose influence was bounded."""

    @property
    def consecutive_rollbacks(self) -> int:
        """Rollbacks since the last quiet span (1 on the first of a run)."""
        return self._consecutive

    @property
    def reference(self) -> Learner:
        """R: the snapshot M is compared with and would be rolled back to."""
        return self._good

    def predict_one(self, x: Mapping[str, float]) -> float:
        """The guarded learner's prediction."""
        return self.learner.predict_one(x)

    def _valid_features(self, x: Mapping[str, float]) -> bool:
        names = getattr(self.learner, "feature_names", None)
        if names is None:
            return all(_finite(v) for v in x.values())
        return all(_finite(x[name]) for name in names if name in x)

    def update(
        self, x: Mapping[str, float], y: Label, timestamp: float, *, anomalous: bool = False,
        finite: bool = False,
    ) -> GuardResult:
        """Score ``(x, y)``, then skip it, hold it back, roll back, or learn it.

        ``finite``: the caller has checked that every feature is a finite number (Vigil's
        event decoder does), so the check is not repeated.
        """
        learner = self.learner
        try:
            target = learner.encode_label(y)
        except ValueError:
            target = math.nan
        if not math.isfinite(target) or not (finite or self._valid_features(x)):
            self.skipped_invalid += 1
            return GuardResult(math.nan, None, learned=False, skipped="invalid")
        # A row learner builds x's feature vector once, for M's and R's predictions and
        # the update; the dict methods compute the same numbers when it cannot.
        rows = cast(RowLearner, learner)
        row = rows.row(x) if self._rows else None
        if row is None:
            raw = math.nan
            prediction = learner.predict_one(x)
        else:
            raw = rows.raw(row)
            prediction = rows.prediction(raw)
        if not math.isfinite(prediction):
            self.skipped_invalid += 1
            return GuardResult(prediction, None, learned=False, skipped="invalid")
        loss = self._loss(prediction, target)
        if anomalous:
            self.skipped_anomalous += 1
            return GuardResult(prediction, loss, learned=False, skipped="anomalous",
                               target=target)
        screen = self.screen
        reason = screen.check(x, target, row)
        if reason is not None:
            self.held += 1
            event = None
            if screen.hold():
                self.rebaselines += 1
                event = self._event("rebaseline", timestamp, math.nan, math.nan, reason=reason)
            return GuardResult(prediction, loss, learned=False, skipped=reason, event=event,
                               target=target)
        screen.accept(x, target, row)
        good = self._good
        if row is None:
            reference = good.predict_one(x)
        else:
            good_rows = cast(RowLearner, good)
            reference = good_rows.prediction(good_rows.raw(row))
        reference_loss = self._loss(reference, target) if math.isfinite(reference) else loss
        if self.excess.observe(loss, reference_loss):
            event = self._rollback(timestamp)
            if event.kind == "rollback":
                return GuardResult(prediction, loss, learned=False, event=event,
                                   reference_loss=reference_loss, target=target)
        else:
            event = None
        point = self.chart.observe(loss, timestamp)
        if event is None and LossChart.rose(point) and not self.excess.behind:
            event = self._change(point, timestamp)  # type: ignore[arg-type]
        label: Label = y
        learned = target
        if self.regression:
            label = learned = self._bounded(target, prediction)
        if row is None or not math.isfinite(raw):  # learn_one refuses a non-finite score
            learner.learn_one(x, label)
        else:
            rows.learn_row(row, raw, learned)
        self._since += 1
        if self._since >= self.snapshot_every:
            self._consecutive = 0
            if self._candidate is not None:
                self._good = self._candidate
            self._candidate = copy.deepcopy(self.learner)
            self._since = 0
        return GuardResult(prediction, loss, learned=True, event=event, chart=point,
                           reference_loss=reference_loss, target=target)

    def _bounded(self, target: float, prediction: float) -> float:
        """The label to learn: ``target`` moved to within ``influence`` × scale of the
        prediction; the running scale learns the residual first."""
        residual = target - prediction
        size = abs(residual)
        scale = self.scale
        if scale <= 0.0:
            self.scale = size
        else:
            self.scale = scale * (_SCALE_UP if size > scale else _SCALE_DOWN)
        self._scaled += 1
        bound = self.influence * scale
        if self._scaled <= MIN_COUNT or bound <= 0.0 or size <= bound:
            return target
        self.bounded += 1
        return prediction + math.copysign(bound, residual)

    def _quiet_span_broken(self) -> None:
        self._candidate = None
        self._since = 0

    def _rollback(self, timestamp: float) -> GuardEvent:
        """M fell behind R: restore R, or after ``max_rollbacks`` in a row take M as it is."""
        excess = self.excess
        loss, reference = excess.last_model or 0.0, excess.last_reference or 0.0
        self._consecutive += 1
        self._quiet_span_broken()
        excess.restart()
        if self._consecutive > self.max_rollbacks:
            self._consecutive = 0
            self._good = copy.deepcopy(self.learner)
            self.rebaselines += 1
            return self._event("rebaseline", timestamp, loss, reference, reason="rollbacks")
        before = _updates(self.learner)
        self.learner = copy.deepcopy(self._good)
        self.rollbacks += 1
        return self._event("rollback", timestamp, loss, reference, before=before)

    def _change(self, point: PointResult, timestamp: float) -> GuardEvent:
        """M's loss rose while M is not behind R: the world changed. Learn on, and fast."""
        loss = self.chart.last_value
        chart, params, block = self._chart_settings
        self.chart = LossChart(chart, params, block)
        self._quiet_span_broken()
        restart = getattr(self.learner, "restart_schedule", None)
        if restart is not None:
            restart()
        self.changes += 1
        return self._event("change", timestamp, math.nan if loss is None else loss,
                           point.centre)

    def _event(self, kind: str, timestamp: float, loss: float, baseline: float, *,
               reason: str = "", before: int | None = None) -> GuardEvent:
        after = _updates(self.learner)
        return GuardEvent(kind=kind, timestamp=timestamp, loss=loss, baseline=baseline,
                          n_updates=after if before is None else before,
                          restored_n_updates=after, rollbacks=self.rollbacks, reason=reason)

    _COUNTERS = ("rollbacks", "changes", "rebaselines", "skipped_invalid", "skipped_anomalous",
                 "held", "bounded")

    def counters(self) -> dict[str, int]:
        """The guard's counters by name."""
        return {"rollbacks": self.rollbacks, "changes": self.changes,
                "rebaselines": self.rebaselines, "skipped_invalid": self.skipped_invalid,
                "skipped_anomalous": self.skipped_anomalous, "held": self.held,
                "bounded": self.bounded}

    def state_dict(self) -> dict[str, Any]:
        """The learner, its snapshots, the screen, the tests and the counters;
        JSON-serialisable."""
        return {
            "learner": self.learner.name,
            "learner_state": self.learner.state_dict(),
            "loss": self.loss,
            "max_step": self.max_step,
            "snapshot_every": self.snapshot_every,
            "max_rollbacks": self.max_rollbacks,
            "influence": self.influence,
            "chart": self.chart.state_dict(),
            "screen": self.screen.state_dict(),
            "excess": self.excess.state_dict(),
            "good": self._good.state_dict(),
            "candidate": None if self._candidate is None else self._candidate.state_dict(),
            "since": self._since,
            "consecutive": self._consecutive,
            "scale": self.scale,
            "scaled": self._scaled,
            "counters": self.counters(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any],
                   restore: Callable[[Mapping[str, Any]], Learner]) -> GuardedLearner:
        """Rebuild a guarded learner that continues exactly as the one that saved ``state``.

        ``restore`` turns a learner state into a learner of the type the caller configured;
        ``state["learner"]`` must name that type, so a state of another learner is refused.
        Anything else wrong with ``state`` raises ``ValueError``.
        """
        r = StateReader(state, "guard")
        r.keys("learner", "learner_state", "loss", "max_step", "snapshot_every",
               "max_rollbacks", "influence", "chart", "screen", "excess", "good", "candidate",
               "since", "consecutive", "scale", "scaled", "counters")

        def learner_from(key: str) -> Learner:
            return restored_exactly(restore, r.value(key), f"guard {key}",
                                    lambda learner: learner.state_dict())

        learner = learner_from("learner_state")
        if r.text("learner") != learner.name:
            raise r.fail(f"it holds a {r.value('learner')!r} learner, the configuration a "
                         f"{learner.name!r} one")
        chart = LossChart.from_state(r.value("chart"))
        screen = DataScreen.from_state(r.value("screen"))
        excess = ExcessLoss.from_state(r.value("excess"))
        max_step = r.optional_number("max_step", above=0.0)
        if max_step != getattr(learner, "max_step", None):
            raise r.fail(f"max_step {max_step!r} is not the learner's")
        try:
            guarded = cls(learner, loss=r.text("loss", tuple(LOSSES)),
                          block=chart.block, chart=chart.chart, chart_params=chart.params,
                          snapshot_every=r.integer("snapshot_every", minimum=1),
                          max_rollbacks=r.integer("max_rollbacks", minimum=1),
                          influence=r.number("influence", minimum=0.0))
        except ValueError as exc:
            raise r.fail(str(exc)) from exc
        names = getattr(learner, "feature_names", None)
        if (learner.kind == "regressor") != screen.regression or excess.block != chart.block \
                or screen.fixed != (names is not None) \
                or (names is not None and list(screen.features()) != list(names[:MAX_SCREENED])):
            raise r.fail("its screen or test does not belong to this learner and chart")
        guarded.max_step = max_step
        guarded.chart, guarded.screen, guarded.excess = chart, screen, excess
        guarded._good = learner_from("good")
        guarded._candidate = None if r.value("candidate") is None else learner_from("candidate")
        for snapshot in (guarded._good, guarded._candidate):
            if snapshot is not None and _shape(snapshot) != _shape(learner):
                raise r.fail("a snapshot of another model (kind, features or classes)")
        guarded._since = r.integer("since", maximum=guarded.snapshot_every - 1)
        guarded._consecutive = r.integer("consecutive", maximum=guarded.max_rollbacks)
        guarded.scale = r.number("scale", minimum=0.0)
        guarded._scaled = r.integer("scaled")
        counters = r.mapping("counters")
        counters.keys(*cls._COUNTERS)
        guarded.rollbacks = counters.integer("rollbacks")
        guarded.changes = counters.integer("changes")
        guarded.rebaselines = counters.integer("rebaselines")
        guarded.skipped_invalid = counters.integer("skipped_invalid")
        guarded.skipped_anomalous = counters.integer("skipped_anomalous")
        guarded.held = counters.integer("held")
        guarded.bounded = counters.integer("bounded")
        return guarded


def _shape(learner: Learner) -> tuple[Any, ...]:
    """What a snapshot must share with the learner it may replace."""
    return (learner.kind, getattr(learner, "feature_names", None),
            getattr(learner, "classes", None))


def _updates(learner: Learner) -> int:
    return int(getattr(learner, "n_updates", 0))
