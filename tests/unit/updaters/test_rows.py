"""A guard over a row learner decides and learns exactly as over the learner's dict methods."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vigil.updaters import GuardedLearner
from vigil.updaters.base import RowLearner
from vigil.updaters.sgd import LinearRegressor, LogisticRegressor

LEARNERS: dict[str, tuple[type, int, dict[str, Any]]] = {
    "regressor": (LinearRegressor, 4, {}),
    "plain_huber": (LinearRegressor, 3, {"standardize": False, "loss": "huber",
                                         "epsilon": 1.0}),
    "general": (LinearRegressor, 5, {"clip_norm": 5.0, "l1_ratio": 0.3,
                                     "learning_rate": "invscaling"}),
    "adagrad": (LinearRegressor, 2, {"learning_rate": "adagrad", "eta0": 0.1}),
    "classifier": (LogisticRegressor, 4, {"eta0": 0.05}),
    "numpy": (LinearRegressor, 50, {}),
    "numpy_general": (LogisticRegressor, 45, {"max_step": 0.5}),
    "bank": (LinearRegressor, 120, {}),
}


def hostile_stream(d: int, n: int, classifier: bool, seed: int,
                   ) -> list[tuple[dict[str, float], float]]:
    """Clean events, then a concept change, gross feature errors, wild and stuck labels and
    events missing a feature: every branch of the guard."""
    rng = np.random.default_rng(seed)
    names = [f"f{j}" for j in range(d)]
    w = rng.normal(size=d)
    events = []
    for i in range(n):
        x = rng.normal(size=d)
        raw = float(x @ (w if i < n // 3 else -w)) + 1.0
        y = float(rng.random() < 1.0 / (1.0 + np.exp(-raw))) if classifier else \
            raw + float(rng.normal(scale=0.3))
        if n // 2 <= i < n // 2 + 150:
            y = 5.0 if not classifier else 1.0  # a stuck feed
        if i % 97 == 0:
            x[i % d] *= 1e6  # a gross feature error
        if not classifier and i % 89 == 0:
            y *= 1e4  # a wild label
        event = dict(zip(names, map(float, x), strict=True))
        if i % 53 == 0:
            del event[names[i % d]]  # a missing feature
        events.append((event, y))
    return events


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_rows_and_dicts_give_the_same_guard(name: str) -> None:
    cls, d, params = LEARNERS[name]
    classifier = cls is LogisticRegressor

    def guard() -> GuardedLearner:
        learner = cls([f"f{j}" for j in range(d)], **params)
        return GuardedLearner(learner, block=20, snapshot_every=200, accept_after=60,
                              chart_params={"warmup": 10})

    by_row, by_dict = guard(), guard()
    assert isinstance(by_row.learner, RowLearner)
    by_dict._rows = False  # noqa: SLF001 - the dict path is the reference
    kinds: set[str] = set()
    for i, (x, y) in enumerate(hostile_stream(d, 1_500, classifier, seed=d)):
        row_result = by_row.update(x, y, float(i), anomalous=i % 71 == 0, finite=True)
        dict_result = by_dict.update(x, y, float(i), anomalous=i % 71 == 0, finite=True)
        assert row_result == dict_result, i
        kinds.add(row_result.skipped or (row_result.event.kind if row_result.event else ""))
        if i % 50 == 0:
            assert by_row.state_dict() == by_dict.state_dict(), i
    assert by_row.state_dict() == by_dict.state_dict()
    assert {"anomalous", "feature", "stuck_label", "change"} <= kinds
