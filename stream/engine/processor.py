"""The engine's batch step: consumed records in, alerts and dead letters out, no I/O.

:func:`build_engine` builds the whole engine from the configuration, the one way in for
``vigil run``, ``vigil replay``, the demo and the benchmarks.

:class:`BatchProcessor` decodes and validates each record (a bad one becomes a dead letter),
scores the batch's events with the :class:`~.monitor.Monitor`, feeds predictions and labels
to the :class:`~.models.ModelMaintainer`, and returns what to publish. The consume loop
(:mod:`vigil.stream.loop`) delivers that output and checkpoints the engine's state per
partition (:class:`EngineState`) in the at-least-once order of
:meth:`~vigil.stream.loop.checkpoint.Checkpointer.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.detectors import PointResult
from vigil.stream.config import VigilConfig
from vigil.stream.engine.alerts import Alert, SourceRef, build_alert
from vigil.stream.engine.episodes import Episodes, in_episode
from vigil.stream.engine.events import (
    LATEST_TIMESTAMP,
    Event,
    EventKind,
    EventLimits,
    LabelEvent,
    PredictionEvent,
    TelemetryEvent,
    decode_batch,
)
from vigil.stream.engine.models import ModelInput, ModelMaintainer, ModelSignal
from vigil.stream.engine.monitor import Monitor, Observation
from vigil.stream.errors import EventError
from vigil.stream.loop.ports import InputRecord
from vigil.stream.metrics import SeriesGauges
from vigil.stream.state import PartitionId, PartitionState

log = logging.getLogger(__name__)


_UNSCORED = (LabelEvent, EventError)
"""What a decoded record may be that the monitor does not score (a tuple: built once)."""


@dataclass(frozen=True, slots=True)
class _PlacedModelInput:
    """A prediction or label of the batch for model maintenance, and how many messages and
    alerts the batch had when its record came (where its own output goes)."""

    record: InputRecord
    input: ModelInput
    messages: int
    alerts: int


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to produce: topic, key, value and headers, and the input record it comes
    from (topic, partition, offset), if any."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    source: tuple[str, int, int] | None = None


@dataclass
class BatchResult:
    """What one batch produced, and the next offset of each partition it read."""

    messages: list[OutgoingMessage] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    valid_by_topic: dict[str, int] = field(default_factory=dict)
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    next_offsets: dict[PartitionId, int] = field(default_factory=dict)
    records: int = 0
    suppressed: int = 0
    """Anomaly alerts held back by the per-series cooldown."""


class EngineState(PartitionState):
    """What the engine keeps per input partition, as one snapshot body: the monitor's series
    and, with models on, a predictions partition's maintained models (under ``"models"``)."""

    def __init__(self, monitor: Monitor, models: ModelMaintainer | None,
                 predictions: str) -> None:
        self.monitor = monitor
        self.models = models
        self.predictions = predictions

    def partitions(self) -> list[PartitionId]:
        held = self.monitor.partitions()
        if self.models is None:
            return held
        return list(dict.fromkeys([*held, *self.models.partitions()]))

    def is_dirty(self, partition: PartitionId) -> bool:
        return self.monitor.is_dirty(partition) or (
            self.models is not None and self.models.is_dirty(partition))

    def export_partition(self, partition: PartitionId) -> dict[str, Any]:
        body = self.monitor.export_partition(partition)
        if self.models is not None and partition[0] == self.predictions:
            body["models"] = self.models.export_partition(partition)
        return body

    def import_partition(self, partition: PartitionId, body: Mapping[str, Any] | None, *,
                         latest: float = math.inf) -> int:
        """Restore the partition's series and models; the number of series."""
        count = self.monitor.import_partition(partition, body, latest=latest)
        if self.models is not None:
            self.models.import_partition(partition, (body or {}).get("models"), latest=latest)
        return count

    def drop_partition(self, partition: PartitionId) -> None:
        self.monitor.drop_partition(partition)
        if self.models is not None:
            self.models.drop_partition(partition)


def build_monitor(config: VigilConfig) -> Monitor:
    """The monitor the configuration describes: the default detector, its overrides, groups,
    residual and multivariate series, and the state limits."""
    detector, state = config.detector, config.state
    return Monitor(detector.name, detector.params, overrides=detector.overrides,
                   multivariate=detector.multivariate, residual=detector.residual,
                   groups=detector.groups, max_series=state.max_series,
                   max_series_per_key=state.max_series_per_key,
                   series_ttl_s=state.series_ttl_s)


def build_engine(
    config: VigilConfig,
    *,
    clock: Callable[[], float] = time.time,
    gauges: SeriesGauges | None = None,
    processor: type[BatchProcessor] | None = None,
) -> BatchProcessor:
    """The whole I/O-free engine of a configuration, as ``vigil run``, ``vigil replay``, the
    demo and the benchmarks use it: monitor, model maintenance (models on) and the batch
    processor around them. ``processor`` picks another processor class with the same parts."""
    models = ModelMaintainer(config.models) if config.models.enabled else None
    return (processor or BatchProcessor)(config, build_monitor(config), models, clock=clock,
                                         gauges=gauges)


class BatchProcessor:
    """Turns consumed records into alerts and dead letters; pure, so it is tested without Kafka.

    Build it with :func:`build_engine`, which gives it the parts the configuration describes.
    """

    def __init__(
        self,
        config: VigilConfig,
        monitor: Monitor,
        models: ModelMaintainer | None,
        *,
        clock: Callable[[], float] = time.time,
        gauges: SeriesGauges | None = None,
    ) -> None:
        self.config = config
        self.monitor = monitor
        self.models = models
        self._kinds: dict[str, EventKind] = {
            config.topics.predictions: "prediction",
            config.topics.telemetry: "telemetry",
        }
        if models is not None:
            self._kinds[config.topics.labels] = "label"
        self.state = EngineState(self.monitor, self.models, config.topics.predictions)
        self.episodes = Episodes(config.alerts.cooldown_s)
        self._clock = clock
        self._limits = EventLimits(config.state.max_names_per_event,
                                   config.state.max_name_length)
        self._gauges = gauges

    @property
    def input_topics(self) -> tuple[str, ...]:
        """The topics whose records it judges: predictions, telemetry (and labels, models on)."""
        return tuple(self._kinds)

    def process(self, records: Iterable[InputRecord]) -> BatchResult:
        """Judge each record in order; a bad one becomes a dead letter, never an exception.

        The batch's events are scored together (:meth:`Monitor.observe_many`, the same results
        as one event at a time), then each record's outcome is handled in record order.
        """
        batch = BatchResult()
        decoded = self._decode(records, batch)
        outcomes = iter(self.observe_events(
            [(event, (record.topic, record.partition)) for record, event in decoded
             if not isinstance(event, _UNSCORED)]))
        maintained: list[_PlacedModelInput] = []
        for record, event in decoded:
            if isinstance(event, EventError):
                self._dead_letter(record, event, batch)
            elif isinstance(event, LabelEvent):
                self._label(record, event, batch, maintained)
            else:
                self._judged(record, event, next(outcomes), batch, maintained)
        if self.models is not None:
            self._maintain(self.models, maintained, batch)
            self.models.end_batch()
        return batch

    def _decode(self, records: Iterable[InputRecord],
                batch: BatchResult) -> list[tuple[InputRecord, Event | EventError]]:
        """Each record with its event, or the error that makes it a dead letter (the poll's
        values decoded together, :func:`~.events.decode_batch`); counts the records and the
        next offset of each partition."""
        limits = dataclasses.replace(self._limits, latest_timestamp=self.latest_event_time())
        kinds = self._kinds
        polled = list(records)
        next_offsets = batch.next_offsets
        for record in polled:
            next_offsets[(record.topic, record.partition)] = record.offset + 1
        batch.records += len(polled)
        events = decode_batch([record.value or b"" for record in polled],
                              [kinds.get(record.topic) for record in polled], limits)
        return list(zip(polled, events, strict=True))

    def _label(self, record: InputRecord, event: LabelEvent, batch: BatchResult,
               maintained: list[_PlacedModelInput]) -> None:
        """A label goes to the batch's model maintenance (models on), with its predictions'
        partition."""
        if self.models is not None:
            companion = (self.config.topics.predictions, record.partition)
            maintained.append(_PlacedModelInput(record, (event, companion, False),
                                                len(batch.messages), len(batch.alerts)))
            return
        batch.valid_by_topic[record.topic] = batch.valid_by_topic.get(record.topic, 0) + 1

    def _judged(self, record: InputRecord, event: PredictionEvent | TelemetryEvent,
                observations: list[Observation] | Exception, batch: BatchResult,
                maintained: list[_PlacedModelInput]) -> None:
        """A scored event's alerts and gauges, then (a prediction, models on) its place in the
        batch's model maintenance; a detector's exception makes it a dead letter."""
        if isinstance(observations, Exception):  # a detector bug must not stop the stream
            log.error("a detector failed on %s/%d/%d", record.topic, record.partition,
                      record.offset, exc_info=observations)
            self._dead_letter(record, EventError(
                "detector_error", f"a detector failed on this event: {observations!r}"), batch)
            return
        gauges = self._gauges
        for observation in observations:
            result = observation.result
            if result.anomaly or result.resolved or result.rebaselined:
                source = SourceRef(record.topic, record.partition, record.offset)
                for alert in self._alerts(observation, event, source, batch):
                    self._publish(alert, batch)
            if gauges is not None:
                gauges.observe(observation)
        models = self.models
        if models is not None and isinstance(event, PredictionEvent):
            flagged = any(o.result.anomaly or in_episode(o.series) for o in observations)
            partition = (record.topic, record.partition)
            maintained.append(_PlacedModelInput(record, (event, partition, flagged),
                                                len(batch.messages), len(batch.alerts)))
            return
        batch.valid_by_topic[record.topic] = batch.valid_by_topic.get(record.topic, 0) + 1

    def latest_event_time(self) -> float:
        """The latest event time accepted now: the wall clock plus ``runtime.max_clock_skew_s``
        (so one event from the far future cannot push a partition's clock past every TTL)."""
        return min(self._clock() + self.config.runtime.max_clock_skew_s, LATEST_TIMESTAMP)

    def _maintain(self, models: ModelMaintainer, maintained: list[_PlacedModelInput],
                  batch: BatchResult) -> None:
        """The batch's model maintenance (:meth:`maintain_events`), its output put where each
        event's would have come had it been maintained in the record loop; an event whose
        maintenance failed is dead-lettered (``model_error``), like a detector's."""
        if not maintained:
            return
        outcomes = self.maintain_events(models, [item.input for item in maintained])
        messages, alerts = batch.messages, batch.alerts
        batch.messages, batch.alerts = [], []
        sent = published = 0
        for item, outcome in zip(maintained, outcomes, strict=True):
            batch.messages += messages[sent:item.messages]
            batch.alerts += alerts[published:item.alerts]
            sent, published = item.messages, item.alerts
            record = item.record
            if isinstance(outcome, Exception):  # one event must not stop the stream
                log.error("model maintenance failed on %s/%d/%d", record.topic,
                          record.partition, record.offset, exc_info=outcome)
                self._dead_letter(record, EventError(
                    "model_error", f"model maintenance failed on this event: {outcome!r}"),
                    batch)
                continue
            if outcome:
                self._model_output(outcome, record, batch)
            batch.valid_by_topic[record.topic] = batch.valid_by_topic.get(record.topic, 0) + 1
        batch.messages += messages[sent:]
        batch.alerts += alerts[published:]

    def maintain_events(self, models: ModelMaintainer, inputs: list[ModelInput],
                        ) -> list[list[ModelSignal] | Exception]:
        """Per prediction or label of the batch, in order, the signals of its model
        maintenance or the exception it raised (:meth:`ModelMaintainer.maintain`: the batch's
        joins together, the same results as one event at a time)."""
        return models.maintain(inputs)

    def observe_events(self, events: list[tuple[Event, PartitionId]],
                       ) -> list[list[Observation] | Exception]:
        """Per event, its observations that matter (see :meth:`Monitor.observe_many`: the
        batch's events scored together) or the exception a detector raised on it."""
        report = None if self._gauges is None else self._gauges.wants
        return self.monitor.observe_many(events, report=report)

    def _dead_letter(self, record: InputRecord, error: EventError, batch: BatchResult) -> None:
        batch.invalid_by_reason[error.reason] = batch.invalid_by_reason.get(error.reason, 0) + 1
        batch.messages.append(dead_letter(self.config.topics.dead_letter, record, error))

    def _publish(self, alert: Alert, batch: BatchResult) -> None:
        """Queue an alert on the topic its kind and severity route it to."""
        topic = self.config.alerts.topic_for(alert.kind, alert.severity,
                                             self.config.topics.alerts)
        batch.alerts.append(alert)
        source = alert.source
        batch.messages.append(OutgoingMessage(topic, alert.message_key, alert.to_json(),
                                              source=(source.topic, source.partition,
                                                      source.offset)))

    def _model_output(self, signals: list[ModelSignal], record: InputRecord,
                      batch: BatchResult) -> None:
        """Model-update messages and performance/rollback alerts from one labelled event."""
        source = SourceRef(record.topic, record.partition, record.offset)
        for signal in signals:
            if signal.message is not None:
                batch.messages.append(OutgoingMessage(
                    self.config.topics.model_updates, signal.model.encode(),
                    json.dumps(signal.message, separators=(",", ":"),
                               allow_nan=False).encode(),
                    source=(record.topic, record.partition, record.offset)))
                continue
            chart = signal.chart or PointResult(1.0, True, math.nan, math.nan, math.nan,
                                                math.nan, 0)
            value = signal.value if math.isfinite(signal.value) else (
                signal.details.get("served_loss") or 0.0)
            metric = "loss" if signal.kind == "performance" else "maintained_loss"
            self._publish(build_alert(
                result=chart, source=source, event_type="prediction", key=signal.model,
                metric=metric, detector=f"{signal.kind}/{self.config.models.chart}",
                value=value, event_timestamp=signal.timestamp, detected_at=self._clock(),
                critical_score=self.config.alerts.critical_score, kind=signal.kind,
                details=signal.details), batch)

    def _alerts(self, observation: Observation, event: Event, source: SourceRef,
                batch: BatchResult) -> list[Alert]:
        """The alerts one observation raises, as :class:`.episodes.Episodes` decides."""
        prediction = event if isinstance(event, PredictionEvent) else None
        series_id = (observation.event_type, observation.key, observation.metric)
        common: dict[str, Any] = {
            "result": observation.result, "source": source,
            "event_type": observation.event_type, "key": observation.key,
            "metric": observation.metric, "detector": self.monitor.spec_for(series_id)[0],
            "value": observation.value,
            "event_timestamp": event.timestamp, "detected_at": self._clock(),
            "critical_score": self.config.alerts.critical_score,
            "model_version": prediction.model_version if prediction else None,
            "prediction_id": prediction.prediction_id if prediction else None,
        }

        def build(kind: str, episode_id: str | None = None) -> Alert:
            return build_alert(**common, kind=kind, episode_id=episode_id)

        alerts, suppressed = self.episodes.alerts(observation.series, observation.result,
                                                  event.timestamp, build)
        batch.suppressed += suppressed
        return alerts


DEAD_LETTER_MAX_BYTES = 1_000_000
"""A dead letter's value is cut to this size: with its headers, under Kafka's default 1 MiB."""

DEAD_LETTER_MAX_KEY_BYTES = 1_024
"""A dead letter's key is cut to this size (a key of megabytes would not fit either)."""


def dead_letter(topic: str, record: InputRecord, error: EventError) -> OutgoingMessage:
    """The original bytes and key, with the reason and the source position in headers.

    A value or key too large for the dead-letter topic is cut (to ``DEAD_LETTER_MAX_BYTES``,
    ``DEAD_LETTER_MAX_KEY_BYTES``) and says so (``vigil.original.size``,
    ``vigil.original.key_size``); the whole message stays at its source position.
    """
    source = (record.topic, record.partition, record.offset)
    return _capped(OutgoingMessage(topic, record.key, record.value, (
        ("vigil.error.reason", error.reason.encode()),
        ("vigil.error.detail", error.detail.encode("utf-8", "replace")[:1024]),
        *_source_headers(source)), source))


def refused_output(topic: str, message: OutgoingMessage, error: Exception) -> OutgoingMessage:
    """A message the broker refused for what it is, as a dead letter (``output_refused``):
    the topic it was for and the error in headers; a refused dead letter loses key and value."""
    headers = (("vigil.error.reason", b"output_refused"),
               ("vigil.error.detail", str(error).encode("utf-8", "replace")[:1024]),
               ("vigil.output.topic", message.topic.encode()),
               *_source_headers(message.source))
    if message.topic == topic:  # already a dead letter: what is left is where it came from
        sizes = tuple((name, str(len(part)).encode()) for name, part in (
            ("vigil.original.size", message.value), ("vigil.original.key_size", message.key))
            if part is not None)
        return OutgoingMessage(topic, None, None, headers + sizes, message.source)
    return _capped(OutgoingMessage(topic, message.key, message.value, headers, message.source))


def _source_headers(source: tuple[str, int, int] | None) -> tuple[tuple[str, bytes], ...]:
    if source is None:
        return ()
    return (("vigil.source.topic", source[0].encode()),
            ("vigil.source.partition", str(source[1]).encode()),
            ("vigil.source.offset", str(source[2]).encode()))


def _capped(message: OutgoingMessage) -> OutgoingMessage:
    """``message`` with its value and key cut to the dead-letter limits, saying so."""
    key, value, headers = message.key, message.value, message.headers
    if key is not None and len(key) > DEAD_LETTER_MAX_KEY_BYTES:
        headers += (("vigil.original.key_size", str(len(key)).encode()),)
        key = key[:DEAD_LETTER_MAX_KEY_BYTES]
    if value is not None and len(value) > DEAD_LETTER_MAX_BYTES:
        headers += (("vigil.original.size", str(len(value)).encode()),)
        value = value[:DEAD_LETTER_MAX_BYTES]
    return OutgoingMessage(message.topic, key, value, headers, message.source)
