"""Wiring for ``vigil run``: output topics, Kafka clients, metrics endpoint, then the loop."""

from __future__ import annotations

import logging
import threading

from vigil.stream.config import VigilConfig
from vigil.stream.kafka.kafka_python import (
    BrokerProbe,
    ensure_topics,
    kafka_python_consumer,
    make_consumer,
    make_producer,
    topic_partitions,
)
from vigil.stream.loop.runner import Runner
from vigil.stream.metrics import Liveness, MetricsServer, VigilMetrics
from vigil.stream.state import KafkaStateStore, SnapshotPolicy

log = logging.getLogger(__name__)


def run_service(
    config: VigilConfig,
    stop: threading.Event,
    *,
    metrics: VigilMetrics | None = None,
    liveness: Liveness | None = None,
) -> None:
    """Run Vigil until ``stop`` is set; the metrics endpoint lives as long as the loop."""
    metrics = metrics or VigilMetrics()
    liveness = liveness or Liveness()
    server = MetricsServer(metrics.registry, liveness, config.metrics.host, config.metrics.port)
    server.start()
    log.info("metrics on http://%s:%d/metrics", config.metrics.host, server.port)
    probe = BrokerProbe(config, metrics, liveness).start()
    try:
        ensure_topics(config, [config.topics.alerts, config.topics.dead_letter,
                               *config.alerts.routes.values()])
        compacted = [config.state.topic]
        if config.models.enabled:
            compacted.append(config.topics.model_updates)
        ensure_topics(config, compacted, topic_configs={"cleanup.policy": "compact"})
        producer = make_producer(config, max_request_size=4 * 1024 * 1024)
        consumer = make_consumer(config)
        store = KafkaStateStore(
            config.kafka.group_id, config.state.topic, producer,
            lambda: kafka_python_consumer(config, group_id=None, auto_offset_reset="earliest"),
            state_partitions=topic_partitions(consumer, config.state.topic),
            policy=SnapshotPolicy(config.state.max_snapshot_mb * 2**20,
                                  config.state.hmac_keys()),
        )
        try:
            Runner(config, consumer, producer, metrics, store, liveness).run(stop)
        finally:
            producer.close(timeout=5)
    finally:
        probe.stop()
        server.stop()
