"""Building kafka-python clients from the configuration, creating output topics, committing.

Only standard Kafka protocol features are used, so the same code runs against Apache Kafka
and the embedded broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from stream.config import VigilConfig
from stream.errors import BrokerError

log = logging.getLogger(__name__)


def client_settings(config: VigilConfig) -> dict[str, Any]:
    """Settings shared by every client Vigil makes."""
    return {
        "bootstrap_servers": config.kafka.bootstrap_servers.split(","),
        "client_id": config.kafka.client_id,
        "request_timeout_ms": config.kafka.request_timeout_ms,
    }


def make_consumer(config: VigilConfig, **overrides: Any) -> KafkaConsumer:
    """A group consumer with auto-commit off: Vigil commits after its output is acknowledged."""
    settings: dict[str, Any] = {
        **client_settings(config),
        "group_id": config.kafka.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": config.kafka.auto_offset_reset,
        "session_timeout_ms": config.kafka.session_timeout_ms,
        "heartbeat_interval_ms": config.kafka.heartbeat_interval_ms,
        "max_poll_records": config.runtime.max_poll_records,
        "allow_auto_create_topics": False,
    }
    settings.update(overrides)
    try:
        return KafkaConsumer(**settings)
    except KafkaError as exc:
        raise BrokerError(
            f"cannot connect a consumer to {config.kafka.bootstrap_servers}: {exc}"
        ) from exc


def make_producer(config: VigilConfig, **overrides: Any) -> KafkaProducer:
    """An idempotent producer that waits for all in-sync replicas (acks=all)."""
    settings: dict[str, Any] = {
        **client_settings(config),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
    }
    settings.update(overrides)
    try:
        return KafkaProducer(**settings)
    except KafkaError as exc:
        raise BrokerError(
            f"cannot connect a producer to {config.kafka.bootstrap_servers}: {exc}"
        ) from exc


def ensure_topics(
    config: VigilConfig,
    topics: Iterable[str],
    *,
    partitions: int | None = None,
    topic_configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    try:
        admin = KafkaAdminClient(**client_settings(config))
    except KafkaError as exc:
        raise BrokerError(f"cannot reach {config.kafka.bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        created: list[str] = []
        for topic in missing:
            spec: dict[str, Any] = {
                "num_partitions": partitions or config.topics.create_partitions,
                "replication_factor": config.topics.create_replication_factor,
            }
            if topic_configs:
                spec["configs"] = dict(topic_configs)
            try:
                admin.create_topics({topic: spec})
            except TopicAlreadyExistsError:
                continue  # another instance was quicker
            created.append(topic)
            log.info("created topic %r", topic)
        return created
    except KafkaError as exc:
        raise BrokerError(
            f"cannot create topics on {config.kafka.bootstrap_servers}: {exc}"
        ) from exc
    finally:
        admin.close()


def commit_offsets(consumer: KafkaConsumer, next_offsets: Mapping[tuple[str, int], int]) -> bool:
    """Commit synchronously; False (and a log line) when a rebalance took the partitions away.

    The records are then processed again by their new owner, which is safe: alerts are
    at-least-once with stable ids.
    """
    if not next_offsets:
        return True
    try:
        consumer.commit(
            offsets={
                TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                for (topic, partition), offset in next_offsets.items()
            }
        )
    except CommitFailedError as exc:
        log.warning("offset commit failed after a rebalance; the batch will be redelivered: %s",
                    exc)
        return False
    return True
