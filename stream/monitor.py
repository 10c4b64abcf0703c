"""Per-series detector state: every (event type, key, metric) gets its own detector.

The monitor is I/O-free, so the live runtime and the offline replay share it exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from detectors import Detector, PointResult, build_detector
from stream.events import Event, PredictionEvent, event_series

SeriesId = tuple[str, str, str]
"""(event type, key, metric): ``("telemetry", "web-1", "latency_ms")``."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One point of one series, judged by that series' detector."""

    event_type: str
    key: str
    metric: str
    value: float
    result: PointResult


class Monitor:
    """Keeps one detector per series, built on first sight from a name and parameters."""

    def __init__(self, detector_name: str, params: Mapping[str, Any] | None = None) -> None:
        self.detector_name = detector_name
        self.params = dict(params or {})
        build_detector(detector_name, self.params)  # fail now, not on the first event
        self._detectors: dict[SeriesId, Detector] = {}

    @property
    def series_count(self) -> int:
        """Number of series tracked."""
        return len(self._detectors)

    def observe(self, event: Event) -> Iterator[Observation]:
        """Score every point the event contributes, then let each series learn it."""
        event_type = "prediction" if isinstance(event, PredictionEvent) else "telemetry"
        for key, metric, value in event_series(event):
            yield self.observe_point(event_type, key, metric, value, event.timestamp)

    def observe_point(
        self, event_type: str, key: str, metric: str, value: float, timestamp: float
    ) -> Observation:
        """Score and learn one point of one series."""
        series = (event_type, key, metric)
        detector = self._detectors.get(series)
        if detector is None:
            detector = build_detector(self.detector_name, self.params)
            self._detectors[series] = detector
        return Observation(event_type, key, metric, value, detector.update(value, timestamp))
