"""The confluent-kafka adapters' bridging logic, over a stand-in for the native client.

What librdkafka itself does (group protocol, fetching, acks) is tested against the real broker
in tests/integration/test_confluent.py; here only the translation to the loop's ports.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import confluent_kafka as ck  # the dev extra installs it: these tests must run, not skip
import pytest
from kafka import TopicPartition

from vigil.stream.config import load_config
from vigil.stream.errors import BrokerError, ConfigError, MessageRefused
from vigil.stream.kafka.confluent import (
    SECURITY_NAMES,
    ConfluentConsumer,
    ConfluentProducer,
    librdkafka_settings,
)
from vigil.stream.kafka.kafka_python import client_settings, make_consumer, make_producer
from vigil.stream.loop.checkpoint import commit_offsets


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None = b"{}",
                 error: Any = None) -> None:
        self._fields = (topic, partition, offset, value)
        self._error = error

    def error(self) -> Any:
        return self._error

    def topic(self) -> str:
        return self._fields[0]

    def partition(self) -> int:
        return self._fields[1]

    def offset(self) -> int:
        return self._fields[2]

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._fields[3]

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1767225600000)


class FakeNativeConsumer:
    """Records calls; ``consume`` hands out what is queued, ``poll`` one message."""

    def __init__(self, queued: list[FakeMessage] | None = None) -> None:
        self.queued = list(queued or [])
        self.calls: list[tuple[str, Any]] = []
        self.commit_result: list[Any] = []
        self.callbacks: dict[str, Any] = {}

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.calls.append(("consume", timeout))
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken

    def poll(self, timeout: float) -> FakeMessage | None:
        self.calls.append(("poll", timeout))
        return self.queued.pop(0) if self.queued else None

    def assign(self, partitions: list[Any]) -> None:
        self.calls.append(("assign", [(p.topic, p.partition, p.offset) for p in partitions]))

    def pause(self, partitions: list[Any]) -> None:
        self.calls.append(("pause", [(p.topic, p.partition) for p in partitions]))

    def commit(self, offsets: list[Any], asynchronous: bool) -> list[Any]:
        self.calls.append(("commit", ([(p.topic, p.partition, p.offset) for p in offsets],
                                      asynchronous)))
        return self.commit_result

    def get_watermark_offsets(self, partition: Any, cached: bool) -> tuple[int, int]:
        return (0, 42) if partition.partition == 0 else (-1001, -1001)

    def close(self) -> None:
        self.calls.append(("close", None))


class Listener:
    """Like the Runner's: pauses one partition and seeks another while being assigned."""

    def __init__(self, consumer: ConfluentConsumer) -> None:
        self.consumer = consumer
        self.events: list[tuple[str, list[TopicPartition]]] = []

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.events.append(("assigned", assigned))
        self.consumer.pause(assigned[0])
        self.consumer.seek(assigned[1], 17)

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.events.append(("revoked", revoked))


def test_poll_groups_per_partition_in_order_and_drops_error_messages() -> None:
    eof = ck.KafkaError(ck.KafkaError._PARTITION_EOF)  # noqa: SLF001 - librdkafka's name
    native = FakeNativeConsumer([
        FakeMessage("t", 1, 5), FakeMessage("t", 0, 9), FakeMessage("t", 1, 6),
        FakeMessage("t", 0, 0, None, error=eof), FakeMessage("u", 0, 3),
    ])
    batch = ConfluentConsumer(native).poll(timeout_ms=200, max_records=10)
    assert list(batch) == [TopicPartition("t", 1), TopicPartition("t", 0), TopicPartition("u", 0)]
    assert [r.offset for r in batch[TopicPartition("t", 1)]] == [5, 6]
    record = batch[TopicPartition("t", 0)][0]
    assert (record.topic, record.partition, record.offset, record.key, record.value) == \
        ("t", 0, 9, b"k", b"{}")
    assert native.calls == [("consume", 0)]  # messages were there: no waiting


def test_poll_waits_only_for_the_first_message_then_drains() -> None:
    native = FakeNativeConsumer()
    consumer = ConfluentConsumer(native)
    assert consumer.poll(timeout_ms=250, max_records=10) == {}
    assert native.calls == [("consume", 0), ("poll", 0.25)]
    native.calls.clear()
    native.queued = [FakeMessage("t", 0, i) for i in range(3)]
    native.consume = lambda num_messages, timeout: []  # type: ignore[method-assign]
    batch = consumer.poll(timeout_ms=250, max_records=10)
    assert [r.offset for r in batch[TopicPartition("t", 0)]] == [0]


def test_a_fatal_error_message_stops_the_loop() -> None:
    fatal = ck.KafkaError(ck.KafkaError._FATAL, "fenced", fatal=True)  # noqa: SLF001
    consumer = ConfluentConsumer(FakeNativeConsumer([FakeMessage("t", 0, 0, error=fatal)]))
    with pytest.raises(BrokerError, match="fatal"):
        consumer.poll(timeout_ms=10, max_records=10)


def test_seeks_and_pauses_during_an_assignment_are_applied_with_it() -> None:
    native = FakeNativeConsumer()
    consumer = ConfluentConsumer(native)
    listener = Listener(consumer)
    consumer.subscribe(["t"], listener=listener)
    native.callbacks["on_assign"](native, [ck.TopicPartition("t", 0), ck.TopicPartition("t", 1)])
    assert listener.events == [("assigned", [TopicPartition("t", 0), TopicPartition("t", 1)])]
    assert native.calls == [("assign", [("t", 0, ck.OFFSET_INVALID), ("t", 1, 17)]),
                            ("pause", [("t", 0)])]


def test_revocations_reach_the_listener_except_while_closing() -> None:
    native = FakeNativeConsumer()
    consumer = ConfluentConsumer(native)
    listener = Listener(consumer)
    consumer.subscribe(["t"], listener=listener)
    native.callbacks["on_revoke"](native, [ck.TopicPartition("t", 0)])
    native.callbacks["on_lost"](native, [ck.TopicPartition("t", 1)])
    assert listener.events == [("revoked", [TopicPartition("t", 0)]),
                               ("revoked", [TopicPartition("t", 1)])]
    consumer.close(timeout_ms=1000)
    native.callbacks["on_revoke"](native, [ck.TopicPartition("t", 0)])
    assert len(listener.events) == 2


def test_highwater_comes_from_the_cached_watermarks() -> None:
    consumer = ConfluentConsumer(FakeNativeConsumer())
    assert consumer.highwater(TopicPartition("t", 0)) == 42
    assert consumer.highwater(TopicPartition("t", 1)) is None


def test_commits_are_synchronous_and_failures_are_broker_errors() -> None:
    native = FakeNativeConsumer()
    consumer = ConfluentConsumer(native)
    assert commit_offsets(consumer, {("t", 0): 12})
    assert native.calls == [("commit", ([("t", 0, 12)], False))]
    native.commit_result = [SimpleNamespace(  # what commit returns: partitions with .error
        topic="t", partition=0, offset=12,
        error=ck.KafkaError(ck.KafkaError.REBALANCE_IN_PROGRESS))]
    with pytest.raises(BrokerError):
        consumer.commit({("t", 0): 12})
    assert not commit_offsets(consumer, {("t", 0): 12})


class FakeNativeProducer:
    def __init__(self, refuse_first: int = 0) -> None:
        self.pending: list[Any] = []
        self.refuse = refuse_first
        self.polls = 0

    def produce(self, topic: str, value: Any, key: Any, headers: Any, on_delivery: Any,
                **extra: Any) -> None:
        if self.refuse:
            self.refuse -= 1
            raise BufferError("queue full")
        if value is not None and len(value) > 1000:  # librdkafka refuses it at once
            raise ck.KafkaException(ck.KafkaError(ck.KafkaError.MSG_SIZE_TOO_LARGE))
        self.pending.append((on_delivery, value))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float) -> int:
        for report, value in self.pending:
            error = ck.KafkaError(ck.KafkaError._MSG_TIMED_OUT) if value == b"x" else None  # noqa: SLF001
            report(error, value)
        self.pending = []
        return 0

    def close(self) -> None:
        pass


def test_producer_futures_are_settled_by_flush() -> None:
    native = FakeNativeProducer(refuse_first=2)
    producer = ConfluentProducer(native)
    good = producer.send("t", key=b"k", value=b"ok", headers=[("h", b"v")])
    bad = producer.send("t", value=b"x", partition=3)
    assert native.polls == 2  # a full queue waits for delivery reports, then retries
    assert not good.is_done and not good.failed()
    producer.flush()
    assert good.succeeded() and good.get() == b"ok"
    assert bad.failed() and bad.exception is not None
    with pytest.raises(Exception, match="timed out"):
        bad.get()
    assert not isinstance(bad.exception, MessageRefused)
    too_large = producer.send("t", value=b"y" * 2000)
    assert isinstance(too_large.exception, MessageRefused)  # never worth a retry
    producer.close(timeout=1)


def test_security_settings_get_librdkafka_names(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    bundle = tmp_path / "client.pem"
    bundle.write_text("x")
    config = load_config(environ={}, overrides={
        "kafka.security_protocol": "SASL_SSL", "kafka.ssl_cafile": str(ca),
        "kafka.ssl_certfile": str(bundle), "kafka.ssl_check_hostname": False,
        "kafka.sasl_mechanism": "SCRAM-SHA-512", "kafka.sasl_username": "vigil",
        "kafka.sasl_password": "s3cret", "kafka.bootstrap_servers": "a:9092, b:9093",
    })
    settings = librdkafka_settings(config)
    assert settings["bootstrap.servers"] == "a:9092,b:9093"
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["ssl.ca.location"] == str(ca)
    assert settings["ssl.certificate.location"] == settings["ssl.key.location"] == str(bundle)
    assert settings["ssl.endpoint.identification.algorithm"] == "none"
    assert (settings["sasl.mechanism"], settings["sasl.username"], settings["sasl.password"]) \
        == ("SCRAM-SHA-512", "vigil", "s3cret")
    assert "ssl.ca.location" not in librdkafka_settings(load_config(environ={}))


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_both_clients_get_the_same_security_settings(tmp_path: Path, protocol: str) -> None:
    """One description of the security settings, each client reading it in its own names."""
    key = tmp_path / "client.key"
    key.write_text("x")
    config = load_config(environ={}, overrides={
        "kafka.security_protocol": protocol, "kafka.ssl_certfile": str(key),
        "kafka.ssl_keyfile": str(key), "kafka.ssl_password": "k3y",
        "kafka.sasl_mechanism": "PLAIN" if "SASL" in protocol else "",
        "kafka.sasl_username": "vigil", "kafka.sasl_password": "s3cret"})
    kafka_python = client_settings(config)
    librdkafka = librdkafka_settings(config)
    secured = {k: v for k, v in kafka_python.items() if k.startswith(("ssl_", "sasl_"))}
    assert {k for k in librdkafka if k.startswith(("ssl.", "sasl."))} == (
        {SECURITY_NAMES[k] for k in secured} | ({"ssl.ca.location"} if "SSL" in protocol
                                                else set()))
    for name, value in secured.items():
        if name != "ssl_check_hostname":
            assert librdkafka[SECURITY_NAMES[name]] == value
    assert librdkafka["security.protocol"] == kafka_python["security_protocol"] == protocol
    assert (librdkafka.get("ssl.key.password"), librdkafka.get("sasl.password")) == (
        "k3y" if "SSL" in protocol else None, "s3cret" if "SASL" in protocol else None)


def test_the_client_setting_picks_the_library() -> None:
    config = load_config(environ={"VIGIL_KAFKA_CLIENT": "confluent-kafka"},
                         overrides={"kafka.bootstrap_servers": "127.0.0.1:1"})
    consumer = make_consumer(config, group_id="other", fetch_max_wait_ms=10)
    producer = make_producer(config, max_request_size=4 * 1024 * 1024)
    try:
        assert isinstance(consumer, ConfluentConsumer)
        assert isinstance(producer, ConfluentProducer)
        with pytest.raises(ValueError, match="no librdkafka equivalent for max_poll_records"):
            make_consumer(config, max_poll_records=5)
    finally:
        consumer.close()
        producer.close(timeout=0)


def test_a_missing_package_names_the_key_and_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    config = load_config(environ={})
    with pytest.raises(ConfigError, match=r"kafka.client.*pip install 'vigil-kafka\[confluent\]'"):
        make_consumer(config, client="confluent-kafka")


def test_a_message_polled_before_a_rebalance_is_dropped_not_processed() -> None:
    native = FakeNativeConsumer([FakeMessage("t", 0, 7)])
    consumer = ConfluentConsumer(native)
    consumer.subscribe(["t"], listener=Listener(consumer))
    answers = iter([[], [FakeMessage("t", 1, 3)]])

    def consume(num_messages: int, timeout: float) -> list[FakeMessage]:
        batch = next(answers)
        if batch:  # the drain serves a revocation before handing out what is left
            native.callbacks["on_revoke"](native, [ck.TopicPartition("t", 0)])
        return batch

    native.consume = consume  # type: ignore[method-assign]
    batch = consumer.poll(timeout_ms=200, max_records=10)
    assert list(batch) == [TopicPartition("t", 1)]  # t/0 offset 7 is fetched again later
