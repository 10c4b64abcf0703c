"""Model maintenance end to end: a scikit-learn model in, a maintained one out, through Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import jsonschema
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from stream.broker import EmbeddedBroker, free_port
from tests.integration.support import (
    Topics,
    VigilProcess,
    create_topics,
    json_values,
    produce,
    read_topic,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "deploy" / "schemas"
START = 1_767_225_600.0
BEFORE, AFTER = 3_000, 5_000
OLD = np.array([2.0, -1.0, 0.5])
NEW = np.array([-1.0, 2.0, 0.5])
FEATURES = ["amount", "age", "items"]


def _concept(rng: np.random.Generator, n: int, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.0, 1.0, size=(n, 3)) * [10.0, 1.0, 3.0]
    return x, 4.0 + x @ coef + rng.normal(0.0, 0.5, size=n)


def test_a_warm_started_model_is_maintained_published_and_exported_back(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    served = LinearRegression().fit(*_concept(rng, 2_000, OLD))
    joblib.dump(served, tmp_path / "served.joblib")

    topics = Topics(topic_prefix)
    # every input topic exists before vigil subscribes: a topic appearing while the group
    # forms makes it rebalance again, which tansu does not always finish
    create_topics(broker, [topics.predictions, topics.labels, topics.telemetry], partitions=3)
    x_old, y_old = _concept(rng, BEFORE, OLD)
    x_new, y_new = _concept(rng, AFTER, NEW)
    x, y = np.vstack([x_old, x_new]), np.concatenate([y_old, y_new])
    predictions = served.predict(x)
    messages: list[tuple[str, bytes, bytes]] = []
    for start in range(0, len(y), 100):  # labels come a little after their predictions
        chunk = range(start, min(start + 100, len(y)))
        for i in chunk:
            event = {"model": "fraud", "timestamp": START + i, "prediction_id": f"r{i}",
                     "features": dict(zip(FEATURES, map(float, x[i]), strict=True)),
                     "prediction": float(predictions[i]), "model_version": "1"}
            messages.append((topics.predictions, b"fraud", json.dumps(event).encode()))
        for i in chunk:
            label = {"prediction_id": f"r{i}", "label": float(y[i]), "timestamp": START + i + 30}
            messages.append((topics.labels, b"fraud", json.dumps(label).encode()))
    produce(broker, messages)

    port = free_port()
    config = write_config(tmp_path / "vigil.toml", broker, topics, metrics_port=port, extra=f"""
[models]
enabled = true
publish_every = 1000
publish_interval_s = 0.0

[models.overrides.fraud]
warm_start = "{tmp_path / 'served.joblib'}"
params = {{ feature_names = {json.dumps(FEATURES)}, learning_rate = "constant", eta0 = 0.01 }}
""")
    vigil = VigilProcess(config, tmp_path / "vigil.log", port)
    total = BEFORE + AFTER
    try:
        wait_for(lambda: vigil.metrics().get("vigil_labels_joined_total") == total, 120,
                 f"{total} labels joined; log:\n{vigil.log_text()}")
        samples = vigil.metrics()
        served_loss = samples['vigil_model_loss{kind="served",model="fraud"}']
        maintained_loss = samples['vigil_model_loss{kind="maintained",model="fraud"}']
        assert served_loss > 10 * maintained_loss
        learned = samples['vigil_model_updates_total{model="fraud"}']
        assert total - 1_500 < learned <= total  # a few blocks are rolled back, not learned
        updates = json_values(read_topic(broker, topics.model_updates, expect_at_least=7))
        alerts = json_values(read_topic(broker, topics.alerts, expect_at_least=1))
    finally:
        assert vigil.stop() == 0

    performance = [a for a in alerts if a["kind"] == "performance"]
    assert performance, [a["kind"] for a in alerts]
    first = performance[0]
    assert first["key"] == "fraud"
    # raised by the join of an event after the change (its label, or its prediction when
    # the label came first); all of a model's events are on one partition of each topic
    assert first["source"]["topic"] in (topics.labels, topics.predictions)
    assert first["source"]["offset"] >= BEFORE
    assert first["details"]["served_loss"] > first["details"]["maintained_loss"]
    alert_schema = json.loads((SCHEMAS / "alert.schema.json").read_text())
    for alert in alerts:
        jsonschema.validate(alert, alert_schema)

    update_schema = json.loads((SCHEMAS / "model-update.schema.json").read_text())
    for update in updates:
        jsonschema.validate(update, update_schema)
    assert [u["version"] for u in updates] == list(range(1, len(updates) + 1))
    assert updates[0]["estimator"] == "LinearRegression"
    # prequential loss: back within 10% of its level before the change; the served model's not
    pre = [u["loss"] for u in updates if 1_000 < u["n_updates"] <= BEFORE]
    post = [u["loss"] for u in updates[-2:]]
    assert pre and np.mean(post) == pytest.approx(np.mean(pre), rel=0.10)
    assert served_loss > 10 * np.mean(pre)

    latest = updates[-1]
    output = tmp_path / "maintained.joblib"
    done = subprocess.run([sys.executable, "-m", "stream.cli", "export-model", "-c", str(config),
                           "--model", "fraud", "-o", str(output)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    maintained: Any = joblib.load(output)
    assert type(maintained) is LinearRegression
    coef = np.array([latest["coef"][name] for name in FEATURES])
    np.testing.assert_allclose(maintained.coef_, coef)
    np.testing.assert_allclose(coef, NEW, atol=0.1)
    x_test, y_test = _concept(rng, 2_000, NEW)
    frozen_mse = float(np.mean((served.predict(x_test) - y_test) ** 2))
    maintained_mse = float(np.mean((maintained.predict(x_test) - y_test) ** 2))
    assert maintained_mse < 0.5 and frozen_mse > 50 * maintained_mse
