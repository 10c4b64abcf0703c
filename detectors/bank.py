"""Many series' control-chart state as numpy arrays, updated a batch of points at a time.

A :class:`SeriesBank` holds every series of one detector configuration — a Shewhart, CUSUM or
EWMA chart, or the default ensemble while it is in control — as columns indexed by slot, and
updates a batch in rounds: round ``r`` takes the ``r``-th point of every slot that has one.
A round does the scalar charts' float operations (``+ - * /`` and ``sqrt``, all IEEE) in the
same order, so every result and every state is bit-identical to the per-object detectors';
scores, which need no more than a division, are computed with the scalar code for the few
points that are reported.

A :class:`BankSeries` is one series' handle: it reads and writes like a detector. While the
series is where the bank does not follow it — an ensemble's open episode, or a point scored
one at a time by :meth:`BankSeries.update` — the handle holds an object detector built with
exactly the series' state, and :meth:`SeriesBank.rebank` takes it back once it is in control.

>>> from vigil.detectors.shewhart import ShewhartChart
>>> bank = SeriesBank.for_template(ShewhartChart(warmup=4, lag=2))
>>> series = [bank.new_series(owner=name) for name in ("a", "b")]
>>> for handle in series:  # a new series holds its first points as an object chart
...     for v in (10.0, 11.0, 12.0, 10.0):
...         _ = handle.update(v, 0.0)
>>> [bank.rebank(handle) for handle in series], [handle.slot for handle in series]
([True, True], [0, 1])
>>> for step in range(3):
...     for handle in series:
...         bank.pending_slots.append(handle.slot)
...         bank.pending_values.append(10.0 + step % 3)
>>> bank.pending_slots.append(series[0].slot)
>>> bank.pending_values.append(99.0)
>>> [(j, owner, r.anomaly, r.n) for j, owner, r in bank.flush(lambda j: 0.0)]
[(6, 'a', True, 5)]
>>> series[0].state_dict()["pending"], series[1].state_dict()["stats"]["count"]  # 99 clipped
([12.0, 13.283281572999748], 5)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from vigil.detectors.adaptive import AdaptiveDetector
from vigil.detectors.adaptive_kernel import PARAMETERS as ADAPTIVE_PARAMETERS
from vigil.detectors.adaptive_kernel import AdaptiveKernel
from vigil.detectors.base import DETECTORS, Detector, InputKind, PointResult, restore_detector
from vigil.detectors.chart import Columns, ColumnStep, MeanChart
from vigil.detectors.ensemble import EnsembleDetector
from vigil.detectors.stats import WARMUP_SCREEN

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Slots = npt.NDArray[np.intp]

ROUND_COST = 12.0
MOVE_COST = 5.0
"""A round of numpy work, and moving a series to an object detector and back, in units of
one object detector's point: the rest of a batch goes to objects when that is cheaper."""

_INF = math.inf
_MEMBERS = ("shewhart", "cusum", "ewma")


class _ChartColumns:
    """The state of one chart configuration for every slot; the chart's own vectorised step
    (:meth:`~detectors.chart.MeanChart.step_columns`) updates it."""

    def __init__(self, kind: str, state: Mapping[str, Any]) -> None:
        chart_type = DETECTORS.find(kind)
        if not issubclass(chart_type, MeanChart):
            raise ValueError(f"no bank for {chart_type.__name__}")
        self.chart = chart = chart_type.from_state(state)
        chart.check_columns()
        self.kind = kind
        self.template = {name: state[name] for name in chart.parameter_names() if name in state}
        self.warmup = chart.warmup
        self.lag = chart.lag
        self.columns: Columns = {
            "n": np.zeros(0, np.int64), "mean": np.zeros(0), "m2": np.zeros(0)}
        if self.lag:  # the points waiting to be learned: a ring per slot (NaN: learn nothing)
            self.columns.update(ring=np.zeros((0, self.lag)), ring_length=np.zeros(0, np.int64),
                                ring_head=np.zeros(0, np.int64))
        self.columns.update({name: np.zeros(0, dtype) for name, dtype in chart.COLUMNS.items()})

    def grow(self, capacity: int) -> None:
        for name, column in self.columns.items():
            grown = np.zeros((capacity, *column.shape[1:]), column.dtype)
            grown[:len(column)] = column
            self.columns[name] = grown

    def reset(self, slot: int) -> None:
        for column in self.columns.values():
            column[slot] = 0

    def bankable(self, state: Mapping[str, Any]) -> bool:
        """Whether a chart in ``state`` can live in the columns: its statistics have started
        (the first points held by the object chart are behind it)."""
        return int(state["stats"]["count"]) >= 2 and not state.get("start")

    def load(self, slot: int, state: Mapping[str, Any]) -> None:
        stats, columns = state["stats"], self.columns
        columns["n"][slot] = int(stats["count"])
        columns["mean"][slot] = float(stats["mean"])
        columns["m2"][slot] = float(stats["m2"])
        if self.lag:
            pending = state.get("pending", [])
            columns["ring"][slot, :len(pending)] = [math.nan if v is None else float(v)
                                                    for v in pending]
            columns["ring_length"][slot] = len(pending)
            columns["ring_head"][slot] = 0
        self.chart.load_columns(columns, slot, state)

    def export(self, values: Mapping[str, npt.NDArray[Any]], at: int) -> dict[str, Any]:
        """The chart's ``state_dict`` from ``values[name][at]`` (columns or, without a lag, a
        round's pre)."""
        state = dict(self.template)
        state["stats"] = {"count": int(values["n"][at]), "mean": float(values["mean"][at]),
                          "m2": float(values["m2"][at])}
        state["start"] = []
        pending: list[float | None] = []
        if self.lag:
            ring, head = values["ring"][at], int(values["ring_head"][at])
            for i in range(int(values["ring_length"][at])):
                value = float(ring[(head + i) % self.lag])
                pending.append(None if math.isnan(value) else value)
        state["pending"] = pending
        self.chart.export_columns(values, at, state)
        return state

    def step(self, slots: Slots, x: Floats) -> ColumnStep:
        """Score and learn one point for each of ``slots`` (distinct), as the chart does."""
        pre = {name: column[slots] for name, column in self.columns.items() if column.ndim == 1}
        n, mean, m2 = pre["n"], pre["mean"], pre["m2"]
        with np.errstate(all="ignore"):
            step = self.chart.step_columns(self.columns, pre, slots, x, np.sqrt(m2 / (n - 1)))
            self._learn(slots, n, mean, m2, step.learn, step.keep)
        return step

    def _learn(self, slots: Slots, n: Ints, mean: Floats, m2: Floats, x: Floats,
               keep: Bools | None) -> None:
        """What :class:`~detectors.stats.ChartBaseline` does with the points the chart's policy
        learns (``x`` where ``keep``): in warm-up each is learned at once, winsorised at the
        mean ± WARMUP_SCREEN σ; once warm each waits ``lag`` points in the ring."""
        warm = n >= self.warmup
        bound = WARMUP_SCREEN * np.maximum(np.sqrt(m2 / (n - 1)), 1e-6 * np.abs(mean))
        low, high = mean - bound, mean + bound
        screened = np.where(x < low, low, np.where(x > high, high, x))
        value = np.where(warm, x, screened)
        if self.lag:
            columns = self.columns
            ring, lengths, heads = columns["ring"], columns["ring_length"], columns["ring_head"]
            waiting = slots[warm]
            incoming = x[warm] if keep is None else np.where(keep[warm], x[warm], math.nan)
            length, head = lengths[waiting], heads[waiting]
            full = length >= self.lag
            oldest = ring[waiting, head]
            ring[waiting, np.where(full, head, (head + length) % self.lag)] = incoming
            heads[waiting] = np.where(full, (head + 1) % self.lag, head)
            lengths[waiting] = np.where(full, length, length + 1)
            leaving = np.full(len(slots), math.nan)
            leaving[warm] = np.where(full, oldest, math.nan)
            value = np.where(warm, leaving, value)
            keep = ~warm | ~np.isnan(leaving)
        elif keep is not None:
            keep = ~warm | keep
        count = n + 1
        delta = value - mean
        new_mean = mean + delta / count
        new_m2 = m2 + delta * (value - new_mean)
        if keep is not None:
            count = np.where(keep, count, n)
            new_mean = np.where(keep, new_mean, mean)
            new_m2 = np.where(keep, new_m2, m2)
        columns = self.columns
        columns["n"][slots] = count
        columns["mean"][slots] = new_mean
        columns["m2"][slots] = new_m2

    def result(self, step: ColumnStep, at: int, value: float) -> PointResult:
        """The chart's PointResult for the round's point ``at`` (``value`` as given)."""
        n = int(step.pre["n"][at])
        if n < 2:
            mean = float(step.pre["mean"][at])
            return PointResult(0.0, False, mean if n else value, -_INF, _INF, 0.0, n)
        return self.chart.column_result(step, at, value)


class _Flush:
    """The working state of one :meth:`SeriesBank.flush`."""

    __slots__ = ("slots", "values_in", "want", "timestamp_of", "reported", "hot", "handed",
                 "handed_slots", "later")

    def __init__(self, slots: Slots, values_in: Sequence[float], want: Bools,
                 timestamp_of: Callable[[int], float], capacity: int) -> None:
        self.slots = slots
        self.values_in = values_in
        self.want = want
        self.timestamp_of = timestamp_of
        self.reported: list[tuple[int, object, PointResult]] = []
        self.hot = np.zeros(capacity, dtype=bool)
        """Series that raised an anomaly in this batch (their later points are reported)."""
        self.handed = np.zeros(capacity, dtype=bool)
        self.handed_slots: list[int] = []
        """Series scored by their object detector from a point on."""
        self.later: list[int] = []
        """Their points, in round order: queue order per series."""

    def hand(self, slot: int) -> None:
        """Mark the series in ``slot`` as scored by its object detector from now on."""
        self.handed[slot] = True
        self.handed_slots.append(slot)


class BankSeries:
    """One series of a :class:`SeriesBank`: a detector whose state lives in the bank's slot,
    or, while ``slot`` is -1, in the object ``detector``."""

    __slots__ = ("bank", "slot", "detector", "owner", "name")
    input_kind: InputKind = "scalar"

    def __init__(self, bank: SeriesBank, owner: object) -> None:
        self.bank = bank
        self.slot = -1
        self.detector: Detector | None = None
        self.owner = owner
        """Whatever the bank's user keeps per series (the monitor's Series)."""
        self.name = bank.name

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score and learn one point with the object detector (taking the series out of the
        bank first: one point at a time is the object path)."""
        if self.slot >= 0:
            self.bank.release(self)
        return self._object().update(value, timestamp)

    def state_dict(self) -> dict[str, Any]:
        """Exactly the ``state_dict`` of the object detector of this series."""
        if self.slot >= 0:
            return self.bank.state_dict(self.slot)
        return self._object().state_dict()

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Not possible without a bank: restore the detector (``restore_detector``) and let a
        bank adopt it."""
        raise TypeError("a BankSeries is restored as its detector, then adopted by a bank")

    def _object(self) -> Detector:
        if self.detector is None:
            raise RuntimeError("this series was dropped from its bank")
        return self.detector

    def __repr__(self) -> str:
        where = f"slot {self.slot}" if self.slot >= 0 else repr(self.detector)
        return f"BankSeries({self.name}, {where})"


class SeriesBank:
    """All series of one detector configuration, in columns; see the module docstring.

    Points are queued by appending to ``pending_slots`` and ``pending_values`` (index ``j``
    is the queue position) and scored by :meth:`flush`.
    """

    def __init__(self, template: Detector) -> None:
        kind = type(template)
        state = template.state_dict()
        self._fresh = state
        self._params: frozenset[str] = frozenset()
        self.kernel: AdaptiveKernel | None = None
        """For the adaptive detector: its compiled step over rows (one per slot) instead of
        charts' columns; a batch is one call, in queue order."""
        if isinstance(template, AdaptiveDetector):
            self.kernel = AdaptiveKernel()
            self.charts = []
            self.template = {name: state[name] for name in ADAPTIVE_PARAMETERS}
            self._params = frozenset(ADAPTIVE_PARAMETERS)
        elif isinstance(template, EnsembleDetector):
            if state["season"] is not None:
                raise ValueError("seasonal ensembles stay on the object path")
            members = state["members"]
            self.charts = [_ChartColumns(name, members[name]) for name in _MEMBERS]
            self.template = {name: value for name, value in state.items()
                             if name != "members"}
            self._params = frozenset(template.params())
        else:
            self.charts = [_ChartColumns(template.name, state)]
            self.template = {}
        self.name = template.name
        self.kind = kind
        self.ensemble = kind is EnsembleDetector
        self._state_keys = list(state)
        self._handles: list[BankSeries | None] = []
        self._free: list[int] = []
        self._released: list[int] = []  # slots to free once the queued points are scored
        self.pending_slots: list[int] = []
        self.pending_values: list[float] = []
        self.round_cost = ROUND_COST
        self.move_cost = MOVE_COST

    @classmethod
    def for_template(cls, template: Detector) -> SeriesBank | None:
        """A bank for series configured like ``template`` (fresh), or None if unsupported."""
        try:
            return cls(template)
        except ValueError:
            return None

    def new_series(self, owner: object) -> BankSeries:
        """A fresh series (no points yet): an object detector until it has started its
        statistics from its first points (then :meth:`rebank` moves it into a slot)."""
        handle = BankSeries(self, owner)
        handle.detector = restore_detector(self.name, self._fresh)
        return handle

    def adopt(self, detector: Detector, owner: object) -> BankSeries:
        """A handle for ``detector``'s series: in a slot when the bank can hold its state,
        else holding ``detector`` itself (see :meth:`rebank`)."""
        handle = BankSeries(self, owner)
        handle.detector = detector
        handle.name = detector.name
        self.rebank(handle)
        return handle

    def rebank(self, handle: BankSeries) -> bool:
        """Move the handle's object detector into a slot if the bank can hold its state
        (same type and parameters, no open episode); True if it did."""
        if handle.slot >= 0 or handle.detector is None:
            return False
        states = self._chart_states(handle.detector)
        if states is None:
            return False
        slot = self._allocate(handle)
        self._load(slot, states)
        handle.slot = slot
        handle.detector = None
        handle.name = self.name
        return True

    def _load(self, slot: int, states: Sequence[Mapping[str, Any]]) -> None:
        """Put the states of :meth:`_chart_states` in ``slot``."""
        if self.kernel is not None:
            self.kernel.load(slot, states[0])
            return
        for chart, chart_state in zip(self.charts, states, strict=True):
            chart.load(slot, chart_state)

    def _chart_states(self, detector: Detector) -> list[Mapping[str, Any]] | None:
        """The states of the bank's charts in ``detector``, or None if the bank cannot hold
        it (another type or configuration, an open episode, a moved level); for the kernel,
        the detector's own state."""
        if type(detector) is not self.kind:
            return None
        if self.kernel is not None:
            state = detector.state_dict()
            if not self._same_params(state) or not self.kernel.fits(state):
                return None
            return [state]
        if isinstance(detector, EnsembleDetector) and not detector.in_control:
            return None
        if isinstance(detector, MeanChart | EnsembleDetector) and not detector.columns_ready():
            return None  # what bankable() would say, without building the state
        state = detector.state_dict()
        if list(state) != self._state_keys or not self._same_params(state):
            return None
        if self.ensemble:
            offset = state["offset"]
            if offset != 0.0 or math.copysign(1.0, offset) < 0.0:
                return None
            states = [state["members"][name] for name in _MEMBERS]
        else:
            states = [state]
        for chart, chart_state in zip(self.charts, states, strict=True):
            if {k: chart_state[k] for k in chart.template} != chart.template \
                    or not chart.bankable(chart_state):
                return None
        return states

    def _same_params(self, state: Mapping[str, Any]) -> bool:
        return all(state[name] == self.template[name] for name in self._params)

    def release(self, handle: BankSeries) -> None:
        """Take the series out of its slot into an object detector with exactly its state."""
        if self.pending_slots:
            raise RuntimeError("flush the queued points before taking a series out")
        slot = handle.slot
        handle.detector = restore_detector(self.name, self.state_dict(slot))
        handle.slot = -1
        self._handles[slot] = None
        self._free.append(slot)

    def discard(self, handle: BankSeries) -> None:
        """Forget the series (evicted or expired); its queued points are still scored."""
        slot = handle.slot
        if slot < 0:
            handle.detector = None
        elif self.pending_slots:
            self._released.append(slot)
        else:
            self._drop(slot)

    def _drop(self, slot: int) -> None:
        handle = self._handles[slot]
        if handle is not None:
            handle.slot = -1
            handle.detector = None
        self._handles[slot] = None
        self._free.append(slot)

    def _allocate(self, handle: BankSeries) -> int:
        if self._free:
            slot = self._free.pop()
            self._handles[slot] = handle
        else:
            slot = len(self._handles)
            self._handles.append(handle)
            if self.kernel is not None:
                if slot >= self.kernel.capacity:
                    self.kernel.grow(max(64, 2 * self.kernel.capacity))
                return slot
            capacity = len(self.charts[0].columns["n"])
            if slot >= capacity:
                for chart in self.charts:
                    chart.grow(max(64, 2 * capacity))
        for chart in self.charts:
            chart.reset(slot)
        return slot

    def state_dict(self, slot: int) -> dict[str, Any]:
        """Exactly the object detector's ``state_dict`` for the series in ``slot``."""
        if self.kernel is not None:
            return self.kernel.export(slot)
        return self._export(slot, [chart.columns for chart in self.charts])

    def _export(self, at: int,
                values: Sequence[Mapping[str, npt.NDArray[Any]]]) -> dict[str, Any]:
        if not self.ensemble:
            return self.charts[0].export(values[0], at)
        members = {chart.kind: chart.export(chart_values, at)
                   for chart, chart_values in zip(self.charts, values, strict=True)}
        state: dict[str, Any] = {}
        for name in self._state_keys:
            state[name] = members if name == "members" else self.template[name]
        state["recent"], state["z"] = [], []
        return state

    def flush(self, timestamp_of: Callable[[int], float],
              wanted: Sequence[int] = (),
              ) -> list[tuple[int, object, PointResult]]:
        """Score and learn the queued points, in queue order per series; return the results
        worth reporting as (queue position, owner of its series, result).

        Reported: every anomaly, every point scored by an object detector (an ensemble that
        opened an episode in this batch), each later point of a series that raised an anomaly
        in this batch (until it resolves), and every point of a series that has a point at a
        queue position in ``wanted``.
        ``timestamp_of(j)`` is the timestamp of queued point ``j`` (object detectors need it).
        """
        count = len(self.pending_slots)
        if not count:
            return []
        values_in = self.pending_values
        try:
            slots = np.array(self.pending_slots, dtype=np.intp)
            values = np.array(values_in, dtype=np.float64)
            if self.kernel is not None:
                return self._score_kernel(self.kernel, slots, values, wanted, timestamp_of)
            order = np.argsort(slots, kind="stable")
            ordered = slots[order]
            first = np.empty(count, dtype=bool)
            first[0] = True
            np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            lengths = np.diff(np.append(starts, count))
            rank = np.empty(count, dtype=np.intp)
            rank[order] = np.arange(count) - np.repeat(starts, lengths)
            want = np.zeros(count, dtype=bool)
            if len(wanted):
                flags = np.zeros(len(self._handles), dtype=bool)
                flags[slots[np.asarray(wanted, dtype=np.intp)]] = True
                want = flags[slots]
            by_round = np.argsort(rank, kind="stable")
            bounds = np.cumsum(np.bincount(rank))
            reported = self._rounds(slots, values, values_in, want, by_round, bounds,
                                    timestamp_of)
        finally:
            self.pending_slots = []
            self.pending_values = []
            released, self._released = self._released, []
            for slot in released:
                self._drop(slot)
        return reported

    def _score_kernel(self, kernel: AdaptiveKernel, slots: Slots, values: Floats,
                      wanted: Sequence[int], timestamp_of: Callable[[int], float],
                      ) -> list[tuple[int, object, PointResult]]:
        """Score the queued points with the kernel, in queue order, and report what the
        object path reports (``worth_reporting``): anomalies, resolved and re-baselined points,
        points in an episode, later points of a series that alarmed in this batch until it
        resolves, and every point of a series with a point in ``wanted``."""
        count = len(slots)
        times = np.fromiter((timestamp_of(j) for j in range(count)), np.float64, count)
        out = kernel.score_points(slots, values, times)
        report = out.anomaly | out.resolved | out.rebaselined | (out.episode > 0)
        if len(wanted):
            flags = np.zeros(len(self._handles), dtype=bool)
            flags[slots[np.asarray(wanted, dtype=np.intp)]] = True
            report |= flags[slots]
        alarmed = np.unique(slots[out.anomaly])
        if len(alarmed):  # a series is hot from its alarm until it resolves
            hot = np.zeros(len(self._handles), dtype=bool)
            anomaly, resolved = out.anomaly, out.resolved
            for j in np.flatnonzero(np.isin(slots, alarmed)).tolist():
                slot = int(slots[j])
                report[j] |= hot[slot]
                hot[slot] = (hot[slot] or anomaly[j]) and not resolved[j]
        handles = self._handles
        return [(j, getattr(handles[int(slots[j])], "owner", None), kernel.point_result(out, j))
                for j in np.flatnonzero(report).tolist()]

    def _rounds(self, slots: Slots, values: Floats, values_in: Sequence[float], want: Bools,
                by_round: Slots, bounds: Ints, timestamp_of: Callable[[int], float],
                ) -> list[tuple[int, object, PointResult]]:
        """Score the queued points round by round in the columns, the rest of a hot key's
        points with object detectors, and settle the series handed to objects."""
        run = _Flush(slots, values_in, want, timestamp_of, len(self._handles))
        rounds = len(bounds)
        start = 0
        for number, end in enumerate(bounds.tolist()):
            points = by_round[start:end]
            if (rounds - number) * self.round_cost > \
                    len(points) * self.move_cost + len(by_round) - start:
                # a few series with many points (a hot key): cheaper one object each
                run.later.extend(by_round[start:].tolist())
                for slot in np.unique(slots[points]).tolist():
                    if not run.handed[slot]:
                        self._to_object(slot)
                        run.hand(slot)
                break
            start = end
            round_slots = slots[points]
            if run.handed_slots:
                stay = ~run.handed[round_slots]
                if not stay.all():
                    run.later.extend(points[~stay].tolist())
                    points, round_slots = points[stay], round_slots[stay]
                    if not len(points):
                        continue
            steps = [chart.step(round_slots, values[points]) for chart in self.charts]
            if self.ensemble:
                self._report_ensemble_round(run, points, round_slots, steps)
            else:
                self._report_chart_round(run, points, round_slots, steps[0])
        self._score_later(run)
        self._settle(run.handed_slots)
        return run.reported

    def _report_chart_round(self, run: _Flush, points: Slots, round_slots: Slots,
                            step: ColumnStep) -> None:
        """Report a chart's round: its anomalies, the wanted points, hot series' points."""
        show = step.anomaly | run.want[points] | run.hot[round_slots]
        run.hot[round_slots] |= step.anomaly
        chart = self.charts[0]
        for at in np.flatnonzero(show).tolist():
            j = int(points[at])
            owner = getattr(self._handles[int(round_slots[at])], "owner", None)
            run.reported.append((j, owner, chart.result(step, at, run.values_in[j])))

    def _report_ensemble_round(self, run: _Flush, points: Slots, round_slots: Slots,
                               steps: Sequence[ColumnStep]) -> None:
        """Report an ensemble's round: a series that opens an episode goes to its object
        detector from this point on; the wanted points are reported in control."""
        opened = steps[0].anomaly | steps[1].anomaly | steps[2].anomaly
        for at in np.flatnonzero(opened | run.want[points]).tolist():
            j = int(points[at])
            slot = int(round_slots[at])
            owner = getattr(self._handles[slot], "owner", None)
            value = run.values_in[j]
            if opened[at]:
                run.reported.append((j, owner, self._hand_over(slot, steps, at, value,
                                                               run.timestamp_of(j))))
                run.hand(slot)
                run.hot[slot] = True
            else:
                run.reported.append((j, owner, self._ensemble_result(steps, at, value)))

    def _score_later(self, run: _Flush) -> None:
        """Score the points left to object detectors, in round order (queue order per series)."""
        hot, want = run.hot, run.want
        for j in run.later:
            slot = int(run.slots[j])
            handle = self._handles[slot]
            assert handle is not None and handle.detector is not None  # noqa: S101
            result = handle.detector.update(run.values_in[j], run.timestamp_of(j))
            if result.anomaly or result.resolved or result.rebaselined or want[j] or hot[slot] \
                    or (result.details or {}).get("episode", 0.0) > 0.0:
                run.reported.append((j, handle.owner, result))
            hot[slot] = (hot[slot] or result.anomaly) and not result.resolved

    def _settle(self, handed_slots: Sequence[int]) -> None:
        """Take the series handed to objects back into their slots when in control again, and
        free the slots of the others."""
        handles = self._handles
        released = set(self._released)
        for slot in handed_slots:
            handle = handles[slot]
            if handle is None or handle.slot != slot or handle.detector is None:
                continue
            states = self._chart_states(handle.detector)
            if states is not None:
                self._load(slot, states)
                handle.detector = None
                continue
            handle.slot = -1
            handles[slot] = None
            if slot not in released:
                self._free.append(slot)

    def _to_object(self, slot: int) -> None:
        """Give the series in ``slot`` an object detector with exactly its state."""
        handle = self._handles[slot]
        assert handle is not None  # noqa: S101 - a queued slot always has its handle
        handle.detector = restore_detector(self.name, self.state_dict(slot))

    def _hand_over(self, slot: int, steps: Sequence[ColumnStep], at: int, value: float,
                   timestamp: float) -> PointResult:
        """Give the series to an ensemble object built with its state before this point, and
        let the object score the point (it opens the episode)."""
        state = self._export(at, [step.pre for step in steps])
        detector = EnsembleDetector.from_state(state)
        handle = self._handles[slot]
        assert handle is not None  # noqa: S101 - a queued slot always has its handle
        handle.detector = detector
        return detector.update(value, timestamp)

    def _ensemble_result(self, steps: Sequence[ColumnStep], at: int, value: float) -> PointResult:
        """The in-control ensemble's PointResult, from its three charts'."""
        shewhart, cusum, ewma = (chart.result(step, at, value)
                                 for chart, step in zip(self.charts, steps, strict=True))
        offset = 0.0
        details = {"shewhart_score": shewhart.score, "cusum_score": cusum.score,
                   "ewma_score": ewma.score, "episode": 0.0}
        for member in (cusum, ewma):
            if member.details:
                details.update(member.details)
        return PointResult(max(shewhart.score, cusum.score, ewma.score), False,
                           shewhart.centre + offset, shewhart.lower + offset,
                           shewhart.upper + offset, shewhart.z, shewhart.n, details=details)
