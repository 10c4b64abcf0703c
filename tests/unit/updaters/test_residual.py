"""Residual detection: load-explained latency is in control, unexplained latency is not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vigil.detectors import build_detector
from vigil.updaters import ResidualDetector

N = 6000


def telemetry(seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    i = np.arange(N)
    rps = 200.0 + 80.0 * np.sin(2 * np.pi * i / 500) + rng.normal(scale=15.0, size=N)
    rps[4000:4500] += 250.0  # a load surge
    cpu = 10.0 + 0.2 * rps + rng.normal(scale=3.0, size=N)
    latency = 20.0 + 0.15 * rps + 0.3 * cpu + rng.normal(scale=1.0, size=N)
    return rps, cpu, latency


def run(latency: np.ndarray, rps: np.ndarray, cpu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    detector = ResidualDetector(
        "latency_ms", ["requests_per_s", "cpu_percent"], chart_params={"warmup": 100}
    )
    raw = build_detector("shewhart", {"warmup": 100})
    residual_alarms, raw_alarms = [], []
    for k in range(N):
        metrics = {
            "latency_ms": float(latency[k]),
            "requests_per_s": float(rps[k]),
            "cpu_percent": float(cpu[k]),
        }
        residual_alarms.append(detector.update(metrics, float(k)).anomaly)
        raw_alarms.append(raw.update(float(latency[k]), float(k)).anomaly)
    return np.array(residual_alarms), np.array(raw_alarms)


def test_latency_explained_by_load_is_not_an_anomaly() -> None:
    rps, cpu, latency = telemetry()
    residual, raw = run(latency, rps, cpu)
    assert raw[4000:4500].mean() > 0.4  # a chart of latency alone alarms through the surge
    assert residual[4000:4500].mean() < 0.02
    assert residual[300:4000].mean() < 0.01


def test_unexplained_latency_is_an_anomaly() -> None:
    rps, cpu, latency = telemetry()
    latency[5000:5100] += 8.0  # the load did not change
    residual, _ = run(latency, rps, cpu)
    assert residual[5000:5100].mean() > 0.9
    assert residual[5200:5600].mean() < 0.02  # it did not learn the anomaly


def test_result_is_in_target_units_and_state_round_trips() -> None:
    rps, cpu, latency = telemetry(seed=12)
    a = ResidualDetector("latency_ms", ["requests_per_s", "cpu_percent"], warmup=50)
    for k in range(800):
        a.update({"latency_ms": latency[k], "requests_per_s": rps[k], "cpu_percent": cpu[k]}, k)
    b = ResidualDetector.from_state(json.loads(json.dumps(a.state_dict())))
    for k in range(800, 1200):
        metrics = {"latency_ms": latency[k], "requests_per_s": rps[k], "cpu_percent": cpu[k]}
        ra, rb = a.update(metrics, k), b.update(metrics, k)
        assert ra == rb
    assert ra.details is not None
    assert ra.centre == pytest.approx(ra.details["expected"] + ra.centre - ra.details["expected"])
    assert ra.lower < ra.details["expected"] < ra.upper
    assert ra.details["residual"] == pytest.approx(latency[1199] - ra.details["expected"])


def test_bad_points_and_settings() -> None:
    detector = ResidualDetector("lat", ["rps"])
    with pytest.raises(ValueError, match="must hold the target 'lat'"):
        detector.update({"rps": 1.0}, 0.0)
    with pytest.raises(ValueError, match="must be finite"):
        detector.update({"lat": float("nan"), "rps": 1.0}, 0.0)
    with pytest.raises(ValueError, match="cannot also be an input"):
        ResidualDetector("lat", ["lat"])
    with pytest.raises(ValueError, match="learning_rate"):
        ResidualDetector("lat", ["rps"], learner={"learning_rate": "fast"})
    first = detector.update({"lat": 40.0}, 1.0)  # a missing input takes its running mean
    assert first.centre == 40.0 and not first.anomaly
