"""Half-Space Trees over a feature vector: warm-up, scaling, score, exact state round-trip."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from vigil.detectors.base import PointResult, build_detector, detector_names, restore_detector
from vigil.detectors.multivariate import HalfSpaceTreesDetector, MinMaxScaling

FEATURES = ("amount", "age_days", "items")
MEANS = np.array([50.0, 300.0, 3.0])
SIGMAS = np.array([10.0, 50.0, 0.5])


def events(n: int, seed: int = 3, shift: float = 0.0, start: int | None = None) -> list[Any]:
    """Prediction features; from ``start`` on all three drift together by ``shift`` σ."""
    rng = np.random.default_rng(seed)
    rows = MEANS + SIGMAS * rng.normal(size=(n, 3))
    if start is not None:
        rows[start:] += shift * SIGMAS
    return [dict(zip(FEATURES, map(float, row), strict=True)) for row in rows]


def feed(detector: HalfSpaceTreesDetector, rows: list[Any], start: int = 0) -> list[PointResult]:
    return [detector.update(row, float(start + t)) for t, row in enumerate(rows)]


def test_registered_as_a_vector_detector() -> None:
    assert "hst" in detector_names()
    detector = build_detector("hst", {"window_size": 50})
    assert isinstance(detector, HalfSpaceTreesDetector)
    assert HalfSpaceTreesDetector.input_kind == "vector"
    assert detector.name == "hst"


def test_no_score_or_alarm_until_the_first_window_is_complete() -> None:
    detector = HalfSpaceTreesDetector(window_size=100)
    results = feed(detector, events(130))
    assert all(r.score == 0.0 and not r.anomaly for r in results[:100])
    assert all(r.details is not None and r.details["hst_score"] > 0.0 for r in results[100:])


def test_score_is_half_at_the_threshold_and_grows_with_isolation() -> None:
    detector = HalfSpaceTreesDetector(threshold=0.9)
    results = feed(detector, events(600))
    for r in results[250:]:
        assert r.details is not None
        raw = r.details["hst_score"]
        ratio = (1.0 - 0.9) / (1.0 - raw)
        assert r.score == pytest.approx(ratio / (1.0 + ratio))
        assert r.anomaly == (raw > 0.9)
        assert r.upper == 0.9 and r.lower == 0.0


def test_far_points_and_correlated_drift_score_higher_than_in_control() -> None:
    detector = HalfSpaceTreesDetector(seed=5)
    baseline = feed(detector, events(1000))
    typical = float(np.mean([r.score for r in baseline[250:]]))
    twin = HalfSpaceTreesDetector.from_state(detector.state_dict())
    far = twin.update({"amount": 150.0, "age_days": 0.0, "items": 8.0}, 1000.0)
    drifted = feed(detector, events(30, seed=9, shift=3.0, start=0), 1000)
    assert far.score > 3 * typical
    assert float(np.mean([r.score for r in drifted])) > 1.5 * typical


def test_in_control_false_alarms_are_rare_at_the_default_threshold() -> None:
    results = feed(HalfSpaceTreesDetector(), events(3000, seed=21))
    assert sum(r.anomaly for r in results) <= 3


def test_a_plain_number_is_a_one_feature_vector() -> None:
    detector = HalfSpaceTreesDetector(window_size=20)
    results = [detector.update(float(i % 7), float(i)) for i in range(40)]
    assert results[-1].details is not None and results[-1].details["hst_score"] > 0.0
    assert "value" in detector.state_dict()["scaling"]["low"]


@pytest.mark.parametrize("cut", [0, 1, 249, 250, 400, 777])
def test_state_round_trip_gives_identical_futures(cut: int) -> None:
    rows = events(1000, shift=2.5, start=700)
    reference = HalfSpaceTreesDetector(n_trees=4, height=6, window_size=100, seed=2)
    results = feed(reference, rows)
    detector = HalfSpaceTreesDetector(n_trees=4, height=6, window_size=100, seed=2)
    feed(detector, rows[:cut])
    state = json.loads(json.dumps(detector.state_dict(), allow_nan=False))
    restored = restore_detector("hst", state)
    assert isinstance(restored, HalfSpaceTreesDetector)
    assert feed(restored, rows[cut:], cut) == results[cut:]


def test_unseeded_detector_round_trips_before_its_trees_exist() -> None:
    detector = HalfSpaceTreesDetector(seed=None, window_size=30)
    restored = HalfSpaceTreesDetector.from_state(json.loads(json.dumps(detector.state_dict())))
    rows = events(100)
    assert feed(restored, rows) == feed(detector, rows)


def test_broken_tree_state_is_refused() -> None:
    detector = HalfSpaceTreesDetector(n_trees=2, height=3, window_size=10)
    feed(detector, events(20))
    state = detector.state_dict()
    state["trees"][0]["l_mass"] = state["trees"][0]["l_mass"][:-1]
    with pytest.raises(ValueError, match="height"):
        HalfSpaceTreesDetector.from_state(state)


def test_min_max_scaling_uses_the_range_before_the_point() -> None:
    scaling = MinMaxScaling()
    assert scaling.transform({"a": 5.0}) == {"a": 0.5}
    scaling.learn({"a": 0.0})
    assert scaling.transform({"a": 1.0}) == {"a": 1.5}  # constant so far: above it
    scaling.learn({"a": 10.0})
    assert scaling.transform({"a": 5.0, "b": 2.0}) == {"a": 0.5, "b": 0.5}
    assert scaling.transform({"a": 20.0}) == {"a": 2.0}
    assert MinMaxScaling.from_state(scaling.state_dict()).state_dict() == scaling.state_dict()


@pytest.mark.parametrize(
    "params",
    [{"threshold": 1.0}, {"threshold": 0.0}, {"window_size": 1}, {"height": 0},
     {"n_trees": True}, {"seed": "x"}],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_detector("hst", params)


def test_bad_vectors_are_refused() -> None:
    detector = HalfSpaceTreesDetector()
    with pytest.raises(ValueError, match="at least one"):
        detector.update({}, 0.0)
    with pytest.raises(ValueError, match="finite"):
        detector.update({"a": math.inf}, 0.0)
