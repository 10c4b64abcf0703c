"""Per-series detector state, grouped by the input partition the series' events come from.

Every (event type, key, metric) gets its own detector. State is kept per input partition so
that it can be checkpointed with that partition's offset and follow the partition to another
instance on a rebalance. Memory is bounded: at most ``max_series`` series (the least recently
seen is evicted), at most ``max_series_per_key`` of one key (beyond it that key's own least
recently seen go, so one key cannot evict the others), and a series idle for ``series_ttl_s``
of event time restarts from warm-up. The monitor is I/O-free; ``vigil run`` and ``vigil
replay`` both get it from :func:`stream.engine.processor.build_engine`, so they judge alike.

Three parts, each with one job: :class:`SeriesSpecs` says which series an event feeds and
with what detector, :class:`SeriesTable` holds the series within the memory bounds, and
:class:`Monitor` scores points and checkpoints its partitions.

Two ways in, with the same results: :meth:`Monitor.observe` scores an event's points one by
one with object detectors, and :meth:`Monitor.observe_many` takes a batch of events and keeps
the series of the common configurations in a :class:`~detectors.bank.SeriesBank`, which
scores a whole batch with numpy and returns only the observations that matter.
"""

from __future__ import annotations

import fnmatch
import heapq
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from vigil.detectors import (
    ColdStart,
    Detector,
    GroupPool,
    PointResult,
    ResidualDetector,
    build_detector,
    restore_detector,
)
from vigil.detectors.bank import BankSeries, SeriesBank
from vigil.stream.engine.episodes import worth_reporting
from vigil.stream.engine.events import Event, PredictionEvent, TelemetryEvent, event_series
from vigil.stream.errors import StateError
from vigil.stream.state import PartitionId, PartitionState, checked_number

SeriesId = tuple[str, str, str]
"""(event type, key, metric): ``("telemetry", "web-1", "latency_ms")``."""

OFFLINE: PartitionId = ("", 0)
"""The one pseudo-partition of an offline replay."""

FEATURE_VECTOR = "features"
"""Metric name of a model's feature-vector series (its points are whole feature dicts)."""

RESIDUAL_PREFIX = "residual."
"""A source's residual series is ``residual.<target>``: its points are whole metric dicts."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One point of one series, judged by that series' detector."""

    event_type: str
    key: str
    metric: str
    value: float
    result: PointResult
    series: Series


class Series:
    """One series' detector, when it last had a point (event time), its open episode, and the
    group whose pool it feeds (cold start), if any."""

    __slots__ = ("detector", "last_seen", "episode", "group", "last_alert", "series_id",
                 "partition")

    def __init__(self, detector: Detector, last_seen: float, episode: str | None = None,
                 group: str | None = None, last_alert: float | None = None,
                 series_id: SeriesId | None = None, partition: PartitionId | None = None):
        self.detector = detector
        """The series' detector, or its :class:`~detectors.bank.BankSeries` handle."""
        self.last_seen = last_seen
        self.episode = episode
        self.group = group
        self.last_alert = last_alert
        """Event time of the series' last published anomaly alert (for the cooldown)."""
        self.series_id = series_id
        self.partition = partition


class _Partition:
    """One input partition's series, by id and by name (:attr:`index`), its event-time
    watermark, whether it changed since its last export, and its groups' pool."""

    __slots__ = ("series", "index", "watermark", "dirty", "pool")

    def __init__(self) -> None:
        self.series: dict[SeriesId, Series] = {}
        self.index: dict[str, dict[str, dict[str, Series]]] = {}
        """The same series as event type → key → metric → series: the batch path finds a
        point's series by its names, without building an id tuple per point."""
        self.watermark = float("-inf")
        self.dirty = False
        self.pool: GroupPool | None = None

    def put(self, series_id: SeriesId, series: Series) -> None:
        """Hold a series under its id (replacing the one it restarts)."""
        self.series[series_id] = series
        event_type, key, metric = series_id
        self.index.setdefault(event_type, {}).setdefault(key, {})[metric] = series

    def remove(self, series_id: SeriesId) -> Series:
        """Stop holding the series of an id; return it."""
        series = self.series.pop(series_id)
        event_type, key, metric = series_id
        keys = self.index[event_type]
        metrics = keys[key]
        del metrics[metric]
        if not metrics:
            del keys[key]
        return series


class SeriesSpecs:
    """Which series an event feeds, and the detector each gets: the configuration's default,
    its overrides, groups, residual and multivariate series; and the banks that score the
    series of a common (detector name, params) together."""

    def __init__(
        self,
        detector_name: str,
        params: Mapping[str, Any] | None = None,
        *,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        multivariate: Mapping[str, Any] | None = None,
        residual: Mapping[str, Mapping[str, Any]] | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        self.detector_name = detector_name
        self.params = dict(params or {})
        self.overrides = {pattern: (spec["name"], dict(spec.get("params", {})))
                          for pattern, spec in (overrides or {}).items()}
        self.multivariate = (
            (multivariate["name"], dict(multivariate.get("params", {}))) if multivariate else None
        )
        self.residual = {pattern: {"chart": "ensemble", "target": spec["target"],
                                   "inputs": list(spec["inputs"]), **dict(spec.get("params", {}))}
                         for pattern, spec in (residual or {}).items()}
        """Source glob → ResidualDetector params; the chart is the ensemble unless given."""
        self._residual_of: dict[str, tuple[str, dict[str, Any]] | None] = {}
        self.groups = {event_type: re.compile(pattern)
                       for event_type, pattern in (groups or {}).items()}
        build_detector(detector_name, self.params)  # fail now, not on the first event
        self._specs: dict[SeriesId, tuple[str, dict[str, Any]]] = {}
        self._banks: dict[tuple[str, int], SeriesBank | None] = {}
        self._bank_of: dict[SeriesId, SeriesBank | None] = {}
        """Each series' bank (or None), asked at every object-scored point: a memo."""
        self._templates: dict[tuple[str, int], Detector] = {}
        self._feature_names: dict[str, str] = {}

    def spec_for(self, series_id: SeriesId) -> tuple[str, dict[str, Any]]:
        """(detector name, params) for a series: the first matching override, else the default."""
        spec = self._specs.get(series_id)
        if spec is None:
            spec = (self.detector_name, self.params)
            if series_id[2] == FEATURE_VECTOR and self.multivariate is not None:
                return self.multivariate
            if series_id[2].startswith(RESIDUAL_PREFIX):
                residual = self._residual_spec(series_id[1])
                if residual is not None and RESIDUAL_PREFIX + residual[0] == series_id[2]:
                    return (ResidualDetector.name, residual[1])
            if self.overrides:
                name = "/".join(series_id)
                for pattern, candidate in self.overrides.items():
                    if fnmatch.fnmatchcase(name, pattern):
                        spec = candidate
                        break
            if len(self._specs) >= 100_000:
                self._specs.clear()  # a memo, not state
            self._specs[series_id] = spec
        return spec

    def runs(self, event: Event) -> list[tuple[str, str, Any]]:
        """The event's points as runs of (event type, key, iterable of (metric, value)): its
        numbers, then its feature vector (multivariate) or its residual series' metrics
        (residual)."""
        if type(event) is TelemetryEvent:
            residual = self._residual_point(event) if self.residual else None
            if residual is not None:
                return [("telemetry", event.source,
                         [*event.metrics.items(), (residual, event.metrics)])]
            return [("telemetry", event.source, event.metrics.items())]
        if type(event) is PredictionEvent:
            names = self._feature_names
            pairs: list[tuple[str, Any]] = [("prediction", event.prediction)]
            for name, value in event.features.items():
                full = names.get(name)
                if full is None:
                    if len(names) >= 100_000:
                        names.clear()  # a memo of strings, not state
                    full = names[name] = "features." + name
                pairs.append((full, value))
            if self.multivariate is not None and event.features:
                pairs.append((FEATURE_VECTOR, event.features))
            return [("prediction", event.model, pairs)]
        event_type = "prediction" if isinstance(event, PredictionEvent) else "telemetry"
        return [(event_type, key, [(metric, value)]) for key, metric, value in event_series(event)]

    def _residual_spec(self, source: str) -> tuple[str, dict[str, Any]] | None:
        """(target, ResidualDetector params) of the first ``residual`` glob matching a source."""
        if source in self._residual_of:
            return self._residual_of[source]
        found = None
        for pattern, params in self.residual.items():
            if fnmatch.fnmatchcase(source, pattern):
                found = (str(params["target"]), params)
                break
        if len(self._residual_of) >= 100_000:
            self._residual_of.clear()  # a memo, not state
        self._residual_of[source] = found
        return found

    def _residual_point(self, event: TelemetryEvent) -> str | None:
        """The metric name of the event's residual series, when its source has one and the
        event carries the target (another scrape of the source may not)."""
        spec = self._residual_spec(event.source)
        if spec is None or spec[0] not in event.metrics:
            return None
        return RESIDUAL_PREFIX + spec[0]

    def group_of(self, event_type: str, key: str) -> str | None:
        """The group whose pool a new series of this key starts from, if any."""
        pattern = self.groups.get(event_type)
        if pattern is None:
            return None
        match = pattern.match(key)
        return match.group("group") if match else None

    def template(self, spec: tuple[str, dict[str, Any]]) -> Detector:
        """A fresh detector of the configured (name, params), built once: what a restored
        one must look like."""
        memo_key = (spec[0], id(spec[1]))
        template = self._templates.get(memo_key)
        if template is None:
            template = self._templates[memo_key] = build_detector(*spec)
        return template

    def bank_for(self, spec: tuple[str, dict[str, Any]]) -> SeriesBank | None:
        """The bank of series with this (detector name, params), or None if it has none."""
        memo_key = (spec[0], id(spec[1]))
        if memo_key not in self._banks:
            try:
                template = build_detector(*spec)
            except ValueError:
                self._banks[memo_key] = None
            else:
                self._banks[memo_key] = SeriesBank.for_template(template)
        return self._banks[memo_key]

    def into_bank(self, series: Series, value: object) -> BankSeries | None:
        """The series' handle in its bank's slot, moving it there if it can; None when the
        point goes to the object detector (groups, vectors, other configurations, an open
        episode)."""
        if series.group is not None or type(value) is not float and type(value) is not int:
            return None
        detector = series.detector
        if type(detector) is BankSeries:
            return detector if detector.bank.rebank(detector) else None
        series_id = series.series_id
        if series_id is None:
            return None
        try:
            bank = self._bank_of[series_id]
        except KeyError:
            if len(self._bank_of) >= 100_000:
                self._bank_of.clear()  # a memo, not state
            bank = self._bank_of[series_id] = self.bank_for(self.spec_for(series_id))
        if bank is None:
            return None
        handle = bank.adopt(detector, owner=series)
        series.detector = handle
        return handle if handle.slot >= 0 else None


class SeriesTable:
    """Where the series live: per input partition, at most ``max_series`` (the least recently
    seen evicted), at most ``max_series_per_key`` of one key, restarted after ``series_ttl_s``
    of event time idle."""

    def __init__(self, specs: SeriesSpecs, max_series: int, max_series_per_key: int | None,
                 series_ttl_s: float) -> None:
        self.specs = specs
        self.max_series = max_series
        self.max_series_per_key = min(max_series_per_key or max_series, max_series)
        self.series_ttl_s = series_ttl_s
        self.partitions: dict[PartitionId, _Partition] = {}
        self.recency: OrderedDict[Series, None] = OrderedDict()
        """Every series, least recently seen first (keyed by the object: no key tuples)."""
        self._by_key: dict[tuple[str, str], dict[Series, None]] = {}
        """The series of each (event type, key), for its share of ``max_series``."""
        self.evicted = 0
        """Series dropped because ``max_series`` was reached (cumulative)."""
        self.expired = 0
        """Series restarted after idling longer than ``series_ttl_s`` (cumulative)."""

    def touch(self, partition: PartitionId, timestamp: float) -> _Partition:
        """The partition's state (created if new), marked dirty, its watermark advanced."""
        part = self.partitions.get(partition)
        if part is None:
            part = self.partitions[partition] = _Partition()
        part.dirty = True
        if timestamp > part.watermark:
            part.watermark = timestamp
        return part

    def series(self, part: _Partition, partition: PartitionId, series_id: SeriesId,
               timestamp: float, *, banked: bool) -> Series:
        """The series of a point, restarted past the TTL or created (evicting the least
        recently seen beyond ``max_series``), marked most recently seen."""
        series = part.series.get(series_id)
        if series is not None and self.series_ttl_s and (
            series.last_seen < part.watermark - self.series_ttl_s
        ):
            self.expired += 1
            self.untrack(series)  # the restart below is the most recently seen
            series = None
        if series is None:
            self._make_room(series_id)
            series = self._new_series(part, partition, series_id, timestamp, banked=banked)
            self._hold(part, series)
            if len(self.recency) > self.max_series:
                self.evict(next(iter(self.recency)))
        else:
            self.recency.move_to_end(series)
        if timestamp > series.last_seen:
            series.last_seen = timestamp
        return series

    def _new_series(self, part: _Partition, partition: PartitionId, series_id: SeriesId,
                    timestamp: float, *, banked: bool) -> Series:
        event_type, key, metric = series_id
        spec = self.specs.spec_for(series_id)
        group = self.specs.group_of(event_type, key)
        bank = self.specs.bank_for(spec) if banked and group is None else None
        if bank is not None:
            handle = bank.new_series(owner=None)
            series = Series(handle, timestamp, series_id=series_id, partition=partition)
            handle.owner = series
            return series
        detector = build_detector(*spec)
        if group is not None and part.pool is not None:
            detector = part.pool.seed(detector, group, metric, member=key)
        return Series(detector, timestamp, group=group, series_id=series_id,
                      partition=partition)

    def add(self, part: _Partition, series: Series) -> None:
        """Hold a restored series (first making room in its key's share), most recently seen."""
        if series.series_id is None:
            raise StateError("a series to add has no id")
        self._make_room(series.series_id)
        self._hold(part, series)

    def _hold(self, part: _Partition, series: Series) -> None:
        """Count a new series in its partition, as most recently seen and in its key's share."""
        if series.series_id is None:
            raise StateError("a series to hold has no id")
        part.put(series.series_id, series)
        self.recency[series] = None
        event_type, key, _ = series.series_id
        self._by_key.setdefault((event_type, key), {})[series] = None

    def evict(self, series: Series) -> None:
        """Forget a series to make room (counted in ``evicted``)."""
        if series.partition is None or series.series_id is None:
            raise StateError("a tracked series lost its partition or id")
        self.partitions[series.partition].remove(series.series_id)
        self.untrack(series)
        self.evicted += 1

    def _make_room(self, series_id: SeriesId) -> None:
        """Before a new series of a key at its share: evict that key's least recently seen
        series (a sixteenth of the share at once, so the scan is paid rarely)."""
        members = self._by_key.get((series_id[0], series_id[1]))
        share = self.max_series_per_key
        if members is None or len(members) < share:
            return
        count = max(len(members) - share + 1, share // 16)
        for series in heapq.nsmallest(count, members, key=_last_seen):
            self.evict(series)

    def untrack(self, series: Series) -> None:
        """Stop counting a series and free its bank slot."""
        self.recency.pop(series, None)
        if series.series_id is not None:
            event_type, key, _ = series.series_id
            members = self._by_key.get((event_type, key))
            if members is not None:
                members.pop(series, None)
                if not members:
                    del self._by_key[(event_type, key)]
        _release(series)

    def expire_idle(self) -> int:
        """Drop series idle past the TTL relative to their partition's watermark; return count.

        Only frees memory: a series idle that long restarts on its next point anyway.
        """
        if not self.series_ttl_s:
            return 0
        dropped = 0
        for part in self.partitions.values():
            horizon = part.watermark - self.series_ttl_s
            stale = [sid for sid, s in part.series.items() if s.last_seen < horizon]
            for series_id in stale:
                self.untrack(part.remove(series_id))
            dropped += len(stale)
        self.expired += dropped
        return dropped

    def drop(self, partition: PartitionId) -> None:
        """Forget every series of the partition."""
        part = self.partitions.pop(partition, None)
        if part is None:
            return
        for series in part.series.values():
            self.untrack(series)


class Monitor(PartitionState):
    """All series of the partitions this instance owns, each with its own detector."""

    def __init__(
        self,
        detector_name: str,
        params: Mapping[str, Any] | None = None,
        *,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        multivariate: Mapping[str, Any] | None = None,
        residual: Mapping[str, Mapping[str, Any]] | None = None,
        groups: Mapping[str, str] | None = None,
        max_series: int = 1_000_000,
        max_series_per_key: int | None = None,
        series_ttl_s: float = 0.0,
    ) -> None:
        self.specs = SeriesSpecs(detector_name, params, overrides=overrides,
                                 multivariate=multivariate, residual=residual, groups=groups)
        self.table = SeriesTable(self.specs, max_series, max_series_per_key, series_ttl_s)
        self._partitions = self.table.partitions
        self._recency = self.table.recency

    @property
    def series_count(self) -> int:
        """Number of series tracked."""
        return len(self._recency)

    @property
    def evicted(self) -> int:
        """Series dropped because ``max_series`` was reached (cumulative)."""
        return self.table.evicted

    @property
    def expired(self) -> int:
        """Series restarted after idling longer than ``series_ttl_s`` (cumulative)."""
        return self.table.expired

    def spec_for(self, series_id: SeriesId) -> tuple[str, dict[str, Any]]:
        """(detector name, params) for a series: the first matching override, else the default."""
        return self.specs.spec_for(series_id)

    def observe(self, event: Event, partition: PartitionId = OFFLINE) -> Iterator[Observation]:
        """Score every point the event contributes, then let each series learn it."""
        timestamp = event.timestamp
        for event_type, key, pairs in self.specs.runs(event):
            for metric, value in pairs:
                yield self.observe_point(event_type, key, metric, value, timestamp, partition)

    def observe_point(
        self,
        event_type: str,
        key: str,
        metric: str,
        value: float | Mapping[str, float],
        timestamp: float,
        partition: PartitionId = OFFLINE,
    ) -> Observation:
        """Score and learn one point of one series (a number, or a feature vector)."""
        part = self.table.touch(partition, timestamp)
        series = self.table.series(part, partition, (event_type, key, metric), timestamp,
                                   banked=False)
        point, result = _learn_object(part, series, key, metric, value, timestamp)
        return Observation(event_type, key, metric, point, result, series)

    def observe_many(
        self,
        events: Sequence[tuple[Event, PartitionId]],
        report: Callable[[SeriesId], bool] | None = None,
    ) -> list[list[Observation] | Exception]:
        """Score and learn a batch of (event, partition), in order; per event, its observations
        that matter, or the exception that event raised.

        The same as calling :meth:`observe` per event — results, learned state, LRU order and
        evictions, TTL restarts, watermarks and ``dirty`` flags — but series of the common
        configurations are scored together by a :class:`~detectors.bank.SeriesBank`, and
        only these observations are built, in the event's point order: every point that is
        an anomaly, resolved or rebaselined; every point of a series whose ``Series.episode``
        is set at the start of the call, or that raised an anomaly earlier in the call and
        has not resolved since, or whose detector is inside an episode; every point of a
        series for which ``report(series_id)`` is true (asked once per series and call).

        An event whose point raises (a non-finite value, a detector error) gets the exception
        instead of its observations, exactly where :meth:`observe` raises: its earlier points
        are learned, the failing point's series was created or touched but learned nothing,
        its later points are not seen; the other events are unaffected. (A failure of the
        batch scoring itself, a bug rather than a bad point, propagates from the call.)
        """
        return _BatchScoring(self.table, events, report).run()

    def expire_idle(self) -> int:
        """Drop series idle past the TTL relative to their partition's watermark; return count.

        Only frees memory: a series idle that long restarts on its next point anyway.
        """
        return self.table.expire_idle()

    # --- checkpoint support ------------------------------------------------------------

    def partitions(self) -> list[PartitionId]:
        """Partitions that hold series."""
        return list(self._partitions)

    def is_dirty(self, partition: PartitionId) -> bool:
        """True when the partition has learned something since it was last exported."""
        part = self._partitions.get(partition)
        return part is not None and part.dirty

    def export_partition(self, partition: PartitionId) -> dict[str, Any]:
        """The partition's state as a JSON-serialisable body, and mark it clean."""
        part = self._partitions.get(partition) or _Partition()
        part.dirty = False
        series = []
        for sid, s in part.series.items():
            name, params = self.specs.spec_for(sid)
            series.append({"event_type": sid[0], "key": sid[1], "metric": sid[2],
                           "detector": name, "params": params, "kind": s.detector.name,
                           "last_seen": s.last_seen, "episode": s.episode,
                           "last_alert": s.last_alert, "state": s.detector.state_dict()})
        return {
            "watermark": part.watermark if part.watermark != float("-inf") else None,
            "series": series,
            "pool": part.pool.state_dict() if part.pool is not None else None,
        }

    def import_partition(self, partition: PartitionId, body: Mapping[str, Any] | None, *,
                         latest: float = math.inf) -> int:
        """Replace the partition's series with those of an exported body; return their count.

        The body is data read from Kafka: StateError when anything in it has the wrong type or
        range. Its event times are held to ``latest`` (the wall clock plus the allowed skew),
        so a forged watermark cannot expire every series. A series saved under another
        detector configuration than it now gets is left out (it starts from warm-up under the
        new one); a detector of another type than configured is refused.
        """
        self.drop_partition(partition)
        table = self.table
        part = self._partitions[partition] = _Partition()
        try:
            if not isinstance(body, Mapping) or not isinstance(body.get("series"), list):
                raise StateError("the body must be an object with a list of series")
            items = body["series"]
            if len(items) > table.max_series:  # the oldest would be evicted at once anyway
                table.evicted += len(items) - table.max_series
                items = items[len(items) - table.max_series:]
            watermark = body["watermark"]
            part.watermark = -math.inf if watermark is None else min(
                checked_number(watermark, "watermark"), latest)
            if body.get("pool") is not None:
                part.pool = GroupPool.from_state(body["pool"])
            for item in items:
                series = _restored_series(self.specs, partition, item, latest)
                if series is not None:
                    table.add(part, series)
        except Exception as exc:  # any detector's from_state may fail on a corrupt body
            self.drop_partition(partition)
            raise StateError(f"unreadable series state for {partition}: {exc!r}"[:500]) from exc
        while len(self._recency) > table.max_series:
            table.evict(next(iter(self._recency)))
        return len(part.series)

    def drop_partition(self, partition: PartitionId) -> None:
        """Forget every series of the partition (it moved to another instance)."""
        self.table.drop(partition)


_Queue = tuple[list[int], list[int], list[int]]
"""A bank's queued points in one batch: their event index, point position, and which are
flagged (reported whatever their result)."""


class _BatchScoring:
    """One :meth:`Monitor.observe_many` call: each event's points in order, those of banked
    series queued per bank and scored together at the end, the others scored at once."""

    def __init__(self, table: SeriesTable, events: Sequence[tuple[Event, PartitionId]],
                 report: Callable[[SeriesId], bool] | None) -> None:
        self.table = table
        self.events = events
        self.report = report
        self.found: list[list[tuple[int, Observation]] | Exception] = []
        self.queues: dict[SeriesBank, _Queue] = {}
        self.hot: set[Series] = set()
        """Series that alarmed earlier in the call and have not resolved since."""
        self._memo: dict[SeriesId, bool] = {}

    def run(self) -> list[list[Observation] | Exception]:
        """Score every event, then the banks; per event, its observations or its error."""
        self._score_events()
        self._flush_banks()
        out: list[list[Observation] | Exception] = []
        for item in self.found:
            if isinstance(item, Exception) or not item:
                out.append(item if isinstance(item, Exception) else [])
                continue
            if len(item) > 1:
                item.sort(key=_first)
            out.append([observation for _, observation in item])
        return out

    def wanted(self, series: Series) -> bool:
        """True when every point of the series is reported: in an episode, or asked for."""
        if series.episode is not None:  # in_episode, inlined: asked once per point
            return True
        if self.report is None or series.series_id is None:
            return False
        flag = self._memo.get(series.series_id)
        if flag is None:
            flag = self._memo[series.series_id] = bool(self.report(series.series_id))
        return flag

    def _score_events(self) -> None:
        """Per event, touch, create or restart each point's series; score the object-detector
        points now and queue the banked ones (in the bank's pending arrays, in point order).
        One loop over the whole batch: what it looks up once serves every point."""
        table = self.table
        runs = table.specs.runs
        touch = table.touch
        get_series = table.series
        ttl = table.series_ttl_s
        move_to_end = table.recency.move_to_end
        into_bank = table.specs.into_bank
        isfinite = math.isfinite
        found, queues, hot, wanted_all = self.found, self.queues, self.hot, self.wanted
        wanted = None if self.report is None else wanted_all
        current: SeriesBank | None = None
        queue: _Queue = ([], [], [])
        add_slot: Callable[[Any], None] = _no_queue
        add_value = add_event = add_position = add_slot
        for index, (event, partition) in enumerate(self.events):
            observed: list[tuple[int, Observation]] = []
            found.append(observed)
            try:
                part: _Partition | None = None
                by_name: Mapping[str, dict[str, dict[str, Series]]] = _NO_TYPES
                horizon = 0.0
                timestamp = event.timestamp
                position = -1
                for event_type, key, pairs in runs(event):
                    series_of: Mapping[str, Series] | None = None
                    for metric, value in pairs:
                        position += 1
                        if part is None:
                            part = touch(partition, timestamp)
                            by_name = part.index
                            horizon = part.watermark - ttl
                        if series_of is None:  # once per run, and after a series is made
                            series_of = by_name.get(event_type, _NO_KEYS).get(key, _NO_SERIES)
                        series = series_of.get(metric)
                        if series is None or (ttl and series.last_seen < horizon):
                            series = get_series(part, partition, (event_type, key, metric),
                                                timestamp, banked=True)
                            series_of = None  # making one may have added or evicted the key
                        else:
                            move_to_end(series)
                            if timestamp > series.last_seen:
                                series.last_seen = timestamp
                        detector = series.detector
                        handle: BankSeries | None
                        if type(detector) is BankSeries and detector.slot >= 0:
                            handle = detector
                        else:
                            handle = into_bank(series, value)
                            if handle is None:
                                point, result = _learn_object(part, series, key, metric,
                                                              value, timestamp)
                                if worth_reporting(result, series, hot, wanted_all):
                                    observed.append((position, Observation(
                                        event_type, key, metric, point, result, series)))
                                continue
                        if not isfinite(value):
                            raise ValueError(f"value must be a finite number, got {value!r}")
                        bank = handle.bank
                        if bank is not current:
                            current = bank
                            known = queues.get(bank)
                            queue = queues[bank] = ([], [], []) if known is None else known
                            add_slot = bank.pending_slots.append
                            add_value = bank.pending_values.append
                            add_event = queue[0].append
                            add_position = queue[1].append
                        # the episode test of in_episode, inlined: this runs once per point
                        if series.episode is not None or wanted is not None and wanted(series):
                            queue[2].append(len(queue[0]))
                        add_slot(handle.slot)
                        add_value(value)
                        add_event(index)
                        add_position(position)
            except Exception as exc:  # the event's own failure; the batch goes on
                found[index] = exc

    def _flush_banks(self) -> None:
        """Score each bank's queued points together; add the reported ones to their event's."""
        events, found = self.events, self.found
        for bank, (event_of, position_of, flagged) in self.queues.items():
            values = bank.pending_values

            def timestamp_of(j: int, event_of: list[int] = event_of) -> float:
                return events[event_of[j]][0].timestamp

            reported = bank.flush(timestamp_of, flagged)
            for j, owner, result in reported:
                observed_or_error = found[event_of[j]]
                if isinstance(observed_or_error, Exception) or not isinstance(owner, Series) \
                        or owner.series_id is None:
                    continue
                event_type, key, metric = owner.series_id
                observed_or_error.append((position_of[j], Observation(
                    event_type, key, metric, values[j], result, owner)))


def _learn_object(part: _Partition, series: Series, key: str, metric: str,
                  value: float | Mapping[str, float], timestamp: float,
                  ) -> tuple[float, PointResult]:
    """Score and learn one point with the series' object detector (a grouped series' normal
    point also feeds its group's pool); its point value and result (an Observation is built
    only for a point worth reporting)."""
    detector = series.detector
    result = detector.update(value, timestamp)  # type: ignore[arg-type]
    if isinstance(detector, ResidualDetector):  # its point value is the target's
        value = float(value[detector.target])
    elif not isinstance(value, float | int):  # a vector: its point value is the raw score
        value = float((result.details or {}).get("hst_score", result.score))
    elif series.group is not None and not result.anomaly:
        if part.pool is None:
            part.pool = GroupPool()
        part.pool.learn(series.group, metric, key, value)
    return value, result


def _restored_series(specs: SeriesSpecs, partition: PartitionId, item: Any,
                     latest: float) -> Series | None:
    """One exported series, restored; None when its configuration changed (it restarts)."""
    if not isinstance(item, Mapping):
        raise StateError("a series must be an object")
    event_type, key, metric = item.get("event_type"), item.get("key"), item.get("metric")
    if event_type not in ("prediction", "telemetry"):
        raise StateError(f"event_type must be prediction or telemetry, got {event_type!r}")
    if not (isinstance(key, str) and isinstance(metric, str) and _name(key)
            and _name(metric)):
        raise StateError("a series' key and metric must be names of 1-4096 characters")
    series_id: SeriesId = (str(event_type), key, metric)
    name, params = specs.spec_for(series_id)
    if item.get("detector") != name or item.get("params") != params:
        return None
    group = specs.group_of(series_id[0], key)
    kind = item.get("kind", name)
    if kind != name and not (kind == "coldstart" and group is not None):
        raise StateError(f"the series {series_id} holds a {kind!r} detector, the "
                         f"configuration a {name!r} one")
    detector = restore_detector(kind, item["state"])
    if not _configured_like(detector, specs.template((name, params))):
        raise StateError(f"the series {series_id} holds a detector with other settings "
                         "than the configuration gives")
    episode, last_alert = item.get("episode"), item.get("last_alert")
    if episode is not None and not (isinstance(episode, str) and len(episode) <= 64):
        raise StateError(f"episode must be null or an id, got {episode!r}"[:200])
    last_seen = min(checked_number(item.get("last_seen"), "last_seen"), latest)
    if last_alert is not None:
        last_alert = min(checked_number(last_alert, "last_alert"), latest)
    series = Series(detector, last_seen, episode, group, last_alert, series_id, partition)
    bank = specs.bank_for((name, params)) if series.group is None else None
    if bank is not None:
        series.detector = bank.adopt(detector, owner=series)
    return series


_NO_TYPES: Mapping[str, dict[str, dict[str, Series]]] = MappingProxyType({})
_NO_KEYS: Mapping[str, dict[str, Series]] = MappingProxyType({})
_NO_SERIES: Mapping[str, Series] = MappingProxyType({})
"""Read-only stand-ins for a partition's index before its first series of a type or key."""


def _no_queue(item: Any) -> None:
    """Stands in for a bank's queue before the first banked point of a batch."""
    raise AssertionError("no bank queue selected")


def _first(item: tuple[int, Observation]) -> int:
    return item[0]


def _last_seen(series: Series) -> float:
    return series.last_seen


def _release(series: Series) -> None:
    """Free the bank slot of a series the monitor forgets (its queued points still count)."""
    detector = series.detector
    if type(detector) is BankSeries:
        detector.bank.discard(detector)


def _name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 4_096


def _configured_like(restored: Detector, template: Detector) -> bool:
    """True when a detector restored from a snapshot has the type and settings of a fresh one
    built from the configuration (a snapshot chooses neither: its ``repr`` shows them)."""
    if isinstance(restored, ColdStart):  # a group's cold start around the configured detector
        return _configured_like(restored.inner, template)
    if isinstance(restored, ResidualDetector):
        settings = ("target", "inputs", "learner_params", "chart", "chart_params", "warmup",
                    "learn_anomalies")
        if not isinstance(template, ResidualDetector) or any(
                getattr(restored, name) != getattr(template, name) for name in settings):
            return False
        chart = restore_detector(restored.chart, restored.state_dict()["detector"])
        return repr(chart) == repr(build_detector(template.chart, template.chart_params))
    return type(restored) is type(template) and repr(restored) == repr(template)
