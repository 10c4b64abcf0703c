"""Per-series detector state, grouped by the input partition the series' events come from.

Every (event type, key, metric) gets its own detector. State is kept per input partition so
that it can be checkpointed with that partition's offset and follow the partition to another
instance on a rebalance. Memory is bounded: at most ``max_series`` series (the least recently
seen is evicted), and a series idle for ``series_ttl_s`` of event time restarts from warm-up.
The monitor is I/O-free, so the live runtime and the offline replay share it exactly.
"""

from __future__ import annotations

import fnmatch
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from detectors import Detector, GroupPool, PointResult, build_detector, restore_detector
from stream.errors import StateError
from stream.events import Event, PredictionEvent, event_series

SeriesId = tuple[str, str, str]
"""(event type, key, metric): ``("telemetry", "web-1", "latency_ms")``."""

PartitionId = tuple[str, int]
"""(topic, partition) of the input the series' events come from."""

OFFLINE: PartitionId = ("", 0)
"""The one pseudo-partition of an offline replay."""

FEATURE_VECTOR = "features"
"""Metric name of a model's feature-vector series (its points are whole feature dicts)."""


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

    __slots__ = ("detector", "last_seen", "episode", "group", "last_alert")

    def __init__(self, detector: Detector, last_seen: float, episode: str | None = None,
                 group: str | None = None, last_alert: float | None = None):
        self.detector = detector
        self.last_seen = last_seen
        self.episode = episode
        self.group = group
        self.last_alert = last_alert
        """Event time of the series' last published anomaly alert (for the cooldown)."""


class _Partition:
    __slots__ = ("series", "watermark", "dirty", "pool")

    def __init__(self) -> None:
        self.series: dict[SeriesId, Series] = {}
        self.watermark = float("-inf")
        self.dirty = False
        self.pool: GroupPool | None = None


class Monitor:
    """All series of the partitions this instance owns, each with its own detector."""

    def __init__(
        self,
        detector_name: str,
        params: Mapping[str, Any] | None = None,
        *,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        multivariate: Mapping[str, Any] | None = None,
        groups: Mapping[str, str] | None = None,
        max_series: int = 1_000_000,
        series_ttl_s: float = 0.0,
    ) -> None:
        self.detector_name = detector_name
        self.params = dict(params or {})
        self.overrides = {pattern: (spec["name"], dict(spec.get("params", {})))
                          for pattern, spec in (overrides or {}).items()}
        self.multivariate = (
            (multivariate["name"], dict(multivariate.get("params", {}))) if multivariate else None
        )
        self.groups = {event_type: re.compile(pattern)
                       for event_type, pattern in (groups or {}).items()}
        build_detector(detector_name, self.params)  # fail now, not on the first event
        self._specs: dict[SeriesId, tuple[str, dict[str, Any]]] = {}
        self.max_series = max_series
        self.series_ttl_s = series_ttl_s
        self._partitions: dict[PartitionId, _Partition] = {}
        self._recency: OrderedDict[tuple[PartitionId, SeriesId], Series] = OrderedDict()
        self.evicted = 0
        """Series dropped because ``max_series`` was reached (cumulative)."""
        self.expired = 0
        """Series restarted after idling longer than ``series_ttl_s`` (cumulative)."""

    @property
    def series_count(self) -> int:
        """Number of series tracked."""
        return len(self._recency)

    def spec_for(self, series_id: SeriesId) -> tuple[str, dict[str, Any]]:
        """(detector name, params) for a series: the first matching override, else the default."""
        spec = self._specs.get(series_id)
        if spec is None:
            spec = (self.detector_name, self.params)
            if series_id[2] == FEATURE_VECTOR and self.multivariate is not None:
                return self.multivariate
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

    def observe(self, event: Event, partition: PartitionId = OFFLINE) -> Iterator[Observation]:
        """Score every point the event contributes, then let each series learn it."""
        event_type = "prediction" if isinstance(event, PredictionEvent) else "telemetry"
        for key, metric, value in event_series(event):
            yield self.observe_point(event_type, key, metric, value, event.timestamp, partition)
        if self.multivariate is not None and isinstance(event, PredictionEvent) \
                and event.features:
            yield self.observe_point(event_type, event.model, FEATURE_VECTOR, event.features,
                                     event.timestamp, partition)

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
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition()
        part.dirty = True
        if timestamp > part.watermark:
            part.watermark = timestamp
        series_id = (event_type, key, metric)
        series = part.series.get(series_id)
        recency_key = (partition, series_id)
        if series is not None and self.series_ttl_s and (
            series.last_seen < part.watermark - self.series_ttl_s
        ):
            self.expired += 1
            series = None
        if series is None:
            detector = build_detector(*self.spec_for(series_id))
            group = self._group_of(event_type, key)
            if group is not None and part.pool is not None:
                detector = part.pool.seed(detector, group, metric, member=key)
            series = Series(detector, timestamp, group=group)
            part.series[series_id] = series
            self._recency[recency_key] = series
            self._recency.move_to_end(recency_key)  # a restart after the TTL is news too
            if len(self._recency) > self.max_series:
                self._evict_one()
        else:
            self._recency.move_to_end(recency_key)
        if timestamp > series.last_seen:
            series.last_seen = timestamp
        result = series.detector.update(value, timestamp)  # type: ignore[arg-type]
        if not isinstance(value, float | int):  # a vector: its point value is the raw score
            value = float((result.details or {}).get("hst_score", result.score))
        elif series.group is not None and not result.anomaly:
            if part.pool is None:
                part.pool = GroupPool()
            part.pool.learn(series.group, metric, key, value)
        return Observation(event_type, key, metric, value, result, series)

    def _group_of(self, event_type: str, key: str) -> str | None:
        pattern = self.groups.get(event_type)
        if pattern is None:
            return None
        match = pattern.match(key)
        return match.group("group") if match else None

    def _evict_one(self) -> None:
        (partition, series_id), _ = self._recency.popitem(last=False)
        del self._partitions[partition].series[series_id]
        self.evicted += 1

    def expire_idle(self) -> int:
        """Drop series idle past the TTL relative to their partition's watermark; return count.

        Only frees memory: a series idle that long restarts on its next point anyway.
        """
        if not self.series_ttl_s:
            return 0
        dropped = 0
        for partition, part in self._partitions.items():
            horizon = part.watermark - self.series_ttl_s
            stale = [sid for sid, s in part.series.items() if s.last_seen < horizon]
            for series_id in stale:
                del part.series[series_id]
                del self._recency[(partition, series_id)]
            dropped += len(stale)
        self.expired += dropped
        return dropped

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
            name, params = self.spec_for(sid)
            series.append({"event_type": sid[0], "key": sid[1], "metric": sid[2],
                           "detector": name, "params": params, "kind": s.detector.name,
                           "last_seen": s.last_seen, "episode": s.episode,
                           "last_alert": s.last_alert, "state": s.detector.state_dict()})
        return {
            "watermark": part.watermark if part.watermark != float("-inf") else None,
            "series": series,
            "pool": part.pool.state_dict() if part.pool is not None else None,
        }

    def import_partition(self, partition: PartitionId, body: Mapping[str, Any]) -> int:
        """Replace the partition's series with those of an exported body; return their count.

        Raises StateError when the body cannot be read; a series saved under another detector
        configuration than it now gets is left out (it starts from warm-up under the new one).
        """
        self.drop_partition(partition)
        part = self._partitions[partition] = _Partition()
        try:
            watermark = body["watermark"]
            part.watermark = float("-inf") if watermark is None else float(watermark)
            if body.get("pool") is not None:
                part.pool = GroupPool.from_state(body["pool"])
            for item in body["series"]:
                series_id = (str(item["event_type"]), str(item["key"]), str(item["metric"]))
                name, params = self.spec_for(series_id)
                if item.get("detector") != name or item.get("params") != params:
                    continue
                detector = restore_detector(item.get("kind", name), item["state"])
                series = Series(detector, float(item["last_seen"]), item.get("episode"),
                                self._group_of(series_id[0], series_id[1]),
                                item.get("last_alert"))
                part.series[series_id] = series
                self._recency[(partition, series_id)] = series
        except Exception as exc:  # any detector's from_state may fail on a corrupt body
            self.drop_partition(partition)
            raise StateError(f"unreadable series state for {partition}: {exc!r}") from exc
        while len(self._recency) > self.max_series:
            self._evict_one()
        return len(part.series)

    def drop_partition(self, partition: PartitionId) -> None:
        """Forget every series of the partition (it moved to another instance)."""
        part = self._partitions.pop(partition, None)
        if part is None:
            return
        for series_id in part.series:
            self._recency.pop((partition, series_id), None)
