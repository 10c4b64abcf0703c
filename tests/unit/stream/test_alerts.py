"""Alert ids are deterministic, messages are strict JSON, severity follows the score."""

from __future__ import annotations

import json
import math

from vigil.detectors import Explanation, PointResult
from vigil.stream.engine.alerts import SourceRef, alert_id, build_alert, iso_utc, severity


def _alert(offset: int = 5, z: float = 4.2, score: float = 0.58):
    return build_alert(
        result=PointResult(score, True, 10.0, 7.0, 13.0, z, 100),
        source=SourceRef("telemetry", 1, offset), event_type="telemetry", key="web-1",
        metric="latency_ms", detector="shewhart", value=14.2, event_timestamp=1767225600.25,
        detected_at=1767225601.0, critical_score=2 / 3,
    )


def test_same_event_series_and_detector_give_the_same_id() -> None:
    assert _alert().alert_id == _alert().alert_id
    assert _alert(offset=6).alert_id != _alert().alert_id
    source = SourceRef("telemetry", 1, 5)
    ids = {alert_id(source, "telemetry", "web-1", m, d)
           for m in ("latency_ms", "cpu") for d in ("shewhart", "ewma")}
    assert len(ids) == 4


def test_message_is_json_with_the_documented_fields() -> None:
    body = json.loads(_alert().to_json())
    assert set(body) == {
        "alert_id", "kind", "severity", "event_type", "key", "metric", "detector", "value",
        "score", "z", "n", "centre", "lower", "upper", "model_version", "prediction_id",
        "event_timestamp", "detected_at", "source", "episode_id", "details", "test",
        "statistic", "limit"}
    assert body["source"] == {"topic": "telemetry", "partition": 1, "offset": 5}
    assert body["event_timestamp"] == "2026-01-01T00:00:00.250Z"
    assert body["kind"] == "anomaly"


def test_infinite_z_becomes_null_not_invalid_json() -> None:
    body = json.loads(_alert(z=math.inf, score=1.0).to_json())
    assert body["z"] is None
    assert body["severity"] == "critical"


def test_severity_thresholds() -> None:
    assert severity(0.55, 2 / 3) == "warning"
    assert severity(0.7, 2 / 3) == "critical"


def test_iso_utc_rounds_to_the_millisecond() -> None:
    assert iso_utc(1767225600.013) == "2026-01-01T00:00:00.013Z"
    assert iso_utc(1767225600.9996) == "2026-01-01T00:00:01.000Z"


def test_an_anomaly_alert_names_the_test_that_fired_and_its_limit() -> None:
    result = PointResult(0.8, True, 10.0, 7.0, 13.0, 1.0, 500,
                         explanation=Explanation("cusum up", 12.5, 9.84))
    alert = build_alert(result=result, source=SourceRef("telemetry", 1, 5),
                        event_type="telemetry", key="web-1", metric="cpu", detector="ensemble",
                        value=11.0, event_timestamp=0.0, detected_at=0.0, critical_score=2 / 3)
    body = json.loads(alert.to_json())
    assert (body["test"], body["statistic"], body["limit"]) == ("cusum up", 12.5, 9.84)
    assert alert.explain() == "cusum up 12.5 > 9.84"
    resolved = build_alert(result=result, source=SourceRef("telemetry", 1, 6),
                           event_type="telemetry", key="web-1", metric="cpu",
                           detector="ensemble", value=11.0, event_timestamp=0.0,
                           detected_at=0.0, critical_score=2 / 3, kind="resolved")
    assert resolved.test is None and resolved.explain() == "value 11 against [7, 13]"
