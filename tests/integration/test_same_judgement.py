"""`vigil run` through the real broker and `vigil replay` of the same events, under one
configuration with every per-series setting and models on, give the same scores and alarms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.support import (
    Topics,
    create_topics,
    json_values,
    produce,
    read_topic,
    wait_for,
    write_config,
)
from tests.unit.stream.test_same_judgement import (
    JUDGEMENT,
    assert_same_judgement,
    judged_events,
    replayed,
)
from tests.vigil_process import VigilProcess
from vigil.stream.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration


def test_live_alerts_are_the_alarms_of_a_replay_under_the_same_configuration(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    inputs = {"prediction": topics.predictions, "telemetry": topics.telemetry,
              "label": topics.labels}
    # one partition per input topic, created before vigil subscribes (no second rebalance)
    create_topics(broker, inputs.values(), partitions=1)
    events = judged_events()
    produce(broker, [(inputs[e.kind], e.key.encode(), json.dumps(e.body).encode())
                     for e in events])

    port = free_port()
    config = write_config(tmp_path / "vigil.toml", broker, topics, metrics_port=port,
                          extra=JUDGEMENT)
    vigil = VigilProcess(config, tmp_path / "vigil.log", port)
    try:
        wait_for(lambda: vigil.processed() == len(events), 120,
                 f"{len(events)} events processed; log:\n{vigil.log_text()}")
        samples = vigil.metrics()
        produced = int(sum(v for k, v in samples.items()
                           if k.startswith("vigil_alerts_produced_total")))
    finally:
        exit_code = vigil.stop()
    assert exit_code == 0, vigil.log_text()

    alerts = json_values(read_topic(broker, topics.alerts, expect_at_least=produced))
    assert len(alerts) >= produced > 0
    assert_same_judgement(alerts, replayed(events, config, tmp_path))
