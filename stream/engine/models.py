"""Model maintenance inside ``vigil run``: join labels to predictions, learn, watch, publish.

Per input partition of the predictions topic, a :class:`~updaters.labels.LabelJoinBuffer`
holds predictions until their labels come (from the labels topic's partition of the same
number, or in the prediction itself), and per model a
:class:`~updaters.guardrails.GuardedLearner` (the maintained model) and a
:class:`~updaters.performance.PerformanceMonitor` (served vs maintained loss) learn from each
join. Everything is kept per predictions partition, so it is checkpointed with that
partition's offset (and the labels partition's) and follows it on a rebalance. I/O-free: the
runtime turns the :class:`ModelSignal` values into alerts and model-update messages.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil.detectors import PointResult
from vigil.stream.config import ModelsConfig
from vigil.stream.engine.alerts import iso_utc
from vigil.stream.engine.events import LabelEvent, PredictionEvent
from vigil.stream.errors import ConfigError, StateError
from vigil.stream.state import PartitionId, PartitionState, checked_count, checked_number
from vigil.updaters import (
    GuardedLearner,
    LabelJoinBuffer,
    Learner,
    PerformanceMonitor,
    build_learner,
    restore_learner,
)
from vigil.updaters.guardrails import HOLD_REASONS
from vigil.updaters.labels import Joined

log = logging.getLogger(__name__)

ModelInput = tuple[PredictionEvent | LabelEvent, PartitionId, bool]
"""A poll's prediction or label for model maintenance: the event, its predictions partition
and whether the monitor flagged it (a prediction that is flagged is scored, never learned)."""

DEFAULT_ESTIMATORS = {"regressor": "SGDRegressor", "classifier": "SGDClassifier"}
"""The scikit-learn class a model-update names when the learner was not warm-started."""


@dataclass(slots=True)
class ModelSignal:
    """Something a labelled event caused that the outside world should hear about.

    ``kind``: ``performance`` (the served model's loss rose out of control, or the guard
    judged a rise of the maintained model's a concept change), ``rollback`` (the maintained
    model fell behind its last good snapshot and was restored to it: poison),
    ``rebaselined`` (data the guard held back persisted, or rollbacks did: accepted as the
    new normal) or ``update`` (``message`` is a model-update to publish).
    """

    kind: str
    model: str
    timestamp: float
    value: float = math.nan
    chart: PointResult | None = None
    details: dict[str, float | None] = field(default_factory=dict)
    message: dict[str, Any] | None = None


@dataclass(slots=True)
class _Maintained:
    """One model's maintained learner, loss monitor and publishing bookkeeping."""

    guarded: GuardedLearner
    performance: PerformanceMonitor
    version: int = 0
    published_updates: int = 0
    published_at: float = -math.inf
    last_alert: float = -math.inf
    maintained_loss: float | None = None
    """Rolling prequential loss of the maintained model (the guard charts it already)."""

    def state_dict(self) -> dict[str, Any]:
        return {"guard": self.guarded.state_dict(), "performance": self.performance.state_dict(),
                "version": self.version, "published_updates": self.published_updates,
                "published_at": _finite_or_none(self.published_at),
                "last_alert": _finite_or_none(self.last_alert),
                "maintained_loss": self.maintained_loss}

    def update_due(self, model: str, timestamp: float,
                   config: ModelsConfig) -> ModelSignal | None:
        """The model-update message to publish now, if one is due (``models.publish_every``
        updates or ``publish_interval_s`` since the last; linear models only)."""
        learner = self.guarded.learner
        n_updates = int(getattr(learner, "n_updates", 0))
        fresh = n_updates - self.published_updates
        if fresh <= 0:
            return None
        due = (config.publish_every and fresh >= config.publish_every) or (
            config.publish_interval_s
            and timestamp - self.published_at >= config.publish_interval_s)
        if not due:
            return None
        params_of = getattr(learner, "linear_params", None)
        if params_of is None:
            return None  # not a linear model: nothing a scikit-learn estimator could load
        self.version += 1
        self.published_updates = n_updates
        self.published_at = timestamp
        params = params_of()
        loss = self.maintained_loss
        message = {
            "model": model,
            "version": self.version,
            **params.to_dict(),
            "n_updates": n_updates,
            "loss": loss if loss is not None and math.isfinite(loss) else None,
            "timestamp": iso_utc(timestamp),
            "estimator": params.estimator or DEFAULT_ESTIMATORS[learner.kind],
        }
        return ModelSignal("update", model, timestamp, message=message)

    @classmethod
    def from_state(cls, state: Mapping[str, Any],
                   restore: Callable[[Mapping[str, Any]], Learner],
                   latest: float = math.inf) -> _Maintained:
        """The saved model's state, checked (it is data read from Kafka); its event times are
        held to ``latest``. ValueError when a field has the wrong type or range."""
        if not isinstance(state, Mapping):
            raise ValueError("a model's state must be an object")
        loss = state.get("maintained_loss")
        if loss is not None:
            loss = checked_number(loss, "maintained_loss")
        return cls(GuardedLearner.from_state(state["guard"], restore),
                   PerformanceMonitor.from_state(state["performance"]),
                   checked_count(state.get("version"), "version"),
                   checked_count(state.get("published_updates"), "published_updates"),
                   min(_time_or(state.get("published_at"), "published_at"), latest),
                   min(_time_or(state.get("last_alert"), "last_alert"), latest), loss)


class _PartitionModels:
    __slots__ = ("buffer", "models", "watermark", "dirty", "counted")

    def __init__(self, buffer: LabelJoinBuffer) -> None:
        self.buffer = buffer
        self.models: dict[str, _Maintained] = {}
        self.watermark = -math.inf
        self.dirty = False
        self.counted = buffer.counters()
        """The buffer's counters when they were last added to the metrics."""


class ModelBuilder:
    """Builds label buffers and maintained models from the configuration: warm-start states
    are loaded once, and a restored learner's type always comes from the configuration."""

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self._templates: dict[str, dict[str, Any]] = {}
        """Warm-start learner states by joblib path, loaded once."""
        for spec in [config.spec_for(""), *config.overrides.values()]:
            if spec.get("warm_start"):
                self._template(config.spec_for("") | dict(spec))
        self._check_settings()

    def _check_settings(self) -> None:
        """Build a label buffer and every configured model now, so that settings ``run`` would
        fail on at its first labelled event fail at start (and in ``check-config``)."""
        config = self.config
        where = "models"
        try:
            self.buffer()
            for pattern in ["", *config.overrides]:
                where = f'models.overrides."{pattern}"' if pattern else "models"
                spec = config.spec_for("") | dict(config.overrides.get(pattern, {}))
                self.maintained(spec, {"feature": 0.0}, 0.0)  # a stand-in for real ones
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: these settings cannot build a model: {exc}") from exc

    def buffer(self) -> LabelJoinBuffer:
        """An empty label buffer with the configured limits."""
        config = self.config
        return LabelJoinBuffer(config.max_waiting_predictions, config.label_ttl_s,
                               max_bytes=config.max_waiting_mb * 2**20, size_of=_payload_bytes)

    def maintained(self, spec: Mapping[str, Any], features: Mapping[str, float],
                   timestamp: float) -> _Maintained:
        """A fresh maintained model of ``spec``: its guarded learner and loss monitor."""
        learner = self._learner(spec, features)
        config = self.config
        guarded = GuardedLearner(learner, loss=spec["loss"] or None,
                                 max_step=config.max_step or None, block=config.block,
                                 chart=config.chart, chart_params=config.chart_params,
                                 snapshot_every=config.snapshot_every,
                                 max_rollbacks=config.max_rollbacks,
                                 accept_after=config.accept_after, influence=config.influence)
        performance = PerformanceMonitor(guarded.loss, block=config.block, chart=config.chart,
                                         chart_params=config.chart_params, span=config.span)
        return _Maintained(guarded, performance, published_at=timestamp)

    def _learner(self, spec: Mapping[str, Any], features: Mapping[str, float]) -> Learner:
        if spec.get("warm_start"):
            template = self._template(spec)
            return restore_learner(template["name"], template["state"])
        params = dict(spec["params"])
        if spec["learner"].startswith("sgd_") and "feature_names" not in params:
            params["feature_names"] = sorted(features)
        return build_learner(spec["learner"], params)

    def restorer(self, model: str) -> Callable[[Mapping[str, Any]], Learner]:
        """Restores a saved learner state of ``model`` as the learner its configuration names.

        The type always comes from the configuration: a snapshot is data read from Kafka, and
        whoever can write the state topic must not choose what code reads it.
        """
        spec = self.config.spec_for(model)
        if spec.get("warm_start"):
            name = self._template(spec)["name"]
            return lambda state: restore_learner(name, state)
        name, params = spec["learner"], dict(spec["params"])
        return lambda state: restore_learner(name, state, params)

    def _template(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        path = spec["warm_start"]
        template = self._templates.get(path)
        if template is None:
            from vigil.updaters.sklearn_io import from_joblib  # loads scikit-learn: only when asked

            params = dict(spec.get("params", {}))
            names = params.pop("feature_names", None)
            try:
                learner = from_joblib(path, names, **params)
            except Exception as exc:  # noqa: BLE001 - any failure is the operator's file
                raise ConfigError(f"models warm_start {path!r} cannot be used: {exc}; give a "
                                  "joblib file of a fitted SGDRegressor, SGDClassifier, "
                                  "LinearRegression or LogisticRegression") from exc
            template = self._templates[path] = {"name": learner.name,
                                                "state": learner.state_dict()}
        return template


class ModelMaintainer(PartitionState):
    """The maintained models of the predictions partitions this instance owns."""

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self.builder = ModelBuilder(config)
        self._partitions: dict[PartitionId, _PartitionModels] = {}
        self.counts: Counter[str] = Counter()
        """joined, expired, evicted, unmatched, untracked since last drained (for metrics)."""
        self.updates: Counter[str] = Counter()
        """Updates learned per model since last drained."""
        self.held: Counter[tuple[str, str]] = Counter()
        """Events the guard's screen held back, per (model, reason), since last drained."""
        self.losses: dict[str, tuple[float | None, float | None]] = {}
        """(served, maintained) rolling loss per model that changed since last drained."""

    # --- events -------------------------------------------------------------------------

    def on_prediction(self, event: PredictionEvent, partition: PartitionId,
                      anomalous: bool) -> list[ModelSignal]:
        """Hold the prediction for its label, or learn from it at once if it carries one."""
        found = self._join(event, partition, anomalous)
        return [] if found is None else self._learn(*found)

    def on_label(self, event: LabelEvent, partition: PartitionId) -> list[ModelSignal]:
        """Join the label to its waiting prediction (``partition``: the predictions one)."""
        found = self._join(event, partition, False)
        return [] if found is None else self._learn(*found)

    def maintain(self, inputs: Sequence[ModelInput]) -> list[list[ModelSignal] | Exception]:
        """A poll's predictions and labels, in order: per input what :meth:`on_prediction` or
        :meth:`on_label` returns for it, or the exception it raises (the others go on).

        The poll's joins come first, then its joined events are learned in order: the join
        never reads a model, so this is what one event at a time gives.
        """
        outcomes: list[list[ModelSignal] | Exception] = [[] for _ in inputs]
        joins: list[tuple[int, _PartitionModels, Joined]] = []
        join = self._join
        for index, (event, partition, anomalous) in enumerate(inputs):
            try:
                found = join(event, partition, anomalous)
            except Exception as exc:  # noqa: BLE001 - reported per event by the caller
                outcomes[index] = exc
                continue
            if found is not None:
                joins.append((index, *found))
        learn = self._learn
        for index, part, joined in joins:
            try:
                outcomes[index] = learn(part, joined)
            except Exception as exc:  # noqa: BLE001 - reported per event by the caller
                outcomes[index] = exc
        return outcomes

    def _join(self, event: PredictionEvent | LabelEvent, partition: PartitionId,
              anomalous: bool) -> tuple[_PartitionModels, Joined] | None:
        """The event's join with its label or prediction, if it completes one; else it waits."""
        if isinstance(event, LabelEvent):
            part = self._part(partition, event.timestamp)
            joined = part.buffer.add_label(event.prediction_id, event.label, event.timestamp)
            return None if joined is None else (part, joined)
        if event.prediction_id is None and event.label is None:
            return None
        part = self._part(partition, event.timestamp)
        payload = [event.model, event.features, event.prediction, anomalous]
        buffer = part.buffer
        if event.label is not None:
            joined = buffer.add_labelled(event.prediction_id or "", payload, event.label,
                                         event.timestamp)
        else:
            joined = buffer.add_prediction(event.prediction_id or "", payload, event.timestamp)
        return None if joined is None else (part, joined)

    def end_batch(self) -> None:
        """Expire predictions whose label did not come within the TTL (at each partition's
        event-time watermark), and add what the buffers counted to ``counts``."""
        for partition, part in self._partitions.items():
            if not part.dirty:
                continue
            buffer = part.buffer
            if part.watermark != -math.inf:
                try:
                    buffer.expire(part.watermark)
                except Exception:  # noqa: BLE001 - must not stop the stream; start afresh
                    log.exception("the label buffer of %s/%d failed to expire; its waiting "
                                  "predictions are dropped", *partition)
                    part.buffer = buffer = self.builder.buffer()
                    part.counted = buffer.counters()
            totals = buffer.counters()
            for name, total in totals.items():
                if total != part.counted.get(name, 0):
                    self.counts[name] += total - part.counted.get(name, 0)
            part.counted = totals

    def _part(self, partition: PartitionId, timestamp: float) -> _PartitionModels:
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _PartitionModels(self.builder.buffer())
        part.dirty = True
        if timestamp > part.watermark:
            part.watermark = timestamp
        return part

    # --- learning -----------------------------------------------------------------------

    def _learn(self, part: _PartitionModels, joined: Joined) -> list[ModelSignal]:
        model, features, served, anomalous = joined.payload
        timestamp = max(joined.prediction_timestamp, joined.label_timestamp)
        maintained = part.models.get(model) or self._start(part, model, features, timestamp)
        if maintained is None:
            return []
        guarded = maintained.guarded
        result = guarded.update(features, joined.label, timestamp, anomalous=anomalous,
                                finite=True)  # the event decoder checked every feature
        if result.learned:
            self.updates[model] += 1
        elif result.skipped in HOLD_REASONS:
            self.held[(model, result.skipped)] += 1
        if result.loss is None:  # invalid: neither model can be scored on it
            return []
        performance = maintained.performance
        perf = performance.observe(served, None, result.target, timestamp)
        rolling = maintained.maintained_loss
        maintained.maintained_loss = rolling = result.loss if rolling is None else (
            rolling + performance.weight * (result.loss - rolling))
        self.losses[model] = (perf.served_loss, rolling)
        event = result.event
        update = maintained.update_due(model, timestamp, self.config)
        if not perf.alarm and event is None:
            return [] if update is None else [update]
        signals: list[ModelSignal] = []
        losses = {"served_loss": perf.served_loss, "maintained_loss": rolling}
        change = event is not None and event.kind == "change"
        if (perf.alarm or change) and \
                timestamp - maintained.last_alert >= self.config.alert_cooldown_s:
            # the served model's loss rose, or the guard judged a rise of the maintained
            # model's a concept change: either way the world moved away from the served model
            maintained.last_alert = timestamp
            if perf.alarm:
                value, chart = performance.served.last_value, perf.served_chart
            else:
                value, chart = event.loss, result.chart  # type: ignore[union-attr]
            signals.append(ModelSignal("performance", model, timestamp,
                                       math.nan if value is None else float(value), chart,
                                       losses))
        if event is not None and not change and (event.kind != "rollback"
                                                 or guarded.consecutive_rollbacks == 1):
            # the first rollback of a run, or a re-baselining
            kind = "rollback" if event.kind == "rollback" else "rebaselined"
            signals.append(ModelSignal(kind, model, timestamp, event.loss, result.chart, {
                **losses, "baseline": event.baseline, "n_updates": float(event.n_updates),
                "restored_n_updates": float(event.restored_n_updates),
                "rollbacks": float(event.rollbacks), "held": float(guarded.held)}))
        if update is not None:
            signals.append(update)
        return signals

    def _start(self, part: _PartitionModels, model: str, features: Mapping[str, float],
               timestamp: float) -> _Maintained | None:
        """A new maintained model, or None beyond ``max_models`` (counted ``untracked``)."""
        if sum(len(p.models) for p in self._partitions.values()) >= self.config.max_models:
            self.counts["untracked"] += 1
            return None
        maintained = part.models[model] = self.builder.maintained(
            self.config.spec_for(model), features, timestamp)
        return maintained

    # --- checkpoints --------------------------------------------------------------------

    def partitions(self) -> list[PartitionId]:
        """Partitions holding waiting predictions or models."""
        return list(self._partitions)

    def is_dirty(self, partition: PartitionId) -> bool:
        """True when the partition changed since it was last exported."""
        part = self._partitions.get(partition)
        return part is not None and part.dirty

    def models_of(self, partition: PartitionId) -> list[str]:
        """Names of the models maintained in the partition."""
        part = self._partitions.get(partition)
        return [] if part is None else list(part.models)

    def guard_of(self, partition: PartitionId, model: str) -> GuardedLearner | None:
        """The guarded maintained learner of ``model`` in the partition (None before its
        first labelled event there)."""
        part = self._partitions.get(partition)
        maintained = None if part is None else part.models.get(model)
        return None if maintained is None else maintained.guarded

    def export_partition(self, partition: PartitionId) -> dict[str, Any] | None:
        """The partition's buffer and models as JSON-serialisable state, and mark it clean."""
        part = self._partitions.get(partition)
        if part is None:
            return None
        part.dirty = False
        return {"buffer": part.buffer.state_dict(),
                "watermark": _finite_or_none(part.watermark),
                "models": {name: m.state_dict() for name, m in part.models.items()}}

    def import_partition(self, partition: PartitionId, body: Mapping[str, Any] | None, *,
                         latest: float = math.inf) -> int:
        """Replace the partition's state with an exported one (None: start empty); the number
        of models restored.

        The state is data read from Kafka: StateError when anything in it has the wrong type
        or range. Limits come from the configuration, learner types too, and event times are
        held to ``latest`` (the wall clock plus the allowed skew).
        """
        self.drop_partition(partition)
        if body is None:
            return 0
        config = self.config
        try:
            if not isinstance(body, Mapping) or not isinstance(body.get("models"), Mapping):
                raise StateError("the model state must be an object with an object of models")
            models = body["models"]
            if len(models) > config.max_models:
                raise StateError(f"{len(models)} models, more than models.max_models")
            part = _PartitionModels(LabelJoinBuffer.from_state(
                body["buffer"], max_entries=config.max_waiting_predictions,
                ttl_seconds=config.label_ttl_s, max_bytes=config.max_waiting_mb * 2**20,
                size_of=_payload_bytes, check_payload=_check_payload, check_label=_check_label,
                latest=latest))
            part.watermark = min(_time_or(body.get("watermark"), "watermark"), latest)
            for name, state in models.items():
                if not isinstance(name, str) or not 0 < len(name) <= 4_096:
                    raise StateError("a model's name must be a string of 1-4096 characters")
                restore = self.builder.restorer(name)
                part.models[name] = _Maintained.from_state(state, restore, latest)
            part.counted = part.buffer.counters()
        except Exception as exc:  # any learner's from_state may fail on a corrupt body
            raise StateError(f"unreadable model state for {partition}: {exc!r}"[:500]) from exc
        self._partitions[partition] = part
        return len(part.models)

    def drop_partition(self, partition: PartitionId) -> None:
        """Forget the partition (it moved to another instance, or starts afresh)."""
        self._partitions.pop(partition, None)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _time_or(value: Any, name: str) -> float:
    """A saved event time: a finite number, or None for "never" (minus infinity)."""
    return -math.inf if value is None else checked_number(value, name)


def _payload_bytes(payload: list[Any]) -> int:
    """Approximate bytes a waiting prediction's payload (model, features, ...) holds."""
    features = payload[1]
    return 160 + len(payload[0]) + 90 * len(features) + sum(map(len, features))


def _check_payload(payload: Any) -> None:
    """ValueError unless a saved payload is [model, {feature: number}, prediction, flagged]."""
    if not (isinstance(payload, list) and len(payload) == 4 and isinstance(payload[0], str)
            and isinstance(payload[1], dict) and isinstance(payload[3], bool)):
        raise ValueError("a waiting prediction must be [model, features, prediction, flagged]")
    checked_number(payload[2], "prediction")
    for name, value in payload[1].items():
        if not isinstance(name, str):
            raise ValueError("feature names must be strings")
        checked_number(value, f"feature {name[:60]!r}")


def _check_label(label: Any) -> None:
    checked_number(label, "label")
