"""River models behind the learner protocol."""

from __future__ import annotations

import base64
import json
import pickle

import pytest
from river import linear_model, preprocessing

from vigil.updaters import RiverLearner, build_learner, restore_learner


def test_by_name_from_config_and_by_instance() -> None:
    by_name = build_learner(
        "river", {"model": "linear_model.LinearRegression", "params": {"l2": 0.01}}
    )
    assert isinstance(by_name, RiverLearner) and by_name.model.l2 == 0.01
    pipeline = RiverLearner(preprocessing.StandardScaler() | linear_model.LogisticRegression())
    assert pipeline.kind == "classifier"
    with pytest.raises(ValueError, match="river has no estimator"):
        RiverLearner("linear_model.Nope")
    with pytest.raises(ValueError, match="a name like"):
        RiverLearner("os.system")
    with pytest.raises(ValueError, match="bad parameters"):
        RiverLearner("linear_model.LinearRegression", {"nope": 1})
    with pytest.raises(ValueError, match="neither a river regressor nor a classifier"):
        RiverLearner(preprocessing.StandardScaler())
    with pytest.raises(ValueError, match="params are for a model given by name"):
        RiverLearner(linear_model.LinearRegression(), {"l2": 1.0})


def test_classifier_probability_of_the_positive_class() -> None:
    learner = RiverLearner("linear_model.LogisticRegression", classes=["ok", "fraud"])
    assert learner.predict_one({"a": 1.0}) == 0.5  # nothing learned yet
    for i in range(500):
        a = (i % 9) - 4.0
        learner.learn_one({"a": a}, "fraud" if a > 0 else "ok")
    assert learner.predict_one({"a": 4.0}) > 0.8 > 0.2 > learner.predict_one({"a": -4.0})
    assert learner.encode_label("fraud") == 1.0
    with pytest.raises(ValueError, match="not one of the classes"):
        learner.learn_one({"a": 1.0}, "maybe")
    trees = RiverLearner("tree.HoeffdingTreeClassifier")  # default classes (False, True)
    for i in range(300):
        trees.learn_one({"a": float(i % 2)}, i % 2)  # 0/1 equal False/True
    assert set(trees.model.predict_proba_one({"a": 1.0})) == {False, True}
    assert trees.predict_one({"a": 1.0}) > 0.9


def test_state_is_json_and_never_holds_the_model() -> None:
    learner = RiverLearner(preprocessing.StandardScaler() | linear_model.LinearRegression())
    for i in range(100):
        learner.learn_one({"a": float(i % 7), "b": float(i % 3)}, float(i % 7) * 2.0)
    state = json.loads(json.dumps(learner.state_dict()))
    assert state == {"classes": [False, True], "n_updates": 100}
    with pytest.raises(ValueError, match="not restored from a snapshot"):
        RiverLearner.from_state(state)
    params = {"model": "linear_model.LinearRegression"}
    restored = restore_learner("river", state, params)
    assert restored.n_updates == 100  # type: ignore[attr-defined]
    assert restored.predict_one({"a": 3.0, "b": 1.0}) == 0.0  # a fresh model: nothing learned
    with pytest.raises(ValueError, match="n_updates"):
        restore_learner("river", {"n_updates": "x"}, params)


class _Payload:
    """Unpickling this calls ``_ran.append``: proof that code from a snapshot ran."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_mark, ("ran",))


_ran: list[str] = []


def _mark(what: str) -> None:
    _ran.append(what)


def test_a_pickled_model_in_a_state_is_never_loaded() -> None:
    blob = base64.b64encode(pickle.dumps(_Payload())).decode("ascii")
    hostile = {"model": blob, "classes": [False, True], "n_updates": 3}
    learner = restore_learner("river", hostile, {"model": "linear_model.LinearRegression"})
    assert _ran == [] and learner.n_updates == 3  # type: ignore[attr-defined]
