"""Warm start from scikit-learn and export back: the predictions survive both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from jsonschema import Draft202012Validator
from scipy.special import expit
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)

from vigil.updaters import LinearParams
from vigil.updaters.sgd import LinearRegressor, LogisticRegressor
from vigil.updaters.sklearn_io import from_joblib, from_sklearn, load_estimator, to_sklearn

NAMES = ["load", "cpu", "queue"]


def data(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [10.0, 1.0, 3.0] + [100.0, 0.0, 5.0]
    y = X @ [0.2, -1.0, 0.5] + 4.0 + rng.normal(scale=0.5, size=n)
    return X, y, (y > np.median(y)).astype(int)


def as_rows(X: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(NAMES, map(float, row), strict=True)) for row in X]


def fitted() -> list[tuple[Any, str]]:
    X, y, labels = data()
    words = np.where(labels == 1, "high", "low")
    return [
        (SGDRegressor(eta0=0.001).fit((X - X.mean(0)) / X.std(0), y), "regression"),
        (
            SGDRegressor(loss="huber", epsilon=0.5, learning_rate="constant").fit(X / 100, y),
            "regression",
        ),
        (LinearRegression().fit(X, y), "regression"),
        (SGDClassifier(loss="log_loss").fit(X / 100, labels), "labels"),
        (SGDClassifier().fit(X / 100, words), "words"),
        (LogisticRegression().fit(X, words), "words"),
    ]


CASES = fitted()


def case_id(value: Any) -> str:
    return value if isinstance(value, str) else type(value).__name__


@pytest.mark.parametrize(("estimator", "target"), CASES, ids=case_id)
def test_round_trip_gives_identical_predictions(estimator: Any, target: str) -> None:
    X, _, _ = data(seed=1, n=50)
    learner = from_sklearn(estimator, NAMES)
    exported = to_sklearn(learner)
    assert type(exported) is type(estimator)
    assert exported.get_params() == estimator.get_params()
    assert np.array_equal(exported.predict(X), estimator.predict(X))
    learner_predictions = [learner.predict_one(x) for x in as_rows(X)]
    if isinstance(learner, LogisticRegressor):
        np.testing.assert_array_equal(exported.classes_, estimator.classes_)
        decision = estimator.decision_function(X)
        np.testing.assert_allclose(learner_predictions, expit(decision))
        assert [learner.predict_label(x) for x in as_rows(X)] == estimator.predict(X).tolist()
    else:
        np.testing.assert_allclose(learner_predictions, estimator.predict(X), rtol=1e-12)


def case_id(value: Any) -> str:
    return value if isinstance(value, str) else type(value).__name__


@pytest.mark.parametrize(("estimator", "target"), CASES, ids=case_id)
def test_a_learner_predicts_as_its_export_after_learning(estimator: Any, target: str) -> None:
    X, y, labels = data(seed=2, n=300)
    labels_out: Any = {"regression": y, "labels": labels}.get(target)
    if labels_out is None:
        labels_out = np.where(labels == 1, "high", "low")
    learner = from_sklearn(estimator, NAMES)
    for x, label in zip(as_rows(X), labels_out.tolist(), strict=True):
        learner.learn_one(x, label)
    exported = to_sklearn(json_round_trip(learner))
    if isinstance(learner, LogisticRegressor):
        np.testing.assert_allclose(
            [learner.predict_one(x) for x in as_rows(X[:30])],
            expit(exported.decision_function(X[:30])),
            rtol=1e-12,
            atol=1e-300,
        )
        if getattr(exported, "loss", "log_loss") == "log_loss":
            np.testing.assert_allclose(
                [learner.predict_one(x) for x in as_rows(X[:30])],
                exported.predict_proba(X[:30])[:, 1],
                rtol=1e-12,
                atol=1e-300,
            )
    else:
        np.testing.assert_allclose(
            [learner.predict_one(x) for x in as_rows(X[:30])], exported.predict(X[:30]), rtol=1e-12
        )


def json_round_trip(learner: LinearRegressor | LogisticRegressor) -> Any:
    return type(learner).from_state(json.loads(json.dumps(learner.state_dict())))


def test_warm_start_continues_as_partial_fit_would() -> None:
    """SGD settings and the clock t_ carry over: learning goes on exactly as partial_fit."""
    X, y, _ = data(seed=3)
    Z = (X - X.mean(0)) / X.std(0)
    estimator = SGDRegressor(learning_rate="invscaling", eta0=0.02, alpha=0.001)
    estimator.fit(Z[:200], y[:200])
    learner = from_sklearn(estimator, NAMES)
    assert learner.t == estimator.t_ and not learner.standardize
    for row, x, target in zip(Z[200:], as_rows(Z[200:]), y[200:], strict=True):
        estimator.partial_fit(row.reshape(1, -1), [target])
        learner.learn_one(x, float(target))
    np.testing.assert_allclose(learner.coef, estimator.coef_, atol=1e-10)
    exported = to_sklearn(learner)
    assert exported.t_ == estimator.t_
    exported.partial_fit(Z[:5], y[:5])  # the serving side can go on learning too


def test_feature_names_in_are_checked_and_kept() -> None:
    X, y, _ = data()
    estimator = LinearRegression().fit(X, y)
    estimator.feature_names_in_ = np.array(NAMES, dtype=object)  # as if fitted on a DataFrame
    learner = from_sklearn(estimator)
    assert learner.feature_names == tuple(NAMES)
    exported = to_sklearn(learner)
    assert exported.feature_names_in_.tolist() == NAMES
    with pytest.raises(ValueError, match="differ from the estimator's feature_names_in_"):
        from_sklearn(estimator, ["a", "b", "c"])
    plain = LinearRegression().fit(X, y)
    with pytest.raises(ValueError, match="pass feature_names"):
        from_sklearn(plain)
    with pytest.raises(ValueError, match="2 feature names for an estimator with 3"):
        from_sklearn(plain, ["a", "b"])
    assert not hasattr(to_sklearn(from_sklearn(plain, NAMES)), "feature_names_in_")


def test_fresh_learners_export_as_sgd_estimators() -> None:
    X, y, labels = data(seed=4, n=200)
    regressor = LinearRegressor(NAMES, loss="huber", epsilon=0.7)
    classifier = LogisticRegressor(NAMES, classes=["no", "yes"])
    for x, target, label in zip(as_rows(X), y, labels, strict=True):
        regressor.learn_one(x, float(target))
        classifier.learn_one(x, "yes" if label else "no")
    est = to_sklearn(regressor)
    assert (type(est).__name__, est.loss, est.epsilon) == ("SGDRegressor", "huber", 0.7)
    np.testing.assert_allclose(
        est.predict(X[:5]), [regressor.predict_one(x) for x in as_rows(X[:5])]
    )
    assert type(to_sklearn(regressor, "LinearRegression")).__name__ == "LinearRegression"
    clf = to_sklearn(classifier)
    assert clf.loss == "log_loss" and clf.classes_.tolist() == ["no", "yes"]
    np.testing.assert_allclose(
        clf.predict_proba(X[:5])[:, 1], [classifier.predict_one(x) for x in as_rows(X[:5])]
    )
    assert type(to_sklearn(classifier, "LogisticRegression")).__name__ == "LogisticRegression"
    with pytest.raises(ValueError, match="a classifier exports as one of"):
        to_sklearn(classifier, "SGDRegressor")


SCHEMA = Path(__file__).resolve().parents[3] / "deploy" / "schemas" / "model-update.schema.json"


def model_update(learner: LinearRegressor | LogisticRegressor) -> dict[str, Any]:
    """A model-update message as the runtime builds it: the learner's fields plus its own."""
    return {
        "model": "m", "version": 3, "loss": 0.1, "timestamp": "2026-01-01T00:00:00Z",
        **learner.linear_params().to_dict(),
    }


def test_model_update_fields_validate_against_the_schema() -> None:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    regressor = LinearRegressor(NAMES, coef=[1.0, 2.0, 3.0])
    classifier = LogisticRegressor(NAMES, classes=["no", "yes"])
    for learner in (regressor, classifier):
        assert [e.message for e in validator.iter_errors(model_update(learner))] == []


def test_export_from_a_published_model_update() -> None:
    """What ``vigil export-model`` does: a model-update message to a fitted estimator."""
    learner = LinearRegressor(NAMES, coef=[1.0, 2.0, 3.0], intercept=-1.0)
    message = json.loads(json.dumps(model_update(learner)))
    params = LinearParams.from_dict(message)
    est = to_sklearn(params, "LinearRegression")
    assert est.predict([[1.0, 1.0, 1.0]]).tolist() == [5.0]
    assert to_sklearn(params).t_ == 1.0
    with pytest.raises(ValueError, match="coef keys"):
        LinearParams.from_dict({**message, "coef": {"load": 1.0}})
    classifier = LogisticRegressor(NAMES, classes=["no", "yes"], coef=[1.0, 0.0, 0.0])
    message = json.loads(json.dumps(model_update(classifier)))
    assert to_sklearn(LinearParams.from_dict(message)).classes_.tolist() == [0, 1]
    exported = to_sklearn(LinearParams.from_dict(message, classes=["no", "yes"]))
    assert exported.predict([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]).tolist() == ["yes", "no"]


def test_joblib_file_from_an_explicit_path(tmp_path: Path) -> None:
    X, y, _ = data()
    path = tmp_path / "model.joblib"
    joblib.dump(LinearRegression().fit(X, y), path)
    learner = from_joblib(path, NAMES)
    expected = load_estimator(path).predict(X[:1])[0]
    assert learner.predict_one(as_rows(X)[0]) == pytest.approx(expected)
    joblib.dump({"not": "a model"}, tmp_path / "other.joblib")
    with pytest.raises(ValueError, match="cannot warm-start from dict"):
        load_estimator(tmp_path / "other.joblib")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda X, y, c: Ridge().fit(X, y), "cannot warm-start from Ridge"),
        (lambda X, y, c: LinearRegression(), "not fitted"),
        (lambda X, y, c: LinearRegression().fit(X, np.c_[y, y]), "single-target"),
        (
            lambda X, y, c: LogisticRegression().fit(
                (X - X.mean(0)) / X.std(0), np.digitize(y, np.quantile(y, [0.3, 0.6]))
            ),
            "binary",
        ),
        (
            lambda X, y, c: SGDRegressor(loss="epsilon_insensitive").fit(X / 100, y),
            "not supported",
        ),
        (
            lambda X, y, c: SGDClassifier(learning_rate="pa1", eta0=0.1).fit(X / 100, c),
            "per-event",
        ),
    ],
)
def test_unsupported_estimators_are_refused(make: Any, match: str) -> None:
    X, y, labels = data()
    with pytest.raises(ValueError, match=match):
        from_sklearn(make(X, y, labels), NAMES)


def test_overrides_and_hyperparameters() -> None:
    X, y, labels = data()
    sgd = SGDRegressor(penalty="elasticnet", l1_ratio=0.3, alpha=0.01, learning_rate="adaptive")
    learner = from_sklearn(sgd.fit(X / 100, y), NAMES, standardize=True, clip_norm=3.0)
    assert (learner.l1_ratio, learner.alpha, learner.learning_rate) == (0.3, 0.01, "constant")
    assert learner.standardize and learner.clip_norm == 3.0
    assert from_sklearn(LinearRegression().fit(X, y), NAMES).alpha == 0.0
    no_intercept = from_sklearn(LinearRegression(fit_intercept=False).fit(X, y), NAMES)
    assert not no_intercept.fit_intercept and not no_intercept.standardize
    unpenalised = SGDClassifier(penalty=None, learning_rate="constant", eta0=0.01)
    classifier = from_sklearn(unpenalised.fit(X / 100, labels), NAMES)
    assert classifier.alpha == 0.0 and classifier.classes == (0, 1)
