"""Synthetic prediction and telemetry events with injected, labelled anomalies.

Each event is a plain dict in the documented event format. An event that carries an injected
anomaly has an extra ``"injected"`` field (ignored by Vigil's parser) naming the anomaly type
and the metric it hit, so detection can be scored against ground truth. Optionally each
prediction's label follows it a few events later, drawn with the predicted probability (the
served model is the true one), for model maintenance. :func:`produce_events` sends them to
the input topics (``vigil generate``, the demo).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from vigil.stream.config import VigilConfig
from vigil.stream.engine.events import EventKind
from vigil.stream.loop.ports import Producer

TELEMETRY_METRICS: dict[str, tuple[float, float]] = {
    "latency_ms": (120.0, 15.0),
    "cpu_percent": (45.0, 5.0),
    "memory_mb": (2048.0, 40.0),
    "requests_per_s": (200.0, 20.0),
}
"""Telemetry metric → (mean, σ) of its in-control behaviour."""

FEATURES: dict[str, tuple[float, float]] = {
    "amount": (50.0, 10.0),
    "age_days": (300.0, 50.0),
    "items": (3.0, 0.5),
}
"""Prediction feature → (mean, σ)."""

WEIGHTS = {"amount": 0.02, "age_days": -0.001, "items": 0.1}


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One synthetic event, the kind of stream it belongs to, and its partitioning key."""

    kind: EventKind
    key: str
    body: dict[str, Any]


@dataclass
class _Shift:
    metric: str
    size_sigma: float
    remaining: int


def generate_events(
    count: int,
    *,
    models: int = 2,
    sources: int = 4,
    seed: int = 0,
    anomaly_rate: float = 0.002,
    shift_length: int = 40,
    start: float = 1_767_225_600.0,
    interval_s: float = 0.01,
    prediction_share: float = 0.5,
    labels: bool = False,
    label_lag: int = 50,
) -> Iterator[GeneratedEvent]:
    """``count`` events, alternating randomly between models' predictions and sources' telemetry.

    With probability ``anomaly_rate`` an event of a series not already shifted gets a spike
    (6-10σ on one metric) or starts a level shift (4-6σ for ``shift_length`` of that key's
    events). With ``labels``, each prediction's label event follows ``label_lag`` events
    later (on top of ``count``; the other events are the same as without). Deterministic
    for a given ``seed``.

    >>> [e.kind for e in generate_events(3, seed=1)]
    ['prediction', 'prediction', 'telemetry']
    >>> [e.kind for e in generate_events(3, seed=1, labels=True, label_lag=1)]
    ['prediction', 'label', 'prediction', 'label', 'telemetry']
    """
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    label_rng = random.Random(seed + 1_000_003)  # noqa: S311 - apart, so events stay the same
    waiting: deque[tuple[int, GeneratedEvent]] = deque()
    shifts: dict[str, _Shift] = {}
    for index in range(count):
        timestamp = round(start + index * interval_s, 3)
        while waiting and waiting[0][0] <= index:
            yield waiting.popleft()[1]
        is_prediction = rng.random() < prediction_share
        if is_prediction:
            key = f"model-{rng.randrange(models)}"
            baseline = FEATURES
        else:
            key = f"host-{rng.randrange(sources)}"
            baseline = TELEMETRY_METRICS
        values = {name: rng.gauss(mean, sigma) for name, (mean, sigma) in baseline.items()}
        injected = _inject(rng, key, values, baseline, shifts, anomaly_rate, shift_length)
        body = _body(key, index, timestamp, values, prediction=is_prediction)
        if injected is not None:
            body["injected"] = injected
        yield GeneratedEvent("prediction" if is_prediction else "telemetry", key, body)
        if labels and is_prediction:
            label = int(label_rng.random() < body["prediction"])
            due = round(start + (index + label_lag) * interval_s, 3)
            waiting.append((index + label_lag, GeneratedEvent("label", key, {
                "prediction_id": body["prediction_id"], "label": label, "timestamp": due})))
    for _, event in waiting:
        yield event


def _body(key: str, index: int, timestamp: float, values: dict[str, float], *,
          prediction: bool) -> dict[str, Any]:
    """A prediction event of model ``key`` (features ``values``, served probability from
    ``WEIGHTS``) or a telemetry event of source ``key`` (metrics ``values``)."""
    rounded = {name: round(v, 4) for name, v in values.items()}
    if not prediction:
        return {"source": key, "timestamp": timestamp, "metrics": rounded}
    logit = sum(WEIGHTS[name] * (values[name] - FEATURES[name][0]) for name in values)
    return {
        "model": key,
        "model_version": "1",
        "prediction_id": f"{key}-{index}",
        "timestamp": timestamp,
        "features": rounded,
        "prediction": round(1.0 / (1.0 + math.exp(-logit)), 6),
    }


def _inject(
    rng: random.Random,
    key: str,
    values: dict[str, float],
    baseline: dict[str, tuple[float, float]],
    shifts: dict[str, _Shift],
    anomaly_rate: float,
    shift_length: int,
) -> dict[str, Any] | None:
    """Apply an ongoing or new anomaly to ``values`` in place; return its label or None."""
    shift = shifts.get(key)
    if shift is not None:
        values[shift.metric] += shift.size_sigma * baseline[shift.metric][1]
        shift.remaining -= 1
        if shift.remaining == 0:
            del shifts[key]
        return {"type": "level_shift", "metric": _qualified(shift.metric, baseline),
                "start": False}
    if rng.random() >= anomaly_rate:
        return None
    metric = rng.choice(sorted(baseline))
    sigma = baseline[metric][1]
    if rng.random() < 0.5:
        size = rng.uniform(6.0, 10.0) * rng.choice((-1.0, 1.0))
        values[metric] += size * sigma
        return {"type": "spike", "metric": _qualified(metric, baseline), "sigma": round(size, 2)}
    size = rng.uniform(4.0, 6.0)
    values[metric] += size * sigma
    if shift_length > 1:
        shifts[key] = _Shift(metric, size, shift_length - 1)
    return {"type": "level_shift", "metric": _qualified(metric, baseline), "start": True,
            "sigma": round(size, 2)}


def _qualified(metric: str, baseline: dict[str, tuple[float, float]]) -> str:
    """The metric name as Vigil's series use it (features are ``features.<name>``)."""
    return f"features.{metric}" if baseline is FEATURES else metric


def produce_events(
    producer: Producer,
    config: VigilConfig,
    events: Iterable[GeneratedEvent],
    *,
    rate: float = 0.0,
    stop: threading.Event | None = None,
) -> int:
    """Produce generated events, keyed by model/source, at ``rate`` per second (0: flat out)."""
    topics = {"prediction": config.topics.predictions, "telemetry": config.topics.telemetry,
              "label": config.topics.labels}
    started = time.monotonic()
    sent = 0
    for event in events:
        if stop is not None and stop.is_set():
            break
        producer.send(topics[event.kind], key=event.key.encode(),
                      value=json.dumps(event.body, separators=(",", ":")).encode())
        sent += 1
        if rate > 0:
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                if stop is not None:
                    stop.wait(ahead)
                else:
                    time.sleep(ahead)
    producer.flush()
    return sent
