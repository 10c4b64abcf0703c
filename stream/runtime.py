"""The consume loop: poll a batch, detect, publish alerts and dead letters, then commit.

Commit order, followed in :meth:`Runner.run_once` and nowhere else:

1. poll a batch (auto-commit is off);
2. decode and judge every record (:class:`BatchProcessor`, no I/O);
3. produce the batch's alerts and dead letters, flush, and check every acknowledgement
   (acks=all); failed sends are retried, and nothing is committed until all are acknowledged;
4. commit the offsets after the last record of each partition in the batch.

A crash anywhere before step 4 re-delivers the batch: alerts are at-least-once, and a
re-delivered alert carries the same ``alert_id``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stream.alerts import Alert, SourceRef, build_alert
from stream.config import VigilConfig
from stream.errors import BrokerError, EventError
from stream.events import EventKind, PredictionEvent, decode_event
from stream.kafka_io import commit_offsets
from stream.metrics import Liveness, VigilMetrics
from stream.monitor import Monitor

log = logging.getLogger(__name__)


class InputRecord(Protocol):
    """The fields of a consumed record that Vigil reads (kafka-python's ConsumerRecord has them)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to produce: topic, key, value and headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class BatchResult:
    """What one batch produced, and the offsets to commit once it is delivered."""

    messages: list[OutgoingMessage] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    valid_by_topic: dict[str, int] = field(default_factory=dict)
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


class BatchProcessor:
    """Turns consumed records into alerts and dead letters; pure, so it is tested without Kafka."""

    def __init__(self, config: VigilConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.monitor = Monitor(config.detector.name, config.detector.params)
        self._kinds: dict[str, EventKind] = {
            config.topics.predictions: "prediction",
            config.topics.telemetry: "telemetry",
        }
        self._clock = clock

    def process(self, records: Iterable[InputRecord]) -> BatchResult:
        """Judge each record in order; a bad one becomes a dead letter, never an exception."""
        batch = BatchResult()
        topics = self.config.topics
        critical = self.config.alerts.critical_score
        for record in records:
            batch.next_offsets[(record.topic, record.partition)] = record.offset + 1
            source = SourceRef(record.topic, record.partition, record.offset)
            try:
                event = decode_event(record.value or b"", self._kinds.get(record.topic))
            except EventError as exc:
                batch.invalid_by_reason[exc.reason] = batch.invalid_by_reason.get(exc.reason, 0) + 1
                batch.messages.append(dead_letter(topics.dead_letter, record, exc))
                continue
            batch.valid_by_topic[record.topic] = batch.valid_by_topic.get(record.topic, 0) + 1
            prediction = event if isinstance(event, PredictionEvent) else None
            for observation in self.monitor.observe(event):
                if not observation.result.anomaly:
                    continue
                alert = build_alert(
                    result=observation.result,
                    source=source,
                    event_type=observation.event_type,
                    key=observation.key,
                    metric=observation.metric,
                    detector=self.monitor.detector_name,
                    value=observation.value,
                    event_timestamp=event.timestamp,
                    detected_at=self._clock(),
                    critical_score=critical,
                    model_version=prediction.model_version if prediction else None,
                    prediction_id=prediction.prediction_id if prediction else None,
                )
                batch.alerts.append(alert)
                batch.messages.append(
                    OutgoingMessage(topics.alerts, alert.message_key, alert.to_json())
                )
        return batch


def dead_letter(topic: str, record: InputRecord, error: EventError) -> OutgoingMessage:
    """The original bytes and key, with the reason and the source position in headers."""
    headers = (
        ("vigil.error.reason", error.reason.encode()),
        ("vigil.error.detail", error.detail.encode("utf-8", "replace")[:1024]),
        ("vigil.source.topic", record.topic.encode()),
        ("vigil.source.partition", str(record.partition).encode()),
        ("vigil.source.offset", str(record.offset).encode()),
    )
    return OutgoingMessage(topic, record.key, record.value, headers)


class Runner:
    """Runs the consume loop against a Kafka consumer and producer until ``stop`` is set."""

    def __init__(
        self,
        config: VigilConfig,
        consumer: Any,
        producer: Any,
        metrics: VigilMetrics,
        liveness: Liveness | None = None,
    ) -> None:
        self.config = config
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics
        self.liveness = liveness or Liveness()
        self.processor = BatchProcessor(config)
        self._inputs = (config.topics.predictions, config.topics.telemetry)
        self.retry_backoff_s = 0.5
        """First wait before re-sending unacknowledged output; doubles up to 8 s."""
        self._next_topic_check = 0.0

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then finish the batch, flush, commit and close."""
        self.consumer.subscribe(list(self._inputs))
        log.info("consuming %s as group %r", ", ".join(self._inputs), self.config.kafka.group_id)
        try:
            while not stop.is_set():
                self.run_once(stop)
        finally:
            self.liveness.stop()
            self.consumer.close()
            self.producer.flush()
            log.info("stopped: offsets committed, consumer closed")

    def run_once(self, stop: threading.Event) -> BatchResult:
        """Poll one batch and carry it through the commit order in the module docstring."""
        self.liveness.beat()
        self._warn_about_missing_inputs()
        polled = self.consumer.poll(
            timeout_ms=self.config.runtime.poll_timeout_ms,
            max_records=self.config.runtime.max_poll_records,
        )
        if self.consumer.assignment():
            self.liveness.ready = True
        records = [record for partition in polled.values() for record in partition]
        if not records:
            return BatchResult()
        started = time.perf_counter()
        batch = self.processor.process(records)
        self._deliver(batch.messages, stop)
        if commit_offsets(self.consumer, batch.next_offsets):
            self.metrics.last_commit.set_to_current_time()
        self._observe(batch, time.perf_counter() - started)
        return batch

    def _deliver(self, messages: Sequence[OutgoingMessage], stop: threading.Event) -> None:
        """Produce and wait for every acknowledgement, retrying failures until they succeed."""
        pending = list(messages)
        backoff_s = self.retry_backoff_s
        while pending:
            futures = [
                (m, self.producer.send(m.topic, key=m.key, value=m.value, headers=list(m.headers)))
                for m in pending
            ]
            self.producer.flush()
            failed = [(m, f.exception) for m, f in futures if f.failed()]
            if not failed:
                return
            self.metrics.produce_errors.inc()
            log.warning("%d of %d messages were not acknowledged (%s); retrying in %.1f s",
                        len(failed), len(pending), failed[0][1], backoff_s)
            pending = [m for m, _ in failed]
            self.liveness.beat()
            if stop.wait(backoff_s):
                raise BrokerError(
                    f"stopping with {len(pending)} undelivered messages; their offsets are not "
                    "committed and will be processed again on restart"
                )
            backoff_s = min(max(backoff_s, 0.01) * 2, 8.0)

    def _observe(self, batch: BatchResult, seconds: float) -> None:
        metrics = self.metrics
        for topic, count in batch.valid_by_topic.items():
            metrics.events_processed.labels(topic=topic).inc(count)
        for reason, count in batch.invalid_by_reason.items():
            metrics.events_invalid.labels(reason=reason).inc(count)
        for alert in batch.alerts:
            metrics.anomalies.labels(detector=alert.detector).inc()
            log.info("alert %s %s %s/%s value=%g z=%s score=%.3f offset=%s/%d/%d",
                     alert.severity, alert.event_type, alert.key, alert.metric, alert.value,
                     "inf" if alert.z is None else f"{alert.z:.2f}", alert.score,
                     alert.source.topic, alert.source.partition, alert.source.offset)
        metrics.alerts_produced.inc(len(batch.alerts))
        metrics.processing_seconds.observe(seconds)
        metrics.series.set(self.processor.monitor.series_count)

    def _warn_about_missing_inputs(self) -> None:
        now = time.monotonic()
        if now < self._next_topic_check:
            return
        self._next_topic_check = now + 30.0
        try:
            existing = self.consumer.topics()
        except Exception as exc:  # noqa: BLE001 - a metadata hiccup must not stop the loop
            log.warning("could not list topics: %s", exc)
            return
        for topic in self._inputs:
            if topic not in existing:
                log.warning("input topic %r does not exist yet; waiting for it", topic)
