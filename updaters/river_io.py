"""Any river regressor or binary classifier as a learner.

The model is given as an instance (any river estimator, pipelines included), or for
configuration files as a name inside the river package (``"linear_model.LinearRegression"``)
with constructor ``params``. Classifiers predict the probability of ``classes[1]``; the
river model itself always sees the labels as ``True`` (``classes[1]``) and ``False``, as
river's binary classifiers expect.

State: only the labels and the update count. A river model is an arbitrary Python object
graph; the only generic way to save it is pickle, and unpickling bytes read back from Kafka
would let whoever can write the state topic run code in the process. So the model itself is
never snapshotted: after a restore the maintainer builds it afresh from the configuration
(:meth:`restored`), and it learns again from the labels that follow.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from vigil.updaters.base import Label, check_regression_label, register_learner


def _finite_number(value: object) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    )


def _resolve(name: str, params: Mapping[str, Any] | None) -> Any:
    """The river estimator ``river.<module>.<Class>(**params)`` named ``"<module>.<Class>"``."""
    module, _, cls = name.rpartition(".")
    if not module or not cls or not cls[0].isupper():
        raise ValueError(
            f"model must be a river estimator or a name like 'linear_model.LinearRegression', "
            f"got {name!r}"
        )
    try:
        factory = getattr(importlib.import_module(f"river.{module}"), cls)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"river has no estimator {name!r}") from exc
    try:
        return factory(**dict(params or {}))
    except TypeError as exc:
        raise ValueError(f"bad parameters for river {name!r}: {exc}") from exc


def _kind(model: Any) -> str:
    from river import base, compose

    final = list(model.steps.values())[-1] if isinstance(model, compose.Pipeline) else model
    if isinstance(model, base.Classifier) or isinstance(final, base.Classifier):
        return "classifier"
    if isinstance(model, base.Regressor) or isinstance(final, base.Regressor):
        return "regressor"
    raise ValueError(f"{type(model).__name__} is neither a river regressor nor a classifier")


@register_learner("river")
class RiverLearner:
    """A river model behind the learner protocol.

    >>> learner = RiverLearner("linear_model.LinearRegression", {"intercept_lr": 0.1})
    >>> for i in range(300):
    ...     learner.learn_one({"a": (i % 3) - 1.0}, 2.0 * ((i % 3) - 1.0) + 1.0)
    >>> learner.kind, round(learner.predict_one({"a": 1.0}), 1)
    ('regressor', 3.0)
    >>> learner.state_dict()
    {'classes': [False, True], 'n_updates': 300}
    """

    name: ClassVar[str] = "river"
    kind: str

    def __init__(
        self,
        model: Any,
        params: Mapping[str, Any] | None = None,
        *,
        classes: Sequence[Label] = (False, True),
    ) -> None:
        if isinstance(model, str):
            model = _resolve(model, params)
        elif params:
            raise ValueError("params are for a model given by name; this model is built already")
        self.model = model
        self.kind = _kind(model)
        labels = tuple(classes)
        if len(labels) != 2 or labels[0] == labels[1]:
            raise ValueError(f"classes must be two distinct labels, got {labels!r}")
        self.classes: tuple[Label, Label] = (labels[0], labels[1])
        self.n_updates = 0

    def predict_one(self, x: Mapping[str, float]) -> float:
        """The model's prediction; for classifiers the probability of ``classes[1]``."""
        if self.kind == "classifier":
            proba = self.model.predict_proba_one(dict(x))
            if not proba:
                return 0.5  # nothing learned yet
            return float(proba.get(True, 0.0))
        y = self.model.predict_one(dict(x))
        return 0.0 if y is None else float(y)

    def encode_label(self, y: Label) -> float:
        """A regression label as a float, a class as 0.0/1.0; ValueError if invalid."""
        if self.kind == "regressor":
            return check_regression_label(y)
        if y == self.classes[1]:
            return 1.0
        if y == self.classes[0]:
            return 0.0
        raise ValueError(f"label {y!r} is not one of the classes {list(self.classes)!r}")

    def learn_one(self, x: Mapping[str, float], y: Label) -> None:
        """Learn one event; a class label reaches the river model as True/False."""
        target = self.encode_label(y)
        if not all(_finite_number(v) for v in x.values()):
            raise ValueError(f"features must be finite numbers, got {dict(x)!r}")
        label: Any = target if self.kind == "regressor" else target == 1.0
        self.model.learn_one(dict(x), label)
        self.n_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The labels and the update count (never the model: see the module docstring)."""
        return {"classes": list(self.classes), "n_updates": self.n_updates}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Refused: a river model is not kept in snapshots, so it cannot come back from one."""
        raise ValueError("a river learner is not restored from a snapshot; build it from the "
                         "configuration and call restored(state)")

    def restored(self, state: Mapping[str, Any]) -> Self:
        """This freshly built learner with the update count of ``state`` (the model restarts).

        The classes stay the configured ones: nothing in a snapshot chooses a type or a label.
        """
        n_updates = state.get("n_updates")
        if isinstance(n_updates, bool) or not isinstance(n_updates, int) or n_updates < 0:
            raise ValueError(f"n_updates must be an integer >= 0, got {n_updates!r}")
        self.n_updates = n_updates
        return self

    def __repr__(self) -> str:
        return f"RiverLearner({self.model!r}, kind={self.kind!r}, n_updates={self.n_updates})"
