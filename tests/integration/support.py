"""Helpers for integration tests: configs, producers, topic readers, reference alerts (the
`vigil run` process is :class:`tests.vigil_process.VigilProcess`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from vigil.stream.kafka.broker import EmbeddedBroker, free_port


@dataclass
class Topics:
    """Per-test topic names, so tests sharing a broker never see each other's messages."""

    prefix: str

    @property
    def predictions(self) -> str:
        return f"{self.prefix}-predictions"

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}-telemetry"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}-alerts"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}-dlq"

    @property
    def state(self) -> str:
        return f"{self.prefix}-state"

    @property
    def labels(self) -> str:
        return f"{self.prefix}-labels"

    @property
    def model_updates(self) -> str:
        return f"{self.prefix}-model-updates"

    @property
    def group(self) -> str:
        return f"{self.prefix}-vigil"


def write_config(path: Path, broker: EmbeddedBroker, topics: Topics, *, metrics_port: int,
                 extra: str = "", session_timeout_ms: int = 6000,
                 heartbeat_interval_ms: int = 1000) -> Path:
    """A config file for `vigil run` against the embedded broker with short group timeouts."""
    path.write_text(f"""
[kafka]
bootstrap_servers = "{broker.bootstrap_servers}"
group_id = "{topics.group}"
session_timeout_ms = {session_timeout_ms}
heartbeat_interval_ms = {heartbeat_interval_ms}

[topics]
predictions = "{topics.predictions}"
telemetry = "{topics.telemetry}"
alerts = "{topics.alerts}"
dead_letter = "{topics.dead_letter}"
labels = "{topics.labels}"
model_updates = "{topics.model_updates}"

[metrics]
port = {metrics_port}

[runtime]
poll_timeout_ms = 200
{extra}
""")
    return path


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str,
             interval_s: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # noqa: BLE001 - e.g. the endpoint is not up yet
            last_error = exc
            result = None
        if result:
            return result
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else ""))


def produce(broker: EmbeddedBroker,
            messages: Iterable[tuple[str, bytes | None, bytes]]) -> dict[TopicPartition, int]:
    """Produce (topic, key, value) messages, wait for every acknowledgement, and return the
    end offset (last offset + 1) of each partition written to, from the acknowledgements.

    (tansu answers ListOffsets wrongly for partitions written in multi-record batches, so
    tests take end offsets from what the broker acknowledged.)
    """
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5)
    futures = [producer.send(topic, key=key, value=value) for topic, key, value in messages]
    producer.flush()
    ends: dict[TopicPartition, int] = {}
    for future in futures:
        meta = future.get(timeout=10)
        ends[meta.topic_partition] = max(ends.get(meta.topic_partition, 0), meta.offset + 1)
    producer.close()
    return ends


def read_topic(broker: EmbeddedBroker, topic: str, *, expect_at_least: int = 0,
               timeout_s: float = 30.0) -> list[Any]:
    """Every record on ``topic`` from the beginning, read with a separate, group-less consumer."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), 15,
                              f"topic {topic} to exist")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        idle_polls = 0
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300)
            for part in batch.values():
                records.extend(part)
            idle_polls = 0 if batch else idle_polls + 1
            if len(records) >= expect_at_least and idle_polls >= 3:
                break
        return records
    finally:
        consumer.close()


def json_values(records: Iterable[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


def free_metrics_port() -> int:
    return free_port()


def create_topics(broker: EmbeddedBroker, names: Iterable[str], partitions: int) -> None:
    """Create topics with a given partition count (so tests control the layout)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}
                             for name in names})
    finally:
        admin.close()


def read_partitions(broker: EmbeddedBroker, topics: Iterable[str],
                    ends: dict[TopicPartition, int], timeout_s: float = 60.0) -> list[Any]:
    """Every record of the given partitions up to ``ends``, partition by partition in order."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        wanted = [tp for tp in ends if tp.topic in set(topics) and ends[tp] > 0]
        consumer.assign(wanted)
        consumer.seek_to_beginning(*wanted)
        by_partition: dict[TopicPartition, list[Any]] = {tp: [] for tp in wanted}
        deadline = time.monotonic() + timeout_s
        while any(len(by_partition[tp]) < ends[tp] for tp in wanted):
            if time.monotonic() > deadline:
                raise AssertionError("timed out reading input partitions back")
            for tp, records in consumer.poll(timeout_ms=300).items():
                by_partition[tp].extend(r for r in records if r.offset < ends[tp])
        return [r for tp in wanted for r in by_partition[tp]]
    finally:
        consumer.close()


def reference_alerts(config_path: Path, records: list[Any]) -> dict[str, dict[str, Any]]:
    """What one uninterrupted instance emits for ``records``: the same processor, no Kafka."""
    from vigil.stream.config import load_config
    from vigil.stream.engine.processor import build_engine

    processor = build_engine(load_config(config_path, environ={}))
    return {alert.alert_id: json.loads(alert.to_json())
            for alert in processor.process(records).alerts}


def alert_identity(alert: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two alerts the same detection: series, detector, kind and source offset."""
    source = alert["source"]
    return (alert["event_type"], alert["key"], alert["metric"], alert["detector"], alert["kind"],
            source["topic"], source["partition"], source["offset"])


class BackgroundProducer:
    """Produces a list of (topic, key, value) at a steady rate in a thread; records end offsets."""

    def __init__(self, broker: EmbeddedBroker, messages: list[tuple[str, bytes, bytes]],
                 rate: float) -> None:
        import threading

        self.broker = broker
        self.messages = messages
        self.rate = rate
        self.ends: dict[TopicPartition, int] = {}
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> BackgroundProducer:
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> dict[TopicPartition, int]:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError("background producer did not finish")
        if self.error is not None:
            raise AssertionError(f"background producer failed: {self.error!r}")
        return self.ends

    def _run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.broker.bootstrap_servers,
                                     acks="all", linger_ms=5)
            futures = []
            started = time.monotonic()
            for index, (topic, key, value) in enumerate(self.messages):
                futures.append(producer.send(topic, key=key, value=value))
                ahead = started + index / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            producer.flush()
            for future in futures:
                meta = future.get(timeout=30)
                tp = meta.topic_partition
                self.ends[tp] = max(self.ends.get(tp, 0), meta.offset + 1)
            producer.close()
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc


def committed_offsets(broker: EmbeddedBroker, group: str,
                      partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group,
                             enable_auto_commit=False)
    try:
        return {tp: consumer.committed(tp) for tp in partitions}
    finally:
        consumer.close()
