"""The one-event-at-a-time reference engine, for the identical-results tests and the benchmarks."""

from __future__ import annotations

from vigil.stream.engine.events import Event, LabelEvent
from vigil.stream.engine.models import ModelInput, ModelMaintainer, ModelSignal
from vigil.stream.engine.monitor import Observation
from vigil.stream.engine.processor import BatchProcessor
from vigil.stream.state import PartitionId


class PerEventProcessor(BatchProcessor):
    """A :class:`~stream.engine.processor.BatchProcessor` that scores one event at a time
    (``Monitor.observe``) and maintains models one event at a time (``on_prediction``,
    ``on_label``) instead of the batch together: the same output, slower."""

    def observe_events(self, events: list[tuple[Event, PartitionId]],
                       ) -> list[list[Observation] | Exception]:
        outcomes: list[list[Observation] | Exception] = []
        for event, partition in events:
            try:
                outcomes.append(list(self.monitor.observe(event, partition)))
            except Exception as exc:  # noqa: BLE001 - reported per event by the caller
                outcomes.append(exc)
        return outcomes

    def maintain_events(self, models: ModelMaintainer, inputs: list[ModelInput],
                        ) -> list[list[ModelSignal] | Exception]:
        outcomes: list[list[ModelSignal] | Exception] = []
        for event, partition, flagged in inputs:
            try:
                outcomes.append(models.on_label(event, partition)
                                if isinstance(event, LabelEvent)
                                else models.on_prediction(event, partition, flagged))
            except Exception as exc:  # noqa: BLE001 - reported per event by the caller
                outcomes.append(exc)
        return outcomes
