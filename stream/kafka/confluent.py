"""confluent-kafka (librdkafka) clients behind the consume loop's ports (:mod:`stream.loop.ports`).

``kafka.client = "confluent-kafka"`` swaps the consume loop's consumer and producer for these
adapters; everything else keeps kafka-python. Partitions are ``(topic, partition)`` tuples and
failures Vigil's errors at the ports; the adapters bridge librdkafka's differences:

- rebalance callbacks run inside ``consume`` on the calling thread, as the port promises for
  ``poll``; a listener's seeks and pauses during an assignment are applied with the assignment;
- ``consume`` returns a flat list and waits for a full batch, so :meth:`ConfluentConsumer.poll`
  drains what is there, waits for one message only when there is none, and groups per
  partition in order; error messages (partition EOF and the like) never become records;
- commits are synchronous and explicit (auto-commit and auto offset store are off);
- the producer is idempotent with acks=all, and its futures answer ``failed()``/``exception``
  after ``flush()``, when librdkafka has served their delivery reports; a broker's refusal of a
  message for what it is becomes :class:`~stream.errors.MessageRefused`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any, NamedTuple

from vigil.stream.config import VigilConfig
from vigil.stream.errors import BrokerError, ConfigError, MessageRefused
from vigil.stream.kafka.kafka_python import (
    IDLE_MARGIN_MS,
    METADATA_MAX_AGE_MS,
    RECONNECT_BACKOFF_MAX_MS,
    bootstrap_servers,
    security_settings,
)
from vigil.stream.loop.ports import Consumer, Producer, RebalanceListener
from vigil.stream.state import PartitionId

log = logging.getLogger(__name__)

CONSUMER_OVERRIDES: Mapping[str, str] = {
    "group_id": "group.id",
    "auto_offset_reset": "auto.offset.reset",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "fetch_min_bytes": "fetch.min.bytes",
    "client_id": "client.id",
}
"""kafka-python consumer settings that callers override, and their librdkafka names."""

PRODUCER_OVERRIDES: Mapping[str, str] = {
    "max_request_size": "message.max.bytes",
    "linger_ms": "linger.ms",
    "client_id": "client.id",
}
"""kafka-python producer settings that callers override, and their librdkafka names."""

DELIVERY_TIMEOUT_MS = 120_000
"""How long librdkafka retries a message before reporting it failed (kafka-python's default)."""


def _confluent() -> Any:
    """The confluent_kafka module, or a ConfigError saying how to install it."""
    try:
        import confluent_kafka
    except ImportError as exc:
        raise ConfigError(
            "kafka.client = 'confluent-kafka' needs the confluent-kafka package: "
            "pip install 'vigil-kafka[confluent]'"
        ) from exc
    return confluent_kafka


CONNECTION_SETUP_TIMEOUT_MS = 10_000
"""Longest a new connection may take to be usable (librdkafka's default is 30 s)."""


SECURITY_NAMES: Mapping[str, str] = {
    "security_protocol": "security.protocol",
    "ssl_check_hostname": "ssl.endpoint.identification.algorithm",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
}
"""kafka-python's security settings (:func:`stream.kafka.kafka_python.security_settings`) and their
librdkafka names."""


def librdkafka_settings(config: VigilConfig) -> dict[str, Any]:
    """The librdkafka form of ``stream.kafka.kafka_python.client_settings``: address, identity,
    timeouts (the same choices, see :mod:`stream.kafka.kafka_python`) and security."""
    kafka = config.kafka
    return {
        "bootstrap.servers": ",".join(bootstrap_servers(kafka)),
        "client.id": kafka.client_id,
        "socket.timeout.ms": kafka.request_timeout_ms,
        "socket.keepalive.enable": True,
        "socket.connection.setup.timeout.ms": CONNECTION_SETUP_TIMEOUT_MS,
        "connections.max.idle.ms": kafka.request_timeout_ms + IDLE_MARGIN_MS,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "metadata.max.age.ms": METADATA_MAX_AGE_MS,
        "logger": logging.getLogger(f"{__name__}.librdkafka"),
        **_librdkafka_security(security_settings(kafka)),
    }


def _librdkafka_security(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The same security settings in librdkafka's names and forms."""
    renamed = {SECURITY_NAMES[name]: value for name, value in settings.items()}
    if "ssl_check_hostname" in settings:
        renamed["ssl.endpoint.identification.algorithm"] = (
            "https" if settings["ssl_check_hostname"] else "none")
        renamed.setdefault("ssl.ca.location", "probe")  # the system's CAs, as kafka-python's
        if "ssl_certfile" in settings:
            # like kafka-python, a certificate file without a key file holds the key too
            renamed.setdefault("ssl.key.location", settings["ssl_certfile"])
    return renamed


def _translate(overrides: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"no librdkafka equivalent for {', '.join(unknown)}")
    return {names[key]: value for key, value in overrides.items()}


def make_confluent_consumer(config: VigilConfig, **overrides: Any) -> ConfluentConsumer:
    """A group consumer like ``stream.kafka.kafka_python.make_consumer``'s, over librdkafka."""
    kafka = config.kafka
    settings: dict[str, Any] = {
        **librdkafka_settings(config),
        "group.id": kafka.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": kafka.auto_offset_reset,
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": kafka.heartbeat_interval_ms,
        "fetch.wait.max.ms": kafka.fetch_max_wait_ms,
        "fetch.min.bytes": kafka.fetch_min_bytes,
        "allow.auto.create.topics": False,
        "error_cb": _log_client_error,
        **_translate(overrides, CONSUMER_OVERRIDES),
    }
    confluent = _confluent()
    log.info("kafka client: confluent-kafka %s (librdkafka %s)", confluent.version()[0],
             confluent.libversion()[0])
    try:
        return ConfluentConsumer(confluent.Consumer(settings))
    except confluent.KafkaException as exc:
        raise BrokerError(f"cannot create a consumer for {kafka.bootstrap_servers}: {exc}") from exc


def make_confluent_producer(config: VigilConfig, **overrides: Any) -> ConfluentProducer:
    """An idempotent producer that waits for all in-sync replicas (acks=all), over librdkafka."""
    settings: dict[str, Any] = {
        **librdkafka_settings(config),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": config.kafka.linger_ms,
        "message.timeout.ms": DELIVERY_TIMEOUT_MS,
        "error_cb": _log_client_error,
        **_translate(overrides, PRODUCER_OVERRIDES),
    }
    try:
        return ConfluentProducer(_confluent().Producer(settings))
    except _confluent().KafkaException as exc:
        raise BrokerError(
            f"cannot create a producer for {config.kafka.bootstrap_servers}: {exc}"
        ) from exc


def _log_client_error(error: Any) -> None:
    """librdkafka's client-wide errors (brokers down, authentication): logged, retried by it."""
    log.warning("kafka client: %s", error.str())


class ConsumedRecord(NamedTuple):
    """A consumed message with the fields of :class:`~stream.loop.ports.InputRecord` (and more)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int


class ConfluentConsumer(Consumer):
    """A confluent_kafka.Consumer behind the loop's :class:`~stream.loop.ports.Consumer` port."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._ck = _confluent()
        self._listener: RebalanceListener | None = None
        self._in_assign = False
        self._closing = False
        self._rebalances = 0
        """Rebalance callbacks served so far: a message polled before one may be stale."""
        self._pending_seeks: dict[PartitionId, int] = {}
        self._pending_pauses: list[PartitionId] = []

    @property
    def native(self) -> Any:
        """The wrapped confluent_kafka.Consumer (for benchmarks of the bare client)."""
        return self._consumer

    # --- group membership ---------------------------------------------------------------

    def subscribe(self, topics: list[str], listener: RebalanceListener | None = None) -> None:
        """Join the group for ``topics``; ``listener`` hears of rebalances inside ``poll``."""
        self._listener = listener
        self._consumer.subscribe(list(topics), on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Apply the assignment with the offsets and pauses the listener asked for meanwhile."""
        assigned = self._partition_ids(partitions)
        self._rebalances += 1
        self._pending_seeks.clear()
        self._pending_pauses.clear()
        self._in_assign = True
        try:
            if self._listener is not None:
                self._listener.on_partitions_assigned(assigned)
        finally:
            self._in_assign = False
        consumer.assign([self._ck.TopicPartition(topic, partition, self._pending_seeks.get(
            (topic, partition), self._ck.OFFSET_INVALID)) for topic, partition in assigned])
        if self._pending_pauses:
            consumer.pause([self._native(p) for p in self._pending_pauses])

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._rebalances += 1
        if self._listener is not None and not self._closing:
            self._listener.on_partitions_revoked(self._partition_ids(partitions))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions lost without a clean revocation are given up all the same."""
        self._on_revoke(consumer, partitions)

    def assignment(self) -> Collection[PartitionId]:
        """The partitions this member holds now."""
        return set(self._partition_ids(self._consumer.assignment()))

    # --- fetching -------------------------------------------------------------------------

    def poll(self, timeout_ms: int = 0, max_records: int | None = None,
             ) -> dict[PartitionId, list[ConsumedRecord]]:
        """Up to ``max_records`` records by partition, in offset order; waits only while none."""
        limit = max_records or 500
        try:
            messages = self._consumer.consume(num_messages=limit, timeout=0)
            if not messages:
                first = self._consumer.poll(timeout_ms / 1000)
                if first is not None:
                    rebalances = self._rebalances
                    messages = self._consumer.consume(num_messages=limit - 1, timeout=0)
                    # librdkafka drops stale messages within one consume call, not across two;
                    # a dropped one is fetched again from the position the rebalance set
                    if self._rebalances == rebalances:
                        messages.insert(0, first)
        except self._ck.KafkaException as exc:
            raise BrokerError(f"consume failed: {exc}") from exc
        batch: dict[PartitionId, list[ConsumedRecord]] = {}
        for message in messages or ():
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                continue
            partition = (message.topic(), message.partition())
            records = batch.get(partition)
            if records is None:
                records = batch[partition] = []
            records.append(ConsumedRecord(partition[0], partition[1], message.offset(),
                                          message.key(), message.value(),
                                          message.headers() or [], message.timestamp()[1]))
        return batch

    def _on_message_error(self, error: Any) -> None:
        """Partition EOF is news, not data; a fatal error stops the loop; others are logged."""
        if error.code() == self._ck.KafkaError._PARTITION_EOF:  # noqa: SLF001 - a public code
            return
        if error.fatal():
            raise BrokerError(f"fatal consumer error: {error.str()}")
        log.warning("consumer: %s", error.str())

    def pause(self, *partitions: PartitionId) -> None:
        """Stop fetching these partitions until resumed."""
        if self._in_assign:
            self._pending_pauses.extend(partitions)
        elif partitions:
            self._consumer.pause([self._native(p) for p in partitions])

    def resume(self, *partitions: PartitionId) -> None:
        """Fetch these partitions again."""
        if partitions:
            self._consumer.resume([self._native(p) for p in partitions])

    def seek(self, partition: PartitionId, offset: int) -> None:
        """Consume ``partition`` from ``offset`` on."""
        if self._in_assign:
            self._pending_seeks[partition] = offset
            return
        native = self._ck.TopicPartition(partition[0], partition[1], offset)
        for attempt in range(50):
            try:
                self._consumer.seek(native)
                return
            except self._ck.KafkaException as exc:
                # a partition assigned a moment ago is not seekable until its fetcher starts
                state = self._ck.KafkaError._STATE  # noqa: SLF001 - librdkafka's name for it
                if attempt == 49 or exc.args[0].code() != state:
                    raise BrokerError(f"cannot seek {partition} to {offset}: {exc}") from exc
                time.sleep(0.1)

    def highwater(self, partition: PartitionId) -> int | None:
        """The partition's end offset as last seen in a fetch, without asking the broker."""
        try:
            _, high = self._consumer.get_watermark_offsets(self._native(partition), cached=True)
        except self._ck.KafkaException:
            return None
        return int(high) if high >= 0 else None

    def topics(self) -> set[str]:
        """Names of the topics the cluster has (a metadata request)."""
        try:
            return set(self._consumer.list_topics(timeout=10).topics)
        except self._ck.KafkaException as exc:
            raise BrokerError(f"cannot list topics: {exc}") from exc

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """Partition numbers of ``topic``, None while it is unknown."""
        try:
            found = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        except self._ck.KafkaException:
            return None
        if found is None or found.error is not None or not found.partitions:
            return None
        return set(found.partitions)

    # --- offsets ----------------------------------------------------------------------------

    def commit(self, offsets: Mapping[PartitionId, int]) -> None:
        """Commit the next offsets synchronously; BrokerError if not all went through."""
        natives = [self._ck.TopicPartition(topic, partition, offset)
                   for (topic, partition), offset in offsets.items()]
        try:
            results = self._consumer.commit(offsets=natives, asynchronous=False)
        except self._ck.KafkaException as exc:
            raise BrokerError(str(exc)) from exc
        failed = [r for r in results or () if r.error is not None]
        if failed:
            raise BrokerError(f"{len(failed)} partitions: {failed[0].error}")

    def close(self, timeout_ms: int | None = None) -> None:
        """Leave the group without the listener and commit nothing (``timeout_ms`` is accepted
        for the port; librdkafka bounds the leave itself)."""
        self._closing = True
        try:
            self._consumer.close()
        except (self._ck.KafkaException, RuntimeError) as exc:
            log.warning("consumer close: %s", exc)

    # --- conversions ---------------------------------------------------------------------

    def _native(self, partition: PartitionId) -> Any:
        return self._ck.TopicPartition(partition[0], partition[1])

    @staticmethod
    def _partition_ids(partitions: Iterable[Any]) -> list[PartitionId]:
        return [(p.topic, p.partition) for p in partitions]


REFUSED_CODES = frozenset({2, 10, 18, 87})
"""Broker error codes that refuse a message for what it is (corrupt, too large, record list
too large, invalid record): sending it again can never work."""


class DeliveryReport:
    """The outcome of one send, set by librdkafka's delivery report (a port's future)."""

    __slots__ = ("is_done", "value", "exception")

    def __init__(self) -> None:
        self.is_done = False
        self.value: Any = None
        self.exception: Exception | None = None

    def failed(self) -> bool:
        """Delivered and refused (or timed out)."""
        return self.is_done and self.exception is not None

    def succeeded(self) -> bool:
        """Delivered and acknowledged."""
        return self.is_done and self.exception is None

    def get(self, timeout: float | None = None) -> Any:
        """The delivered message; raises the failure. Only meaningful after ``flush()``."""
        if not self.is_done:
            raise BrokerError("delivery not reported yet: flush the producer first")
        if self.exception is not None:
            raise self.exception
        return self.value

    def report(self, error: Any, message: Any) -> None:
        """librdkafka's delivery callback; a refusal of the message itself becomes
        :class:`MessageRefused` (so a message refused for its size is told from a timeout)."""
        self.is_done = True
        if error is not None:
            kind = MessageRefused if error.code() in REFUSED_CODES else BrokerError
            self.exception = kind(error.str())
        else:
            self.value = message


class ConfluentProducer(Producer):
    """A confluent_kafka.Producer behind the loop's :class:`~stream.loop.ports.Producer` port."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._ck = _confluent()

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
             ) -> DeliveryReport:
        """Queue one message; the future is settled by the next ``flush()``."""
        future = DeliveryReport()
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers or None,
                                       on_delivery=future.report, **extra)
                return future
            except BufferError:  # the local queue is full: serve delivery reports, then retry
                self._producer.poll(0.1)
            except self._ck.KafkaException as exc:
                future.report(exc.args[0], None)
                return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued message is acknowledged or failed (its future settled)."""
        self._producer.flush(-1 if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued within ``timeout`` seconds, drop the rest, and shut down."""
        left = self._producer.flush(-1 if timeout is None else timeout)
        if left:
            log.warning("producer closing with %d messages undelivered", left)
            self._producer.purge()
        self._producer.close()
