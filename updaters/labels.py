"""Delayed labels: join each label to the prediction it belongs to, in bounded memory.

Predictions wait in arrival order, keyed by ``prediction_id``, until their label arrives,
their time-to-live runs out (``expire``) or the buffer is full — by count, or by the
approximate bytes their payloads hold (``max_bytes``) — and the oldest is evicted. A
label that arrives before its prediction waits in a smaller map of pending labels under the
same TTL, and joins the prediction when it comes. ``expire(now)`` enforces the TTL: call it
once per poll with the current event time; until then an entry can still join. Entries
expire in arrival order: one that arrived late with an old timestamp goes when every entry
before it has gone.

Counters (plain attributes, for metrics): ``joined`` (labels matched to predictions,
including predictions that carried their label), ``expired`` (predictions whose TTL ran
out), ``evicted`` (predictions dropped because the buffer was full), ``unmatched`` (labels
that never found their prediction: expired or evicted from the pending map, or replaced by
a later label for the same id) and ``duplicates`` (predictions re-sent with an id already
waiting: the later one replaces the earlier).

Payloads and labels are stored as given; ``state_dict`` needs them JSON-serialisable.
``from_state`` takes its limits from the caller (the configuration), never from the state,
and checks every entry it reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

PredictionId = str | int

_COUNTERS = ("joined", "expired", "evicted", "unmatched", "duplicates")


@dataclass(slots=True)
class Joined:
    """A prediction and its label (not frozen: one is built per label, and a frozen one
    costs twice as much to build)."""

    prediction_id: PredictionId
    payload: Any
    label: Any
    prediction_timestamp: float
    label_timestamp: float

    @property
    def delay(self) -> float:
        """Seconds from the prediction to its label (negative if the label came first)."""
        return self.label_timestamp - self.prediction_timestamp


@dataclass(frozen=True, slots=True)
class Expired:
    """A prediction whose label did not come within the TTL."""

    prediction_id: PredictionId
    payload: Any
    timestamp: float


def _check_time(timestamp: float) -> float:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise ValueError(f"timestamp must be a finite number of seconds, got {timestamp!r}")
    if not math.isfinite(timestamp):
        raise ValueError(f"timestamp must be a finite number of seconds, got {timestamp!r}")
    return float(timestamp)


def _check_id(prediction_id: PredictionId) -> PredictionId:
    if isinstance(prediction_id, bool) or not isinstance(prediction_id, str | int):
        raise ValueError(f"prediction_id must be a string or an integer, got {prediction_id!r}")
    return prediction_id


def approximate_size(value: Any) -> int:
    """Bytes a JSON-like value roughly holds in memory (strings, numbers, lists, dicts).

    >>> approximate_size({"amount": 42.5}) > approximate_size({})
    True
    """
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += 50 + len(item)
        elif isinstance(item, dict):
            total += 64 + 40 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 56 + 8 * len(item)
            stack.extend(item)
        else:
            total += 32
    return total


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _entry(entry: Any, latest: float) -> tuple[PredictionId, float, Any]:
    """(id, timestamp, payload) of a saved entry, its timestamp held to ``latest``."""
    if not isinstance(entry, list) or len(entry) != 3:
        raise ValueError("a saved entry must be [prediction_id, timestamp, payload]")
    pid = _check_id(entry[0])
    if isinstance(pid, str) and len(pid) > 4_096:
        raise ValueError("a saved prediction_id is longer than 4096 characters")
    return pid, min(_check_time(entry[1]), latest), entry[2]


class LabelJoinBuffer:
    """Predictions waiting for their labels, bounded by count and by time.

    >>> buffer = LabelJoinBuffer(max_entries=2, ttl_seconds=60.0)
    >>> buffer.add_prediction("p1", {"y_hat": 3.0}, timestamp=0.0)
    >>> buffer.add_label("p1", 2.5, timestamp=10.0).label
    2.5
    >>> buffer.add_label("p9", 1.0, timestamp=11.0) is None  # early: waits for "p9"
    True
    >>> buffer.add_prediction("p9", {"y_hat": 0.0}, timestamp=12.0).delay
    -1.0
    >>> buffer.add_prediction("p2", {}, timestamp=20.0)
    >>> [e.prediction_id for e in buffer.expire(now=100.0)]
    ['p2']
    >>> buffer.joined, buffer.expired, buffer.unmatched
    (2, 1, 0)
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        ttl_seconds: float = 3600.0,
        max_pending_labels: int | None = None,
        *,
        max_bytes: int | None = None,
        size_of: Callable[[Any], int] = approximate_size,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be an integer >= 1, got {max_entries!r}")
        if max_pending_labels is None:
            max_pending_labels = max(1, max_entries // 10)
        if (
            isinstance(max_pending_labels, bool)
            or not isinstance(max_pending_labels, int)
            or max_pending_labels < 0
        ):
            raise ValueError(
                f"max_pending_labels must be an integer >= 0 (0: drop early labels), "
                f"got {max_pending_labels!r}"
            )
        ttl = _check_time(ttl_seconds)
        if ttl <= 0.0:
            raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds!r}")
        if max_bytes is not None and (isinstance(max_bytes, bool)
                                      or not isinstance(max_bytes, int) or max_bytes < 1):
            raise ValueError(f"max_bytes must be None or an integer >= 1, got {max_bytes!r}")
        self.max_entries = max_entries
        self.ttl_seconds = ttl
        self.max_pending_labels = max_pending_labels
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._predictions: dict[PredictionId, tuple[float, Any, int]] = {}
        """Waiting predictions: (timestamp, payload, approximate bytes), oldest first."""
        self._bytes = 0
        self._labels: dict[PredictionId, tuple[float, Any]] = {}
        self.joined = 0
        self.expired = 0
        self.evicted = 0
        self.unmatched = 0
        self.duplicates = 0

    def __len__(self) -> int:
        """Predictions waiting for a label."""
        return len(self._predictions)

    @property
    def pending_labels(self) -> int:
        """Labels waiting for their prediction."""
        return len(self._labels)

    @property
    def waiting_bytes(self) -> int:
        """Approximate bytes the waiting predictions hold."""
        return self._bytes

    def add_prediction(
        self, prediction_id: PredictionId, payload: Any, timestamp: float
    ) -> Joined | None:
        """Hold a prediction until its label comes; the join if its label came first."""
        pid = _check_id(prediction_id)
        ts = _check_time(timestamp)
        early = self._labels.pop(pid, None)
        if early is not None:
            self.joined += 1
            return Joined(pid, payload, early[1], ts, early[0])
        self._wait(pid, ts, payload)
        return None

    def _wait(self, pid: PredictionId, ts: float, payload: Any) -> None:
        """Queue a prediction last, evicting the oldest while beyond either bound."""
        predictions = self._predictions
        size = self._size_of(payload) + (50 + len(pid) if isinstance(pid, str) else 32)
        earlier = predictions.pop(pid, None)
        if earlier is not None:
            self._bytes -= earlier[2]
            self.duplicates += 1  # re-inserted below: it waits from its new arrival
        limit = self.max_bytes
        if limit is not None and size > limit:
            self.evicted += 1  # larger than the whole budget: it cannot wait at all
            return
        while predictions and (len(predictions) >= self.max_entries
                               or (limit is not None and self._bytes + size > limit)):
            self._bytes -= predictions.pop(next(iter(predictions)))[2]
            self.evicted += 1
        predictions[pid] = (ts, payload, size)
        self._bytes += size

    def add_label(self, prediction_id: PredictionId, label: Any, timestamp: float) -> Joined | None:
        """The join of ``label`` with its prediction, or None (the label waits for it)."""
        pid = _check_id(prediction_id)
        ts = _check_time(timestamp)
        waiting = self._predictions.pop(pid, None)
        if waiting is not None:
            self._bytes -= waiting[2]
            self.joined += 1
            return Joined(pid, waiting[1], label, waiting[0], ts)
        labels = self._labels
        if labels.pop(pid, None) is not None:
            self.unmatched += 1  # replaced by this later label
        elif len(labels) >= self.max_pending_labels:
            if not labels:
                self.unmatched += 1  # no room at all for early labels
                return None
            del labels[next(iter(labels))]
            self.unmatched += 1
        labels[pid] = (ts, label)
        return None

    def add_labelled(
        self, prediction_id: PredictionId, payload: Any, label: Any, timestamp: float
    ) -> Joined:
        """The join of a prediction that carries its own label: nothing is buffered."""
        pid = _check_id(prediction_id)
        ts = _check_time(timestamp)
        self.joined += 1
        return Joined(pid, payload, label, ts, ts)

    def expire(self, now: float) -> list[Expired]:
        """Drop predictions and pending labels older than the TTL; the expired predictions."""
        cutoff = _check_time(now) - self.ttl_seconds
        gone: list[Expired] = []
        predictions = self._predictions
        for pid, (ts, payload, _) in predictions.items():
            if ts >= cutoff:
                break
            gone.append(Expired(pid, payload, ts))
        for entry in gone:
            self._bytes -= predictions.pop(entry.prediction_id)[2]
        self.expired += len(gone)
        labels = self._labels
        stale = []
        for pid, (ts, _) in labels.items():
            if ts >= cutoff:
                break
            stale.append(pid)
        for pid in stale:
            del labels[pid]
        self.unmatched += len(stale)
        return gone

    def counters(self) -> dict[str, int]:
        """The counters by name."""
        return {name: getattr(self, name) for name in _COUNTERS}

    def state_dict(self) -> dict[str, Any]:
        """Settings, waiting entries in arrival order and counters; JSON-serialisable."""
        return {
            "max_entries": self.max_entries,
            "ttl_seconds": self.ttl_seconds,
            "max_pending_labels": self.max_pending_labels,
            "predictions": [[pid, ts, payload]
                            for pid, (ts, payload, _) in self._predictions.items()],
            "labels": [[pid, ts, label] for pid, (ts, label) in self._labels.items()],
            "counters": self.counters(),
        }

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        max_entries: int,
        ttl_seconds: float,
        max_pending_labels: int | None = None,
        max_bytes: int | None = None,
        size_of: Callable[[Any], int] = approximate_size,
        check_payload: Callable[[Any], object] = lambda payload: None,
        check_label: Callable[[Any], object] = lambda label: None,
        latest: float = math.inf,
    ) -> LabelJoinBuffer:
        """A buffer with the caller's limits holding the entries of a saved ``state``.

        The state is data (read from Kafka): the limits it records are ignored, every entry is
        checked (``check_payload``, ``check_label`` raise ValueError on a bad one), timestamps
        are held to ``latest``, and beyond the limits the oldest entries go (counted
        ``evicted``, or ``unmatched`` for labels). ValueError when the state is malformed.
        """
        buffer = cls(max_entries, ttl_seconds, max_pending_labels, max_bytes=max_bytes,
                     size_of=size_of)
        if not isinstance(state, Mapping):
            raise ValueError("a label buffer's state must be an object")
        predictions, labels, counters = (state.get(name) for name in
                                         ("predictions", "labels", "counters"))
        if not (isinstance(predictions, list) and isinstance(labels, list)
                and isinstance(counters, Mapping)):
            raise ValueError("a label buffer's state needs lists of predictions and labels and "
                             "an object of counters")
        for name in _COUNTERS:
            setattr(buffer, name, _count(counters.get(name), f"counters.{name}"))
        for entry in predictions:
            pid, ts, payload = _entry(entry, latest)
            check_payload(payload)
            buffer._wait(pid, ts, payload)
        for entry in labels:
            pid, ts, label = _entry(entry, latest)
            check_label(label)
            if buffer.max_pending_labels == 0:
                buffer.unmatched += 1
                continue
            buffer._labels.pop(pid, None)
            if len(buffer._labels) >= buffer.max_pending_labels:
                del buffer._labels[next(iter(buffer._labels))]
                buffer.unmatched += 1
            buffer._labels[pid] = (ts, label)
        return buffer

    def __repr__(self) -> str:
        return (
            f"LabelJoinBuffer(max_entries={self.max_entries}, ttl_seconds={self.ttl_seconds}, "
            f"waiting={len(self)}, pending_labels={self.pending_labels})"
        )
