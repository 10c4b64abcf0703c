"""The consume loop's typed ports: what it needs of a Kafka consumer, a producer and a state store.

Both client backends implement them (:mod:`stream.kafka.kafka_python` adapts kafka-python,
:mod:`stream.kafka.confluent` confluent-kafka), and unit tests implement them with fakes, so the
loop is read, typed and tested without knowing which client sits behind it. Partitions are
plain ``(topic, partition)`` tuples and failures are Vigil's errors
(:class:`~stream.errors.BrokerError`, :class:`~stream.errors.MessageRefused`): each adapter
translates its client's types at the boundary.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from vigil.stream.state import PartitionId, Rejected, Snapshot, StateMessage


class InputRecord(Protocol):
    """The fields of a consumed record that Vigil reads."""

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


class RebalanceListener(Protocol):
    """Told by the consumer, inside :meth:`Consumer.poll` and on its thread, when partitions go
    and come."""

    def on_partitions_revoked(self, revoked: list[PartitionId]) -> None: ...
    def on_partitions_assigned(self, assigned: list[PartitionId]) -> None: ...


class Consumer(Protocol):
    """A group member with auto-commit off: the loop commits offsets itself."""

    def subscribe(self, topics: list[str], listener: RebalanceListener | None = None) -> None:
        """Join the group for ``topics``; ``listener`` hears of every rebalance."""
        ...

    def poll(self, timeout_ms: int, max_records: int,
             ) -> Mapping[PartitionId, Sequence[InputRecord]]:
        """Up to ``max_records`` records, by partition in offset order; waits only while none."""
        ...

    def assignment(self) -> Collection[PartitionId]:
        """The partitions this member holds now."""
        ...

    def pause(self, *partitions: PartitionId) -> None:
        """Stop fetching these partitions until resumed (also during an assignment)."""
        ...

    def resume(self, *partitions: PartitionId) -> None:
        """Fetch these partitions again."""
        ...

    def seek(self, partition: PartitionId, offset: int) -> None:
        """Consume ``partition`` from ``offset`` on (also during an assignment)."""
        ...

    def highwater(self, partition: PartitionId) -> int | None:
        """The partition's end offset as last seen in a fetch, without asking the broker."""
        ...

    def topics(self) -> set[str]:
        """Names of the topics the cluster has (a metadata request)."""
        ...

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """Partition numbers of ``topic``, None while it is unknown."""
        ...

    def commit(self, offsets: Mapping[PartitionId, int]) -> None:
        """Commit the next offset to consume of each partition, synchronously; BrokerError
        when the commit did not go through."""
        ...

    def close(self, timeout_ms: int | None = None) -> None:
        """Leave the group without committing anything (and without telling the listener)."""
        ...


class DeliveryFuture(Protocol):
    """The outcome of one send, known once the producer has been flushed."""

    @property
    def exception(self) -> Exception | None:
        """Why the broker did not take the message (:class:`~stream.errors.MessageRefused`
        when it never will); None when it did, or has not answered yet."""
        ...

    def failed(self) -> bool:
        """Answered, and not acknowledged."""
        ...


class Producer(Protocol):
    """An idempotent producer that waits for all in-sync replicas (acks=all)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
             ) -> DeliveryFuture:
        """Queue one message (never raises for the message itself: its future says)."""
        ...

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued message is acknowledged or failed (its future settled)."""
        ...

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued within ``timeout`` seconds, drop the rest, and shut down."""
        ...


class StateStore(Protocol):
    """Where snapshots go and come from (the Kafka state topic, or a fake in unit tests)."""

    def write(self, messages: Sequence[StateMessage]) -> None:
        """Produce the messages and wait for every acknowledgement; BrokerError otherwise."""
        ...

    def read(self, partitions: Collection[PartitionId],
             ) -> dict[PartitionId, list[Snapshot | Rejected]]:
        """The snapshots of each input partition, newest first (empty list: none)."""
        ...

    def encode(self, snapshot: Snapshot) -> list[StateMessage]:
        """The messages that store ``snapshot``."""
        ...
