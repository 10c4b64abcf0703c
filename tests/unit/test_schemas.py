"""The JSON Schemas in deploy/schemas describe the messages Vigil really publishes.

Alerts are built with Vigil's own code (stream.engine.alerts) and must validate; hand-broken copies
must not, so the schemas are neither too loose nor out of date.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from vigil.detectors import PointResult
from vigil.stream.engine.alerts import ALERT_KINDS, Alert, SourceRef, build_alert

SCHEMAS = Path(__file__).resolve().parents[2] / "deploy" / "schemas"


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


ALERT = _validator("alert.schema.json")
MODEL_UPDATE = _validator("model-update.schema.json")


def _alert(kind: str = "anomaly", *, z: float = 4.2, score: float = 0.58,
           event_type: str = "telemetry", episode_id: str | None = None) -> Alert:
    prediction = event_type == "prediction"
    return build_alert(
        result=PointResult(score, kind == "anomaly", 10.0, 7.0, 13.0, z, 100),
        source=SourceRef("predictions" if prediction else "telemetry", 1, 5),
        event_type=event_type, key="fraud" if prediction else "web-1",
        metric="features.amount" if prediction else "latency_ms", detector="shewhart",
        value=14.2, event_timestamp=1767225600.25, detected_at=1767225601.0,
        critical_score=2 / 3, model_version="2.3.0" if prediction else None,
        prediction_id="req-8f1c" if prediction else None, kind=kind, episode_id=episode_id,
    )


def _message(alert: Alert) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(alert.to_json())
    return message


def _errors(validator: Draft202012Validator, message: Any) -> list[str]:
    return [error.message for error in validator.iter_errors(message)]


@pytest.mark.parametrize("name", ["alert.schema.json", "model-update.schema.json"])
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


# --- alerts ---------------------------------------------------------------------------------


def test_a_real_anomaly_alert_validates() -> None:
    message = _message(_alert())
    assert _errors(ALERT, message) == []
    if "episode_id" in message:  # an anomaly opens its own episode
        assert message["episode_id"] == message["alert_id"]


def test_a_real_prediction_alert_with_model_fields_validates() -> None:
    message = _message(_alert(event_type="prediction"))
    assert message["model_version"] == "2.3.0"
    assert _errors(ALERT, message) == []


def test_an_alert_on_a_constant_series_validates() -> None:
    message = _message(_alert(z=math.inf, score=1.0))
    assert message["z"] is None
    assert message["severity"] == "critical"
    assert _errors(ALERT, message) == []


@pytest.mark.parametrize("kind", [k for k in ALERT_KINDS if k != "anomaly"])
def test_real_alerts_of_every_kind_validate(kind: str) -> None:
    opened = _alert()
    message = _message(_alert(kind, score=0.3, episode_id=opened.alert_id))
    assert _errors(ALERT, message) == []
    if kind == "resolved":
        assert message["severity"] == "info"
        assert message.get("episode_id", opened.alert_id) == opened.alert_id


def test_an_alert_without_episode_id_still_validates() -> None:
    message = _message(_alert())
    message.pop("episode_id", None)
    assert _errors(ALERT, message) == []


def _set(path: str, value: Any) -> Any:
    def mutate(message: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = message
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return mutate


def _drop(path: str) -> Any:
    def mutate(message: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = message
        for parent in parents:
            target = target[parent]
        del target[leaf]
    return mutate


BROKEN_ALERTS = {
    "no alert_id": _drop("alert_id"),
    "short alert_id": _set("alert_id", "e26ead15"),
    "unknown kind": _set("kind", "opened"),
    "unknown severity": _set("severity", "page"),
    "info severity on an anomaly": _set("severity", "info"),
    "unknown event_type": _set("event_type", "metrics"),
    "empty key": _set("key", ""),
    "value as a string": _set("value", "14.2"),
    "score above 1": _set("score", 1.5),
    "z as a string": _set("z", "inf"),
    "fractional n": _set("n", 2.5),
    "negative n": _set("n", -1),
    "centre as a string": _set("centre", "10"),
    "model_version as a number": _set("model_version", 2),
    "timestamp without Z": _set("event_timestamp", "2026-01-01T00:00:00.250"),
    "timestamp without ms": _set("detected_at", "2026-01-01T00:00:01Z"),
    "epoch timestamp": _set("detected_at", 1767225601.0),
    "no source": _drop("source"),
    "no source offset": _drop("source.offset"),
    "negative partition": _set("source.partition", -1),
    "extra source field": _set("source.key", "web-1"),
    "unknown field": _set("colour", "red"),
    "episode_id not an id": _set("episode_id", "episode-1"),
    "no upper": _drop("upper"),
}


@pytest.mark.parametrize("breakage", BROKEN_ALERTS.values(), ids=BROKEN_ALERTS.keys())
def test_broken_alerts_are_rejected(breakage: Any) -> None:
    message = _message(_alert())
    message.setdefault("episode_id", message["alert_id"])
    broken = copy.deepcopy(message)
    breakage(broken)
    assert _errors(ALERT, broken), f"accepted {broken}"


def test_a_resolved_alert_must_be_info() -> None:
    message = _message(_alert("resolved", score=0.3, episode_id=_alert().alert_id))
    message["severity"] = "warning"
    assert _errors(ALERT, message)


# --- model updates --------------------------------------------------------------------------


def _model_update(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "model": "fraud", "version": "2.3.0+vigil.17", "n_updates": 1742,
        "coef": {"amount": 0.021, "age_days": -0.0009, "items": 0.098},
        "intercept": -0.12, "feature_names": ["amount", "age_days", "items"],
        "loss": 0.0423, "timestamp": "2026-01-01T00:00:00.250Z", "estimator": "SGDRegressor",
    }
    message.update(changes)
    return message


def _check_model_update(message: dict[str, Any]) -> list[str]:
    """Schema errors, plus the one rule JSON Schema cannot say (coef keys = feature_names)."""
    errors = _errors(MODEL_UPDATE, message)
    if not errors and set(message["coef"]) != set(message["feature_names"]):
        errors.append("coef keys differ from feature_names")
    return errors


@pytest.mark.parametrize("changes", [
    {},
    {"loss": None, "n_updates": 0},
    {"version": 18},
    {"timestamp": "2026-01-01T01:00:00+01:00"},
    {"coef": {}, "feature_names": [], "estimator": "river.linear_model.LinearRegression"},
], ids=["typical", "before the first label", "integer version", "offset timestamp",
        "no features"])
def test_model_updates_validate(changes: dict[str, Any]) -> None:
    assert _check_model_update(_model_update(**changes)) == []


BROKEN_MODEL_UPDATES = {
    "no model": {"model": None},
    "empty model": {"model": ""},
    "empty version": {"version": ""},
    "negative n_updates": {"n_updates": -1},
    "coefficient as a string": {"coef": {"amount": "0.02", "age_days": 0.0, "items": 0.1}},
    "intercept null": {"intercept": None},
    "duplicate feature": {"feature_names": ["amount", "amount", "items"]},
    "negative loss": {"loss": -0.1},
    "epoch timestamp": {"timestamp": 1767225600.25},
    "date only": {"timestamp": "2026-01-01"},
    "no estimator": {"estimator": None},
    "unknown field": {"weights": [1, 2, 3]},
    "coef keys differ from feature_names": {"feature_names": ["amount", "age_days", "colour"]},
}


@pytest.mark.parametrize("changes", BROKEN_MODEL_UPDATES.values(),
                         ids=BROKEN_MODEL_UPDATES.keys())
def test_broken_model_updates_are_rejected(changes: dict[str, Any]) -> None:
    message = _model_update(**changes)
    for name, value in changes.items():
        if value is None and name in ("model", "estimator"):
            del message[name]
    assert _check_model_update(message)
