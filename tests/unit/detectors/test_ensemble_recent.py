"""The ensemble keeps its recent points and z-values only while an episode is open: the same
results as keeping them always (as it once did, the record filled by the tests below), and old
snapshots, which hold in-control points, still restore."""

from __future__ import annotations

import json
import math
import pickle
import random
from typing import Any

import pytest

from vigil.detectors.base import PointResult
from vigil.detectors.ensemble import Z_CLIP, EnsembleDetector


def record_like_before(detector: EnsembleDetector, value: float, timestamp: float,
                       result: PointResult) -> None:
    """Keep an in-control point in the ensemble's record, as it once did (and as snapshots
    written then hold): the point's value, time and deviation, and its clipped z."""
    if detector.in_control:
        detector._recent.append((value, timestamp, value - result.centre))  # noqa: SLF001
        detector._z.append(max(-Z_CLIP, min(Z_CLIP, result.z)))  # noqa: SLF001


def update_recording(detector: EnsembleDetector, value: float, timestamp: float) -> PointResult:
    """``detector.update``, then the point recorded as the ensemble once recorded every point."""
    result = detector.update(value, timestamp)
    record_like_before(detector, value, timestamp, result)
    return result


def shifty(seed: int, length: int = 3000) -> list[float]:
    """Noise with level shifts (some lasting, some returning), spikes and variance changes."""
    rng = random.Random(seed)
    level, spread, values = 10.0, 1.0, []
    for t in range(length):
        if rng.random() < 0.004:
            level += rng.choice([-1, 1]) * rng.uniform(0.5, 6.0)
        if rng.random() < 0.002:
            spread = rng.choice([0.3, 1.0, 3.0])
        value = rng.gauss(level, spread) + 3.0 * math.sin(t / 50.0)
        if rng.random() < 0.01:
            value += rng.choice([-1, 1]) * rng.uniform(5, 30)
        values.append(value)
    return values


PARAMS: list[dict[str, Any]] = [
    {},
    {"warmup": 20, "clear_after": 10, "rebaseline_after": 40, "arl0": 500.0},
    {"warmup": 20, "clear_after": 5, "rebaseline_after": 30, "arl0": 300.0, "outliers": "exclude"},
    {"warmup": 20, "clear_after": 10, "rebaseline_after": 40, "arl0": 500.0, "season": 600.0},
]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("seed", range(3))
def test_same_results_as_recording_every_point(params: dict[str, Any], seed: int) -> None:
    old, new = EnsembleDetector(**params), EnsembleDetector(**params)
    kinds = set()
    for t, value in enumerate(shifty(seed)):
        expected, got = update_recording(old, value, t * 7.0), new.update(value, t * 7.0)
        assert repr(got) == repr(expected), t
        kinds |= {k for k in ("anomaly", "resolved", "rebaselined") if getattr(got, k)}
        state = new.state_dict()
        if state["episode"] == 0:
            assert state["recent"] == [] and state["z"] == []
        else:
            assert len(state["recent"]) == min(state["episode"], new.rebaseline_after)
    assert kinds == {"anomaly", "resolved", "rebaselined"}  # the stream exercises every path
    new_state, old_state = new.state_dict(), old.state_dict()
    for name in ("recent", "z"):
        new_state.pop(name), old_state.pop(name)
    assert json.dumps(new_state) == json.dumps(old_state)


@pytest.mark.parametrize("params", PARAMS)
def test_old_snapshots_restore_to_the_same_future(params: dict[str, Any]) -> None:
    values = shifty(11)
    old = EnsembleDetector(**params)
    for cut, (t, value) in enumerate(enumerate(values)):
        update_recording(old, value, t * 7.0)
        if cut % 97:
            continue
        snapshot = json.loads(json.dumps(old.state_dict()))
        continued_old = pickle.loads(pickle.dumps(old))  # noqa: S301 - our own object
        restored_new = EnsembleDetector.from_state(snapshot)
        for u in range(t + 1, min(t + 150, len(values))):
            expected = update_recording(continued_old, values[u], u * 7.0)
            assert repr(restored_new.update(values[u], u * 7.0)) == repr(expected), (t, u)
