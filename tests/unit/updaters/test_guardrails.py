"""Guardrails: skipping, step caps, rollback on a poisoned stream, re-baselining, state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from updaters import GuardedLearner, RiverLearner, restore_learner
from updaters.sgd import LinearRegressor, LogisticRegressor

NAMES = ["f0", "f1", "f2", "f3"]
W = np.array([1.0, -2.0, 0.5, 3.0])


def clean_stream(n: int, seed: int) -> tuple[list[dict[str, float]], np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    rows = [dict(zip(NAMES, map(float, row), strict=True)) for row in X]
    return rows, X @ W + 1.0 + rng.normal(scale=0.5, size=n)


def guarded(**kwargs: object) -> GuardedLearner:
    learner = LinearRegressor(NAMES, learning_rate="constant", eta0=0.01)
    settings = {"block": 50, "snapshot_every": 1000, "chart_params": {"warmup": 20}, **kwargs}
    return GuardedLearner(learner, **settings)  # type: ignore[arg-type]


def test_rolls_back_on_a_poisoned_stream() -> None:
    rows, y = clean_stream(11_000, seed=3)
    poisoned = y.copy()
    poisoned[8000:8400] = -5.0 * y[8000:8400] + 20.0  # labels turned against the model
    guard = guarded()
    plain = LinearRegressor(NAMES, learning_rate="constant", eta0=0.01)
    events = []
    guarded_error, plain_error = [], []
    for i, (x, label) in enumerate(zip(rows, poisoned, strict=True)):
        result = guard.update(x, float(label), float(i))
        if result.event is not None:
            events.append((i, result.event))
        guarded_error.append((guard.predict_one(x) - y[i]) ** 2)
        plain_error.append((plain.predict_one(x) - y[i]) ** 2)
        plain.learn_one(x, float(label))
    assert events and all(8000 <= i < 8450 for i, _ in events)
    first = events[0][1]
    assert first.kind == "rollback" and first.loss > 10 * first.baseline
    assert first.restored_n_updates <= 8000 - 1000  # a snapshot confirmed by a clean span
    assert guard.rollbacks == len(events) and guard.rebaselines == 0
    before = np.mean(guarded_error[7000:8000])
    after_guarded = np.mean(guarded_error[8400:8600])
    after_plain = np.mean(plain_error[8400:8600])
    assert after_guarded < 2.0 * before
    assert after_plain > 50.0 * before
    np.testing.assert_allclose(guard.learner.coef, W, atol=0.1)  # type: ignore[attr-defined]


def test_a_lasting_rise_is_accepted_after_max_rollbacks() -> None:
    """A concept change is not poison: after max_rollbacks the chart re-baselines."""
    rows, y = clean_stream(9000, seed=4)
    y[5000:] = y[5000:] * -1.0 + 5.0
    guard = guarded(max_rollbacks=3)
    kinds = []
    for i, (x, label) in enumerate(zip(rows, y, strict=True)):
        event = guard.update(x, float(label), float(i)).event
        if event is not None:
            kinds.append(event.kind)
    assert kinds[:4] == ["rollback", "rollback", "rollback", "rebaseline"]
    errors = [(guard.predict_one(x) - t) ** 2 for x, t in zip(rows[-500:], y[-500:], strict=True)]
    assert np.mean(errors) < 1.0  # it learned the new concept


def test_skips_invalid_and_anomalous_events() -> None:
    guard = guarded()
    x = {"f0": 1.0, "f1": 0.0, "f2": 0.0, "f3": 0.0}
    assert guard.update({**x, "f1": math.nan}, 1.0, 0.0).skipped == "invalid"
    assert guard.update({**x, "f1": "text"}, 1.0, 0.0).skipped == "invalid"  # type: ignore[dict-item]
    assert guard.update(x, math.inf, 0.0).skipped == "invalid"
    assert guard.update({**x, "other": math.nan}, 1.0, 0.0).learned  # not a learner feature
    result = guard.update(x, 100.0, 1.0, anomalous=True)
    assert (result.skipped, result.learned, result.loss) == ("anomalous", False, pytest.approx(
        (result.prediction - 100.0) ** 2
    ))
    assert guard.learner.n_updates == 1  # type: ignore[attr-defined]
    assert (guard.skipped_invalid, guard.skipped_anomalous) == (3, 1)
    classifier = GuardedLearner(LogisticRegressor(["a"], classes=["n", "y"]))
    assert classifier.loss == "log"
    assert classifier.update({"a": 1.0}, "maybe", 0.0).skipped == "invalid"


def test_caps_the_step() -> None:
    learner = LinearRegressor(["a"], standardize=False, learning_rate="constant", eta0=0.5)
    guard = GuardedLearner(learner, max_step=0.01)
    guard.update({"a": 1.0}, 1e9, 0.0)
    assert math.hypot(guard.learner.coef[0], guard.learner.intercept) == pytest.approx(0.01)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="cannot cap its step"):
        GuardedLearner(RiverLearner("linear_model.LinearRegression"), max_step=0.1)


def test_state_round_trip_continues_exactly() -> None:
    rows, y = clean_stream(3000, seed=5)
    y[2000:2200] *= -4.0
    a = guarded(snapshot_every=300, chart_params={"warmup": 5})
    for i in range(1500):
        a.update(rows[i], float(y[i]), float(i))
    b = GuardedLearner.from_state(json.loads(json.dumps(a.state_dict())),
                                  lambda state: restore_learner("sgd_regressor", state))
    for i in range(1500, 3000):
        ra = a.update(rows[i], float(y[i]), float(i))
        rb = b.update(rows[i], float(y[i]), float(i))
        assert ra == rb
    assert a.rollbacks > 0 and a.state_dict() == b.state_dict()
