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
from sklearn.linear_model import LinearRegression, LogisticRegression

from tests.integration.support import (
    Topics,
    create_topics,
    json_values,
    produce,
    read_topic,
    wait_for,
    write_config,
)
from tests.vigil_process import VigilProcess
from vigil.stream.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "deploy" / "schemas"
START = 1_767_225_600.0
BEFORE, AFTER = 3_000, 5_000
OLD = np.array([2.0, -1.0, 0.5])
NEW = np.array([-1.0, 2.0, 0.5])
FEATURES = ["amount", "age", "items"]
SCALES = [10.0, 1.0, 3.0]


def _concept(rng: np.random.Generator, n: int, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.0, 1.0, size=(n, 3)) * SCALES
    return x, 4.0 + x @ coef + rng.normal(0.0, 0.5, size=n)


def _export(config: Path, model: str, output: Path) -> Any:
    done = subprocess.run([sys.executable, "-m", "vigil.stream.cli", "export-model",
                           "-c", str(config), "--model", model, "-o", str(output)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return joblib.load(output)


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
publish_every = 500
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
        assert total - 1_500 < learned <= total  # those a detector flagged are not learned
        updates = json_values(read_topic(broker, topics.model_updates, expect_at_least=14))
        alerts = json_values(read_topic(broker, topics.alerts, expect_at_least=1))
    finally:
        assert vigil.stop() == 0

    assert not [a for a in alerts if a["kind"] == "rollback"]  # a concept change is learned
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
    pre = [u["loss"] for u in updates if 1_000 < u["n_updates"] <= BEFORE - 500]
    post = [u["loss"] for u in updates[-2:]]
    assert pre and np.mean(post) == pytest.approx(np.mean(pre), rel=0.10)
    assert served_loss > 10 * np.mean(pre)

    latest = updates[-1]
    maintained: Any = _export(config, "fraud", tmp_path / "maintained.joblib")
    assert type(maintained) is LinearRegression
    coef = np.array([latest["coef"][name] for name in FEATURES])
    np.testing.assert_allclose(maintained.coef_, coef)
    np.testing.assert_allclose(coef, NEW, atol=0.1)
    x_test, y_test = _concept(rng, 2_000, NEW)
    frozen_mse = float(np.mean((served.predict(x_test) - y_test) ** 2))
    maintained_mse = float(np.mean((maintained.predict(x_test) - y_test) ** 2))
    print(f"fraud: exported MSE {maintained_mse:.3f} on the new concept (served "
          f"{frozen_mse:.1f}); coef {np.round(coef, 3).tolist()}")  # -s shows it
    assert maintained_mse < 0.5 and frozen_mse > 50 * maintained_mse


# --- a classifier, late labels, a concept change, and poison -----------------------------

CLASS_OLD = np.array([0.15, -1.2, 0.4])
CLASS_NEW = np.array([-0.15, 1.2, 0.4])  # two of the three coefficients change sign
SERVED, CHANGE, DELAY = 9_000, 3_000, 300
POISON = range(5_000, 6_000)


def _classes(rng: np.random.Generator, n: int, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.0, 1.0, size=(n, 3)) * SCALES
    p = 1.0 / (1.0 + np.exp(-(0.3 + x @ coef)))
    return x, (rng.random(n) < p).astype(float)


def test_a_classifier_follows_a_concept_change_with_late_labels_and_refuses_poison(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    """Two models served by the same scikit-learn LogisticRegression see the same 9,000
    predictions, whose concept changes after 3,000; each label comes 300 predictions after its
    prediction. One label feed is clean; the other flips the labels of large amounts for
    1,000 events, after the change: the guard rolls that back, and never the change."""
    rng = np.random.default_rng(7)
    served = LogisticRegression().fit(*_classes(rng, 2_000, CLASS_OLD))
    joblib.dump(served, tmp_path / "served.joblib")
    (x_old, y_old), (x_new, y_new) = (_classes(rng, CHANGE, CLASS_OLD),
                                      _classes(rng, SERVED - CHANGE, CLASS_NEW))
    x, y = np.vstack([x_old, x_new]), np.concatenate([y_old, y_new])
    poisoned = y.copy()
    flipped = np.array([i in POISON and x[i, 0] > 5.0 for i in range(SERVED)])
    poisoned[flipped] = 1.0 - poisoned[flipped]
    probabilities = served.predict_proba(x)[:, 1]
    feeds = {"churn": y, "churn-poisoned": poisoned}

    topics = Topics(topic_prefix)
    create_topics(broker, [topics.predictions, topics.labels, topics.telemetry], partitions=3)
    messages: list[tuple[str, bytes, bytes]] = []
    for i in range(SERVED + DELAY):
        for model, labels in feeds.items():
            if i < SERVED:
                event = {"model": model, "timestamp": START + i, "prediction_id": f"{model}{i}",
                         "features": dict(zip(FEATURES, map(float, x[i]), strict=True)),
                         "prediction": float(probabilities[i])}
                messages.append((topics.predictions, model.encode(), json.dumps(event).encode()))
            if i >= DELAY:  # the label of the prediction served 300 predictions ago
                j = i - DELAY
                label = {"prediction_id": f"{model}{j}", "label": float(labels[j]),
                         "timestamp": START + i}
                messages.append((topics.labels, model.encode(), json.dumps(label).encode()))
    produce(broker, messages)

    port = free_port()
    config = write_config(tmp_path / "vigil.toml", broker, topics, metrics_port=port, extra=f"""
[models]
enabled = true
learner = "sgd_classifier"
publish_interval_s = 0.0
max_waiting_predictions = 200000

[models.overrides."churn*"]
warm_start = "{tmp_path / 'served.joblib'}"
params = {{ feature_names = {json.dumps(FEATURES)} }}
""")
    vigil = VigilProcess(config, tmp_path / "vigil.log", port)
    total = SERVED * len(feeds)
    try:
        wait_for(lambda: vigil.metrics().get("vigil_labels_joined_total") == total, 120,
                 f"{total} labels joined; log:\n{vigil.log_text()}")
        alerts = json_values(read_topic(broker, topics.alerts, expect_at_least=3))
    finally:
        assert vigil.stop() == 0

    def kinds(model: str) -> list[str]:
        """The model's maintenance alerts (not its series' anomalies)."""
        return [a["kind"] for a in alerts
                if a["key"] == model and a["metric"] in ("loss", "maintained_loss")]

    assert kinds("churn") and set(kinds("churn")) == {"performance"}, kinds("churn")
    rollbacks = [a for a in alerts if a["key"] == "churn-poisoned" and a["kind"] == "rollback"]
    assert rollbacks and set(kinds("churn-poisoned")) <= {"performance", "rollback"}
    # raised once the clean labels were back, restoring a snapshot from before (all but the
    # first labels of) the poison
    assert all(a["event_timestamp"] > _iso(START + POISON.stop) for a in rollbacks)
    assert rollbacks[0]["details"]["restored_n_updates"] < POISON.start + 100

    x_test, y_test = _classes(rng, 5_000, CLASS_NEW)
    offline = LogisticRegression().fit(*_classes(rng, 6_000, CLASS_NEW)).score(x_test, y_test)
    frozen = served.score(x_test, y_test)
    assert frozen < 0.45
    for model in feeds:
        maintained = _export(config, model, tmp_path / f"{model}.joblib")
        assert type(maintained) is LogisticRegression
        accuracy = maintained.score(x_test, y_test)
        print(f"{model}: exported accuracy {accuracy:.3f} on the new concept (offline fit "
              f"{offline:.3f}, served {frozen:.3f}); alerts {kinds(model)}")  # -s shows it
        assert accuracy >= offline - 0.02, (model, accuracy, offline)


def _iso(timestamp: float) -> str:
    from vigil.stream.engine.alerts import iso_utc

    return iso_utc(timestamp)
