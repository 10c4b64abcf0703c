"""The SGD learners: scikit-learn's update rule, the options, standardisation, accuracy, drift."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier, SGDRegressor
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vigil.updaters.performance import PerformanceMonitor
from vigil.updaters.sgd import MIN_COUNT, LinearRegressor, LogisticRegressor

NAMES = [f"f{j}" for j in range(8)]
SCALE = np.array([1.0, 10.0, 0.1, 5.0, 1.0, 100.0, 2.0, 0.5])
SHIFT = np.array([0.0, 50.0, -3.0, 10.0, 1.0, 1000.0, -20.0, 0.0])


def rows(X: np.ndarray, names: list[str] = NAMES) -> list[dict[str, float]]:
    return [dict(zip(names, map(float, row), strict=True)) for row in X]


def regression(n: int, seed: int, d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X @ rng.normal(size=d) + 0.3 + rng.normal(scale=0.5, size=n)


# -- scikit-learn's update rule ------------------------------------------------------------

SGD_REGRESSOR_CASES = [
    ({"learning_rate": "constant", "eta0": 0.01, "alpha": 0.001}, {}),
    ({"learning_rate": "invscaling", "eta0": 0.02, "alpha": 0.0001}, {}),
    ({"learning_rate": "constant", "eta0": 0.01, "loss": "huber", "epsilon": 0.3}, {}),
    ({"learning_rate": "invscaling", "eta0": 0.01, "penalty": None}, {"alpha": 0.0}),
]


@pytest.mark.parametrize("backend", ["python", "numpy"])
@pytest.mark.parametrize(("sk", "extra"), SGD_REGRESSOR_CASES)
def test_regressor_matches_partial_fit(backend: str, sk: dict[str, Any], extra: Any) -> None:
    X, y = regression(400, seed=1)
    names = NAMES[:5]
    est = SGDRegressor(**sk)
    ours = {
        key: value for key, value in sk.items() if key in ("learning_rate", "eta0", "alpha")
    }
    if sk.get("loss") == "huber":
        ours.update(loss="huber", epsilon=sk["epsilon"])
    model = LinearRegressor(names, standardize=False, backend=backend, **{**ours, **extra})
    for row, x, target in zip(X, rows(X, names), y, strict=True):
        est.partial_fit(row.reshape(1, -1), [target])
        model.learn_one(x, float(target))
    np.testing.assert_allclose(model.coef, est.coef_, rtol=0, atol=1e-10)
    assert model.intercept == pytest.approx(est.intercept_[0], abs=1e-10)
    assert model.t == est.t_


@pytest.mark.parametrize("backend", ["python", "numpy"])
@pytest.mark.parametrize(
    ("penalty", "l1_ratio"), [("elasticnet", 0.6), ("l1", 1.0)]
)
def test_elastic_net_matches_one_epoch_of_fit(backend: str, penalty: str, l1_ratio: float) -> None:
    """The cumulative L1 penalty runs over the whole stream, as within one epoch of ``fit``.

    (``partial_fit`` restarts it at every call, so on one sample it is a plain truncation.)
    """
    X, y = regression(400, seed=1)
    names = NAMES[:5]
    est = SGDRegressor(
        penalty=penalty, alpha=0.02, l1_ratio=l1_ratio, learning_rate="invscaling",
        eta0=0.02, shuffle=False, max_iter=1, tol=None,
    )
    est.fit(X, y)
    model = LinearRegressor(
        names, standardize=False, alpha=0.02, l1_ratio=l1_ratio, learning_rate="invscaling",
        eta0=0.02, backend=backend,
    )
    for x, target in zip(rows(X, names), y, strict=True):
        model.learn_one(x, float(target))
    np.testing.assert_allclose(model.coef, est.coef_, rtol=0, atol=1e-10)
    assert model.intercept == pytest.approx(est.intercept_[0], abs=1e-10)


@pytest.mark.parametrize("backend", ["python", "numpy"])
@pytest.mark.parametrize(
    "sk",
    [
        {"learning_rate": "optimal", "alpha": 0.001},
        {"learning_rate": "invscaling", "eta0": 0.5, "power_t": 0.5},
        {"learning_rate": "constant", "eta0": 0.1, "alpha": 0.0001},
    ],
)
def test_classifier_matches_partial_fit(backend: str, sk: dict[str, Any]) -> None:
    X, y = regression(400, seed=2)
    labels = (y > 0.3).astype(int)
    names = NAMES[:5]
    est = SGDClassifier(loss="log_loss", **sk)
    model = LogisticRegressor(names, standardize=False, backend=backend, **sk)
    for row, x, label in zip(X, rows(X, names), labels, strict=True):
        est.partial_fit(row.reshape(1, -1), [label], classes=[0, 1])
        model.learn_one(x, int(label))
    np.testing.assert_allclose(model.coef, est.coef_[0], rtol=0, atol=1e-10)
    assert model.intercept == pytest.approx(est.intercept_[0], abs=1e-10)
    probabilities = est.predict_proba(X[:20])[:, 1]
    np.testing.assert_allclose([model.predict_one(x) for x in rows(X[:20], names)], probabilities)


# -- options and backends ------------------------------------------------------------------

OPTIONS = [
    {},
    {"l1_ratio": 0.5, "alpha": 0.01},
    {"learning_rate": "adagrad", "eta0": 0.1},
    {"learning_rate": "adagrad", "eta0": 0.1, "l1_ratio": 1.0, "alpha": 0.001},
    {"max_step": 0.05},
    {"clip_norm": 2.0, "learning_rate": "invscaling", "eta0": 0.05},
    {"loss": "huber", "epsilon": 0.5, "learning_rate": "invscaling", "eta0": 0.05},
]


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("options", OPTIONS)
def test_backends_and_paths_agree(standardize: bool, options: dict[str, Any]) -> None:
    """Python lists (fast and general paths) and numpy give the same model up to rounding."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1500, 6)) * [1, 2, 0.5, 0.1, 1, 1] + [0, 5, -5, 1, 0, 3]
    X[:, 4] = 2.0  # a constant feature
    y = X @ rng.normal(size=6) + 1.0 + rng.normal(size=1500)
    names = NAMES[:6]
    results = []
    for backend, force_general in [("python", {}), ("numpy", {}), ("python", {"clip_norm": 1e300})]:
        params = {"learning_rate": "constant", "eta0": 0.005, **force_general, **options}
        model = LinearRegressor(names, standardize=standardize, backend=backend, **params)
        for i, (x, target) in enumerate(zip(rows(X, names), y, strict=True)):
            if i % 7 == 0:
                del x["f1"]
            model.learn_one(x, float(target))
        results.append(np.array([*model.coef, model.intercept]))
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-9, atol=1e-9)


def test_standardisation_keeps_the_function_while_statistics_move() -> None:
    """Only gradient steps change predictions: a warm start predicts exactly as its source."""
    model = LinearRegressor(NAMES[:3], coef=[2.0, -1.0, 0.5], intercept=4.0, alpha=0.0)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3)) * [1.0, 50.0, 0.01] + [0.0, 1000.0, 3.0]
    probe = {"f0": 0.3, "f1": 990.0, "f2": 3.01}
    expected = 4.0 + 2.0 * 0.3 - 990.0 + 0.5 * 3.01
    for x in rows(X, NAMES[:3]):
        model.learn_one(x, model.predict_one(x))  # zero loss gradient: statistics move only
        assert model.predict_one(probe) == pytest.approx(expected, abs=1e-9)
    params = model.linear_params()
    assert params.coef == pytest.approx((2.0, -1.0, 0.5), abs=1e-9)
    assert params.intercept == pytest.approx(4.0, abs=1e-9)


@pytest.mark.parametrize("backend", ["python", "numpy"])
def test_exported_parameters_predict_as_the_learner(backend: str) -> None:
    X = np.random.default_rng(5).normal(size=(500, 8)) * SCALE + SHIFT
    y = (X - SHIFT) / SCALE @ np.arange(1.0, 9.0) + 3.0
    model = LinearRegressor(NAMES, backend=backend, learning_rate="constant", eta0=0.01)
    for x, target in zip(rows(X), y, strict=True):
        model.learn_one(x, float(target))
    params = model.linear_params()
    assert params.feature_names == tuple(NAMES) and params.n_updates == 500
    for x in rows(X[:10]):
        manual = params.intercept + sum(c * x[n] for c, n in zip(params.coef, NAMES, strict=True))
        assert model.predict_one(x) == pytest.approx(manual, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("backend", ["python", "numpy"])
def test_missing_and_unknown_features(backend: str) -> None:
    standardized = LinearRegressor(["a", "b"], backend=backend, learning_rate="constant")
    plain = LinearRegressor(["a", "b"], backend=backend, standardize=False)
    rng = np.random.default_rng(6)
    for a, b in rng.normal(size=(200, 2)) + [0.0, 5.0]:
        x = {"a": float(a), "b": float(b)}
        standardized.learn_one(x, 2.0 * a + b)
        plain.learn_one(x, 2.0 * a + b)
    mean_b = standardized.state_dict()["mean"][1]
    assert standardized.predict_one({"a": 1.0}) == pytest.approx(
        standardized.predict_one({"a": 1.0, "b": mean_b})
    )
    assert plain.predict_one({"a": 1.0}) == plain.predict_one({"a": 1.0, "b": 0.0})
    assert plain.predict_one({"a": 1.0, "b": 2.0, "zzz": 1e9}) == plain.predict_one(
        {"a": 1.0, "b": 2.0}
    )
    before = standardized.state_dict()
    standardized.learn_one({"a": 0.5}, 1.0)  # a missing feature leaves its mean as it was
    assert standardized.state_dict()["mean"][1] == before["mean"][1]


@pytest.mark.parametrize("backend", ["python", "numpy"])
def test_one_feature_learner_pickles(backend: str) -> None:
    model = LinearRegressor(["a"], backend=backend)
    for i in range(40):
        model.learn_one({"a": float(i % 5)}, float(i % 5) * 2.0)
    copy = pickle.loads(pickle.dumps(model))  # noqa: S301 (our own bytes)
    assert copy.predict_one({"a": 3.0}) == model.predict_one({"a": 3.0})
    copy.learn_one({"a": 1.0}, 2.0)
    model.learn_one({"a": 1.0}, 2.0)
    assert copy.state_dict() == model.state_dict()


def test_coefficients_learn_only_after_min_count() -> None:
    model = LinearRegressor(["a"], learning_rate="constant", eta0=0.1)
    for i in range(MIN_COUNT - 1):
        model.learn_one({"a": float(i % 2)}, 5.0 * (i % 2))
    assert model.coef == [0.0] and model.intercept != 0.0
    model.learn_one({"a": 1.0}, 5.0)
    assert model.coef[0] > 0.0


def test_l1_gives_exact_zeros_for_irrelevant_features() -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(6000, 6))
    y = 3.0 * X[:, 0] - 2.0 * X[:, 1] + rng.normal(scale=0.1, size=6000)
    model = LinearRegressor(
        NAMES[:6], l1_ratio=1.0, alpha=0.05, learning_rate="constant", eta0=0.01
    )
    for x, target in zip(rows(X, NAMES[:6]), y, strict=True):
        model.learn_one(x, float(target))
    assert model.coef[2:] == [0.0, 0.0, 0.0, 0.0]
    assert model.coef[0] > 2.5 and model.coef[1] < -1.5


@pytest.mark.parametrize("backend", ["python", "numpy"])
@pytest.mark.parametrize("option", [{"clip_norm": 1.0}, {"max_step": 0.01}])
def test_clipping_bounds_the_update(backend: str, option: dict[str, float]) -> None:
    eta = 0.01
    model = LinearRegressor(
        NAMES[:3], standardize=False, learning_rate="constant", eta0=eta, alpha=0.0,
        backend=backend, **option,
    )
    bound = option.get("max_step", eta * option.get("clip_norm", 0.0))
    for i in range(50):
        x = {"f0": 1.0, "f1": -2.0, "f2": float(i % 3)}
        before = np.array([*model.coef, model.intercept])
        model.learn_one(x, 1e6 if i % 2 else -1e6)  # outlying labels
        change = np.array([*model.coef, model.intercept]) - before
        assert np.linalg.norm(change) <= bound * (1 + 1e-12)
        assert np.linalg.norm(change) > 0.5 * bound


def test_max_step_set_later_switches_the_update() -> None:
    model = LinearRegressor(["a"], standardize=False, learning_rate="constant", eta0=0.1)
    model.max_step = 0.001
    model.learn_one({"a": 1.0}, 1000.0)
    assert math.hypot(model.coef[0], model.intercept) == pytest.approx(0.001)
    assert model.state_dict()["params"]["max_step"] == 0.001
    with pytest.raises(ValueError, match="max_step"):
        model.max_step = -1.0


def test_classifier_labels_and_outputs() -> None:
    model = LogisticRegressor(["a"], classes=["ham", "spam"], coef=[2.0], intercept=-1.0)
    assert model.decision_function({"a": 1.0}) == 1.0
    assert model.predict_one({"a": 1.0}) == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert model.predict_label({"a": 1.0}) == "spam"
    assert model.predict_label({"a": 0.5}) == "ham"  # log-odds exactly 0: classes[0]
    assert model.encode_label("spam") == 1.0 and model.encode_label("ham") == 0.0
    with pytest.raises(ValueError, match="not one of the classes"):
        model.learn_one({"a": 1.0}, 1)
    assert LogisticRegressor(["a"]).encode_label(True) == 1.0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"feature_names": []}, "feature_names"),
        ({"feature_names": ["a", "a"]}, "unique"),
        ({"feature_names": "ab"}, "list of names"),
        ({"learning_rate": "fast"}, "learning_rate must be one of"),
        ({"learning_rate": "optimal", "alpha": 0.0}, "needs alpha > 0"),
        ({"eta0": 0.0}, "eta0"),
        ({"l1_ratio": 1.5}, "l1_ratio"),
        ({"clip_norm": -1.0}, "clip_norm"),
        ({"loss": "absolute"}, "loss must be one of"),
        ({"coef": [1.0, 2.0]}, "coef has 2 values"),
        ({"coef": [math.nan]}, "coef must be a finite number"),
        ({"fit_intercept": False}, "needs fit_intercept=True"),
        ({"backend": "gpu"}, "backend"),
        ({"t": 0.5}, "t must be"),
    ],
)
def test_bad_parameters_name_the_key(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LinearRegressor(**{"feature_names": ["a"], **params})


# -- accuracy against the batch solution -----------------------------------------------------


def scaled_task(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(n, 8)) * SCALE + SHIFT


def test_regression_reaches_the_batch_solution_in_one_pass() -> None:
    """One pass over 20,000 events, default parameters: test MSE within 5% of OLS."""
    rng = np.random.default_rng(42)
    w = rng.normal(size=8) / SCALE
    X_train, X_test = scaled_task(20_000, rng), scaled_task(5_000, rng)
    y_train = X_train @ w + 3.0 + rng.normal(size=20_000)
    y_test = X_test @ w + 3.0 + rng.normal(size=5_000)
    model = LinearRegressor(NAMES)
    for x, target in zip(rows(X_train), y_train, strict=True):
        model.learn_one(x, float(target))
    batch = LinearRegression().fit(X_train, y_train)
    batch_mse = float(np.mean((batch.predict(X_test) - y_test) ** 2))
    errors = [model.predict_one(x) - t for x, t in zip(rows(X_test), y_test, strict=True)]
    online_mse = float(np.mean(np.square(errors)))
    assert online_mse <= 1.05 * batch_mse, (online_mse, batch_mse)


@pytest.mark.parametrize(
    ("params", "passes"),
    [({"learning_rate": "adagrad", "eta0": 0.1}, 1), ({}, 1)],
    ids=["adagrad-one-pass", "defaults-one-pass"],
)
def test_classification_reaches_the_batch_solution(params: dict[str, Any], passes: int) -> None:
    """Log loss on a held-out set within 5% of (standardised) LogisticRegression's."""
    rng = np.random.default_rng(43)
    w = rng.normal(size=8) * 1.5 / SCALE

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        X = scaled_task(n, rng)
        p = 1.0 / (1.0 + np.exp(-((X - SHIFT) @ w + 0.5)))
        return X, (rng.random(n) < p).astype(int)

    (X_train, y_train), (X_test, y_test) = sample(20_000), sample(5_000)
    model = LogisticRegressor(NAMES, **params)
    train = rows(X_train)
    for _ in range(passes):
        for x, label in zip(train, y_train, strict=True):
            model.learn_one(x, int(label))
    batch = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, y_train)
    batch_loss = log_loss(y_test, batch.predict_proba(X_test)[:, 1])
    online_loss = log_loss(y_test, [model.predict_one(x) for x in rows(X_test)])
    assert online_loss <= 1.05 * batch_loss, (online_loss, batch_loss)


# -- concept change ------------------------------------------------------------------------


def test_concept_change_maintained_recovers_frozen_does_not_and_monitor_alarms() -> None:
    rng = np.random.default_rng(7)
    n, change = 30_000, 15_000
    X = rng.normal(size=(n, 8)) * 2.0 + 1.0
    w_before = rng.normal(size=8)
    w_after = w_before.copy()
    w_after[:4] = -w_after[:4] + rng.normal(scale=0.5, size=4)
    y = np.where(np.arange(n) < change, X @ w_before, X @ w_after) + 2.0 + rng.normal(size=n)
    model = LinearRegressor(NAMES, learning_rate="constant", eta0=0.01)
    monitor = PerformanceMonitor("squared", block=50, chart="cusum", chart_params={"warmup": 20})
    frozen: LinearRegressor | None = None
    maintained_loss, frozen_loss, alarms = [], [], []
    for i, (x, target) in enumerate(zip(rows(X), y, strict=True)):
        if i == change:
            frozen = LinearRegressor.from_state(model.state_dict())  # the served model
        prediction = model.predict_one(x)
        served = prediction if frozen is None else frozen.predict_one(x)
        if monitor.observe(served, prediction, float(target), float(i)).alarm:
            alarms.append(i)
        maintained_loss.append((prediction - target) ** 2)
        frozen_loss.append((served - target) ** 2)
        model.learn_one(x, float(target))
    before = float(np.mean(maintained_loss[change - 5000 : change]))
    after = float(np.mean(maintained_loss[-5000:]))
    frozen_after = float(np.mean(frozen_loss[-5000:]))
    assert after <= 1.10 * before, (after, before)
    assert frozen_after > 10.0 * before
    assert alarms and change <= alarms[0] <= change + 200  # no alarm before, one soon after
