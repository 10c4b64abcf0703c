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
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from vigil.detectors.base import Detector, PointResult, restore_detector, score_from_ratio
from vigil.detectors.cusum import _HUGE, CusumChart, cusum_crossed
from vigil.detectors.ensemble import EnsembleDetector
from vigil.detectors.ewma import SCREEN_K, EwmaChart
from vigil.detectors.shewhart import ShewhartChart, limit_crossed
from vigil.detectors.stats import WARMUP_SCREEN

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Slots = npt.NDArray[np.intp]

ROUND_COST = 12.0
MOVE_COST = 5.0
"""A round of numpy work, and moving a series to an object detector and back, in units of
one object detector's point: the rest of a batch goes to objects when that is cheaper."""

MAX_EWMA_TABLE = 1 << 20
"""Longest table of exact EWMA limit factors; a smaller ``λ`` stays on the object path."""

_INF = math.inf
_DYNAMIC = {"shewhart": ("stats", "start", "pending"),
            "cusum": ("stats", "start", "pending", "pos", "neg"),
            "ewma": ("stats", "start", "pending", "ewma", "i")}
_ENSEMBLE_DYNAMIC = ("members", "recent", "offset", "episode", "quiet", "z", "confirmations",
                     "snapshot", "reference")


@dataclass(slots=True)
class _Step:
    """One round of one chart: the state before the points, and how each point looked."""

    pre: dict[str, npt.NDArray[Any]]
    lower: Floats
    upper: Floats
    z: Floats
    ratio: Floats
    anomaly: Bools
    extra: tuple[Floats, ...]


def _deviation(x: Floats, centre: Floats, sd: Floats, beyond: float) -> Floats:
    """``(x - centre) / sd``, or 0 / ±``beyond`` with a zero ``sd``, as the charts branch."""
    return np.where(sd > 0.0, (x - centre) / sd,
                    np.where(x == centre, 0.0, np.where(x > centre, beyond, -beyond)))


class _ChartColumns:
    """The state of one chart kind for every slot, and its vectorised update."""

    def __init__(self, kind: str, state: Mapping[str, Any]) -> None:
        if state.get("season") is not None or state.get("rules") is not None:
            raise ValueError("seasonal charts and run rules stay on the object path")
        self.kind = kind
        self.template = {name: value for name, value in state.items()
                         if name not in _DYNAMIC[kind]}
        self.warmup = int(state["warmup"])
        self.outliers = str(state["outliers"])
        self.lag = int(state.get("lag", 0))
        self.columns: dict[str, npt.NDArray[Any]] = {
            "n": np.zeros(0, np.int64), "mean": np.zeros(0), "m2": np.zeros(0)}
        if self.lag:  # the points waiting to be learned: a ring per slot (NaN: learn nothing)
            self.columns.update(ring=np.zeros((0, self.lag)), ring_length=np.zeros(0, np.int64),
                                ring_head=np.zeros(0, np.int64))
        if kind == "shewhart":
            self.k = float(state["k"])
        elif kind == "cusum":
            self.k, self.h = float(state["k"]), float(state["h"])
            self.columns.update(pos=np.zeros(0), neg=np.zeros(0))
        else:
            self.lam, self.L = float(state["lambda_"]), float(state["L"])
            self.factors = self._ewma_factors(self.lam, state["limits"] == "exact")
            self.columns.update(ewma=np.zeros(0), i=np.zeros(0, np.int64))

    @staticmethod
    def _ewma_factors(lam: float, exact: bool) -> Floats:
        """σ of the EWMA over σ after ``i`` points, for ``i`` up to where it stops changing:
        the expressions of :class:`~detectors.ewma.EwmaChart`, evaluated by Python."""
        spread = lam / (2.0 - lam)
        if not exact:
            return np.array([math.sqrt(spread)] * 2)
        decay = (1.0 - lam) ** 2
        factors = [0.0]
        for i in range(1, MAX_EWMA_TABLE):
            factors.append(math.sqrt(spread * (1.0 - decay**i)))
            if 1.0 - decay**i == 1.0:
                return np.array(factors)
        raise ValueError(f"EWMA weight {lam!r} too small for a table of exact limits")

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
        if self.kind == "cusum":
            columns["pos"][slot] = float(state["pos"])
            columns["neg"][slot] = float(state["neg"])
        elif self.kind == "ewma":
            ewma = state["ewma"]
            columns["ewma"][slot] = 0.0 if ewma is None else float(ewma)
            columns["i"][slot] = int(state["i"])

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
        if self.kind == "cusum":
            state["pos"] = float(values["pos"][at])
            state["neg"] = float(values["neg"][at])
        elif self.kind == "ewma":
            i = int(values["i"][at])
            state["ewma"] = None if i == 0 else float(values["ewma"][at])
            state["i"] = i
        return state

    def step(self, slots: Slots, x: Floats) -> _Step:
        """Score and learn one point for each of ``slots`` (distinct), as the chart does."""
        columns = self.columns
        pre = {name: column[slots] for name, column in columns.items() if column.ndim == 1}
        n, mean, m2 = pre["n"], pre["mean"], pre["m2"]
        warm = n >= self.warmup
        cold = n < 2
        extra: tuple[Floats, ...] = ()
        with np.errstate(all="ignore"):
            sigma = np.sqrt(m2 / (n - 1))
            if self.kind == "shewhart":
                k = self.k
                lower = mean - k * sigma
                upper = mean + k * sigma
                z = _deviation(x, mean, sigma, _INF)
                ratio = np.abs(z) / k
                beyond = np.abs(z) > k
                anomaly = warm & beyond
                if self.outliers == "clip":
                    clipped = np.where(x < lower, lower, np.where(x > upper, upper, x))
                    self._learn(slots, n, mean, m2, np.where(warm, clipped, x), None)
                else:
                    keep = None if self.outliers == "learn" else ~anomaly
                    self._learn(slots, n, mean, m2, x, keep)
                return _Step(pre, lower, upper, z, ratio, anomaly, extra)
            if self.kind == "cusum":
                k, h = self.k, self.h
                pos, neg = pre["pos"], pre["neg"]
                z = _deviation(x, mean, sigma, _INF)
                step = _deviation(x, mean, sigma, _HUGE)
                lower = mean - sigma * (h + k - neg)
                upper = mean + sigma * (h + k - pos)
                pos = pos + step - k
                pos = np.where(pos < 0.0, 0.0, pos)
                neg = neg - step - k
                neg = np.where(neg < 0.0, 0.0, neg)
                ratio = np.where(pos > neg, pos, neg) / h
                reset = ratio > 1.0
                columns["pos"][slots] = np.where(cold, pre["pos"], np.where(reset, 0.0, pos))
                columns["neg"][slots] = np.where(cold, pre["neg"], np.where(reset, 0.0, neg))
                extra = (pos, neg)
            else:
                lam, L = self.lam, self.L  # noqa: N806 - the SPC name
                i, previous = pre["i"], pre["ewma"]
                fresh = i == 0
                previous = np.where(fresh, mean, previous)
                i = np.where(fresh, 1, i + 1)
                ewma = lam * x + (1.0 - lam) * previous
                factors = self.factors
                sd = sigma * factors[np.minimum(i, len(factors) - 1)]
                width = L * sd
                z = _deviation(ewma, mean, sd, _INF)
                ratio = np.abs(z) / L
                reset = ratio > 1.0
                columns["ewma"][slots] = np.where(cold, pre["ewma"],
                                                  np.where(reset, 0.0, ewma))
                columns["i"][slots] = np.where(cold, pre["i"], np.where(reset, 0, i))
                lower = mean - width
                upper = mean + width
                extra = (ewma,)
            anomaly = warm & reset
            if self.outliers == "learn":
                self._learn(slots, n, mean, m2, x, None)
            else:
                screen = SCREEN_K * sigma
                if self.outliers == "clip":
                    low, high = mean - screen, mean + screen
                    clipped = np.where(x < low, low, np.where(x > high, high, x))
                    self._learn(slots, n, mean, m2, np.where(warm, clipped, x), None)
                else:
                    self._learn(slots, n, mean, m2, x, ~warm | (np.abs(x - mean) <= screen))
        return _Step(pre, lower, upper, z, ratio, anomaly, extra)

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

    def result(self, step: _Step, at: int, value: float) -> PointResult:
        """The chart's PointResult for the round's point ``at`` (``value`` as given)."""
        n = int(step.pre["n"][at])
        mean = float(step.pre["mean"][at])
        if n < 2:
            return PointResult(0.0, False, mean if n else value, -_INF, _INF, 0.0, n)
        z = float(step.z[at])
        anomaly = bool(step.anomaly[at])
        lower, upper = float(step.lower[at]), float(step.upper[at])
        details: dict[str, float] | None
        explanation = None
        if self.kind == "shewhart":
            score = score_from_ratio(abs(z) / self.k)
            details = {"rule": 1.0} if anomaly else None
            if anomaly:
                explanation = limit_crossed("shewhart", value, mean, lower, upper)
        elif self.kind == "cusum":
            score = score_from_ratio(float(step.ratio[at]))
            pos, neg = float(step.extra[0][at]), float(step.extra[1][at])
            details = {"cusum_pos": pos, "cusum_neg": neg}
            if anomaly:
                explanation = cusum_crossed(pos, neg, self.h)
        else:
            score = score_from_ratio(float(step.ratio[at]))
            ewma = float(step.extra[0][at])
            details = {"ewma": ewma}
            if anomaly:
                explanation = limit_crossed("ewma", ewma, mean, lower, upper)
        return PointResult(score, anomaly, mean, lower, upper, z, n, details=details,
                           explanation=explanation)


class BankSeries:
    """One series of a :class:`SeriesBank`: a detector whose state lives in the bank's slot,
    or, while ``slot`` is -1, in the object ``detector``."""

    __slots__ = ("bank", "slot", "detector", "owner", "name")

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
        if kind is EnsembleDetector:
            if state["season"] is not None:
                raise ValueError("seasonal ensembles stay on the object path")
            members = state["members"]
            self.charts = [_ChartColumns(name, members[name])
                           for name in ("shewhart", "cusum", "ewma")]
            self.template = {name: value for name, value in state.items()
                             if name != "members"}
        elif kind in (ShewhartChart, CusumChart, EwmaChart):
            self.charts = [_ChartColumns(template.name, state)]
            self.template = {}
        else:
            raise ValueError(f"no bank for {kind.__name__}")
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
        for chart, chart_state in zip(self.charts, states, strict=True):
            chart.load(slot, chart_state)
        handle.slot = slot
        handle.detector = None
        handle.name = self.name
        return True

    def _chart_states(self, detector: Detector) -> list[Mapping[str, Any]] | None:
        """The states of the bank's charts in ``detector``, or None if the bank cannot hold
        it (another type or configuration, an open episode, a moved level)."""
        if type(detector) is not self.kind:
            return None
        if isinstance(detector, EnsembleDetector) and not detector.in_control:
            return None
        state = detector.state_dict()
        if list(state) != self._state_keys or not self._same_params(state):
            return None
        if self.ensemble:
            offset = state["offset"]
            if offset != 0.0 or math.copysign(1.0, offset) < 0.0:
                return None
            states = [state["members"][name] for name in ("shewhart", "cusum", "ewma")]
        else:
            states = [state]
        for chart, chart_state in zip(self.charts, states, strict=True):
            if {k: chart_state[k] for k in chart.template} != chart.template \
                    or not chart.bankable(chart_state):
                return None
        return states

    def _same_params(self, state: Mapping[str, Any]) -> bool:
        return all(state[name] == value for name, value in self.template.items()
                   if name not in _ENSEMBLE_DYNAMIC)

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
            capacity = len(self.charts[0].columns["n"])
            if slot >= capacity:
                for chart in self.charts:
                    chart.grow(max(64, 2 * capacity))
        for chart in self.charts:
            chart.reset(slot)
        return slot

    def state_dict(self, slot: int) -> dict[str, Any]:
        """Exactly the object detector's ``state_dict`` for the series in ``slot``."""
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

    def _rounds(self, slots: Slots, values: Floats, values_in: Sequence[float], want: Bools,
                by_round: Slots, bounds: Ints, timestamp_of: Callable[[int], float],
                ) -> list[tuple[int, object, PointResult]]:
        reported: list[tuple[int, object, PointResult]] = []
        handles = self._handles
        hot = np.zeros(len(handles), dtype=bool)
        handed = np.zeros(len(handles), dtype=bool)
        handed_slots: list[int] = []  # series scored by their object detector from a point on
        later: list[int] = []  # their points, in round order: queue order per series
        rounds = len(bounds)
        start = 0
        for number, end in enumerate(bounds.tolist()):
            points = by_round[start:end]
            if (rounds - number) * self.round_cost > \
                    len(points) * self.move_cost + len(by_round) - start:
                # a few series with many points (a hot key): cheaper one object each
                later.extend(by_round[start:].tolist())
                for slot in np.unique(slots[points]).tolist():
                    if not handed[slot]:
                        self._to_object(slot)
                        handed[slot] = True
                        handed_slots.append(slot)
                break
            start = end
            round_slots = slots[points]
            if handed_slots:
                stay = ~handed[round_slots]
                if not stay.all():
                    later.extend(points[~stay].tolist())
                    points, round_slots = points[stay], round_slots[stay]
                    if not len(points):
                        continue
            x = values[points]
            steps = [chart.step(round_slots, x) for chart in self.charts]
            if not self.ensemble:
                anomaly = steps[0].anomaly
                show = anomaly | want[points] | hot[round_slots]
                hot[round_slots] |= anomaly
                chart = self.charts[0]
                for at in np.flatnonzero(show).tolist():
                    j = int(points[at])
                    owner = getattr(handles[int(round_slots[at])], "owner", None)
                    reported.append((j, owner, chart.result(steps[0], at, values_in[j])))
                continue
            opened = steps[0].anomaly | steps[1].anomaly | steps[2].anomaly
            for at in np.flatnonzero(opened | want[points]).tolist():
                j = int(points[at])
                slot = int(round_slots[at])
                owner = getattr(handles[slot], "owner", None)
                if opened[at]:
                    reported.append((j, owner, self._hand_over(slot, steps, at, values_in[j],
                                                               timestamp_of(j))))
                    handed[slot] = hot[slot] = True
                    handed_slots.append(slot)
                else:
                    reported.append((j, owner, self._ensemble_result(steps, at, values_in[j])))
        for j in later:
            slot = int(slots[j])
            handle = handles[slot]
            assert handle is not None and handle.detector is not None  # noqa: S101
            result = handle.detector.update(values_in[j], timestamp_of(j))
            if result.anomaly or result.resolved or result.rebaselined or want[j] or hot[slot] \
                    or (result.details or {}).get("episode", 0.0) > 0.0:
                reported.append((j, handle.owner, result))
            hot[slot] = (hot[slot] or result.anomaly) and not result.resolved
        released = set(self._released)
        for slot in handed_slots:
            handle = handles[slot]
            if handle is None or handle.slot != slot or handle.detector is None:
                continue
            states = self._chart_states(handle.detector)
            if states is not None:  # in control again: back into its slot
                for chart, chart_state in zip(self.charts, states, strict=True):
                    chart.load(slot, chart_state)
                handle.detector = None
                continue
            handle.slot = -1
            handles[slot] = None
            if slot not in released:
                self._free.append(slot)
        return reported

    def _to_object(self, slot: int) -> None:
        """Give the series in ``slot`` an object detector with exactly its state."""
        handle = self._handles[slot]
        assert handle is not None  # noqa: S101 - a queued slot always has its handle
        handle.detector = restore_detector(self.name, self.state_dict(slot))

    def _hand_over(self, slot: int, steps: Sequence[_Step], at: int, value: float,
                   timestamp: float) -> PointResult:
        """Give the series to an ensemble object built with its state before this point, and
        let the object score the point (it opens the episode)."""
        state = self._export(at, [step.pre for step in steps])
        detector = EnsembleDetector.from_state(state)
        handle = self._handles[slot]
        assert handle is not None  # noqa: S101 - a queued slot always has its handle
        handle.detector = detector
        return detector.update(value, timestamp)

    def _ensemble_result(self, steps: Sequence[_Step], at: int, value: float) -> PointResult:
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
