"""The restorer: partitions going and coming, and their state restored from snapshots.

Before partitions go, their snapshots are written (without blocking the consumer's thread).
Partitions that come are paused until the loop has read their newest usable snapshot,
imported its state and sought to its offset; partitions this instance keeps across a
rebalance keep their state and are not read again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from vigil.stream.errors import BrokerError
from vigil.stream.loop.checkpoint import Checkpointer
from vigil.stream.loop.ports import Consumer, RebalanceListener, StateStore
from vigil.stream.loop.reporting import MetricsReporter
from vigil.stream.metrics import VigilMetrics
from vigil.stream.state import PartitionId, PartitionState, Rejected, Snapshot

log = logging.getLogger(__name__)


class Restorer(RebalanceListener):
    """The consumer's rebalance listener, and the restore of newly assigned partitions."""

    def __init__(self, consumer: Consumer, store: StateStore, state: PartitionState,
                 checkpointer: Checkpointer, metrics: VigilMetrics, reporter: MetricsReporter,
                 *, latest_event_time: Callable[[], float]) -> None:
        self.consumer = consumer
        self.store = store
        self.state = state
        self.checkpointer = checkpointer
        self.metrics = metrics
        self.reporter = reporter
        self.latest_event_time = latest_event_time
        """The latest event time a restored state may hold (the wall clock plus the skew)."""
        self._parked: set[PartitionId] = set()
        """Partitions revoked in the rebalance under way: their state is kept if they come back."""
        self.unrestored: set[PartitionId] = set()
        """Partitions assigned and paused until their snapshots are restored."""

    # --- rebalances: inside the consumer's poll, on its thread ------------------------------

    def on_partitions_revoked(self, revoked: list[PartitionId]) -> None:
        """Before partitions go: snapshot them (no commit), and park their state."""
        log.info("rebalance: %d partitions revoked", len(revoked))
        self.metrics.rebalances.inc()
        owned = [p for p in revoked if self.checkpointer.holds(p)]
        try:
            self.checkpointer.checkpoint(owned, during_rebalance=True)
        except BrokerError as exc:
            log.warning("could not snapshot revoked partitions (%s); their next owner resumes "
                        "from the previous snapshot", exc)
        self._parked = set(revoked)
        self.reporter.revoked(revoked)

    def on_partitions_assigned(self, assigned: list[PartitionId]) -> None:
        """After partitions come: keep parked state we still own; pause the rest until the loop
        has restored their snapshots (no blocking I/O here, on the consumer's I/O thread)."""
        log.info("rebalance: %d partitions assigned", len(assigned))
        keep = set(assigned)
        held = self.checkpointer.positions.keys() | set(self.state.partitions())
        for partition in held - keep:
            self.reporter.dropped(partition)
            self.state.drop_partition(partition)
            self.checkpointer.release(partition)
        checkpointed = self.checkpointer.checkpointed
        fresh = [p for p in assigned if p not in self._parked or p not in checkpointed]
        for partition in assigned:
            if partition in self._parked and partition in checkpointed:
                self.consumer.seek(partition, checkpointed[partition])
        self._parked = set()
        self.unrestored.update(fresh)
        if fresh:
            self.consumer.pause(*fresh)

    # --- restores: in the loop, after a poll ------------------------------------------------

    def restore_pending(self) -> None:
        """Restore snapshots of newly assigned partitions, then let the consumer fetch them.

        A snapshot is data anyone with write access to the state topic could have written:
        any failure to read or apply one means "skip this snapshot" (counted in
        ``vigil_snapshots_rejected_total`` and logged), never a stopped loop. While the state
        topic cannot be read at all, the partitions stay paused and the next call tries again.
        """
        if not self.unrestored:
            return
        pending = sorted(self.unrestored)
        snapshotted = [p for p in pending if self.checkpointer.has_own_snapshot(p)]
        found: dict[PartitionId, list[Snapshot | Rejected]] = {}
        try:
            found = self.store.read(snapshotted)
        except BrokerError as exc:
            log.warning("state not readable yet (%s); %d partitions wait", exc, len(pending))
            return
        except Exception:  # noqa: BLE001 - foreign data the reader did not expect
            log.exception("the state topic could not be read for %d partitions; they start "
                          "from warm-up", len(snapshotted))
            self.metrics.snapshots_rejected.inc(len(snapshotted))
        latest = self.latest_event_time()
        for partition in snapshotted:
            self._restore_newest(partition, found.get(partition, []), latest)
        self.consumer.resume(*pending)
        self.unrestored.clear()

    def _restore_newest(self, partition: PartitionId, candidates: list[Snapshot | Rejected],
                        latest: float) -> None:
        """Restore the newest usable of a partition's snapshots (newest first), else start it
        from warm-up; its next snapshot follows the newest sequence seen."""
        for candidate in candidates:
            if isinstance(candidate, Rejected):
                self.metrics.snapshots_rejected.inc()
                continue
            try:
                count = self._restore(partition, candidate, latest)
            except Exception as exc:  # noqa: BLE001 - a bad snapshot, whatever it holds
                self.metrics.snapshots_rejected.inc()
                log.warning("snapshot %d of %s/%d unusable (%s); trying an older one",
                            candidate.sequence, *partition, _brief(exc))
                continue
            log.info("restored %d series of %s/%d at offset %d", count, *partition,
                     candidate.offset)
            break
        else:
            self.state.drop_partition(partition)
            log.info("no usable snapshot for %s/%d: its series start from warm-up", *partition)
        if candidates:
            self.checkpointer.sequences[partition] = max(c.sequence for c in candidates)

    def _restore(self, partition: PartitionId, snapshot: Snapshot, latest: float) -> int:
        """Apply one snapshot to a partition and seek to its offsets; the number of series.
        Raises (and leaves the partition empty) when anything in it is unusable."""
        try:
            count = self.state.import_partition(partition, snapshot.body, latest=latest)
            labels_offset = self.checkpointer.labels_offset(snapshot.body)
        except BaseException:
            self.state.drop_partition(partition)
            raise
        self.checkpointer.resume_at(partition, snapshot.offset)
        self.consumer.seek(partition, snapshot.offset)
        self._restore_labels(partition, labels_offset)
        return count

    def _restore_labels(self, partition: PartitionId, offset: int | None) -> None:
        """Resume the labels partition feeding ``partition`` where its snapshot left it (when
        this instance owns it: the range assignor gives partition p of both topics to one
        member when they have as many partitions)."""
        labels = self.checkpointer.labels_partition(partition)
        if labels is None or offset is None:
            return
        if labels not in self.unrestored:
            log.warning("labels partition %s/%d is not assigned with %s/%d: give both topics "
                        "the same number of partitions and use the range assignor", *labels,
                        *partition)
            return
        self.checkpointer.resume_at(labels, offset)
        self.consumer.seek(labels, offset)


def _brief(error: BaseException) -> str:
    """An exception in one line of at most 300 characters, for a log line."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 300 else text[:300] + "..."
