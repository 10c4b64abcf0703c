"""Residual detection of telemetry in the runtime: a load-explained rise is not an anomaly."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from tests.unit.stream.test_runtime import Record
from vigil.stream.config import load_config
from vigil.stream.engine.processor import BatchProcessor, build_engine
from vigil.stream.errors import ConfigError

CONFIG = """
[detector.residual]
"web-*" = { target = "latency_ms", inputs = ["requests_per_s"], params = { warmup = 300 } }
"""


def _telemetry(count: int, *, seed: int, surge_at: int, surge: float, unexplained_at: int,
               source: str = "web-1") -> list[Record]:
    """Latency = 20 + 0.1·rps + noise, the load swinging around 200 rps; from ``surge_at`` the
    load is ``surge`` rps higher (and latency with it); one point at ``unexplained_at`` is 8 ms
    slower than the load says."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        swing = 60.0 * math.sin(2 * math.pi * i / 300)
        rps = 200.0 + swing + rng.gauss(0.0, 10.0) + (surge if i >= surge_at else 0.0)
        latency = 20.0 + 0.1 * rps + rng.gauss(0.0, 1.0) + (8.0 if i == unexplained_at else 0.0)
        body = {"source": source, "timestamp": 1_767_225_600 + i,
                "metrics": {"latency_ms": latency, "requests_per_s": rps}}
        records.append(Record("telemetry", 0, i, source.encode(), json.dumps(body).encode()))
    return records


def _alerts(processor: BatchProcessor, records: list[Record]) -> list[Any]:
    alerts = []
    for start in range(0, len(records), 250):
        alerts += processor.process(records[start:start + 250]).alerts
    return alerts


def test_a_load_explained_latency_rise_is_not_a_residual_anomaly(tmp_path: Path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text(CONFIG)
    processor = build_engine(load_config(path, environ={}))
    records = _telemetry(3_000, seed=3, surge_at=2_000, surge=150.0, unexplained_at=1_500)
    alerts = [a for a in _alerts(processor, records) if a.kind == "anomaly"]
    residual = [a for a in alerts if a.metric == "residual.latency_ms"]
    latency = [a for a in alerts if a.metric == "latency_ms"]
    assert [a.source.offset for a in residual] == [1_500]  # only the unexplained point
    assert residual[0].value == pytest.approx(json.loads(records[1_500].value or b"")
                                              ["metrics"]["latency_ms"])
    assert residual[0].lower is not None and residual[0].upper is not None
    assert residual[0].value > residual[0].upper  # limits in ms, around the expected latency
    assert any(a.source.offset >= 2_000 for a in latency)  # the plain chart sees the surge
    assert 1_500 not in [a.source.offset for a in latency]  # ... but not the unexplained point


def test_the_residual_series_survives_a_checkpoint_and_skips_other_sources(
    tmp_path: Path,
) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text(CONFIG)
    config = load_config(path, environ={})
    first = build_engine(config)
    records = _telemetry(1_000, seed=4, surge_at=10_000, surge=0.0, unexplained_at=900)
    db = _telemetry(300, seed=5, surge_at=10_000, surge=0.0, unexplained_at=-1, source="db-1")
    _alerts(first, records[:800] + db)
    body = first.monitor.export_partition(("telemetry", 0))
    kinds = {(s["key"], s["metric"]): s["kind"] for s in body["series"]}
    assert kinds[("web-1", "residual.latency_ms")] == "residual"
    assert ("db-1", "residual.latency_ms") not in kinds  # the glob is web-*

    second = build_engine(config)
    second.monitor.import_partition(("telemetry", 0), json.loads(json.dumps(body)))
    expected = [a.alert_id for a in _alerts(first, records[800:])]
    assert [a.alert_id for a in _alerts(second, records[800:])] == expected
    assert any(a.metric == "residual.latency_ms" for a in _alerts(
        build_engine(config), records))


def test_residual_settings_are_checked_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text('[detector.residual]\n"web-*" = { target = "latency_ms" }\n')
    with pytest.raises(ConfigError, match='detector.residual."web-\\*"'):
        load_config(path, environ={})
