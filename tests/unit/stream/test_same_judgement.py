"""`vigil run`'s engine and `vigil replay` judge the same events the same way, under every
detector setting (overrides, groups, residual and multivariate series) with models on."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.unit.stream.test_runtime import Record
from vigil.stream.cli import main
from vigil.stream.config import load_config
from vigil.stream.engine.processor import build_engine
from vigil.stream.generate import GeneratedEvent, generate_events

JUDGEMENT = """
[detector]
name = "ensemble"
params = { warmup = 30, arl0 = 500.0 }
groups = { telemetry = '^(?P<group>host)-\\d+$' }
multivariate = { name = "hst" }

[detector.overrides]
"telemetry/host-1/*" = { name = "robust" }
"telemetry/host-2/latency_ms" = { name = "shewhart", params = { k = 1.0 } }
"prediction/*/features.items" = { name = "shewhart", params = { outliers = "learn" } }

[detector.residual]
"host-*" = { target = "latency_ms", inputs = ["requests_per_s", "cpu_percent"] }

[models]
enabled = true
learner = "sgd_classifier"
publish_every = 100
"""
"""Every per-series setting at once; no series limit or short TTL, which act across the
partitions of a live run but within the one stream of a replay."""


def judged_events(count: int = 3_000) -> list[GeneratedEvent]:
    """Predictions, telemetry and labels with injected spikes and shifts."""
    return list(generate_events(count, models=2, sources=4, seed=17, anomaly_rate=0.01,
                                labels=True))


def replayed(events: Iterable[GeneratedEvent], config: Path, tmp_path: Path) -> str:
    """The CSV `vigil replay -c CONFIG` writes for the events, as one JSONL file."""
    jsonl, out = tmp_path / "events.jsonl", tmp_path / "replayed.csv"
    jsonl.write_text("".join(json.dumps(e.body) + "\n" for e in events))
    assert main(["replay", str(jsonl), "-c", str(config), "-o", str(out)]) == 0
    return out.read_text()


def assert_same_judgement(alerts: list[dict[str, Any]], replay_csv: str) -> None:
    """The live anomaly alerts are exactly the replay's alarms, and every live alert has the
    value and score of the replay's row for its point."""
    rows: dict[tuple[str, str, float], list[str]] = {}
    for line in replay_csv.splitlines()[1:]:
        row = line.split(",")
        rows[(row[1], row[2], round(float(row[0]), 3))] = row
    alarms = {point for point, row in rows.items() if row[5] == "1"}
    anomalies = {_point(a) for a in alerts if a["kind"] == "anomaly"}
    assert anomalies == alarms
    assert len(alarms) >= 20
    metrics = {point[1] for point in alarms}
    assert {"residual.latency_ms", "features"} & metrics, metrics
    for alert in alerts:
        if alert["kind"] in ("anomaly", "resolved", "rebaselined"):
            row = rows[_point(alert)]
            assert (float(row[3]), row[4]) == (alert["value"], f"{alert['score']:.6g}"), alert


def _point(alert: dict[str, Any]) -> tuple[str, str, float]:
    when = datetime.fromisoformat(alert["event_timestamp"].replace("Z", "+00:00"))
    return alert["key"], alert["metric"], round(when.timestamp(), 3)


def test_run_and_replay_judge_alike_under_the_whole_configuration(tmp_path: Path) -> None:
    path = tmp_path / "vigil.toml"
    path.write_text(JUDGEMENT)
    config = load_config(path, environ={})
    topics = {"prediction": config.topics.predictions, "telemetry": config.topics.telemetry,
              "label": config.topics.labels}
    events = judged_events()
    records = [Record(topics[e.kind], 0, offset, e.key.encode(), json.dumps(e.body).encode())
               for offset, e in enumerate(events)]
    engine = build_engine(config, clock=lambda: 2e9)
    alerts = [json.loads(alert.to_json()) for start in range(0, len(records), 250)
              for alert in engine.process(records[start:start + 250]).alerts]
    assert_same_judgement(alerts, replayed(events, path, tmp_path))


def test_replay_honours_an_override(tmp_path: Path) -> None:
    """A tighter limit for one series changes that series' alarms in a replay."""
    path = tmp_path / "vigil.toml"
    path.write_text(JUDGEMENT)
    plain = tmp_path / "plain.toml"
    plain.write_text(JUDGEMENT.replace('"telemetry/host-2/latency_ms"', '"nothing/*"'))
    events = judged_events(1_500)

    def alarms(config: Path) -> int:
        rows = [line.split(",") for line in replayed(events, config, tmp_path).splitlines()]
        return sum(row[1:3] == ["host-2", "latency_ms"] and row[5] == "1" for row in rows)

    assert alarms(path) > alarms(plain)
