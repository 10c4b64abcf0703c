"""``vigil demo``: embedded broker, synthetic producer, the detector, metrics and live alerts.

Everything runs in one process: the broker as a child process, the producer and Vigil's loop
in threads, and the main thread printing alerts from the alert topic as they arrive.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kafka import KafkaConsumer, TopicPartition

from vigil.stream.config import MetricsConfig, ModelsConfig, VigilConfig
from vigil.stream.engine.alerts import iso_utc, parse_alert
from vigil.stream.generate import GeneratedEvent, generate_events, produce_events
from vigil.stream.kafka.broker import EmbeddedBroker
from vigil.stream.kafka.kafka_python import client_settings, ensure_topics, make_producer
from vigil.stream.kafka.subscribe import format_alert_line
from vigil.stream.metrics import Liveness, VigilMetrics
from vigil.stream.service import run_service

log = logging.getLogger(__name__)

INVALID_EVERY = 500
"""The demo producer slips one malformed message in among this many, to show the DLQ."""


@dataclass
class DemoSummary:
    """What the demo did, for its closing line."""

    events: int = 0
    invalid: int = 0
    alerts: int = 0
    injected: int = 0
    found: int = 0
    alerts_on_injected: int = 0
    labels_joined: int = 0
    model_updates: int = 0

    def line(self) -> str:
        """The summary line printed when the demo ends."""
        return (f"summary: {self.events} events ({self.invalid} malformed, dead-lettered), "
                f"{self.alerts} alerts, {self.found} of {self.injected} injected anomalies "
                f"found, {self.alerts_on_injected} alerts on injected points; "
                f"{self.labels_joined} labels joined, {self.model_updates} learned by the "
                "maintained models")


@dataclass
class _GroundTruth:
    """Injected anomalies by id, and the (key, metric, timestamp) points each one covers."""

    points: dict[tuple[str, str, str], int] = field(default_factory=dict)
    count: int = 0
    _open_shifts: dict[tuple[str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event: GeneratedEvent) -> None:
        label: dict[str, Any] | None = event.body.get("injected")
        if label is None:
            return
        series = (event.key, str(label["metric"]))
        with self.lock:
            if label["type"] == "level_shift" and not label.get("start"):
                anomaly = self._open_shifts[series]
            else:
                self.count += 1
                anomaly = self.count
                if label["type"] == "level_shift":
                    self._open_shifts[series] = anomaly
            self.points[(*series, iso_utc(event.body["timestamp"]))] = anomaly

    def match(self, alert: dict[str, Any]) -> int | None:
        with self.lock:
            return self.points.get((alert["key"], alert["metric"], alert["event_timestamp"]))


def run_demo(
    base: VigilConfig,
    stop: threading.Event,
    *,
    seconds: float | None,
    rate: float,
    metrics_port: int,
    seed: int,
    workdir: Path,
    out: TextIO = sys.stdout,
) -> DemoSummary:
    """Run the demo until ``stop`` is set or ``seconds`` have passed; return its summary."""
    with EmbeddedBroker(workdir / "broker.log") as broker:
        config = dataclasses.replace(
            base,
            kafka=dataclasses.replace(base.kafka, bootstrap_servers=broker.bootstrap_servers,
                                      session_timeout_ms=6_000, heartbeat_interval_ms=1_000),
            metrics=MetricsConfig(host=base.metrics.host, port=metrics_port),
            models=base.models if base.models.enabled else ModelsConfig(
                enabled=True, learner="sgd_classifier", publish_every=500),
        )
        ensure_topics(config, [config.topics.predictions, config.topics.telemetry,
                               config.topics.labels], partitions=3)
        ensure_topics(config, [config.topics.alerts, config.topics.dead_letter])
        print(f"embedded broker on {broker.bootstrap_servers}; metrics on "
              f"http://{config.metrics.host}:{metrics_port}/metrics; Ctrl-C to stop", file=out)

        metrics = VigilMetrics()
        truth = _GroundTruth()
        summary = DemoSummary()
        workers = [
            threading.Thread(target=run_service, args=(config, stop),
                             kwargs={"metrics": metrics, "liveness": Liveness()},
                             name="vigil", daemon=True),
            threading.Thread(target=_produce, args=(config, stop, rate, seed, truth, summary),
                             name="producer", daemon=True),
        ]
        for worker in workers:
            worker.start()
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            _print_alerts(config, config.topics.alerts, stop, deadline, truth, summary, out)
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=15)
        summary.injected = truth.count
        registry = metrics.registry
        summary.labels_joined = int(registry.get_sample_value("vigil_labels_joined_total") or 0)
        summary.model_updates = int(sum(
            sample.value for family in registry.collect() if family.name == "vigil_model_updates"
            for sample in family.samples if sample.name == "vigil_model_updates_total"))
        return summary


def _produce(config: VigilConfig, stop: threading.Event, rate: float, seed: int,
             truth: _GroundTruth, summary: DemoSummary) -> None:
    producer = make_producer(config)

    def labelled() -> Iterator[GeneratedEvent]:
        for index, event in enumerate(generate_events(
                10**9, seed=seed, anomaly_rate=0.003, start=round(time.time(), 3),
                interval_s=1.0 / rate if rate > 0 else 0.001, labels=True)):
            truth.record(event)
            summary.events += 1
            if index % INVALID_EVERY == INVALID_EVERY - 1:
                summary.invalid += 1
                producer.send(config.topics.telemetry, value=b'{"source": "host-0", "metrics":')
            yield event

    try:
        produce_events(producer, config, labelled(), rate=rate, stop=stop)
    finally:
        producer.close()


def _print_alerts(config: VigilConfig, topic: str, stop: threading.Event, deadline: float | None,
                  truth: _GroundTruth, summary: DemoSummary, out: TextIO) -> None:
    consumer = KafkaConsumer(**{**client_settings(config),
                                "enable_auto_commit": False, "auto_offset_reset": "earliest"})
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        found: set[int] = set()
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    alert = parse_alert(record.value)
                    summary.alerts += 1
                    anomaly = truth.match(alert)
                    if anomaly is not None:
                        summary.alerts_on_injected += 1
                        found.add(anomaly)
                    print(format_alert(alert, injected=anomaly is not None), file=out)
            summary.found = len(found)
    finally:
        consumer.close()


def format_alert(alert: dict[str, Any], *, injected: bool) -> str:
    """The subscriber's line for an alert, marked when it hit an injected anomaly."""
    line = format_alert_line(alert)
    return f"{line}  <- injected anomaly" if injected else line
