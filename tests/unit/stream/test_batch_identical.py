"""The batch engine and the one-event-at-a-time path give identical output on the same input."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.per_event import PerEventProcessor
from tests.unit.stream.test_runtime import Record
from vigil.stream.config import load_config
from vigil.stream.engine.processor import BatchProcessor, build_engine
from vigil.stream.generate import generate_events
from vigil.stream.metrics import SeriesGauges, VigilMetrics

CONFIGS = {
    "default": "",
    "shewhart": '[detector]\nname = "shewhart"\nparams = { warmup = 30 }\n',
    "cusum": '[detector]\nname = "cusum"\n',
    "ewma": '[detector]\nname = "ewma"\nparams = { outliers = "exclude" }\n',
    "mixed": """
[detector]
name = "ensemble"
params = { warmup = 30, arl0 = 500.0 }
groups = { telemetry = '^(?P<group>host)-\\d+$' }
multivariate = { name = "hst" }

[detector.overrides]
"telemetry/host-1/*" = { name = "robust" }
"prediction/*/features.items" = { name = "shewhart", params = { outliers = "learn" } }

[detector.residual]
"host-*" = { target = "latency_ms", inputs = ["requests_per_s", "cpu_percent"] }

[metrics]
series_allowlist = ["telemetry/host-2/*"]

[state]
max_series = 40
series_ttl_s = 30.0

[models]
enabled = true
learner = "sgd_classifier"
publish_every = 100
""",
}


def _records(count: int, seed: int) -> list[Record]:
    topics = {"prediction": "predictions", "telemetry": "telemetry", "label": "labels"}
    records: list[Record] = []
    offsets: dict[tuple[str, int], int] = {}
    rng = random.Random(seed)
    for event in generate_events(count, models=3, sources=6, seed=seed, anomaly_rate=0.01,
                                 interval_s=0.05, labels=True):
        topic = topics[event.kind]
        partition = sum(event.key.encode()) % 3
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        value = json.dumps(event.body).encode()
        if rng.random() < 0.002:
            value = value[: len(value) // 2]  # a malformed one now and then
        records.append(Record(topic, partition, offset, event.key.encode(), value))
    return records


def _run(config: Any, records: list[Record], *, per_event: bool, seed: int) -> dict[str, Any]:
    gauges = SeriesGauges(VigilMetrics(), config.metrics.series_allowlist,
                          config.metrics.max_series_gauges)
    engine = PerEventProcessor if per_event else BatchProcessor
    processor = build_engine(config, clock=lambda: 2e9, gauges=gauges, processor=engine)
    rng = random.Random(seed)
    messages, start = [], 0
    while start < len(records):
        size = rng.choice([1, 7, 100, 1000])
        batch = processor.process(records[start:start + size])
        messages += [(m.topic, m.key, m.value, m.headers) for m in batch.messages]
        start += size
    monitor, models = processor.monitor, processor.models
    return {
        "messages": messages,
        "state": {p: monitor.export_partition(p) for p in sorted(monitor.partitions())},
        "models": None if models is None else {
            p: models.export_partition(p) for p in sorted(models.partitions())},
        "counts": (monitor.series_count, monitor.evicted, monitor.expired),
        "gauges": sorted(gauges._exported),  # noqa: SLF001
    }


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batch_and_per_event_paths_give_identical_output(tmp_path: Path, name: str) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text(CONFIGS[name])
    config = load_config(path, environ={})
    records = _records(6_000, seed=len(name))
    batched = _run(config, records, per_event=False, seed=1)
    one_by_one = _run(config, records, per_event=True, seed=2)
    alerts = [m for m in batched["messages"] if m[0] == "alerts"]
    assert len(alerts) >= 5, "the stream must raise alerts for the comparison to mean much"
    assert batched["messages"] == one_by_one["messages"]
    assert batched["state"] == one_by_one["state"]
    assert batched["models"] == one_by_one["models"]
    assert batched["counts"] == one_by_one["counts"]
    assert batched["gauges"] == one_by_one["gauges"]
