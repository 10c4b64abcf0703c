"""RunningStats against numpy and against itself: update, merge, state round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.detectors.stats import RunningStats

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, max_size=50)


def assert_same_stats(got: RunningStats, want: RunningStats, scale: float) -> None:
    assert got.count == want.count
    assert math.isclose(got.mean, want.mean, rel_tol=1e-9, abs_tol=1e-9 * scale)
    assert math.isclose(got.variance, want.variance, rel_tol=1e-8, abs_tol=1e-8 * scale**2)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("offset", [0.0, 1e3, 1e9])
def test_matches_numpy_even_far_from_zero(seed: int, offset: float) -> None:
    rng = np.random.default_rng(seed)
    data = offset + rng.normal(0.0, 1.0 + seed, size=10_000)
    stats = RunningStats.of(data.tolist())
    assert stats.count == data.size
    assert math.isclose(stats.mean, float(np.mean(data)), rel_tol=1e-12, abs_tol=1e-9)
    assert math.isclose(stats.variance, float(np.var(data, ddof=1)), rel_tol=1e-6)
    assert math.isclose(stats.std, float(np.std(data, ddof=1)), rel_tol=1e-6)


def test_variance_is_zero_below_two_points() -> None:
    assert RunningStats().variance == 0.0
    assert RunningStats().std == 0.0
    assert RunningStats.of([5.0]).variance == 0.0
    assert RunningStats.of([5.0, 5.0, 5.0]).variance == 0.0


@settings(database=None)
@given(samples, samples)
def test_merge_equals_stats_of_concatenation(a: list[float], b: list[float]) -> None:
    left, right = RunningStats.of(a), RunningStats.of(b)
    before = (left.state_dict(), right.state_dict())
    scale = max((abs(x) for x in a + b), default=1.0) + 1.0
    assert_same_stats(left.merge(right), RunningStats.of(a + b), scale)
    assert (left.state_dict(), right.state_dict()) == before


@settings(database=None)
@given(samples)
def test_merge_with_empty_is_identity(a: list[float]) -> None:
    stats = RunningStats.of(a)
    assert stats.merge(RunningStats()).state_dict() == stats.state_dict()
    assert RunningStats().merge(stats).state_dict() == stats.state_dict()
    assert stats.merge(RunningStats()) is not stats


@settings(database=None)
@given(samples, finite)
def test_state_round_trip_is_exact(a: list[float], nxt: float) -> None:
    stats = RunningStats.of(a)
    restored = RunningStats.from_state(json.loads(json.dumps(stats.state_dict())))
    assert restored.state_dict() == stats.state_dict()
    stats.update(nxt)
    restored.update(nxt)
    assert restored.state_dict() == stats.state_dict()


@pytest.mark.parametrize(
    "state", [{"count": -1, "mean": 0.0, "m2": 0.0}, {"count": 2, "mean": 0.0, "m2": -1.0}]
)
def test_from_state_rejects_impossible_state(state: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RunningStats state"):
        RunningStats.from_state(state)
