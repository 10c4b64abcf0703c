"""The contract every registered learner keeps, checked over all of them by name.

A learner registered anywhere in the package is covered: each is built with the variants
below (defaults first) and must round-trip its state through JSON and pickle with
identical future predictions and updates, refuse bad input without changing, and learn
something on a synthetic task.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
from typing import Any

import numpy as np
import pytest
from river import linear_model, preprocessing

from vigil import updaters
from vigil.updaters import Learner, LinearLearner, build_learner, learner_names, restore_learner

FEATURES = ["f0", "f1", "f2"]
EVENTS = 400
CUT = 150

VARIANTS: dict[str, list[dict[str, Any]]] = {
    "sgd_regressor": [
        {},
        {"standardize": False, "learning_rate": "constant"},
        {"loss": "huber", "epsilon": 0.5, "learning_rate": "adagrad", "eta0": 0.5},
        {"l1_ratio": 0.5, "alpha": 0.01, "clip_norm": 5.0, "max_step": 0.5},
        {"backend": "numpy", "learning_rate": "optimal", "alpha": 0.01},
        {"backend": "numpy", "learning_rate": "adagrad", "eta0": 0.5, "l1_ratio": 0.2},
    ],
    "sgd_classifier": [
        {},
        {"classes": ["no", "yes"], "learning_rate": "adagrad", "eta0": 0.1},
        {"backend": "numpy", "standardize": False, "learning_rate": "optimal"},
    ],
    "river": [
        {"model": preprocessing.StandardScaler() | linear_model.LinearRegression()},
        {"model": "linear_model.LogisticRegression"},
        {"model": "tree.HoeffdingTreeRegressor"},
    ],
}
"""Parameters of each learner; every registered name must appear here."""

CASES = [(name, params) for name, variants in VARIANTS.items() for params in variants]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, params = case
    return name + "".join(f"-{k}={str(v).splitlines()[0]}" for k, v in params.items())


def test_every_learner_has_variants() -> None:
    assert set(VARIANTS) == set(learner_names())


def make(name: str, params: dict[str, Any]) -> Learner:
    params = copy.deepcopy(params)  # a river model given as an instance is not shared
    if name.startswith("sgd"):
        params = {"feature_names": FEATURES, **params}
    return build_learner(name, params)


def stream(learner: Learner, seed: int = 5) -> tuple[list[dict[str, float]], list[Any]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(EVENTS, 3)) * [1.0, 3.0, 0.5] + [0.0, 10.0, -1.0]
    raw = X @ [1.0, -0.5, 2.0] + 0.3 + rng.normal(scale=0.3, size=EVENTS)
    events = [dict(zip(FEATURES, map(float, row), strict=True)) for row in X]
    events[7] = {"f0": 1.0, "f2": 0.5, "unknown": 9.0}  # one missing, one unknown feature
    if learner.kind == "regressor":
        return events, [float(v) for v in raw]
    classes = getattr(learner, "classes", (0, 1))
    return events, [classes[int(v > 5.0)] for v in raw - raw.mean() + 5.0]


def run(learner: Learner, events: list[dict[str, float]], labels: list[Any]) -> list[float]:
    predictions = []
    for x, y in zip(events, labels, strict=True):
        predictions.append(learner.predict_one(x))
        learner.learn_one(x, y)
    return predictions


@pytest.fixture(params=CASES, ids=[case_id(c) for c in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param  # type: ignore[no-any-return]


def test_state_round_trip_gives_identical_future(case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    learner = make(name, params)
    events, labels = stream(learner)
    run(learner, events[:CUT], labels[:CUT])
    state = json.loads(json.dumps(learner.state_dict(), allow_nan=False))
    from_json = restore_learner(name, state, copy.deepcopy(params))
    from_pickle = pickle.loads(pickle.dumps(learner))  # noqa: S301 (our own bytes)
    if hasattr(type(learner), "restored"):  # the model is not in the state: it restarts
        assert from_json.state_dict() == learner.state_dict()  # the counters came back
        fresh = make(name, params)
        assert run(from_json, events[CUT:], labels[CUT:]) == run(fresh, events[CUT:],
                                                                 labels[CUT:])
        return
    expected = run(learner, events[CUT:], labels[CUT:])
    assert run(from_json, events[CUT:], labels[CUT:]) == expected
    assert run(from_pickle, events[CUT:], labels[CUT:]) == expected
    assert from_json.state_dict() == learner.state_dict()


def test_fresh_state_round_trip(case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    learner = make(name, params)
    restored = restore_learner(name, json.loads(json.dumps(learner.state_dict())),
                               copy.deepcopy(params))
    events, labels = stream(learner)
    assert run(restored, events[:50], labels[:50]) == run(learner, events[:50], labels[:50])


def test_learns_without_nan(case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    learner = make(name, params)
    events, labels = stream(learner)
    predictions = run(learner, events, labels)
    assert all(math.isfinite(p) for p in predictions)
    targets = [learner.encode_label(y) for y in labels]
    early = np.mean([(p - t) ** 2 for p, t in zip(predictions[:50], targets[:50], strict=True)])
    late = np.mean([(p - t) ** 2 for p, t in zip(predictions[-100:], targets[-100:], strict=True)])
    assert late < early
    if learner.kind == "classifier":
        assert all(0.0 <= p <= 1.0 for p in predictions)


def test_bad_input_is_refused_without_change(case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    learner = make(name, params)
    events, labels = stream(learner)
    run(learner, events[:60], labels[:60])
    before = json.dumps(learner.state_dict())
    bad_label = math.nan if learner.kind == "regressor" else "neither"
    with pytest.raises(ValueError):
        learner.learn_one(events[60], bad_label)
    with pytest.raises(ValueError):
        learner.learn_one({**events[60], "f1": math.inf}, labels[60])
    with pytest.raises(ValueError):
        learner.learn_one({**events[60], "f1": None}, labels[60])  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        learner.encode_label(bad_label)
    assert json.dumps(learner.state_dict()) == before


def test_learners_satisfy_the_protocols(case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    learner = make(name, params)
    assert isinstance(learner, Learner) and learner.name == name
    assert learner.kind in ("regressor", "classifier")
    if name.startswith("sgd"):
        assert isinstance(learner, LinearLearner)
        assert learner.linear_params().feature_names == tuple(FEATURES)


def test_registry_names_and_errors() -> None:
    assert learner_names() == ["river", "sgd_classifier", "sgd_regressor"]
    with pytest.raises(ValueError, match="bad parameters for learner 'sgd_regressor'"):
        build_learner("sgd_regressor", {"feature_names": ["a"], "nope": 1})
    with pytest.raises(ValueError, match="unknown learner"):
        restore_learner("nope", {})


def test_public_surface() -> None:
    exported = {name for name in dir(updaters) if not name.startswith("_")}
    assert set(updaters.__all__) <= exported
    assert sorted(updaters.__all__) == updaters.__all__
    for name in updaters.__all__:
        assert getattr(updaters, name).__module__.startswith("vigil.updaters.")
