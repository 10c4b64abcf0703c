"""Guardrails around a learner: what it may learn from, how far one event may move it, and
rolling it back when its loss runs out of control.

:class:`GuardedLearner` wraps any registered learner and, per labelled event:

1. skips events that are invalid (a feature of the learner that is not a finite number, or
   a label ``encode_label`` refuses) or that the caller flags as anomalous — a learner
   must not learn from what a detector flagged;
2. scores the event before learning it (prequential loss) and feeds that loss to a
   :class:`~updaters.performance.LossChart`;
3. when the chart says the loss rose out of control, restores the last good snapshot
   instead of learning (a ``rollback`` event, for an alert). If the rise outlasts
   ``max_rollbacks`` consecutive rollbacks it is taken to be the new normal (a concept
   change, not poison): the chart restarts and learning goes on (a ``rebaseline`` event);
4. otherwise learns the event. ``max_step`` caps each update's parameter change (set on
   the learner, which must support it: the SGD learners do).

Snapshots: every ``snapshot_every`` learned events without an alarm, the snapshot taken at
the start of that span becomes the good one and a new one is taken — so the good snapshot
has been followed by at least one alarm-free span. The first good snapshot is the learner
as it was given (e.g. warm-started). Snapshots are copies of the learner object, so rollback
works for every learner, river's included. A rollback replaces the learner object: read
``guarded.learner`` afresh rather than keeping a reference to it.

State: the learner's type never comes from a saved state. :meth:`GuardedLearner.from_state`
takes a ``restore`` function from the caller, who builds learners from its configuration.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from detectors import PointResult
from updaters.base import Label, Learner
from updaters.performance import LossChart, check_block, loss_function

EVENT_KINDS = ("rollback", "rebaseline")


@dataclass(frozen=True, slots=True)
class GuardEvent:
    """A rollback or a re-baselining, to be turned into an alert."""

    kind: str
    """``"rollback"`` (the last good snapshot was restored) or ``"rebaseline"``."""
    timestamp: float
    loss: float
    """Mean prequential loss of the block that raised the alarm."""
    baseline: float
    """The chart's in-control mean block loss."""
    n_updates: int
    """Updates of the learner when the alarm came."""
    restored_n_updates: int
    """Updates of the learner after the event (the snapshot's, for a rollback)."""
    rollbacks: int
    """Rollbacks so far, this one included."""


@dataclass(slots=True)
class GuardResult:
    """What happened to one labelled event."""

    prediction: float
    """The learner's prediction before learning (NaN when the features are invalid)."""
    loss: float | None
    """Prequential loss of that prediction (None when the event is invalid)."""
    learned: bool
    skipped: str | None = None
    """``"invalid"`` or ``"anomalous"`` when the event was not learned for that reason."""
    event: GuardEvent | None = None
    chart: PointResult | None = None
    """The loss chart's result when this event completed a block."""


def _finite(value: object) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    )


class GuardedLearner:
    """A learner that learns only from valid, unflagged events and rolls back on a loss rise.

    ``loss`` is the loss charted (default ``"squared"`` for regressors, ``"log"`` for
    classifiers); ``block``, ``chart`` and ``chart_params`` configure the
    :class:`~updaters.performance.LossChart`.

    >>> from updaters.sgd import LinearRegressor
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
    ) -> None:
        self.loss = loss or ("log" if learner.kind == "classifier" else "squared")
        self._loss = loss_function(self.loss)
        if max_step is not None:
            if not hasattr(type(learner), "max_step"):
                raise ValueError(f"{type(learner).__name__} cannot cap its step (no max_step)")
            learner.max_step = max_step  # type: ignore[attr-defined]
        self.max_step = max_step
        for name, value in (("snapshot_every", snapshot_every), ("max_rollbacks", max_rollbacks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.snapshot_every = snapshot_every
        self.max_rollbacks = max_rollbacks
        self._chart_settings = (chart, dict(chart_params or {}), check_block(block))
        self.chart = LossChart(chart, chart_params, block)
        self.learner = learner
        self._good: Learner = copy.deepcopy(learner)
        self._candidate: Learner | None = None
        self._since = 0
        self._consecutive = 0
        self.rollbacks = 0
        self.rebaselines = 0
        self.skipped_invalid = 0
        self.skipped_anomalous = 0

    @property
    def consecutive_rollbacks(self) -> int:
        """Rollbacks since the last alarm-free span (1 on the first of a run)."""
        return self._consecutive

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
        """Score ``(x, y)``, chart the loss, then learn the event, skip it or roll back.

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
        prediction = learner.predict_one(x)
        if not math.isfinite(prediction):
            self.skipped_invalid += 1
            return GuardResult(prediction, None, learned=False, skipped="invalid")
        loss = self._loss(prediction, target)
        if anomalous:
            self.skipped_anomalous += 1
            return GuardResult(prediction, loss, learned=False, skipped="anomalous")
        point = self.chart.observe(loss, timestamp)
        event = None
        if LossChart.rose(point):
            event = self._out_of_control(point, timestamp)  # type: ignore[arg-type]
            if event.kind == "rollback":
                return GuardResult(prediction, loss, learned=False, event=event, chart=point)
        self.learner.learn_one(x, y)
        self._since += 1
        if self._since >= self.snapshot_every:
            self._consecutive = 0
            if self._candidate is not None:
                self._good = self._candidate
            self._candidate = copy.deepcopy(self.learner)
            self._since = 0
        return GuardResult(prediction, loss, learned=True, event=event, chart=point)

    def _out_of_control(self, point: PointResult, timestamp: float) -> GuardEvent:
        value = self.chart.last_value
        before = _updates(self.learner)
        self._consecutive += 1
        if self._consecutive > self.max_rollbacks:
            chart, params, block = self._chart_settings
            self.chart = LossChart(chart, params, block)
            self._consecutive = 0
            self._good = copy.deepcopy(self.learner)
            self._candidate = None
            self._since = 0
            self.rebaselines += 1
            kind = "rebaseline"
        else:
            self.learner = copy.deepcopy(self._good)
            self._candidate = None
            self._since = 0
            self.rollbacks += 1
            kind = "rollback"
        return GuardEvent(
            kind=kind,
            timestamp=timestamp,
            loss=math.nan if value is None else value,
            baseline=point.centre,
            n_updates=before,
            restored_n_updates=_updates(self.learner),
            rollbacks=self.rollbacks,
        )

    def state_dict(self) -> dict[str, Any]:
        """The learner, its snapshots, the chart and the counters; JSON-serialisable."""
        return {
            "learner": self.learner.name,
            "learner_state": self.learner.state_dict(),
            "loss": self.loss,
            "max_step": self.max_step,
            "snapshot_every": self.snapshot_every,
            "max_rollbacks": self.max_rollbacks,
            "chart": self.chart.state_dict(),
            "good": self._good.state_dict(),
            "candidate": None if self._candidate is None else self._candidate.state_dict(),
            "since": self._since,
            "consecutive": self._consecutive,
            "counters": {
                "rollbacks": self.rollbacks,
                "rebaselines": self.rebaselines,
                "skipped_invalid": self.skipped_invalid,
                "skipped_anomalous": self.skipped_anomalous,
            },
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any],
                   restore: Callable[[Mapping[str, Any]], Learner]) -> GuardedLearner:
        """Rebuild a guarded learner that continues exactly as the one that saved ``state``.

        ``restore`` turns a learner state into a learner of the type the caller configured;
        ``state["learner"]`` must name that type, so a state of another learner is refused.
        """
        learner = restore(state["learner_state"])
        if state["learner"] != learner.name:
            raise ValueError(f"the state holds a {state['learner']!r} learner, the "
                             f"configuration a {learner.name!r} one")
        chart = state["chart"]
        guarded = cls(
            learner,
            loss=state["loss"],
            max_step=state["max_step"],
            block=chart["block"],
            chart=chart["chart"],
            chart_params=chart["params"],
            snapshot_every=state["snapshot_every"],
            max_rollbacks=state["max_rollbacks"],
        )
        guarded.chart = LossChart.from_state(chart)
        guarded._good = restore(state["good"])
        guarded._candidate = None if state["candidate"] is None else restore(state["candidate"])
        guarded._since = int(state["since"])
        guarded._consecutive = int(state["consecutive"])
        counters = state["counters"]
        for name in ("rollbacks", "rebaselines", "skipped_invalid", "skipped_anomalous"):
            setattr(guarded, name, int(counters[name]))
        return guarded


def _updates(learner: Learner) -> int:
    return int(getattr(learner, "n_updates", 0))
