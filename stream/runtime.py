"""The consume loop: poll a batch, detect, publish, and checkpoint state with its offsets.

Order, followed in :meth:`Runner.run_once` and :meth:`Runner.checkpoint` and nowhere else:

1. poll a batch (auto-commit is off);
2. decode and judge every record (:class:`BatchProcessor`, no I/O);
3. produce the batch's alerts and dead letters, flush, and check every acknowledgement
   (acks=all); failed sends are retried, and nothing moves on until all are acknowledged;
4. on the checkpoint schedule, on revocation and on shutdown: produce each partition's state
   snapshot (with the offset it reflects) to the state topic and wait for the acks;
5. then commit exactly the snapshots' offsets.

So state and committed offsets never disagree, and on assignment an instance restores the
snapshot and resumes at its offset. A crash anywhere re-delivers what followed the last
snapshot: alerts are at-least-once, and a re-delivered alert carries the same ``alert_id``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from detectors import PointResult
from stream.alerts import Alert, SourceRef, build_alert
from stream.config import VigilConfig
from stream.errors import BrokerError, EventError, StateError
from stream.events import Event, EventKind, LabelEvent, PredictionEvent, decode_event
from stream.kafka_io import commit_offsets
from stream.metrics import Liveness, SeriesGauges, VigilMetrics
from stream.models import ModelMaintainer, ModelSignal
from stream.monitor import Monitor, Observation, PartitionId
from stream.state import Snapshot, StateMessage

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


class StateStorePort(Protocol):
    """Where snapshots go and come from (the Kafka state topic, or a fake in unit tests)."""

    def write(self, messages: Sequence[StateMessage]) -> None: ...
    def read(self, partitions: Collection[PartitionId]) -> dict[PartitionId, list[Snapshot]]: ...
    def encode(self, snapshot: Snapshot) -> list[StateMessage]: ...


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to produce: topic, key, value and headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


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


class BatchProcessor:
    """Turns consumed records into alerts and dead letters; pure, so it is tested without Kafka."""

    def __init__(
        self,
        config: VigilConfig,
        clock: Callable[[], float] = time.time,
        gauges: SeriesGauges | None = None,
        *,
        per_event: bool = False,
    ) -> None:
        self.config = config
        self.monitor = Monitor(config.detector.name, config.detector.params,
                               overrides=config.detector.overrides,
                               multivariate=config.detector.multivariate,
                               residual=config.detector.residual,
                               groups=config.detector.groups,
                               max_series=config.state.max_series,
                               series_ttl_s=config.state.series_ttl_s)
        self._kinds: dict[str, EventKind] = {
            config.topics.predictions: "prediction",
            config.topics.telemetry: "telemetry",
        }
        self.models: ModelMaintainer | None = None
        if config.models.enabled:
            self.models = ModelMaintainer(config.models)
            self._kinds[config.topics.labels] = "label"
        self._clock = clock
        self._gauges = gauges
        self.per_event = per_event
        """Score one event at a time (``Monitor.observe``) instead of the whole batch together:
        the same alerts, slower; for comparison."""

    def process(self, records: Iterable[InputRecord]) -> BatchResult:
        """Judge each record in order; a bad one becomes a dead letter, never an exception.

        The batch's events are scored together (:meth:`Monitor.observe_many`, the same results
        as one event at a time), then each record's outcome is handled in record order.
        """
        batch = BatchResult()
        topics = self.config.topics
        gauges = self._gauges
        models = self.models
        decoded: list[tuple[InputRecord, Event | EventError]] = []
        for record in records:
            batch.records += 1
            batch.next_offsets[(record.topic, record.partition)] = record.offset + 1
            try:
                decoded.append((record, decode_event(record.value or b"",
                                                     self._kinds.get(record.topic))))
            except EventError as exc:
                decoded.append((record, exc))
        outcomes = iter(self._observe_events(
            [(event, (record.topic, record.partition)) for record, event in decoded
             if not isinstance(event, LabelEvent | EventError)]))
        for record, event in decoded:
            if isinstance(event, EventError):
                self._dead_letter(record, event, batch)
                continue
            if isinstance(event, LabelEvent):
                if models is not None:
                    companion = (topics.predictions, record.partition)
                    self._model_output(models.on_label(event, companion), record, batch)
                batch.valid_by_topic[record.topic] = batch.valid_by_topic.get(record.topic, 0) + 1
                continue
            observations = next(outcomes)
            if isinstance(observations, Exception):  # a detector bug must not stop the stream
                log.error("a detector failed on %s/%d/%d", record.topic, record.partition,
                          record.offset, exc_info=observations)
                self._dead_letter(record, EventError(
                    "detector_error", f"a detector failed on this event: {observations!r}"),
                    batch)
                continue
            batch.valid_by_topic[record.topic] = batch.valid_by_topic.get(record.topic, 0) + 1
            for observation in observations:
                result = observation.result
                if result.anomaly or result.resolved or result.rebaselined:
                    source = SourceRef(record.topic, record.partition, record.offset)
                    for alert in self._alerts(observation, event, source, batch):
                        self._publish(alert, batch)
                if gauges is not None:
                    gauges.observe(observation)
            if models is not None and isinstance(event, PredictionEvent):
                flagged = any(o.result.anomaly or o.series.episode is not None
                              for o in observations)
                self._model_output(models.on_prediction(event, (record.topic, record.partition),
                                                        flagged), record, batch)
        if models is not None:
            models.end_batch()
        return batch

    def _observe_events(self, events: list[tuple[Event, PartitionId]],
                        ) -> list[list[Observation] | Exception]:
        """Per event, its observations that matter (see :meth:`Monitor.observe_many`) or the
        exception a detector raised on it."""
        if not self.per_event:
            report = None if self._gauges is None else self._gauges.wants
            return self.monitor.observe_many(events, report=report)
        outcomes: list[list[Observation] | Exception] = []
        for event, partition in events:
            try:
                outcomes.append(list(self.monitor.observe(event, partition)))
            except Exception as exc:  # noqa: BLE001 - reported per event by the caller
                outcomes.append(exc)
        return outcomes

    def _dead_letter(self, record: InputRecord, error: EventError, batch: BatchResult) -> None:
        batch.invalid_by_reason[error.reason] = batch.invalid_by_reason.get(error.reason, 0) + 1
        batch.messages.append(dead_letter(self.config.topics.dead_letter, record, error))

    def _publish(self, alert: Alert, batch: BatchResult) -> None:
        """Queue an alert on the topic its kind and severity route it to."""
        topic = self.config.alerts.topic_for(alert.kind, alert.severity,
                                             self.config.topics.alerts)
        batch.alerts.append(alert)
        batch.messages.append(OutgoingMessage(topic, alert.message_key, alert.to_json()))

    def _model_output(self, signals: list[ModelSignal], record: InputRecord,
                      batch: BatchResult) -> None:
        """Model-update messages and performance/rollback alerts from one labelled event."""
        source = SourceRef(record.topic, record.partition, record.offset)
        for signal in signals:
            if signal.message is not None:
                batch.messages.append(OutgoingMessage(
                    self.config.topics.model_updates, signal.model.encode(),
                    json.dumps(signal.message, separators=(",", ":"),
                               allow_nan=False).encode()))
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

    def _alerts(self, observation: Any, event: Any, source: SourceRef,
                batch: BatchResult) -> list[Alert]:
        """The alerts one observation raises: it may open, resolve or rebaseline an episode."""
        result = observation.result
        series = observation.series
        prediction = event if isinstance(event, PredictionEvent) else None
        common = {
            "result": result, "source": source, "event_type": observation.event_type,
            "key": observation.key, "metric": observation.metric,
            "detector": self.monitor.spec_for(
                (observation.event_type, observation.key, observation.metric))[0],
            "value": observation.value,
            "event_timestamp": event.timestamp, "detected_at": self._clock(),
            "critical_score": self.config.alerts.critical_score,
            "model_version": prediction.model_version if prediction else None,
            "prediction_id": prediction.prediction_id if prediction else None,
        }
        alerts = []
        if result.resolved and series.episode is not None:
            alerts.append(build_alert(**common, kind="resolved", episode_id=series.episode))
            series.episode = None
        cooldown = self.config.alerts.cooldown_s
        if result.anomaly and cooldown and series.last_alert is not None \
                and event.timestamp - series.last_alert < cooldown:
            batch.suppressed += 1
        elif result.anomaly:
            alert = build_alert(**common, kind="anomaly")
            # an episode stays open only with a detector that ends it (and says how long it is)
            series.episode = alert.episode_id if (result.details or {}).get("episode") else None
            series.last_alert = event.timestamp
            alerts.append(alert)
        if result.rebaselined:
            alerts.append(build_alert(**common, kind="rebaselined", episode_id=series.episode))
            series.episode = None
        return alerts


MAX_UNSETTLED = 10_000
"""Messages handed to the producer before the loop waits for their acknowledgements."""

DEAD_LETTER_MAX_BYTES = 1_000_000
"""A dead letter's value is cut to this size: with its headers, under Kafka's default 1 MiB."""


def dead_letter(topic: str, record: InputRecord, error: EventError) -> OutgoingMessage:
    """The original bytes and key, with the reason and the source position in headers.

    A value too large for the dead-letter topic is cut to ``DEAD_LETTER_MAX_BYTES`` and says
    so (``vigil.original.size``); the whole message stays at its source position.
    """
    headers: tuple[tuple[str, bytes], ...] = (
        ("vigil.error.reason", error.reason.encode()),
        ("vigil.error.detail", error.detail.encode("utf-8", "replace")[:1024]),
        ("vigil.source.topic", record.topic.encode()),
        ("vigil.source.partition", str(record.partition).encode()),
        ("vigil.source.offset", str(record.offset).encode()),
    )
    value = record.value
    if value is not None and len(value) > DEAD_LETTER_MAX_BYTES:
        headers += (("vigil.original.size", str(len(value)).encode()),)
        value = value[:DEAD_LETTER_MAX_BYTES]
    return OutgoingMessage(topic, record.key, value, headers)


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Called by kafka-python inside ``poll``: snapshot before giving partitions away."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.runner.on_revoked([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.runner.on_assigned([(tp.topic, tp.partition) for tp in assigned])


class Runner:
    """Runs the consume loop against a Kafka consumer, producer and state store."""

    def __init__(
        self,
        config: VigilConfig,
        consumer: Any,
        producer: Any,
        metrics: VigilMetrics,
        store: StateStorePort,
        liveness: Liveness | None = None,
    ) -> None:
        self.config = config
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics
        self.store = store
        self.liveness = liveness or Liveness()
        self.gauges = SeriesGauges(metrics, config.metrics.series_allowlist,
                                   config.metrics.max_series_gauges)
        self.processor = BatchProcessor(config, gauges=self.gauges)
        self.retry_backoff_s = 0.5
        """First wait before re-sending unacknowledged output; doubles up to 8 s."""
        self._inputs: tuple[str, ...] = (config.topics.predictions, config.topics.telemetry)
        self._labels: str | None = None
        """The labels topic, when models are maintained: its partition p has no snapshot of
        its own; its offset lives in the snapshot of predictions partition p, whose models
        it feeds."""
        if config.models.enabled:
            self._labels = config.topics.labels
            self._inputs += (self._labels,)
        self._next_topic_check = 0.0
        self._positions: dict[PartitionId, int] = {}
        """Next offset to consume per owned partition, where known."""
        self._checkpointed: dict[PartitionId, int] = {}
        """Offset of each owned partition's latest snapshot."""
        self._sequences: dict[PartitionId, int] = {}
        self._parked: set[PartitionId] = set()
        self._unrestored: set[PartitionId] = set()
        self._unsettled: list[tuple[OutgoingMessage, Any]] = []
        """Messages produced whose acknowledgement has not been checked yet."""
        self._events_since_checkpoint = 0
        self._checkpoint_after: dict[PartitionId, float] = {}
        """When each partition's next snapshot is due (monotonic seconds): partitions are
        spread over the interval, so the loop never stops for all of them at once."""
        self._next_expiry = 0.0
        self._stop_deadline: float | None = None
        self._stop = threading.Event()

    # --- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then checkpoint, commit and close within the grace."""
        self._stop = stop
        self.consumer.subscribe(list(self._inputs), listener=_RebalanceListener(self))
        log.info("consuming %s as group %r", ", ".join(self._inputs), self.config.kafka.group_id)
        clean = False
        try:
            while not stop.is_set():
                self.run_once()
            self._stop_deadline = time.monotonic() + self.config.runtime.shutdown_grace_s
            self.checkpoint(force=True)
            clean = True
        finally:
            self.liveness.stop()
            grace_ms = int(max(1.0, self._remaining_grace()) * 1000)
            self.consumer.close(autocommit=False, timeout_ms=grace_ms)
            log.info("stopped%s", ": state snapshotted, offsets committed" if clean else "")

    def run_once(self) -> BatchResult:
        """Poll one batch, deliver its output, and checkpoint when due."""
        self.liveness.beat()
        self._warn_about_missing_inputs()
        polled = self.consumer.poll(
            timeout_ms=self.config.runtime.poll_timeout_ms,
            max_records=self.config.runtime.max_poll_records,
        )
        self._retry_restores()  # partitions assigned during that poll, paused until restored
        self.liveness.ready = bool(self.consumer.assignment()) and not self._unrestored
        records = [record for part in polled.values() for record in part]
        batch = BatchResult()
        if records:
            started = time.perf_counter()
            batch = self.processor.process(records)
            self._deliver(batch.messages)
            self._positions.update(batch.next_offsets)
            self._events_since_checkpoint += batch.records
            self._observe(batch, time.perf_counter() - started)
        self._update_lag()
        every = self.config.state.checkpoint_every_events
        if every and self._events_since_checkpoint >= every:
            self.checkpoint()
        else:
            due = self._due_partitions()
            if due:
                self.checkpoint(due)
        return batch

    def _due_partitions(self) -> list[PartitionId]:
        """Partitions whose checkpoint interval has passed. Each partition's first one comes
        after a fraction of the interval fixed by its name, so their snapshots spread out."""
        now = time.monotonic()
        interval = self.config.state.checkpoint_interval_s
        due = []
        for partition in self._positions:
            if partition[0] == self._labels:
                continue  # saved with its predictions partition
            after = self._checkpoint_after.get(partition)
            if after is None:
                phase = (zlib.crc32(f"{partition[0]}/{partition[1]}".encode()) % 1000) / 1000
                after = self._checkpoint_after[partition] = now + interval * phase
            if now >= after:
                due.append(partition)
                self._checkpoint_after[partition] = now + interval
        return due

    # --- checkpoints --------------------------------------------------------------------

    def checkpoint(self, partitions: Iterable[PartitionId] | None = None, *,
                   force: bool = False, during_rebalance: bool = False) -> list[PartitionId]:
        """Snapshot the partitions that moved on, wait for the acks, then commit their offsets.

        ``during_rebalance``: called on the consumer's I/O thread, which must not block on the
        consumer, so one write attempt and no commit (the next owner seeks to the snapshot's
        offset whatever was committed, and commits at its own next checkpoint).
        """
        started = time.perf_counter()
        monitor = self.processor.monitor
        models = self.processor.models
        if partitions is None or time.monotonic() >= self._next_expiry:
            monitor.expire_idle()
            self._next_expiry = time.monotonic() + self.config.state.checkpoint_interval_s
        targets = list(self._positions if partitions is None else partitions)
        if self._labels is not None:  # a labels partition is saved with its predictions one
            targets = list(dict.fromkeys(self._companion(p) for p in targets))
        if during_rebalance:
            if not self._settle(attempts=1):  # on the I/O thread: no retries here
                log.warning("output of revoked partitions not acknowledged; their next owner "
                            "resumes from their previous snapshots")
                return []
        else:
            self._settle()  # the output of what the snapshots cover, before the snapshots
        messages: list[StateMessage] = []
        offsets: dict[PartitionId, int] = {}
        for partition in targets:
            offset = self._positions.get(partition)
            if offset is None:
                continue
            labels = self._labels_partition(partition)
            labels_offset = None if labels is None else self._positions.get(labels)
            moved = offset != self._checkpointed.get(partition) or monitor.is_dirty(partition) \
                or (labels is not None and labels_offset != self._checkpointed.get(labels)) \
                or (models is not None and models.is_dirty(partition))
            if not force and not moved:
                continue
            body = monitor.export_partition(partition)
            if models is not None and labels is not None:
                body["models"] = models.export_partition(partition)
                body["labels_offset"] = labels_offset
                if labels_offset is not None:
                    offsets[labels] = labels_offset
            sequence = self._sequences.get(partition, -1) + 1
            snapshot = Snapshot(partition[0], partition[1], offset, sequence, body)
            messages.extend(self.store.encode(snapshot))
            offsets[partition] = offset
        if messages:
            if during_rebalance:
                self.store.write(messages)
            else:
                self._write_state(messages)
            for partition, offset in offsets.items():
                if partition[0] != self._labels:
                    self._sequences[partition] = self._sequences.get(partition, -1) + 1
                self._checkpointed[partition] = offset
            self.metrics.last_checkpoint.set_to_current_time()
            if not during_rebalance and commit_offsets(self.consumer, offsets):
                self.metrics.last_commit.set_to_current_time()
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        if partitions is None:
            self._events_since_checkpoint = 0
        self._observe_series()
        return list(offsets)

    def _companion(self, partition: PartitionId) -> PartitionId:
        """The predictions partition whose snapshot holds ``partition``'s state (itself,
        unless it is a labels partition)."""
        if partition[0] == self._labels:
            return (self.config.topics.predictions, partition[1])
        return partition

    def _labels_partition(self, partition: PartitionId) -> PartitionId | None:
        """The labels partition feeding a predictions partition's models, if models are on."""
        if self._labels is None or partition[0] != self.config.topics.predictions:
            return None
        return (self._labels, partition[1])

    def _write_state(self, messages: Sequence[StateMessage]) -> None:
        backoff_s = self.retry_backoff_s
        while True:
            try:
                self.store.write(messages)
                return
            except BrokerError as exc:
                self.metrics.produce_errors.inc()
                log.warning("state snapshot not acknowledged (%s); retrying in %.1f s",
                            exc, backoff_s)
            self._wait_or_give_up(backoff_s, "state snapshots")
            backoff_s = min(max(backoff_s, 0.01) * 2, 8.0)

    def on_revoked(self, revoked: list[PartitionId]) -> None:
        """Before partitions go: snapshot and commit them, and park their state."""
        log.info("rebalance: %d partitions revoked", len(revoked))
        self.metrics.rebalances.inc()
        owned = [p for p in revoked if p in self._positions or p in self._checkpointed]
        try:
            self.checkpoint(owned, during_rebalance=True)
        except BrokerError as exc:
            log.warning("could not snapshot revoked partitions (%s); their next owner resumes "
                        "from the previous snapshot", exc)
        self._parked = set(revoked)
        for partition in revoked:
            self.metrics.consumer_lag.remove_partition(*partition)

    def on_assigned(self, assigned: list[PartitionId]) -> None:
        """After partitions come: keep parked state we still own; pause the rest until the loop
        has restored their snapshots (no blocking I/O here, on the consumer's I/O thread)."""
        log.info("rebalance: %d partitions assigned", len(assigned))
        monitor = self.processor.monitor
        models = self.processor.models
        keep = set(assigned)
        held = self._positions.keys() | set(monitor.partitions())
        if models is not None:
            held |= set(models.partitions())
        for partition in list(held):
            if partition not in keep:
                monitor.drop_partition(partition)
                if models is not None:
                    self._forget_models(models.drop_partition(partition))
                self._positions.pop(partition, None)
                self._checkpointed.pop(partition, None)
                self._checkpoint_after.pop(partition, None)
                self._sequences.pop(partition, None)
        fresh = [p for p in assigned if p not in self._parked or p not in self._checkpointed]
        for partition in assigned:
            if partition in self._parked and partition in self._checkpointed:
                self._seek(partition, self._checkpointed[partition])
        self._parked = set()
        self._unrestored.update(fresh)
        if fresh:
            self.consumer.pause(*[TopicPartition(t, p) for t, p in fresh])

    def _retry_restores(self) -> None:
        """Restore snapshots of newly assigned partitions; pause those not restored yet."""
        if not self._unrestored:
            return
        pending = sorted(self._unrestored)
        snapshotted = [p for p in pending if p[0] != self._labels]
        try:
            found = self.store.read(snapshotted)
        except (BrokerError, StateError) as exc:
            log.warning("state not readable yet (%s); %d partitions wait", exc, len(pending))
            return
        monitor = self.processor.monitor
        models = self.processor.models
        for partition in snapshotted:
            snapshots = found.get(partition, [])
            restored = False
            for snapshot in snapshots:
                try:
                    count = monitor.import_partition(partition, snapshot.body)
                    if models is not None:
                        models.import_partition(partition, snapshot.body.get("models"))
                        self._restore_labels(partition, snapshot.body.get("labels_offset"))
                except StateError as exc:
                    log.warning("snapshot %d of %s/%d unusable (%s); trying an older one",
                                snapshot.sequence, *partition, exc)
                    continue
                self._sequences[partition] = max(s.sequence for s in snapshots)
                self._checkpointed[partition] = snapshot.offset
                self._positions[partition] = snapshot.offset
                self._seek(partition, snapshot.offset)
                log.info("restored %d series of %s/%d at offset %d", count, *partition,
                         snapshot.offset)
                restored = True
                break
            if not restored:
                monitor.drop_partition(partition)
                if models is not None:
                    models.drop_partition(partition)
                if snapshots:
                    self._sequences[partition] = max(s.sequence for s in snapshots)
                log.info("no usable snapshot for %s/%d: its series start from warm-up",
                         *partition)
        self.consumer.resume(*[TopicPartition(t, p) for t, p in pending])
        self._unrestored.clear()

    def _restore_labels(self, partition: PartitionId, offset: int | None) -> None:
        """Resume the labels partition feeding ``partition`` where its snapshot left it (when
        this instance owns it: the range assignor gives partition p of both topics to one
        member when they have as many partitions)."""
        labels = self._labels_partition(partition)
        if labels is None or offset is None:
            return
        if labels not in self._unrestored:
            log.warning("labels partition %s/%d is not assigned with %s/%d: give both topics "
                        "the same number of partitions and use the range assignor", *labels,
                        *partition)
            return
        self._checkpointed[labels] = offset
        self._positions[labels] = offset
        self._seek(labels, offset)

    def _forget_models(self, names: list[str]) -> None:
        for name in names:
            self.metrics.forget_model(name)

    def _seek(self, partition: PartitionId, offset: int) -> None:
        self.consumer.seek(TopicPartition(*partition), offset)

    # --- delivery -----------------------------------------------------------------------

    def _deliver(self, messages: Sequence[OutgoingMessage]) -> None:
        """Hand the messages to the producer without waiting: their acknowledgements are
        awaited (and failures re-sent) by :meth:`_settle`, before any state or offset that
        covers them is written. Waiting per batch cost an acknowledgement round trip each."""
        self._unsettled.extend((m, self._send(m)) for m in messages)
        if len(self._unsettled) >= MAX_UNSETTLED:
            self._settle()

    def _send(self, message: OutgoingMessage) -> Any:
        """Hand one message to the producer; its future says whether the broker took it."""
        return self.producer.send(message.topic, key=message.key, value=message.value,
                                  headers=list(message.headers))

    def _settle(self, *, attempts: int | None = None) -> bool:
        """Wait for every message handed to the producer, re-sending failures until all are
        acknowledged (``attempts``: give up after that many rounds); True when all are."""
        pending = self._unsettled
        self._unsettled = []
        backoff_s = self.retry_backoff_s
        rounds = 0
        while pending:
            self.producer.flush()
            failed = [m for m, future in pending if future.failed()]
            if not failed:
                return True
            error = next(f.exception for _, f in pending if f.failed())
            self.metrics.produce_errors.inc()
            rounds += 1
            if attempts is not None and rounds >= attempts:
                log.warning("%d of %d messages were not acknowledged (%s)", len(failed),
                            len(pending), error)
                self._unsettled = [(m, f) for m, f in pending if f.failed()]
                return False
            log.warning("%d of %d messages were not acknowledged (%s); retrying in %.1f s",
                        len(failed), len(pending), error, backoff_s)
            self._wait_or_give_up(backoff_s, f"{len(failed)} messages")
            backoff_s = min(max(backoff_s, 0.01) * 2, 8.0)
            pending = [(m, self._send(m)) for m in failed]
        return True

    def _wait_or_give_up(self, seconds: float, what: str) -> None:
        """Wait before a retry; once stopping and past the grace period, give up."""
        self.liveness.beat()
        if self._stop.is_set():
            if self._stop_deadline is None:
                self._stop_deadline = time.monotonic() + self.config.runtime.shutdown_grace_s
            if time.monotonic() >= self._stop_deadline:
                raise BrokerError(
                    f"stopping with {what} undelivered after the shutdown grace period; their "
                    "offsets are not committed and will be processed again on restart"
                )
        time.sleep(min(seconds, max(self._remaining_grace(), 0.0)) if self._stop.is_set()
                   else seconds)

    def _remaining_grace(self) -> float:
        if self._stop_deadline is None:
            return self.config.runtime.shutdown_grace_s
        return self._stop_deadline - time.monotonic()

    # --- observability ------------------------------------------------------------------

    def _observe(self, batch: BatchResult, seconds: float) -> None:
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
            self._observe_models(models)
        metrics.processing_seconds.observe(seconds)
        metrics.series.set(self.processor.monitor.series_count)

    def _observe_models(self, models: ModelMaintainer) -> None:
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
        for model, (served, maintained) in models.losses.items():
            for kind, loss in (("served", served), ("maintained", maintained)):
                if loss is not None:
                    metrics.model_loss.labels(model=model, kind=kind).set(loss)
        models.losses.clear()

    def _observe_series(self) -> None:
        monitor = self.processor.monitor
        self.metrics.series.set(monitor.series_count)
        self.metrics.series_evicted.set_total(monitor.evicted)
        self.metrics.series_expired.set_total(monitor.expired)

    def _update_lag(self) -> None:
        for partition, position in self._positions.items():
            highwater = self.consumer.highwater(TopicPartition(*partition))
            if highwater is not None:
                self.metrics.consumer_lag.set_partition(*partition, max(highwater - position, 0))

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
