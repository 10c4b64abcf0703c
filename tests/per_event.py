"""The one-event-at-a-time reference engine, for the identical-results tests and the benchmarks."""

from __future__ import annotations

from vigil.stream.engine.events import Event
from vigil.stream.engine.monitor import Observation
from vigil.stream.engine.processor import BatchProcessor
from vigil.stream.state import PartitionId


class PerEventProcessor(BatchProcessor):
    """A :class:`~stream.engine.processor.BatchProcessor` that scores one event at a time
    (``Monitor.observe``) instead of the batch together: the same output, slower."""

    def observe_events(self, events: list[tuple[Event, PartitionId]],
                       ) -> list[list[Observation] | Exception]:
        outcomes: list[list[Observation] | Exception] = []
        for event, partition in events:
            try:
                outcomes.append(list(self.monitor.observe(event, partition)))
            except Exception as exc:  # noqa: BLE001 - reported per event by the caller
                outcomes.append(exc)
        return outcomes
