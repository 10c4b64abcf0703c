"""The checkpointer: when each partition is snapshotted, and the at-least-once order of it.

A snapshot holds one input partition's state with the offset it reflects; the offsets the
consumer commits are exactly the snapshots' offsets, after the snapshots and all the output
they cover are acknowledged (see :meth:`Checkpointer.checkpoint`). With models on, the labels
partition p feeding predictions partition p's models has no snapshot of its own: its offset
is saved in (and restored from) the snapshot of predictions partition p, its companion.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from vigil.stream.config import VigilConfig
from vigil.stream.errors import BrokerError, StateError
from vigil.stream.loop.delivery import Delivery
from vigil.stream.loop.ports import Consumer, StateStore
from vigil.stream.loop.reporting import MetricsReporter
from vigil.stream.metrics import VigilMetrics
from vigil.stream.state import LARGEST_NUMBER, PartitionId, PartitionState, Snapshot, StateMessage

log = logging.getLogger(__name__)


class Checkpointer:
    """Snapshots partitions on their schedule and commits their offsets, in that order."""

    def __init__(self, config: VigilConfig, consumer: Consumer, store: StateStore,
                 state: PartitionState, delivery: Delivery, metrics: VigilMetrics,
                 reporter: MetricsReporter, *, expire_idle: Callable[[], object]) -> None:
        self.consumer = consumer
        self.store = store
        self.state = state
        self.delivery = delivery
        self.metrics = metrics
        self.reporter = reporter
        self.expire_idle = expire_idle
        """Let idle series expire before they are snapshotted."""
        self.interval_s = config.state.checkpoint_interval_s
        self.every_events = config.state.checkpoint_every_events
        self.predictions = config.topics.predictions
        self.labels: str | None = config.topics.labels if config.models.enabled else None
        """The labels topic, when models are maintained: saved with the predictions topic."""
        self.positions: dict[PartitionId, int] = {}
        """Next offset to consume per owned partition, where known."""
        self.checkpointed: dict[PartitionId, int] = {}
        """Offset of each owned partition's latest snapshot."""
        self.sequences: dict[PartitionId, int] = {}
        """Sequence number of each partition's latest snapshot."""
        self._events_since_checkpoint = 0
        self._due_after: dict[PartitionId, float] = {}
        """When each partition's next snapshot is due (monotonic seconds): partitions are
        spread over the interval, so the loop never stops for all of them at once."""
        self._waiting: dict[PartitionId, float] = {}
        """Partitions due and not snapshotted yet, oldest first, with when they came due."""
        self._next_expiry = 0.0

    # --- the schedule -------------------------------------------------------------------

    def advance(self, next_offsets: Mapping[PartitionId, int], records: int) -> None:
        """A batch was judged and its output handed over: the partitions moved on."""
        self.positions.update(next_offsets)
        self._events_since_checkpoint += records

    def checkpoint_if_due(self, *, idle: bool = False, behind: bool = False) -> None:
        """Checkpoint the partitions whose interval has passed (every partition after
        ``checkpoint_every_events`` events): one per call while events flow, so a snapshot
        delays the next poll's output by one partition's export at most; none while the loop
        is ``behind`` (its last poll was full), until one has waited a whole interval more, so
        a backlog is judged before snapshots hold it up; all of them when the loop is
        ``idle`` (its last poll was empty), as no output waits then."""
        now = time.monotonic()
        if self.every_events and self._events_since_checkpoint >= self.every_events:
            self._events_since_checkpoint = 0
            for partition in self._targets(None):
                self._waiting.setdefault(partition, now)
        for partition in self.due_partitions():
            self._waiting.setdefault(partition, now)
        if not self._waiting:
            return
        if idle:
            due, self._waiting = list(self._waiting), {}
        else:
            oldest, since = next(iter(self._waiting.items()))
            if behind and now - since < self.interval_s:
                return
            due = [oldest]
            del self._waiting[oldest]
        self.checkpoint(due)

    def due_partitions(self) -> list[PartitionId]:
        """Partitions whose checkpoint interval has passed. Each partition's first one comes
        after a fraction of the interval fixed by its name, so their snapshots spread out."""
        now = time.monotonic()
        due = []
        for partition in self.positions:
            if not self.has_own_snapshot(partition):
                continue  # saved with its predictions partition
            after = self._due_after.get(partition)
            if after is None:
                phase = (zlib.crc32(f"{partition[0]}/{partition[1]}".encode()) % 1000) / 1000
                after = self._due_after[partition] = now + self.interval_s * phase
            if now >= after:
                due.append(partition)
                self._due_after[partition] = now + self.interval_s
        return due

    # --- the order ----------------------------------------------------------------------

    def checkpoint(self, partitions: Iterable[PartitionId] | None = None, *,
                   force: bool = False, during_rebalance: bool = False) -> list[PartitionId]:
        """Snapshot the partitions that moved on (all: None), then commit their offsets; the
        partitions whose offsets were saved.

        The order, so that state and committed offsets never disagree and no alert is lost:

        1. expire idle series (every interval, and on a checkpoint of all partitions), so no
           snapshot keeps what the next owner would drop at once;
        2. settle the output: every alert, dead letter and model update the snapshots cover
           is acknowledged (acks=all), failures re-sent;
        3. export each partition that moved (its offset, its state, or its labels partition's
           offset) as a snapshot, with the offsets it reflects;
        4. write the snapshots to the state topic and wait for their acknowledgements;
        5. commit exactly the snapshots' offsets (a failed commit is not fatal: the next owner
           seeks to the snapshot's offset, and the next checkpoint commits again).

        ``during_rebalance``: called on the consumer's thread inside ``poll``, which must not
        block, so steps 2 and 4 get one attempt (nothing is snapshotted if the output is not
        acknowledged) and step 5 is left out.
        """
        started = time.perf_counter()
        # Step 1. Expire idle series
        if partitions is None or time.monotonic() >= self._next_expiry:
            self.expire_idle()
            self._next_expiry = time.monotonic() + self.interval_s
        # Step 2. Settle the output the snapshots will cover
        if not self.delivery.settle(attempts=1 if during_rebalance else None):
            log.warning("output of revoked partitions not acknowledged; their next owner "
                        "resumes from their previous snapshots")
            return []
        # Step 3. Export the partitions that moved
        messages, offsets = self._snapshots(self._targets(partitions), force=force)
        if messages:
            # Step 4. Write the snapshots and wait for their acknowledgements
            if during_rebalance:
                self.store.write(messages)
            else:
                self.delivery.write_state(self.store, messages)
            self._saved(offsets)
            self.metrics.last_checkpoint.set_to_current_time()
            # Step 5. Commit exactly the snapshots' offsets
            if not during_rebalance and commit_offsets(self.consumer, offsets):
                self.metrics.last_commit.set_to_current_time()
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        if partitions is None:
            self._events_since_checkpoint = 0
        self.reporter.series()
        return list(offsets)

    def _targets(self, partitions: Iterable[PartitionId] | None) -> list[PartitionId]:
        """The partitions with snapshots of their own that ``partitions`` (None: all) cover."""
        targets = list(self.positions if partitions is None else partitions)
        if self.labels is not None:  # a labels partition is saved with its predictions one
            targets = list(dict.fromkeys(self.companion(p) for p in targets))
        return targets

    def _snapshots(self, targets: list[PartitionId], *, force: bool,
                   ) -> tuple[list[StateMessage], dict[PartitionId, int]]:
        """The state messages of the targets that moved on (all with ``force``), and the
        offsets they save (a labels partition's too)."""
        messages: list[StateMessage] = []
        offsets: dict[PartitionId, int] = {}
        for partition in targets:
            offset = self.positions.get(partition)
            if offset is None:
                continue
            labels = self.labels_partition(partition)
            labels_offset = None if labels is None else self.positions.get(labels)
            moved = offset != self.checkpointed.get(partition) \
                or self.state.is_dirty(partition) \
                or (labels is not None and labels_offset != self.checkpointed.get(labels))
            if not force and not moved:
                continue
            body = self.state.export_partition(partition) or {}
            if labels is not None:
                body["labels_offset"] = labels_offset
                if labels_offset is not None:
                    offsets[labels] = labels_offset
            sequence = self.sequences.get(partition, -1) + 1
            snapshot = Snapshot(partition[0], partition[1], offset, sequence, body)
            messages.extend(self.store.encode(snapshot))
            offsets[partition] = offset
        return messages, offsets

    def _saved(self, offsets: Mapping[PartitionId, int]) -> None:
        """The snapshots holding ``offsets`` are acknowledged."""
        for partition, offset in offsets.items():
            if self.has_own_snapshot(partition):
                self.sequences[partition] = self.sequences.get(partition, -1) + 1
            self.checkpointed[partition] = offset

    # --- partitions coming and going ------------------------------------------------------

    def holds(self, partition: PartitionId) -> bool:
        """True when this instance consumed or restored the partition."""
        return partition in self.positions or partition in self.checkpointed

    def resume_at(self, partition: PartitionId, offset: int) -> None:
        """The partition's state was restored from a snapshot of ``offset``."""
        self.checkpointed[partition] = offset
        self.positions[partition] = offset

    def release(self, partition: PartitionId) -> None:
        """Forget the partition's offsets and schedule (it moved to another instance)."""
        self.positions.pop(partition, None)
        self.checkpointed.pop(partition, None)
        self._due_after.pop(partition, None)
        self._waiting.pop(partition, None)
        self.sequences.pop(partition, None)

    def has_own_snapshot(self, partition: PartitionId) -> bool:
        """False for a labels partition, whose offset is saved with its predictions one."""
        return partition[0] != self.labels

    def companion(self, partition: PartitionId) -> PartitionId:
        """The predictions partition whose snapshot holds ``partition``'s state (itself,
        unless it is a labels partition)."""
        if partition[0] == self.labels:
            return (self.predictions, partition[1])
        return partition

    def labels_partition(self, partition: PartitionId) -> PartitionId | None:
        """The labels partition feeding a predictions partition's models, if models are on."""
        if self.labels is None or partition[0] != self.predictions:
            return None
        return (self.labels, partition[1])

    def labels_offset(self, body: Mapping[str, Any]) -> int | None:
        """The labels partition's offset a snapshot body saved (None: none, or models off);
        StateError when it is not an offset (the body is data read from Kafka)."""
        if self.labels is None:
            return None
        offset = body.get("labels_offset")
        if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)
                                   or not 0 <= offset < LARGEST_NUMBER):
            raise StateError(f"labels_offset must be an offset, got {offset!r}")
        return offset


def commit_offsets(consumer: Consumer, next_offsets: Mapping[PartitionId, int]) -> bool:
    """Commit synchronously; False (and a log line) when the commit did not go through.

    A failed commit is never fatal: the state snapshot already holds the offset, the next
    owner of the partition resumes there, and the next checkpoint commits again.
    """
    if not next_offsets:
        return True
    try:
        consumer.commit(next_offsets)
    except BrokerError as exc:  # CommitFailed, RebalanceInProgress, timeouts
        log.warning("offset commit did not go through (%s); the next checkpoint retries", exc)
        return False
    return True
