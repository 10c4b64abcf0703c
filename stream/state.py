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

Whoever can write the state topic can write a snapshot, so a snapshot is data, checked before
it is used: its header fields and document fields must have the right types and ranges, its
chunks are at most ``MAX_CHUNK_BYTES`` each, and it may not decompress beyond
:attr:`SnapshotPolicy.max_bytes` (a small zlib bomb would otherwise take all memory). With
keys configured, every snapshot carries an HMAC-SHA256 of its identity and compressed bytes
(header ``vigil.snapshot.hmac``), and one without a valid one is refused before it is even
decompressed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vigil.stream.errors import BrokerError, StateError

if TYPE_CHECKING:
    from kafka import KafkaConsumer

    from vigil.stream.loop.ports import Producer

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
READABLE_VERSIONS = frozenset({1})
CHUNK_BYTES = 512 * 1024
"""Compressed bytes per message: well under Kafka's default 1 MB message limit."""
MAX_CHUNK_BYTES = 1024 * 1024
"""A state message larger than this was not written by Vigil: it is not even kept in memory."""
MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024
"""Default cap on a snapshot's decompressed size (``state.max_snapshot_mb``)."""
LARGEST_NUMBER = 2**53
"""Offsets and sequence numbers beyond this are not Vigil's (JSON keeps integers exact below)."""

PartitionId = tuple[str, int]
"""(topic, partition) of an input partition: the unit of state, snapshots and offsets."""


class PartitionState(Protocol):
    """What keeps state per input partition, checkpointed with that partition's offset and
    handed over with it on a rebalance (:class:`~stream.engine.monitor.Monitor`,
    :class:`~stream.engine.models.ModelMaintainer`)."""

    def partitions(self) -> list[PartitionId]:
        """The partitions holding state here."""
        ...

    def is_dirty(self, partition: PartitionId) -> bool:
        """True when the partition changed since it was last exported."""
        ...

    def export_partition(self, partition: PartitionId) -> dict[str, Any] | None:
        """The partition's state as a JSON-serialisable body (None: nothing held), and mark it
        clean."""
        ...

    def import_partition(self, partition: PartitionId, body: Mapping[str, Any] | None, *,
                         latest: float = math.inf) -> int:
        """Replace the partition's state with an exported body; the number of items restored.
        The body is data read from Kafka: StateError when anything in it is unusable, event
        times are held to ``latest``."""
        ...

    def drop_partition(self, partition: PartitionId) -> None:
        """Forget the partition's state (it moved to another instance, or starts afresh)."""
        ...


HEADER_SEQUENCE = "vigil.snapshot.sequence"
HEADER_CHUNK = "vigil.snapshot.chunk"
HEADER_CHUNKS = "vigil.snapshot.chunks"
HEADER_VERSION = "vigil.snapshot.version"
HEADER_HMAC = "vigil.snapshot.hmac"


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """What a snapshot read from the state topic must satisfy, and how it is signed.

    ``keys``: HMAC keys; the first signs what this instance writes, any of them verifies what
    it reads (so keys can be rotated), and none means snapshots are neither signed nor checked.
    """

    max_bytes: int = MAX_SNAPSHOT_BYTES
    keys: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def max_chunks(self) -> int:
        """Most chunks a snapshot within ``max_bytes`` can have (zlib never grows data much)."""
        return self.max_bytes // CHUNK_BYTES + 2

    def mac(self, key: bytes, identity: str, sequence: int, payload: bytes) -> str:
        """HMAC-SHA256 of a snapshot's identity, sequence and compressed bytes, in hex."""
        signed = f"{identity}\x1f{sequence}\x1f".encode() + payload
        return hmac.new(key, signed, hashlib.sha256).hexdigest()

    def verify(self, identity: str, sequence: int, payload: bytes, mac: bytes | None) -> None:
        """StateError unless ``mac`` is the HMAC of the snapshot under one of the keys."""
        if not self.keys:
            return
        if mac is None:
            raise StateError("snapshot is not signed, and state keys are configured")
        given = mac.decode("ascii", "replace")
        if not any(hmac.compare_digest(self.mac(key, identity, sequence, payload), given)
                   for key in self.keys):
            raise StateError("snapshot signature does not match any configured state key")


DEFAULT_POLICY = SnapshotPolicy()


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
class Rejected:
    """A complete snapshot found on the state topic that cannot be used, and why."""

    sequence: int
    reason: str


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


def encode_snapshot(group: str, snapshot: Snapshot, state_partitions: int,
                    policy: SnapshotPolicy = DEFAULT_POLICY) -> list[StateMessage]:
    """The messages that store ``snapshot``: compressed JSON in chunks, in slot sequence % 2,
    signed with the policy's first key if it has one."""
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
    raw = json.dumps(document, separators=(",", ":"), allow_nan=True).encode()
    if len(raw) > policy.max_bytes:
        log.error("the snapshot of %s/%d is %d MB, more than state.max_snapshot_mb allows: it "
                  "will not be restored; raise state.max_snapshot_mb", snapshot.topic,
                  snapshot.partition, len(raw) // 2**20)
    payload = zlib.compress(raw, level=1)
    chunks = [payload[i:i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)] or [b""]
    slot = snapshot.sequence % 2
    prefix = snapshot_key_prefix(group, snapshot.topic, snapshot.partition)
    target = state_partition(group, snapshot.topic, snapshot.partition, state_partitions)
    headers: tuple[tuple[str, bytes], ...] = (
        (HEADER_SEQUENCE, str(snapshot.sequence).encode()),
        (HEADER_CHUNKS, str(len(chunks)).encode()),
        (HEADER_VERSION, str(FORMAT_VERSION).encode()),
    )
    if policy.keys:
        mac = policy.mac(policy.keys[0], prefix, snapshot.sequence, payload)
        headers += ((HEADER_HMAC, mac.encode()),)
    return [
        StateMessage(
            key=f"{prefix}{slot}/{index}".encode(),
            value=chunk,
            headers=((HEADER_CHUNK, str(index).encode()), *headers),
            partition=target,
        )
        for index, chunk in enumerate(chunks)
    ]


def decode_snapshot(chunks: Iterable[bytes],
                    policy: SnapshotPolicy = DEFAULT_POLICY) -> Snapshot:
    """Rebuild a snapshot from its chunks in order; StateError when unreadable or beyond the
    policy's size (checked while decompressing, so a zlib bomb never fills memory)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(chunks), policy.max_bytes)
        if inflater.unconsumed_tail:
            raise StateError(f"snapshot decompresses to more than {policy.max_bytes} bytes "
                             "(state.max_snapshot_mb)")
        if not inflater.eof:
            raise StateError("snapshot does not decode: its compressed data is cut short")
        document = json.loads(raw)
    except (zlib.error, ValueError, RecursionError) as exc:
        raise StateError(f"snapshot does not decode: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != "vigil.snapshot":
        raise StateError("not a Vigil snapshot")
    version = document.get("version")
    if version not in READABLE_VERSIONS:
        raise StateError(f"snapshot format version {version!r} is newer than this Vigil reads")
    missing = {"topic", "partition", "offset", "sequence", "created_at", "body"} - set(document)
    if missing:
        raise StateError(f"snapshot lacks the fields {sorted(missing)}")
    topic, partition, body = document["topic"], document["partition"], document["body"]
    created_at = document["created_at"]
    if not isinstance(topic, str) or not isinstance(body, dict):
        raise StateError("snapshot topic must be a string and its body an object")
    return Snapshot(topic=topic, partition=checked_count(partition, "partition"),
                    offset=checked_count(document["offset"], "offset"),
                    sequence=checked_count(document["sequence"], "sequence"),
                    body=body, created_at=checked_number(created_at, "created_at"))


def checked_count(value: object, name: str) -> int:
    """``value`` read from a snapshot if it is an integer in [0, 2**53), else StateError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < LARGEST_NUMBER:
        raise StateError(f"{name} must be an integer >= 0, got {_short(value)}")
    return value


def checked_number(value: object, name: str) -> float:
    """``value`` read from a snapshot if it is a finite number, else StateError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StateError(f"{name} must be a finite number, got {_short(value)}")
    return float(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def latest_snapshots(
    group: str, topic: str, partition: int, messages: Iterable[StateMessage],
    policy: SnapshotPolicy = DEFAULT_POLICY,
) -> list[Snapshot | Rejected]:
    """The complete snapshots of one input partition found in ``messages``, newest first:
    each readable, or :class:`Rejected` with the reason (also logged).

    Messages are read in log order; for each key only the last one counts (as after
    compaction). A message whose key or headers are not what Vigil writes is ignored.
    """
    prefix = snapshot_key_prefix(group, topic, partition)
    latest: dict[bytes, StateMessage] = {}
    for message in messages:
        if message.key.startswith(prefix.encode()):
            latest[message.key] = message
    by_sequence: dict[int, dict[int, StateMessage]] = {}
    expected: dict[int, int] = {}
    for message in latest.values():
        place = _place(message, prefix, policy)
        if place is None:
            log.warning("state message %r is not a snapshot chunk Vigil wrote; ignored",
                        message.key[:200])
            continue
        sequence, chunk, count = place
        by_sequence.setdefault(sequence, {})[chunk] = message
        if expected.setdefault(sequence, count) != count:
            expected[sequence] = -1  # chunks that disagree on their count: never complete
    found: list[Snapshot | Rejected] = []
    for sequence in sorted(by_sequence, reverse=True):
        chunks = by_sequence[sequence]
        if len(chunks) != expected[sequence]:
            continue  # incomplete: its slot was being rewritten
        ordered = [chunks[i] for i in range(expected[sequence])]
        try:
            payload = b"".join(m.value for m in ordered)
            policy.verify(prefix, sequence, payload, dict(ordered[0].headers).get(HEADER_HMAC))
            snapshot = decode_snapshot([payload], policy)
            if (snapshot.topic, snapshot.partition, snapshot.sequence) != (
                    topic, partition, sequence):
                raise StateError("snapshot names another partition or sequence than its key")
        except StateError as exc:
            log.warning("snapshot %d of %s/%d is unusable (%s); trying an older one",
                        sequence, topic, partition, exc)
            found.append(Rejected(sequence, str(exc)))
            continue
        found.append(snapshot)
    return found


def _place(message: StateMessage, prefix: str,
           policy: SnapshotPolicy) -> tuple[int, int, int] | None:
    """(sequence, chunk, chunk count) of a snapshot chunk, or None if it is not one Vigil
    could have written (key, headers, size)."""
    if len(message.value) > MAX_CHUNK_BYTES:
        return None
    headers = dict(message.headers)
    try:
        sequence = int(headers[HEADER_SEQUENCE])
        chunk = int(headers[HEADER_CHUNK])
        count = int(headers[HEADER_CHUNKS])
    except (KeyError, ValueError):
        return None
    if not (0 <= sequence < LARGEST_NUMBER and 0 <= chunk < count <= policy.max_chunks):
        return None
    if message.key != f"{prefix}{sequence % 2}/{chunk}".encode():
        return None
    return sequence, chunk, count


class KafkaStateStore:
    """Snapshots on the state topic: written with the loop's producer, read with a
    group-less kafka-python consumer that reads the relevant state partitions to their end."""

    def __init__(
        self,
        group: str,
        topic: str,
        producer: Producer,
        consumer_factory: Callable[[], KafkaConsumer],
        state_partitions: int,
        *,
        read_timeout_s: float = 60.0,
        policy: SnapshotPolicy = DEFAULT_POLICY,
    ) -> None:
        self.group = group
        self.topic = topic
        self.producer = producer
        self.consumer_factory = consumer_factory
        self.state_partitions = state_partitions
        self.read_timeout_s = read_timeout_s
        self.policy = policy

    def encode(self, snapshot: Snapshot) -> list[StateMessage]:
        """The messages that store ``snapshot`` on this topic."""
        return encode_snapshot(self.group, snapshot, self.state_partitions, self.policy)

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

    def read(self, partitions: Collection[PartitionId],
             ) -> dict[PartitionId, list[Snapshot | Rejected]]:
        """The snapshots of each input partition, newest first (empty list: none)."""
        wanted = {
            p: state_partition(self.group, p[0], p[1], self.state_partitions) for p in partitions
        }
        prefixes = tuple(snapshot_key_prefix(self.group, *p).encode() for p in partitions)
        messages = self._read_partitions(sorted(set(wanted.values())), prefixes)
        return {
            p: latest_snapshots(self.group, p[0], p[1], messages.get(state_p, []), self.policy)
            for p, state_p in wanted.items()
        }

    def _read_partitions(self, state_partitions: list[int], prefixes: tuple[bytes, ...],
                         ) -> dict[int, list[StateMessage]]:
        """The latest message of each key with one of ``prefixes`` in the given state
        partitions, read from the beginning to the high water mark; other keys and messages
        larger than a chunk are dropped as they come, so foreign data cannot fill memory."""
        from kafka import TopicPartition

        if not state_partitions:
            return {}
        consumer = self.consumer_factory()
        try:
            assigned = [TopicPartition(self.topic, p) for p in state_partitions]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)
            found: dict[int, dict[bytes, StateMessage]] = {p: {} for p in state_partitions}
            done: set[int] = set()
            deadline = time.monotonic() + self.read_timeout_s
            while len(done) < len(assigned):
                if time.monotonic() > deadline:
                    raise BrokerError(f"reading state topic {self.topic!r} timed out")
                for tp, records in consumer.poll(timeout_ms=200).items():
                    kept = found[tp.partition]
                    for r in records:
                        key, value = r.key or b"", r.value or b""
                        if key.startswith(prefixes) and len(value) <= MAX_CHUNK_BYTES:
                            kept.pop(key, None)  # re-inserted: dicts keep log order
                            kept[key] = StateMessage(key, value, tuple(r.headers or ()),
                                                     tp.partition)
                for tp in assigned:
                    highwater = consumer.highwater(tp)
                    if highwater is not None and consumer.position(tp) >= highwater:
                        done.add(tp.partition)
            return {p: list(kept.values()) for p, kept in found.items()}
        finally:
            consumer.close()
