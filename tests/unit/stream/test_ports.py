"""The loop's ports: the loop knows no Kafka client, and the kafka-python adapter translates.

(The confluent-kafka adapter's translation is in test_confluent_io.py; both clients against
the real broker in tests/integration.)
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError, MessageSizeTooLargeError
from kafka.structs import OffsetAndMetadata

from vigil import stream
from vigil.stream.errors import BrokerError, MessageRefused
from vigil.stream.kafka.kafka_python import KafkaPythonConsumer, KafkaPythonProducer
from vigil.stream.loop.checkpoint import commit_offsets
from vigil.stream.state import PartitionId

STREAM = Path(stream.__file__).parent
CLIENTS = ("kafka", "confluent_kafka")


def _imported(path: Path) -> set[str]:
    """Top-level names of the modules ``path`` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted([*(STREAM / "loop").glob("*.py"),
                                         *(STREAM / "engine").glob("*.py")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_loop_and_the_engine_import_no_kafka_client(path: Path) -> None:
    assert not _imported(path) & set(CLIENTS)


class NativeConsumer:
    """What the adapter calls of kafka-python's KafkaConsumer, recorded."""

    def __init__(self, commit_error: Exception | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.listener: Any = None
        self.commit_error = commit_error

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.listener = listener

    def pause(self, *partitions: TopicPartition) -> None:
        self.calls.append(("pause", partitions))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", (partition, offset)))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", 0), TopicPartition("t", 3)}

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.calls.append(("commit", offsets))


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[PartitionId]]] = []

    def on_partitions_revoked(self, revoked: list[PartitionId]) -> None:
        self.events.append(("revoked", revoked))

    def on_partitions_assigned(self, assigned: list[PartitionId]) -> None:
        self.events.append(("assigned", assigned))


def test_the_kafka_python_consumer_speaks_partition_tuples_both_ways() -> None:
    native = NativeConsumer()
    consumer = KafkaPythonConsumer(native)
    listener = Listener()
    consumer.subscribe(["t"], listener=listener)
    native.listener.on_partitions_assigned([TopicPartition("t", 0)])
    native.listener.on_partitions_revoked([TopicPartition("t", 0)])
    assert listener.events == [("assigned", [("t", 0)]), ("revoked", [("t", 0)])]
    assert all(type(p) is tuple for _, partitions in listener.events for p in partitions)
    assert consumer.assignment() == {("t", 0), ("t", 3)}
    consumer.pause(("t", 1))
    consumer.seek(("t", 1), 7)
    assert commit_offsets(consumer, {("t", 1): 8})
    (_, paused), (_, (sought, offset)), (_, committed) = native.calls
    assert paused == (TopicPartition("t", 1),) and (sought, offset) == (TopicPartition("t", 1), 7)
    assert committed == {TopicPartition("t", 1): OffsetAndMetadata(8, "", -1)}


def test_a_failed_commit_is_a_broker_error_and_not_fatal() -> None:
    consumer = KafkaPythonConsumer(NativeConsumer(commit_error=CommitFailedError("rebalance")))
    with pytest.raises(BrokerError, match="rebalance"):
        consumer.commit({("t", 0): 1})
    assert not commit_offsets(consumer, {("t", 0): 1})


class NativeFuture:
    def __init__(self, error: Exception | None) -> None:
        self.exception = error

    def failed(self) -> bool:
        return self.exception is not None


class NativeProducer:
    """kafka-python's KafkaProducer: raises in send beyond max_request_size."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: Any = None, partition: int | None = None) -> NativeFuture:
        if value is not None and len(value) > 10:
            raise MessageSizeTooLargeError("larger than max_request_size")
        return NativeFuture(KafkaTimeoutError("no answer") if value == b"slow" else
                            MessageSizeTooLargeError("refused") if value == b"big" else None)


def test_the_kafka_python_producer_tells_a_refusal_from_a_failure() -> None:
    producer = KafkaPythonProducer(NativeProducer())
    ok, slow, big = (producer.send("t", value=v) for v in (b"ok", b"slow", b"big"))
    too_large = producer.send("t", value=b"x" * 11)  # refused before it was sent
    assert not ok.failed() and ok.exception is None
    assert slow.failed() and type(slow.exception) is BrokerError
    assert isinstance(big.exception, MessageRefused) and "refused" in str(big.exception)
    assert too_large.failed() and isinstance(too_large.exception, MessageRefused)
    assert isinstance(too_large.exception.__cause__, MessageSizeTooLargeError)
