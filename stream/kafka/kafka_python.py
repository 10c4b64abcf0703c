"""Kafka clients from the configuration, behind the loop's ports; output topics; the probe.

Clients are kafka-python's unless ``kafka.client`` picks confluent-kafka
(:mod:`stream.kafka.confluent`). Either way the loop sees only the ports of
:mod:`stream.loop.ports`: here kafka-python's consumer and producer are adapted to them
(:class:`KafkaPythonConsumer`, :class:`KafkaPythonProducer`), translating ``TopicPartition``,
``OffsetAndMetadata`` and kafka-python's errors. Only standard Kafka protocol features are
used, so the same code runs against Apache Kafka and the embedded broker.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from vigil.stream.config import KafkaConfig, VigilConfig
from vigil.stream.errors import BrokerError, MessageRefused
from vigil.stream.kafka.broker import api_versions_answered
from vigil.stream.loop.ports import (
    Consumer,
    DeliveryFuture,
    InputRecord,
    Producer,
    RebalanceListener,
)
from vigil.stream.state import PartitionId

if TYPE_CHECKING:
    from vigil.stream.metrics import Liveness, VigilMetrics

log = logging.getLogger(__name__)


RECONNECT_BACKOFF_MAX_MS = 5_000
"""Longest wait between attempts to reach a broker (kafka-python's default is 30 s, so a
client could sleep half a minute after the network is back)."""

METADATA_MAX_AGE_MS = 60_000
"""Cluster metadata is refreshed at least this often (errors refresh it at once anyway)."""

IDLE_MARGIN_MS = 10_000
"""A connection that neither sent nor received for ``request_timeout_ms`` plus this is closed
and opened afresh when next needed: a request that waits for an answer on a connection the
network silently dropped (a JoinGroup, which kafka-python lets wait ``max_poll_interval_ms``
+ 5 s) is given up after this long, not after minutes."""

KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 15, 5, 3
"""TCP keepalive: an idle connection whose peer is gone is found out in 30 s."""


def socket_options(request_timeout_ms: int) -> list[tuple[int, int, int]]:
    """TCP options of every broker connection: no Nagle delay, keepalive probes, and (Linux)
    data left unacknowledged longer than a request may take aborts the connection."""
    options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
               (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
                        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
                        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
                        ("TCP_USER_TIMEOUT", request_timeout_ms)):
        if hasattr(socket, name):  # Linux has them all; elsewhere the system's defaults
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


def client_settings(config: VigilConfig) -> dict[str, Any]:
    """Settings shared by every kafka-python client Vigil makes: address, timeouts, security."""
    kafka = config.kafka
    return {
        "bootstrap_servers": bootstrap_servers(kafka),
        "client_id": kafka.client_id,
        "request_timeout_ms": kafka.request_timeout_ms,
        "connections_max_idle_ms": kafka.request_timeout_ms + IDLE_MARGIN_MS,
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        "metadata_max_age_ms": METADATA_MAX_AGE_MS,
        "socket_options": socket_options(kafka.request_timeout_ms),
        **security_settings(kafka),
    }


def bootstrap_servers(kafka: KafkaConfig) -> list[str]:
    """``kafka.bootstrap_servers`` as a list of ``host:port``."""
    return [s.strip() for s in kafka.bootstrap_servers.split(",")]


def security_settings(kafka: KafkaConfig) -> dict[str, Any]:
    """The security settings that apply to the configured protocol, in kafka-python's names
    (confluent-kafka's adapter renames the same ones: one description for both clients)."""
    settings: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        settings["ssl_check_hostname"] = kafka.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(kafka, name):
                settings[name] = getattr(kafka, name)
        password = kafka.secret("ssl_password")
        if password is not None:
            settings["ssl_password"] = password
    if kafka.security_protocol.startswith("SASL_"):
        settings["sasl_mechanism"] = kafka.sasl_mechanism
        settings["sasl_plain_username"] = kafka.sasl_username
        settings["sasl_plain_password"] = kafka.secret("sasl_password") or ""
    return settings


def make_consumer(config: VigilConfig, *, client: str | None = None,
                  **overrides: Any) -> Consumer:
    """A group consumer with auto-commit off: Vigil commits after its output is acknowledged.

    ``client`` (default ``kafka.client``) picks the library; ``overrides`` use kafka-python names.
    """
    if (client or config.kafka.client) == "confluent-kafka":
        from vigil.stream.kafka.confluent import make_confluent_consumer

        return make_confluent_consumer(config, **overrides)
    return KafkaPythonConsumer(kafka_python_consumer(config, **overrides))


def kafka_python_consumer(config: VigilConfig, **overrides: Any) -> KafkaConsumer:
    """kafka-python's own consumer with the settings of :func:`make_consumer` (for readers
    that assign partitions themselves, such as the state store's)."""
    settings: dict[str, Any] = {
        **client_settings(config),
        "group_id": config.kafka.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": config.kafka.auto_offset_reset,
        "session_timeout_ms": config.kafka.session_timeout_ms,
        "heartbeat_interval_ms": config.kafka.heartbeat_interval_ms,
        "fetch_max_wait_ms": config.kafka.fetch_max_wait_ms,
        "fetch_min_bytes": config.kafka.fetch_min_bytes,
        "max_poll_records": config.runtime.max_poll_records,
        "allow_auto_create_topics": False,
    }
    settings.update(overrides)
    try:
        return KafkaConsumer(**settings)
    except KafkaError as exc:
        raise BrokerError(
            f"cannot connect a consumer to {config.kafka.bootstrap_servers}: {exc}"
        ) from exc


def make_producer(config: VigilConfig, *, client: str | None = None,
                  **overrides: Any) -> Producer:
    """An idempotent producer that waits for all in-sync replicas (acks=all).

    ``client`` (default ``kafka.client``) picks the library; ``overrides`` use kafka-python names.
    """
    if (client or config.kafka.client) == "confluent-kafka":
        from vigil.stream.kafka.confluent import make_confluent_producer

        return make_confluent_producer(config, **overrides)
    settings: dict[str, Any] = {
        **client_settings(config),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": config.kafka.linger_ms,
    }
    settings.update(overrides)
    try:
        return KafkaPythonProducer(KafkaProducer(**settings))
    except KafkaError as exc:
        raise BrokerError(
            f"cannot connect a producer to {config.kafka.bootstrap_servers}: {exc}"
        ) from exc


def ensure_topics(
    config: VigilConfig,
    topics: Iterable[str],
    *,
    partitions: int | None = None,
    topic_configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    try:
        admin = KafkaAdminClient(**client_settings(config))
    except KafkaError as exc:
        raise BrokerError(f"cannot reach {config.kafka.bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        created: list[str] = []
        for topic in missing:
            spec: dict[str, Any] = {
                "num_partitions": partitions or config.topics.create_partitions,
                "replication_factor": config.topics.create_replication_factor,
            }
            if topic_configs:
                spec["configs"] = dict(topic_configs)
            try:
                admin.create_topics({topic: spec})
            except TopicAlreadyExistsError:
                continue  # another instance was quicker
            created.append(topic)
            log.info("created topic %r", topic)
        return created
    except KafkaError as exc:
        raise BrokerError(
            f"cannot create topics on {config.kafka.bootstrap_servers}: {exc}"
        ) from exc
    finally:
        admin.close()


def topic_partitions(consumer: Consumer, topic: str, timeout_s: float = 30.0) -> int:
    """Number of partitions of ``topic`` (waits for metadata; BrokerError if it never comes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return len(partitions)
        time.sleep(0.2)
    raise BrokerError(f"no partition metadata for topic {topic!r} within {timeout_s:.0f} s")


class KafkaPythonConsumer(Consumer):
    """kafka-python's KafkaConsumer behind the loop's :class:`~stream.loop.ports.Consumer` port."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.native = consumer

    def subscribe(self, topics: list[str], listener: RebalanceListener | None = None) -> None:
        """Join the group for ``topics``; ``listener`` hears of rebalances inside ``poll``."""
        if listener is None:
            self.native.subscribe(topics)
        else:
            self.native.subscribe(topics, listener=_RebalanceListener(listener))

    def poll(self, timeout_ms: int, max_records: int,
             ) -> Mapping[PartitionId, Sequence[InputRecord]]:
        """The records fetched, by partition (a TopicPartition is a (topic, partition) tuple)."""
        batch: Mapping[PartitionId, Sequence[InputRecord]] = self.native.poll(
            timeout_ms=timeout_ms, max_records=max_records)
        return batch

    def assignment(self) -> Collection[PartitionId]:
        return {(tp.topic, tp.partition) for tp in self.native.assignment()}

    def pause(self, *partitions: PartitionId) -> None:
        self.native.pause(*[TopicPartition(*p) for p in partitions])

    def resume(self, *partitions: PartitionId) -> None:
        self.native.resume(*[TopicPartition(*p) for p in partitions])

    def seek(self, partition: PartitionId, offset: int) -> None:
        self.native.seek(TopicPartition(*partition), offset)

    def highwater(self, partition: PartitionId) -> int | None:
        highwater: int | None = self.native.highwater(TopicPartition(*partition))
        return highwater

    def topics(self) -> set[str]:
        return set(self.native.topics())

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        found: set[int] | None = self.native.partitions_for_topic(topic)
        return found

    def commit(self, offsets: Mapping[PartitionId, int]) -> None:
        """Commit synchronously; CommitFailed, RebalanceInProgress and timeouts as BrokerError."""
        try:
            self.native.commit(offsets={
                TopicPartition(*partition): OffsetAndMetadata(offset, "", -1)
                for partition, offset in offsets.items()})
        except KafkaError as exc:
            raise BrokerError(str(exc)) from exc

    def close(self, timeout_ms: int | None = None) -> None:
        self.native.close(autocommit=False, timeout_ms=timeout_ms)


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands kafka-python's rebalance callbacks (inside ``poll``) to a port listener."""

    def __init__(self, listener: RebalanceListener) -> None:
        self.listener = listener

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.listener.on_partitions_revoked([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.listener.on_partitions_assigned([(tp.topic, tp.partition) for tp in assigned])


REFUSED_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidRecordError,
                  CorruptRecordError)
"""kafka-python's errors that refuse a message for what it is: :class:`MessageRefused`."""


class KafkaPythonProducer(Producer):
    """kafka-python's KafkaProducer behind the loop's :class:`~stream.loop.ports.Producer` port."""

    def __init__(self, producer: KafkaProducer) -> None:
        self.native = producer

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
             ) -> DeliveryFuture:
        """Queue one message; a message refused before sending (e.g. beyond
        ``max_request_size``) gets a failed future, as one the broker refused."""
        try:
            return _KafkaPythonDelivery(self.native.send(topic, value=value, key=key,
                                                         headers=headers, partition=partition))
        except KafkaError as exc:
            return FailedDelivery(_translated(exc))

    def flush(self, timeout: float | None = None) -> None:
        self.native.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        self.native.close(timeout=timeout)


class _KafkaPythonDelivery:
    """A kafka-python send future, its failure translated to Vigil's errors."""

    __slots__ = ("_future", "_error")

    def __init__(self, future: Any) -> None:
        self._future = future
        self._error: Exception | None = None

    @property
    def exception(self) -> Exception | None:
        if self._error is None and self._future.exception is not None:
            self._error = _translated(self._future.exception)
        return self._error

    def failed(self) -> bool:
        return bool(self._future.failed())


class FailedDelivery:
    """The future of a send that failed before anything was sent."""

    __slots__ = ("exception",)

    def __init__(self, error: Exception) -> None:
        self.exception = error

    def failed(self) -> bool:
        return True


def _translated(error: Exception) -> Exception:
    """kafka-python's error as Vigil's (others as they are), the original as its cause."""
    if not isinstance(error, KafkaError):
        return error
    kind = MessageRefused if isinstance(error, REFUSED_ERRORS) else BrokerError
    translated = kind(str(error))
    translated.__cause__ = error
    return translated


class BrokerProbe:
    """Asks a bootstrap broker for its API versions every few seconds, in a thread.

    Sets ``vigil_broker_up`` and the readiness flag. A paused or partitioned broker accepts
    TCP connections but never answers, so only an answered Kafka request counts as up.
    """

    def __init__(self, config: VigilConfig, metrics: VigilMetrics, liveness: Liveness,
                 interval_s: float = 5.0, timeout_s: float = 3.0) -> None:
        self.servers = bootstrap_servers(config.kafka)
        self.ssl_context = _ssl_context(config)
        self.metrics = metrics
        self.liveness = liveness
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-broker-probe", daemon=True)

    def start(self) -> BrokerProbe:
        """Probe once now, then in the background."""
        self._probe()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop probing."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._probe()

    def _probe(self) -> None:
        up = any(self._answers(server) for server in self.servers)
        if up != self.liveness.broker_up:
            log.warning("broker %s", "reachable again" if up else "unreachable")
        self.liveness.broker_up = up
        self.metrics.broker_up.set(1 if up else 0)

    def _answers(self, server: str) -> bool:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host or server, int(port or 9092)),
                                          timeout=self.timeout_s) as raw:
                sock: socket.socket = raw
                if self.ssl_context is not None:
                    sock = self.ssl_context.wrap_socket(raw, server_hostname=host)
                return api_versions_answered(sock)
        except (OSError, ValueError):
            return False


def _ssl_context(config: VigilConfig) -> ssl.SSLContext | None:
    kafka = config.kafka
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=kafka.ssl_cafile or None)
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile or None,
                                kafka.secret("ssl_password"))
    return context
