"""Checkpoints: per-partition snapshots of series state on a compacted Kafka topic.

A snapshot holds all series state of one input partition together with the offset it
reflects (the next offset to consume). It is written in two alternating slots, so a crash
while writing one leaves the other complete, and split into chunks so that large states fit
the broker's message size. Message key: ``group/topic/partition/slot/chunk``; headers carry
the snapshot sequence number, chunk index and count, and the format version. The state
topic partition of an input partition is fixed (CRC-32 of ``group/topic/partition``), so
restoring one input partition reads one state partition.

Format versions: 1 (current). A newer Vigil reads every older version; a snapshot that
cannot be read is reported and skipped, falling back to the other slot or to warm-up.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.errors import BrokerError, StateError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
READABLE_VERSIONS = frozenset({1})
CHUNK_BYTES = 512 * 1024
"""Compressed bytes per message: well under Kafka's default 1 MB message limit."""

InputPartition = tuple[str, int]

HEADER_SEQUENCE = "vigil.snapshot.sequence"
HEADER_CHUNK = "vigil.snapshot.chunk"
HEADER_CHUNKS = "vigil.snapshot.chunks"
HEADER_VERSION = "vigil.snapshot.version"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One input partition's state and the offset it reflects."""

    topic: str
    partition: int
    offset: int
    sequence: int
    body: Mapping[str, Any]
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class StateMessage:
    """A message of the state topic, as produced or consumed."""

    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    partition: int


def snapshot_key_prefix(group: str, topic: str, partition: int) -> str:
    """The common key prefix of an input partition's snapshot messages."""
    return f"{group}/{topic}/{partition}/"


def state_partition(group: str, topic: str, partition: int, state_partitions: int) -> int:
    """The state-topic partition that holds an input partition's snapshots (stable)."""
    identity = f"{group}/{topic}/{partition}".encode()
    return zlib.crc32(identity) % max(state_partitions, 1)


def encode_snapshot(group: str, snapshot: Snapshot, state_partitions: int) -> list[StateMessage]:
    """The messages that store ``snapshot``: compressed JSON in chunks, in slot sequence % 2."""
    document = {
        "format": "vigil.snapshot",
        "version": FORMAT_VERSION,
        "topic": snapshot.topic,
        "partition": snapshot.partition,
        "offset": snapshot.offset,
        "sequence": snapshot.sequence,
        "created_at": snapshot.created_at,
        "body": snapshot.body,
    }
    payload = zlib.compress(
        json.dumps(document, separators=(",", ":"), allow_nan=True).encode(), level=1
    )
    chunks = [payload[i:i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)] or [b""]
    slot = snapshot.sequence % 2
    prefix = snapshot_key_prefix(group, snapshot.topic, snapshot.partition)
    target = state_partition(group, snapshot.topic, snapshot.partition, state_partitions)
    return [
        StateMessage(
            key=f"{prefix}{slot}/{index}".encode(),
            value=chunk,
            headers=(
                (HEADER_SEQUENCE, str(snapshot.sequence).encode()),
                (HEADER_CHUNK, str(index).encode()),
                (HEADER_CHUNKS, str(len(chunks)).encode()),
                (HEADER_VERSION, str(FORMAT_VERSION).encode()),
            ),
            partition=target,
        )
        for index, chunk in enumerate(chunks)
    ]


def decode_snapshot(chunks: Iterable[bytes]) -> Snapshot:
    """Rebuild a snapshot from its chunks in order; StateError when unreadable."""
    try:
        document = json.loads(zlib.decompress(b"".join(chunks)))
    except (zlib.error, ValueError, RecursionError) as exc:
        raise StateError(f"snapshot does not decode: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != "vigil.snapshot":
        raise StateError("not a Vigil snapshot")
    version = document.get("version")
    if version not in READABLE_VERSIONS:
        raise StateError(f"snapshot format version {version!r} is newer than this Vigil reads")
    try:
        return Snapshot(
            topic=str(document["topic"]),
            partition=int(document["partition"]),
            offset=int(document["offset"]),
            sequence=int(document["sequence"]),
            body=dict(document["body"]),
            created_at=float(document["created_at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"snapshot lacks a field: {exc!r}") from exc


def latest_snapshots(
    group: str, topic: str, partition: int, messages: Iterable[StateMessage]
) -> list[Snapshot]:
    """Complete, readable snapshots of one input partition found in ``messages``, newest first.

    Messages are read in log order; for each key only the last one counts (as after
    compaction). Unreadable snapshots are logged and left out.
    """
    prefix = snapshot_key_prefix(group, topic, partition).encode()
    latest: dict[bytes, StateMessage] = {}
    for message in messages:
        if message.key.startswith(prefix):
            latest[message.key] = message
    by_sequence: dict[int, dict[int, bytes]] = {}
    expected: dict[int, int] = {}
    for message in latest.values():
        headers = dict(message.headers)
        try:
            sequence = int(headers[HEADER_SEQUENCE])
            chunk = int(headers[HEADER_CHUNK])
            count = int(headers[HEADER_CHUNKS])
        except (KeyError, ValueError):
            log.warning("state message %r has no readable snapshot headers; ignored", message.key)
            continue
        by_sequence.setdefault(sequence, {})[chunk] = message.value
        expected[sequence] = count
    found: list[Snapshot] = []
    for sequence in sorted(by_sequence, reverse=True):
        chunks = by_sequence[sequence]
        if sorted(chunks) != list(range(expected[sequence])):
            continue  # incomplete: its slot was being rewritten
        try:
            snapshot = decode_snapshot(chunks[i] for i in range(expected[sequence]))
        except StateError as exc:
            log.warning("snapshot %d of %s/%d is unreadable (%s); trying an older one",
                        sequence, topic, partition, exc)
            continue
        if (snapshot.topic, snapshot.partition) == (topic, partition):
            found.append(snapshot)
    return found


class KafkaStateStore:
    """Snapshots on the state topic: written with the shared producer, read with a
    group-less consumer that reads the relevant state partitions to their end."""

    def __init__(
        self,
        group: str,
        topic: str,
        producer: Any,
        consumer_factory: Callable[[], Any],
        state_partitions: int,
        *,
        read_timeout_s: float = 60.0,
    ) -> None:
        self.group = group
        self.topic = topic
        self.producer = producer
        self.consumer_factory = consumer_factory
        self.state_partitions = state_partitions
        self.read_timeout_s = read_timeout_s

    def encode(self, snapshot: Snapshot) -> list[StateMessage]:
        """The messages that store ``snapshot`` on this topic."""
        return encode_snapshot(self.group, snapshot, self.state_partitions)

    def write(self, messages: Sequence[StateMessage]) -> None:
        """Produce the messages and wait for every acknowledgement; BrokerError otherwise."""
        futures = [
            self.producer.send(self.topic, key=m.key, value=m.value, headers=list(m.headers),
                               partition=m.partition)
            for m in messages
        ]
        self.producer.flush()
        failed = [f.exception for f in futures if f.failed()]
        if failed:
            raise BrokerError(
                f"{len(failed)} of {len(futures)} state messages failed: {failed[0]}"
            )

    def read(self, partitions: Collection[InputPartition]) -> dict[InputPartition, list[Snapshot]]:
        """Readable snapshots of each input partition, newest first (empty list: none)."""
        wanted = {
            p: state_partition(self.group, p[0], p[1], self.state_partitions) for p in partitions
        }
        messages = self._read_partitions(sorted(set(wanted.values())))
        return {
            p: latest_snapshots(self.group, p[0], p[1], messages.get(state_p, []))
            for p, state_p in wanted.items()
        }

    def _read_partitions(self, state_partitions: list[int]) -> dict[int, list[StateMessage]]:
        """Every message of the given state partitions, from the beginning to the high water."""
        from kafka import TopicPartition

        if not state_partitions:
            return {}
        consumer = self.consumer_factory()
        try:
            assigned = [TopicPartition(self.topic, p) for p in state_partitions]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)
            found: dict[int, list[StateMessage]] = {p: [] for p in state_partitions}
            done: set[int] = set()
            deadline = time.monotonic() + self.read_timeout_s
            while len(done) < len(assigned):
                if time.monotonic() > deadline:
                    raise BrokerError(f"reading state topic {self.topic!r} timed out")
                for tp, records in consumer.poll(timeout_ms=200).items():
                    found[tp.partition].extend(
                        StateMessage(r.key or b"", r.value or b"", tuple(r.headers or ()),
                                     tp.partition)
                        for r in records
                    )
                for tp in assigned:
                    highwater = consumer.highwater(tp)
                    if highwater is not None and consumer.position(tp) >= highwater:
                        done.add(tp.partition)
            return found
        finally:
            consumer.close()
