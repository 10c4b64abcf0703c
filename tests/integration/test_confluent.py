"""`vigil run` with ``kafka.client = "confluent-kafka"`` against the real embedded broker.

Each test compares the alert topic with what one uninterrupted instance emits for the same
input (the batch processor over the input partitions read back in order), as the resilience
tests do for kafka-python.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from tests.integration.support import (
    BackgroundProducer,
    Topics,
    alert_identity,
    committed_offsets,
    create_topics,
    json_values,
    produce,
    read_partitions,
    read_topic,
    reference_alerts,
    wait_for,
    write_config,
)
from tests.vigil_process import VigilProcess
from vigil.stream.generate import generate_events
from vigil.stream.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

FAST_CHECKPOINTS = """
[state]
checkpoint_interval_s = 1.0
"""
REASONS = {
    b"{not json": "invalid_json",
    b'{"source": "web-1", "timestamp": 1767225600, "metrics": {"cpu": NaN}}': "not_finite",
    b'{"source": "web-1", "timestamp": 1767225600, "metrics": {"cpu": "high"}}': "wrong_type",
    b"\xff\xfe\x00": "invalid_utf8",
    b"": "empty",
}


def _config(tmp_path: Path, name: str, broker: EmbeddedBroker, topics: Topics, port: int,
            client: str = "confluent-kafka") -> Path:
    path = write_config(tmp_path / f"{name}.toml", broker, topics, metrics_port=port,
                        extra=FAST_CHECKPOINTS)
    path.write_text(path.read_text().replace("[kafka]\n", f'[kafka]\nclient = "{client}"\n', 1))
    return path


def _messages(topics: Topics, count: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    kinds = {"prediction": topics.predictions, "telemetry": topics.telemetry}
    return [(kinds[e.kind], e.key.encode(), json.dumps(e.body).encode())
            for e in generate_events(count, seed=seed, models=4, sources=6, anomaly_rate=0.01)]


def _settled(broker: EmbeddedBroker, topics: Topics, ends: dict[TopicPartition, int]) -> bool:
    return committed_offsets(broker, topics.group, ends) == ends


def _merge(*ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    merged: dict[TopicPartition, int] = {}
    for part in ends:
        for tp, end in part.items():
            merged[tp] = max(merged.get(tp, 0), end)
    return merged


def _compare(broker: EmbeddedBroker, topics: Topics, config: Path,
             ends: dict[TopicPartition, int]) -> tuple[int, int]:
    """Assert the alert topic holds exactly the reference alerts; return (expected, found)."""
    records = read_partitions(broker, (topics.predictions, topics.telemetry), ends)
    expected = reference_alerts(config, records)
    found = json_values(read_topic(broker, topics.alerts, expect_at_least=len(expected)))
    by_id: dict[str, list[dict[str, Any]]] = {}
    for alert in found:
        by_id.setdefault(alert["alert_id"], []).append(alert)
    assert set(by_id) == set(expected), (sorted(set(expected) - set(by_id))[:5],
                                         sorted(set(by_id) - set(expected))[:5])
    for alert_id, copies in by_id.items():
        assert {alert_identity(c) for c in copies} == {alert_identity(expected[alert_id])}
    assert len(expected) > 10
    return len(expected), len(found)


def test_confluent_client_gives_the_reference_alerts_and_dead_letters(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    create_topics(broker, [topics.predictions, topics.telemetry], partitions=3)
    ends = _merge(produce(broker, _messages(topics, 3_000, seed=11)),
                  produce(broker, [(topics.telemetry, b"bad", raw) for raw in REASONS]))
    port = free_port()
    config = _config(tmp_path, "vigil", broker, topics, port)
    vigil = VigilProcess(config, tmp_path / "vigil.log", port)
    try:
        wait_for(lambda: _settled(broker, topics, ends), 45,
                 f"offsets committed to the end; log:\n{vigil.log_text()[-3000:]}")
        assert vigil.status("/readyz") == 200
        samples = vigil.metrics()
        invalid = {k: v for k, v in samples.items()
                   if k.startswith("vigil_events_invalid_total")}
        assert sum(invalid.values()) == len(REASONS)
    finally:
        code = vigil.stop()
    assert code == 0, vigil.log_text()
    assert "confluent" in vigil.log_text()
    _compare(broker, topics, config, ends)

    letters = read_topic(broker, topics.dead_letter, expect_at_least=len(REASONS))
    assert sorted(r.value for r in letters) == sorted(REASONS)
    for record in letters:
        headers = dict(record.headers)
        assert headers["vigil.error.reason"].decode() == REASONS[record.value]
        assert headers["vigil.source.topic"].decode() == topics.telemetry
        assert record.key == b"bad"


def test_confluent_client_restores_checkpointed_state_after_a_restart(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    create_topics(broker, [topics.predictions, topics.telemetry], partitions=2)
    messages = _messages(topics, 4_000, seed=5)
    first_ends = produce(broker, messages[:2_000])
    port = free_port()
    config = _config(tmp_path, "vigil", broker, topics, port)
    first = VigilProcess(config, tmp_path / "first.log", port)
    try:
        wait_for(lambda: _settled(broker, topics, first_ends), 40,
                 f"the first half committed; log:\n{first.log_text()[-3000:]}")
    finally:
        assert first.stop() == 0, first.log_text()
    ends = _merge(first_ends, produce(broker, messages[2_000:]))
    second = VigilProcess(config, tmp_path / "second.log", port)
    try:
        wait_for(lambda: _settled(broker, topics, ends), 40,
                 f"the second half committed; log:\n{second.log_text()[-3000:]}")
    finally:
        assert second.stop() == 0, second.log_text()
    assert "restored" in second.log_text()
    assert "start from warm-up" not in second.log_text()
    _compare(broker, topics, config, ends)


@pytest.mark.parametrize("first_client", ["confluent-kafka", "kafka-python"])
def test_two_processes_share_the_partitions_across_a_rebalance(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path, first_client: str
) -> None:
    """Two confluent-kafka members; or a kafka-python one joined by a confluent-kafka one, as
    in a rolling switch of kafka.client: both use the range assignor."""
    topics = Topics(topic_prefix)
    create_topics(broker, [topics.predictions, topics.telemetry], partitions=4)
    messages = _messages(topics, 6_000, seed=7)
    producer = BackgroundProducer(broker, messages[:4_000], rate=400).start()
    vigils: list[VigilProcess] = []

    def start(name: str, client: str = "confluent-kafka") -> VigilProcess:
        port = free_port()
        vigil = VigilProcess(_config(tmp_path, name, broker, topics, port, client),
                             tmp_path / f"{name}.log", port)
        vigils.append(vigil)
        wait_for(lambda: vigil.status("/readyz") == 200, 20,
                 f"{name} to join; log:\n{vigil.log_text()[-3000:]}")
        return vigil

    try:
        first = start("a", first_client)
        time.sleep(2)
        second = start("b")
        wait_for(lambda: "rebalance: 4 partitions assigned" in first.log_text()
                 and "rebalance: 4 partitions assigned" in second.log_text(), 20,
                 "the group to split 4/4")
        time.sleep(2)
        assert second.stop() == 0, second.log_text()  # graceful leave: the first takes over
        wait_for(lambda: first.log_text().count("rebalance: 8 partitions assigned") == 2, 20,
                 "the first to take every partition back")
        # events after the takeover, on every partition, so the first commits them all
        ends = _merge(producer.join(timeout_s=30), produce(broker, messages[4_000:]))
        wait_for(lambda: _settled(broker, topics, ends), 30,
                 f"the group to commit the end; log:\n{first.log_text()[-3000:]}")
        assert first.process.poll() is None, first.log_text()
    finally:
        codes = [v.stop() for v in vigils if v.process.poll() is None]
    assert all(code == 0 for code in codes)
    assert "restored" in first.log_text() and "restored" in second.log_text()
    _compare(broker, topics, tmp_path / "a.toml", ends)
