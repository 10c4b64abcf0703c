"""Cost of one per-event model update: Vigil's SGD learners against river and scikit-learn.

Each figure is µs per event for ``predict_one`` + ``learn_one`` on a fresh model over a
stream of events with named features (dicts), the best of many short interleaved runs;
scikit-learn's figure is ``SGDRegressor.partial_fit`` on one pre-built (1, d) array row —
no dict conversion and no prediction, which favours it; ``guarded`` is one
``GuardedLearner.update``, the whole per-label cost of a maintained model in `vigil run`.
Ratios are taken within this run.

Run: ``.venv/bin/python bench/updaters.py`` (under a minute; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from river import linear_model, optim, preprocessing
from sklearn.linear_model import SGDRegressor

from vigil.updaters.guardrails import GuardedLearner
from vigil.updaters.sgd import LinearRegressor

DIMENSIONS = (8, 64, 512)


def stream(d: int, n: int, seed: int = 7) -> tuple[list[dict[str, float]], list[float], Any]:
    """``n`` events with ``d`` standard-normal features and a linear target."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + rng.normal(scale=0.5, size=n)
    names = [f"f{j}" for j in range(d)]
    events = [dict(zip(names, map(float, row), strict=True)) for row in X]
    return events, [float(v) for v in y], X


def per_event(run: Callable[[], int]) -> float:
    gc.collect()
    start = time.perf_counter()
    n = run()
    return (time.perf_counter() - start) / n * 1e6


def vigil(
    events: list[dict[str, float]], ys: list[float], n: int, **params: Any
) -> Callable[[], int]:
    def run() -> int:
        model = LinearRegressor(list(events[0]), learning_rate="constant", eta0=0.01, **params)
        predict, learn = model.predict_one, model.learn_one
        for x, y in zip(events[:n], ys[:n], strict=True):
            predict(x)
            learn(x, y)
        return n

    return run


def guarded(events: list[dict[str, float]], ys: list[float], n: int) -> Callable[[], int]:
    """The standardised learner behind the guard, as `vigil run` maintains a model."""
    def run() -> int:
        guard = GuardedLearner(LinearRegressor(list(events[0]), learning_rate="constant",
                                               eta0=0.01))
        update = guard.update
        for i, (x, y) in enumerate(zip(events[:n], ys[:n], strict=True)):
            update(x, y, float(i), finite=True)
        return n

    return run


def river(
    events: list[dict[str, float]], ys: list[float], n: int, scaled: bool
) -> Callable[[], int]:
    def run() -> int:
        model: Any = linear_model.LinearRegression(optimizer=optim.SGD(0.01), intercept_lr=0.01)
        if scaled:
            model = preprocessing.StandardScaler() | model
        predict, learn = model.predict_one, model.learn_one
        for x, y in zip(events[:n], ys[:n], strict=True):
            predict(x)
            learn(x, y)
        return n

    return run


def sklearn(X: Any, ys: list[float], n: int) -> Callable[[], int]:
    rows = [X[i : i + 1] for i in range(n)]
    targets = [np.array([y]) for y in ys[:n]]

    def run() -> int:
        model = SGDRegressor(learning_rate="constant", eta0=0.01)
        fit = model.partial_fit
        for row, y in zip(rows, targets, strict=True):
            fit(row, y)
        return n

    return run


COUNTS = {8: (4_000, 1_500, 100), 64: (1_500, 400, 100), 512: (400, 100, 60)}
"""Events per timed run for each width: Vigil, river, partial_fit (runs of tens of ms)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    rows = []
    for d in DIMENSIONS:
        fast_n, slow_n, sk_n = COUNTS[d]
        events, ys, X = stream(d, max(fast_n, slow_n, sk_n))
        runs = {
            "vigil": vigil(events, ys, fast_n, standardize=False),
            "vigil_std": vigil(events, ys, fast_n, standardize=True),
            "guarded": guarded(events, ys, fast_n),
            "river": river(events, ys, slow_n, scaled=False),
            "river_std": river(events, ys, slow_n, scaled=True),
            "partial_fit": sklearn(X, ys, sk_n),
        }
        # Many short interleaved runs, best of each: robust to a loaded machine.
        best = {name: float("inf") for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                best[name] = min(best[name], per_event(run))
        rows.append((d, best))

    header = (
        f"{'features':>8} | {'vigil':>7} | {'river':>7} | {'vigil/river':>11} | "
        f"{'vigil std':>9} | {'river std':>9} | {'std ratio':>9} | {'partial_fit':>11} | "
        f"{'pf/vigil':>8} | {'pf/vigil std':>12} | {'guarded':>8} | {'guarded/std':>11}"
    )
    print("µs per event: predict_one + learn_one (partial_fit: one sample, no predict)")
    print(header)
    print("-" * len(header))
    for d, b in rows:
        print(
            f"{d:>8} | {b['vigil']:>7.2f} | {b['river']:>7.2f} | "
            f"{b['vigil'] / b['river']:>11.2f} | {b['vigil_std']:>9.2f} | "
            f"{b['river_std']:>9.2f} | {b['vigil_std'] / b['river_std']:>9.2f} | "
            f"{b['partial_fit']:>11.1f} | {b['partial_fit'] / b['vigil']:>7.0f}× | "
            f"{b['partial_fit'] / b['vigil_std']:>11.0f}× | {b['guarded']:>8.2f} | "
            f"{b['guarded'] / b['vigil_std']:>11.2f}"
        )
    print(
        "vigil: LinearRegressor(standardize=False); vigil std: standardize=True; river: "
        "LinearRegression; river std: StandardScaler() | LinearRegression; guarded: "
        "GuardedLearner(vigil std).update, as `vigil run` maintains a model (a reference "
        "prediction, the screen, the tests, snapshots)."
    )


if __name__ == "__main__":
    main()
