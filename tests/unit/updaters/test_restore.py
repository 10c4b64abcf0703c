"""Saved states come back from Kafka: a mutated state restores exactly or raises ValueError.

Properties over random mutations of real states (a leaf replaced by any JSON value, a key
dropped or added, a list shortened or lengthened): ``from_state`` never raises anything but
``ValueError``, and what it accepts saves back exactly the state it was given.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.updaters import GuardedLearner, PerformanceMonitor, restore_learner
from vigil.updaters.sgd import LinearRegressor, LogisticRegressor
from vigil.updaters.statecheck import same_state

Path = tuple[Any, ...]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)


def paths(state: Any, prefix: Path = ()) -> list[Path]:
    """Every position in a nested state, containers included."""
    found = [prefix]
    if isinstance(state, dict):
        for key, value in state.items():
            found += paths(value, (*prefix, key))
    elif isinstance(state, list):
        for index, value in enumerate(state):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, state: Any, within: Path = ()) -> Any:
    """``state`` with one to three random mutations (at or under ``within``)."""
    state = copy.deepcopy(state)
    for _ in range(draw(st.integers(1, 3))):
        inner = state
        for step in within:
            if not isinstance(inner, dict) or step not in inner:
                return state  # an earlier mutation removed it
            inner = inner[step]
        path = (*within, *draw(st.sampled_from(paths(inner))))
        if not path:
            continue
        parent: Any = state
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        how = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add", "nudge"]))
        if how == "replace":
            parent[last] = draw(json_values)
        elif how == "drop":
            del parent[last]
        elif how == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(json_values)
        elif how == "add":
            parent.append(draw(json_values))
        elif isinstance(parent[last], int | float) and not isinstance(parent[last], bool):
            parent[last] = parent[last] + draw(st.sampled_from([-1, 1, -0.5, 1e9]))
    return state


def trained_guard(classifier: bool) -> GuardedLearner:
    """A guard with snapshots, a screen, tests and counters that all hold something."""
    rng = np.random.default_rng(3)
    names = ["a", "b"]
    learner: Any = LogisticRegressor(names) if classifier else LinearRegressor(names)
    guard = GuardedLearner(learner, block=10, snapshot_every=50, chart_params={"warmup": 3})
    X = rng.normal(size=(400, 2))
    y = X @ [1.0, -2.0] + rng.normal(scale=0.3, size=400)
    y[250:] = -y[250:]
    for i, (row, target) in enumerate(zip(X, y, strict=True)):
        label = float(target > 0) if classifier else float(target)
        guard.update({"a": float(row[0]), "b": float(row[1]) * (1e9 if i == 300 else 1)},
                     label, float(i))
    return guard


def check_restores_exactly_or_refuses(restore: Callable[[Any], Any], saved: Callable[[Any], Any],
                                      state: Any) -> None:
    try:
        restored = restore(state)
    except ValueError:
        return
    assert same_state(saved(restored), state)


GUARD_PARTS = ["learner", "learner_state", "loss", "max_step", "snapshot_every",
               "max_rollbacks", "influence", "chart", "screen", "excess", "good", "candidate",
               "since", "consecutive", "scale", "scaled", "counters"]


@pytest.mark.parametrize("part", [None, *GUARD_PARTS])
@pytest.mark.parametrize("classifier", [False, True], ids=["regressor", "classifier"])
def test_a_guard_state_restores_exactly_or_raises_value_error(classifier: bool,
                                                              part: str | None) -> None:
    guard = trained_guard(classifier)
    assert guard.held and guard.changes and guard._candidate is not None  # noqa: SLF001
    name = "sgd_classifier" if classifier else "sgd_regressor"
    state = json.loads(json.dumps(guard.state_dict()))
    assert sorted(state) == sorted(GUARD_PARTS)

    def restore(saved: Any) -> GuardedLearner:
        return GuardedLearner.from_state(saved, lambda s: restore_learner(name, s))

    assert same_state(restore(state).state_dict(), state)

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(mutated(state, () if part is None else (part,)))
    def property_holds(candidate: Any) -> None:
        check_restores_exactly_or_refuses(restore, lambda g: g.state_dict(), candidate)

    property_holds()


def test_a_performance_monitor_state_restores_exactly_or_raises_value_error() -> None:
    monitor = PerformanceMonitor("log", block=5, chart_params={"warmup": 3})
    for i in range(60):
        monitor.observe(0.2 + 0.01 * (i % 7), 0.3, float(i % 2), float(i))
    state = json.loads(json.dumps(monitor.state_dict()))

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(mutated(state))
    def property_holds(candidate: Any) -> None:
        check_restores_exactly_or_refuses(PerformanceMonitor.from_state,
                                          lambda m: m.state_dict(), candidate)

    property_holds()


def test_a_learner_state_restores_exactly_or_raises_value_error() -> None:
    learner = LogisticRegressor(["a", "b"], classes=["no", "yes"], l1_ratio=0.2)
    for i in range(50):
        learner.learn_one({"a": float(i % 5), "b": float(i % 3)}, "yes" if i % 2 else "no")
    state = json.loads(json.dumps(learner.state_dict()))

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(mutated(state))
    def property_holds(candidate: Any) -> None:
        check_restores_exactly_or_refuses(LogisticRegressor.from_state,
                                          lambda m: m.state_dict(), candidate)

    property_holds()
