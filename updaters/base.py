"""The learner protocol, the exported parameters of a linear learner, and the registry by name.

A learner keeps one model up to date one labelled event at a time. The runtime scores an
event first (``predict_one``) and learns from it afterwards (``learn_one``), so the score is
a prequential one: the model had not seen the event when it made the prediction.

Regressors predict the target; binary classifiers predict the probability of their positive
class (``classes[1]``). ``encode_label`` turns a label as it arrives on the wire into the
number the learner's loss compares that prediction with, and is where a bad label (not a
finite number, or not one of a classifier's two classes) is refused with ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

from vigil.detectors.registry import Registry

Label = float | int | bool | str
"""A label as it arrives in an event: a number for regressors, one of two classes otherwise."""

KINDS = ("regressor", "classifier")


@runtime_checkable
class Learner(Protocol):
    """An online model of one target, updated one event at a time."""

    name: str
    """The name the learner is registered under (``build_learner``/``restore_learner``)."""
    kind: str
    """``"regressor"`` or ``"classifier"`` (binary; ``predict_one`` is a probability)."""

    def predict_one(self, x: Mapping[str, float]) -> float:
        """The prediction for features ``x`` (probability of the positive class for classifiers)."""
        ...

    def learn_one(self, x: Mapping[str, float], y: Label) -> None:
        """Learn from one labelled event."""
        ...

    def encode_label(self, y: Label) -> float:
        """``y`` as the number the loss uses (0.0/1.0 for classifiers); ValueError if invalid."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this learner is (JSON-serialisable)."""
        ...

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a learner whose future predictions and updates equal this one's."""
        ...


@dataclass(frozen=True, slots=True)
class LinearParams:
    """The parameters of a linear model in the original feature space, ready to publish.

    ``prediction = intercept + sum(coef[i] * x[feature_names[i]])`` for regressors; for
    classifiers that sum is the log-odds of ``classes[1]``. ``estimator`` names the
    scikit-learn class the model exports as by default (``None``: the learner's own default).

    >>> p = LinearParams(("a", "b"), (2.0, -1.0), 0.5, n_updates=10)
    >>> p.coef_by_name()
    {'a': 2.0, 'b': -1.0}
    >>> LinearParams.from_dict(p.to_dict()) == p
    True
    """

    feature_names: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    n_updates: int = 0
    classes: tuple[Label, Label] | None = None
    estimator: str | None = None

    def __post_init__(self) -> None:
        if len(self.coef) != len(self.feature_names):
            raise ValueError(
                f"coef has {len(self.coef)} values for {len(self.feature_names)} feature names"
            )
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError(f"feature names must be unique, got {list(self.feature_names)!r}")
        if self.classes is not None and len(self.classes) != 2:
            raise ValueError(f"classes must be two labels, got {self.classes!r}")

    def coef_by_name(self) -> dict[str, float]:
        """Feature name to coefficient, in feature order."""
        return dict(zip(self.feature_names, self.coef, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """The fields of a model-update message this object knows (coef keyed by feature name).

        The message schema (``deploy/schemas/model-update.schema.json``) has no field for a
        classifier's classes: they stay out, and ``from_dict`` takes them as an argument.
        """
        out: dict[str, Any] = {
            "feature_names": list(self.feature_names),
            "coef": self.coef_by_name(),
            "intercept": self.intercept,
            "n_updates": self.n_updates,
        }
        if self.estimator is not None:
            out["estimator"] = self.estimator
        return out

    @classmethod
    def from_dict(
        cls, message: Mapping[str, Any], classes: Sequence[Label] | None = None
    ) -> LinearParams:
        """Parameters from a model-update message (or ``to_dict``); extra keys are ignored.

        ``classes`` are a classifier's two labels (default: the message's ``classes`` if it
        has that key, else None — which exports a classifier with classes ``(0, 1)``).
        """
        names = tuple(str(name) for name in message["feature_names"])
        coef_map = message["coef"]
        if set(coef_map) != set(names):
            raise ValueError(
                f"coef keys {sorted(coef_map)!r} are not the feature names {sorted(names)!r}"
            )
        if classes is None:
            classes = message.get("classes")
        return cls(
            feature_names=names,
            coef=tuple(float(coef_map[name]) for name in names),
            intercept=float(message["intercept"]),
            n_updates=int(message.get("n_updates", 0)),
            classes=None if classes is None else (classes[0], classes[1]),
            estimator=message.get("estimator"),
        )


@runtime_checkable
class LinearLearner(Learner, Protocol):
    """A learner whose model is linear in its named features, so it can be exported."""

    feature_names: tuple[str, ...]

    @property
    def n_updates(self) -> int:
        """Labelled events learned so far (by this learner, not by any warm-start estimator)."""
        ...

    def linear_params(self) -> LinearParams:
        """Coefficients and intercept in the original feature space."""
        ...


@runtime_checkable
class RowLearner(Learner, Protocol):
    """A learner that builds an event's feature vector once (``row``) for its prediction, a
    snapshot's prediction and its update: the same numbers as the dict methods, less work."""

    def row(self, x: Mapping[str, float]) -> Any | None:
        """``x`` as the vector the other methods take; None when they cannot (then use the
        dict methods)."""
        ...

    def raw(self, row: Any) -> float:
        """The raw score of ``row`` (a linear model's ``intercept + coef · x``)."""
        ...

    def prediction(self, raw: float) -> float:
        """``predict_one``'s value for the raw score ``raw``."""
        ...

    def learn_row(self, row: Any, raw: float, target: float) -> None:
        """``learn_one`` on ``row``, its raw score ``raw`` and encoded label ``target``."""
        ...


def check_feature_names(feature_names: Sequence[str] | str) -> tuple[str, ...]:
    """``feature_names`` as a tuple of unique non-empty strings, else ValueError."""
    if isinstance(feature_names, str):
        raise ValueError(f"feature_names must be a list of names, not the string {feature_names!r}")
    names = tuple(feature_names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"feature_names must be non-empty strings, at least one, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"feature_names must be unique, got {list(names)!r}")
    return names


def check_regression_label(y: Label) -> float:
    """``y`` as a float if it is a finite number (not a bool), else ValueError."""
    if isinstance(y, bool) or not isinstance(y, int | float) or not math.isfinite(y):
        raise ValueError(f"a regression label must be a finite number, got {y!r}")
    return float(y)


LEARNERS: Registry[Learner] = Registry("learner")
"""Every learner by name; importing :mod:`updaters` fills it."""

register_learner = LEARNERS.register
"""Class decorator: make a learner buildable by ``name`` from config."""


def learner_names() -> list[str]:
    """Names of all registered learners, sorted."""
    return LEARNERS.names()


def build_learner(name: str, params: Mapping[str, Any] | None = None) -> Learner:
    """Build the learner registered as ``name`` with keyword ``params``.

    Raises ``ValueError`` naming the valid choices when the name or a parameter is unknown.

    >>> from vigil import updaters
    >>> build_learner("sgd_regressor", {"feature_names": ["a"]}).kind
    'regressor'
    >>> build_learner("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown learner 'nope'; choose one of: river, sgd_classifier, sgd_regressor
    """
    return LEARNERS.build(name, params)


def restore_learner(name: str, state: Mapping[str, Any],
                    params: Mapping[str, Any] | None = None) -> Learner:
    """Rebuild a learner of the registered type ``name`` from its ``state_dict``.

    ``name`` and ``params`` come from the configuration, never from the state. A learner whose
    model is not kept in its state (it has ``restored``, as river's) is built from ``params``
    and takes only its counters from ``state``.
    """
    cls = LEARNERS.find(name)
    if hasattr(cls, "restored"):
        rebuilt: Learner = build_learner(name, params).restored(state)  # type: ignore[attr-defined]
        return rebuilt
    restored: Learner = cls.from_state(state)
    return restored
