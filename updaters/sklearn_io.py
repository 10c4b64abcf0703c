"""Warm start from fitted scikit-learn linear models, and export back to them.

Supported: ``SGDRegressor``, ``LinearRegression`` (one target), ``SGDClassifier`` and
``LogisticRegression`` (binary). ``from_sklearn`` builds a learner that predicts exactly as
the estimator does; ``to_sklearn`` builds a fitted estimator of the same type (or another
supported one) from a learner or from published :class:`~updaters.base.LinearParams`, with
``coef_``, ``intercept_``, ``n_features_in_`` and, as the source had them,
``feature_names_in_``, ``classes_`` and ``t_`` set, so ``predict`` (and ``predict_proba``
for the log loss) works on the serving side.

How hyperparameters carry over when the learner is built (keyword ``params`` override any):

=====================  =================================================================
source                 learner
=====================  =================================================================
``SGDRegressor``       same loss (``squared_error``/``huber``+``epsilon``), ``alpha``,
                       penalty (``l1_ratio``), ``learning_rate``, ``eta0``, ``power_t``,
                       ``fit_intercept`` and clock ``t = t_``; ``standardize=False`` — so
                       learning continues as ``partial_fit`` would. ``"adaptive"`` (an
                       epoch schedule) continues as ``"constant"``.
``SGDClassifier``      the same, learning with the log loss whatever its ``loss`` was (a
                       hinge-trained model's margins become log-odds); exported back with
                       its own ``loss``.
``LinearRegression``   ``alpha=0``, defaults otherwise (``standardize=True``).
``LogisticRegression`` defaults (``standardize=True``); ``C`` has no per-event equivalent.
=====================  =================================================================

Security: a joblib (pickle) file runs code when it is loaded. :func:`load_estimator` and
:func:`from_joblib` load only the path they are given, which must come from the operator's
configuration — never from an event, a message or anything else that arrives on the wire.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vigil.updaters.base import Label, LinearParams, check_feature_names
from vigil.updaters.sgd import LinearRegressor, LogisticRegressor

REGRESSORS = LinearRegressor.estimators
CLASSIFIERS = LogisticRegressor.estimators
SUPPORTED = REGRESSORS + CLASSIFIERS

_SGD_LOSSES = {"squared_error": "squared", "huber": "huber"}
_SGD_RATES = {"constant": "constant", "invscaling": "invscaling", "optimal": "optimal",
              "adaptive": "constant"}


def _estimator_name(estimator: Any) -> str:
    from sklearn import linear_model

    for name in SUPPORTED:
        if type(estimator) is getattr(linear_model, name):
            return name
    raise ValueError(
        f"cannot warm-start from {type(estimator).__name__}; supported: {', '.join(SUPPORTED)}"
    )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar it holds; other values unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor parameters that survive JSON (others fall back to their defaults)."""
    kept: dict[str, Any] = {}
    for key, value in params.items():
        value = _plain(value)
        if value is None or isinstance(value, bool | int | str):
            kept[key] = value
        elif isinstance(value, float) and math.isfinite(value):
            kept[key] = value
    return kept


def _names(estimator: Any, feature_names: Sequence[str] | None, n: int) -> tuple[str, ...]:
    fitted = getattr(estimator, "feature_names_in_", None)
    if feature_names is None:
        if fitted is None:
            raise ValueError(
                "the estimator was fitted without feature names: pass feature_names=[...] "
                f"naming its {n} input columns in order"
            )
        feature_names = [str(name) for name in fitted]
    names = check_feature_names(feature_names)
    if fitted is not None and list(names) != [str(name) for name in fitted]:
        raise ValueError(
            f"feature_names {list(names)!r} differ from the estimator's feature_names_in_ "
            f"{[str(v) for v in fitted]!r}"
        )
    if len(names) != n:
        raise ValueError(f"{len(names)} feature names for an estimator with {n} coefficients")
    return names


def from_sklearn(
    estimator: Any, feature_names: Sequence[str] | None = None, **params: Any
) -> LinearRegressor | LogisticRegressor:
    """A learner that starts from a fitted estimator's coefficients (and SGD settings).

    ``feature_names`` name the estimator's input columns in order (default: its
    ``feature_names_in_``). ``params`` are learner parameters that override the ones taken
    from the estimator.

    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> est = LinearRegression().fit(np.array([[0.0], [1.0], [2.0]]), [1.0, 3.0, 5.0])
    >>> learner = from_sklearn(est, ["load"])
    >>> round(learner.predict_one({"load": 10.0}), 6)
    21.0
    """
    name = _estimator_name(estimator)
    if not hasattr(estimator, "coef_"):
        raise ValueError(f"the {name} is not fitted: fit it before warm-starting from it")
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    if coef.ndim == 2 and coef.shape[0] == 1:
        coef = coef[0]
    if coef.ndim != 1:
        what = "binary classifiers" if name in CLASSIFIERS else "single-target regressors"
        raise ValueError(f"only {what} are supported; this {name} has coef_ {coef.shape}")
    intercept = np.ravel(np.asarray(estimator.intercept_, dtype=np.float64))
    if intercept.size > 1:
        raise ValueError(f"expected one intercept, got {intercept.size}")
    names = _names(estimator, feature_names, coef.shape[0])
    fit_intercept = bool(getattr(estimator, "fit_intercept", True))
    settings: dict[str, Any] = {
        "coef": coef.tolist(),
        "intercept": float(intercept[0]) if intercept.size else 0.0,
        "fit_intercept": fit_intercept,
    }
    if name.startswith("SGD"):
        settings.update(_sgd_settings(estimator, name))
    elif name == "LinearRegression":
        settings.update(alpha=0.0, standardize=fit_intercept)
    else:
        settings.update(standardize=fit_intercept)
    settings["export_as"] = {
        "estimator": name,
        "params": _json_params(estimator.get_params(deep=False)),
        "feature_names_in": hasattr(estimator, "feature_names_in_"),
    }
    settings.update(params)
    if name in REGRESSORS:
        return LinearRegressor(names, **settings)
    classes = [_plain(c) for c in estimator.classes_]
    if len(classes) != 2:
        raise ValueError(f"only binary classifiers are supported; classes_ are {classes!r}")
    settings.setdefault("classes", classes)
    return LogisticRegressor(names, **settings)


def _sgd_settings(estimator: Any, name: str) -> dict[str, Any]:
    penalty = estimator.penalty
    alpha = 0.0 if penalty is None else float(estimator.alpha)
    l1_ratio = {"l2": 0.0, "l1": 1.0}.get(penalty, float(estimator.l1_ratio))
    if estimator.learning_rate not in _SGD_RATES:
        raise ValueError(
            f"learning_rate={estimator.learning_rate!r} has no per-event equivalent; "
            f"use one of {', '.join(map(repr, _SGD_RATES))}"
        )
    settings: dict[str, Any] = {
        "alpha": alpha,
        "l1_ratio": 0.0 if penalty is None else l1_ratio,
        "learning_rate": _SGD_RATES[estimator.learning_rate],
        "eta0": float(estimator.eta0),
        "power_t": float(estimator.power_t),
        "t": float(getattr(estimator, "t_", 1.0)),
        "standardize": False,
    }
    if name == "SGDRegressor":
        if estimator.loss not in _SGD_LOSSES:
            raise ValueError(
                f"SGDRegressor loss {estimator.loss!r} is not supported; "
                f"use one of {', '.join(map(repr, _SGD_LOSSES))}"
            )
        settings.update(loss=_SGD_LOSSES[estimator.loss], epsilon=float(estimator.epsilon))
    return settings


def load_estimator(path: str | os.PathLike[str]) -> Any:
    """Load a fitted estimator from a joblib file at ``path``.

    Security: unpickling runs code from the file. Load only files you trust, from a path
    the operator configured — never one taken from an event or a message.
    """
    import joblib

    estimator = joblib.load(os.fspath(path))
    _estimator_name(estimator)
    return estimator


def from_joblib(
    path: str | os.PathLike[str], feature_names: Sequence[str] | None = None, **params: Any
) -> LinearRegressor | LogisticRegressor:
    """``from_sklearn`` on the estimator in a joblib file (see the security note above)."""
    return from_sklearn(load_estimator(path), feature_names, **params)


def to_sklearn(
    model: LinearRegressor | LogisticRegressor | LinearParams,
    estimator: str | None = None,
    *,
    feature_names_in: bool | None = None,
) -> Any:
    """A fitted scikit-learn estimator that predicts as ``model`` does.

    ``estimator`` is the class name to build (default: the warm-start source's type, else
    ``SGDRegressor``/``SGDClassifier``). ``feature_names_in`` sets ``feature_names_in_`` (so
    ``predict`` checks DataFrame columns, and warns on plain arrays); by default only when
    the warm-start source had it. Parameters without ``classes`` (a model-update message)
    export as a classifier with classes ``(0, 1)`` when ``estimator`` names a classifier.

    >>> learner = LinearRegressor(["a", "b"], coef=[2.0, -1.0], intercept=0.5)
    >>> est = to_sklearn(learner)
    >>> type(est).__name__, est.predict([[1.0, 1.0]]).tolist()
    ('SGDRegressor', [1.5])
    """
    if isinstance(model, LinearParams):
        params, learner = model, None
    else:
        params, learner = model.linear_params(), model
    export_as: Mapping[str, Any] = (learner.export_as if learner is not None else None) or {}
    has_classes = params.classes is not None
    name = estimator or params.estimator or ("SGDClassifier" if has_classes else "SGDRegressor")
    classifier = name in CLASSIFIERS
    if name not in SUPPORTED or (has_classes and not classifier):
        allowed = CLASSIFIERS if has_classes else SUPPORTED
        kind = "classifier" if has_classes else "model"
        raise ValueError(f"a {kind} exports as one of {', '.join(allowed)}, not {name!r}")

    from sklearn import linear_model

    init: dict[str, Any] = {}
    if export_as.get("estimator") == name:
        init = dict(export_as.get("params", {}))
    elif learner is not None and name.startswith("SGD"):
        init = _sgd_init(learner)
    elif classifier and name == "SGDClassifier":
        init = {"loss": "log_loss"}
    est = getattr(linear_model, name)(**init)

    n = len(params.feature_names)
    coef = np.array(params.coef, dtype=np.float64)
    if classifier:
        est.coef_ = coef.reshape(1, n)
        est.intercept_ = np.array([params.intercept])
        classes: tuple[Label, Label] = params.classes or (0, 1)
        est.classes_ = np.array(list(classes))
    elif name == "LinearRegression":
        est.coef_ = coef
        est.intercept_ = float(params.intercept)
    else:
        est.coef_ = coef
        est.intercept_ = np.array([params.intercept])
    if name.startswith("SGD"):
        est.t_ = learner.t if learner is not None else 1.0 + params.n_updates
    est.n_features_in_ = n
    if feature_names_in is None:
        feature_names_in = bool(export_as.get("feature_names_in", False))
    if feature_names_in:
        est.feature_names_in_ = np.array(params.feature_names, dtype=object)
    return est


def _sgd_init(learner: LinearRegressor | LogisticRegressor) -> dict[str, Any]:
    """Constructor parameters of an SGD estimator that learns as ``learner`` does."""
    init: dict[str, Any] = {
        "alpha": learner.alpha,
        "penalty": "elasticnet" if learner.l1_ratio > 0.0 else "l2",
        "l1_ratio": learner.l1_ratio,
        "eta0": learner.eta0,
        "power_t": learner.power_t,
        "fit_intercept": learner.fit_intercept,
    }
    if learner.learning_rate != "adagrad":
        init["learning_rate"] = learner.learning_rate
    if isinstance(learner, LinearRegressor):
        init["loss"] = "squared_error" if learner.loss == "squared" else "huber"
        init["epsilon"] = learner.epsilon
    else:
        init["loss"] = "log_loss"
    return init
