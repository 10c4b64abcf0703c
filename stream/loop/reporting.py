"""What the loop reports: each batch's counts, the engine's drained counters, lag, missing inputs.

The engine (:class:`~stream.engine.processor.BatchProcessor`) is I/O-free: it counts, and the
:class:`MetricsReporter` moves those counts into the Prometheus metrics (and each alert into a
log line) after every batch and checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from vigil.stream.engine.models import ModelMaintainer
from vigil.stream.engine.processor import BatchProcessor, BatchResult
from vigil.stream.loop.ports import Consumer
from vigil.stream.metrics import VigilMetrics
from vigil.stream.state import PartitionId

log = logging.getLogger(__name__)

TOPIC_CHECK_INTERVAL_S = 30.0
"""How often missing input topics are looked for (and warned about)."""


class MetricsReporter:
    """Moves what a batch, the monitor and the model maintainer counted into the metrics."""

    def __init__(self, metrics: VigilMetrics, consumer: Consumer,
                 processor: BatchProcessor) -> None:
        self.metrics = metrics
        self.consumer = consumer
        self.processor = processor

    def batch(self, batch: BatchResult, seconds: float) -> None:
        """A batch was judged in ``seconds``: its events, alerts and the models' counts."""
        metrics = self.metrics
        for topic, count in batch.valid_by_topic.items():
            metrics.events_processed.labels(topic=topic).inc(count)
        for reason, count in batch.invalid_by_reason.items():
            metrics.events_invalid.labels(reason=reason).inc(count)
        for alert in batch.alerts:
            if alert.kind == "anomaly":
                metrics.anomalies.labels(detector=alert.detector).inc()
            metrics.alerts_produced.labels(kind=alert.kind).inc()
            log.info("alert %s %s %s %s/%s value=%g z=%s score=%.3f %s source=%s/%d/%d",
                     alert.kind, alert.severity, alert.event_type, alert.key, alert.metric,
                     alert.value, "-" if alert.z is None else f"{alert.z:.2f}", alert.score,
                     f"fired=[{alert.explain()}]" if alert.test else alert.detector,
                     alert.source.topic, alert.source.partition, alert.source.offset)
        if batch.suppressed:
            metrics.alerts_suppressed.inc(batch.suppressed)
        models = self.processor.models
        if models is not None:
            self._models(models)
        metrics.processing_seconds.observe(seconds)
        metrics.series.set(self.processor.monitor.series_count)

    def _models(self, models: ModelMaintainer) -> None:
        """Move the maintainer's counts since the last batch into the metrics."""
        metrics = self.metrics
        counters = {"joined": metrics.labels_joined, "expired": metrics.labels_expired,
                    "unmatched": metrics.labels_unmatched, "evicted": metrics.labels_evicted,
                    "untracked": metrics.models_untracked}
        for name, count in models.counts.items():
            if name in counters and count > 0:
                counters[name].inc(count)
        models.counts.clear()
        for model, count in models.updates.items():
            metrics.model_updates.labels(model=model).inc(count)
        models.updates.clear()
        for (model, reason), count in models.held.items():
            metrics.model_held.labels(model=model, reason=reason).inc(count)
        models.held.clear()
        for model, (served, maintained) in models.losses.items():
            for kind, loss in (("served", served), ("maintained", maintained)):
                if loss is not None:
                    metrics.model_loss.labels(model=model, kind=kind).set(loss)
        models.losses.clear()

    def series(self) -> None:
        """The monitor's series count, and the totals it evicted and expired."""
        monitor = self.processor.monitor
        self.metrics.series.set(monitor.series_count)
        self.metrics.series_evicted.set_total(monitor.evicted)
        self.metrics.series_expired.set_total(monitor.expired)

    def lag(self, positions: Mapping[PartitionId, int]) -> None:
        """Each partition's lag: its end offset as last fetched minus the next to consume."""
        for partition, position in positions.items():
            highwater = self.consumer.highwater(partition)
            if highwater is not None:
                self.metrics.consumer_lag.set_partition(*partition, max(highwater - position, 0))

    def revoked(self, partitions: Iterable[PartitionId]) -> None:
        """Partitions went: their lag is no longer this instance's to report."""
        for partition in partitions:
            self.metrics.consumer_lag.remove_partition(*partition)

    def dropped(self, partition: PartitionId) -> None:
        """A partition's state is about to be dropped: forget its models' label sets."""
        models = self.processor.models
        if models is not None:
            for name in models.models_of(partition):
                self.metrics.forget_model(name)


class MissingInputs:
    """Warns every 30 s about input topics that do not exist, until each has been seen once.

    Listing topics is a metadata request the loop waits for, so it stops once all exist: on a
    connection the network dropped it would hold the loop for a request timeout.
    """

    def __init__(self, consumer: Consumer, topics: Iterable[str]) -> None:
        self.consumer = consumer
        self.topics = tuple(topics)
        self._all_seen = False
        self._next_check = 0.0

    def check(self) -> None:
        """Look for the input topics when a check is due; warn about each missing one."""
        if self._all_seen:
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + TOPIC_CHECK_INTERVAL_S
        try:
            existing = self.consumer.topics()
        except Exception as exc:  # noqa: BLE001 - a metadata hiccup must not stop the loop
            log.warning("could not list topics: %s", exc)
            return
        missing = [topic for topic in self.topics if topic not in existing]
        for topic in missing:
            log.warning("input topic %r does not exist yet; waiting for it", topic)
        self._all_seen = not missing
