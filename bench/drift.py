"""Model maintenance under concept drift and under poisoning, against river and a frozen model.

Every stream is evaluated prequentially (predict, score, then learn) with its labels arriving
``delay`` predictions after their predictions. The **guarded** model goes through the path
`vigil run` uses — :class:`stream.engine.models.ModelMaintainer` (join buffer, guard, learner),
warm-started from a joblib file of a scikit-learn model fitted on the first concept, which
is also the **frozen** served model. Side by side, fed the same joins at the same moments:
the **unguarded** learner (same warm start and parameters, no guard), and river's
``StandardScaler | LinearRegression`` / ``LogisticRegression`` with defaults (trained on the
same warm-up events). An **oracle** per concept, fitted offline on fresh data of that concept,
is the yardstick for the recovery after an abrupt change.

Losses: squared error (regression) and log loss (classification), always against the true
label, whatever label was fed to the learners.

Run: ``.venv/bin/python bench/drift.py`` (a few minutes; ``--quick`` for a smoke run,
``--stream NAME`` for one stream).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from common import WORKDIR, header, print_machine
from river import linear_model, preprocessing
from river.datasets import Phishing, TrumpApproval, synth
from sklearn.linear_model import LinearRegression, LogisticRegression

from vigil.stream.config import ModelsConfig
from vigil.stream.engine.events import LabelEvent, PredictionEvent
from vigil.stream.engine.models import ModelMaintainer
from vigil.updaters.base import Learner
from vigil.updaters.sklearn_io import from_joblib

START = 1_767_225_600.0
PARTITION = ("predictions", 0)
MODEL = "m"
WARM = 2_000
"""Events of the first concept the served model (and river) are fitted on."""
DELAY = 300
"""Predictions between a prediction and its label, on the synthetic streams."""
RECOVERY_WINDOW = 500
"""Labels in the rolling loss compared with the oracle's after a change."""
RECOVERY_BUDGET = 2_000
"""Labels after an abrupt change within which the rolling loss must be near the oracle's."""
EPS = 1e-15


# --- streams --------------------------------------------------------------------------------

@dataclass
class Stream:
    """Events of one stream, where its concept changes, and an oracle per concept."""

    name: str
    kind: str
    """``regressor`` or ``classifier`` (labels 0.0/1.0)."""
    features: list[str]
    X: np.ndarray
    y: np.ndarray
    warm_X: np.ndarray
    warm_y: np.ndarray
    delay: int
    changes: list[tuple[int, bool]] = field(default_factory=list)
    """(event index, abrupt) of each concept change."""
    oracle: np.ndarray | None = None
    """Per event, the prediction of an offline fit on fresh data of that event's concept."""
    quiet: int = 0
    """Index of the first event of the first stretch long enough for a poisoning scenario."""

    def events(self, X: np.ndarray | None = None) -> list[dict[str, float]]:
        X = self.X if X is None else X
        return [dict(zip(self.features, map(float, row), strict=True)) for row in X]


def _take(dataset: Iterable[tuple[dict[str, Any], Any]], n: int) -> tuple[list[str], np.ndarray,
                                                                          np.ndarray]:
    rows, ys = [], []
    names: list[str] = []
    for x, y in itertools.islice(dataset, n):
        names = [str(k) if isinstance(k, str) else f"x{k}" for k in x]
        rows.append([float(v) for v in x.values()])
        ys.append(float(y))
    return names, np.array(rows), np.array(ys)


def _fit(kind: str, X: np.ndarray, y: np.ndarray) -> Any:
    if kind == "regressor":
        return LinearRegression().fit(X, y)
    scale = X.std(axis=0)
    scale[scale == 0.0] = 1.0
    # fitted on scaled features (lbfgs converges), served on the raw ones
    model = LogisticRegression(max_iter=5_000).fit(X / scale, y)
    model.coef_ = model.coef_ / scale
    return model


def _predict(kind: str, model: Any, X: np.ndarray) -> np.ndarray:
    if kind == "regressor":
        return np.asarray(model.predict(X), dtype=np.float64)
    return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


def _synthetic(name: str, kind: str, make: Callable[[int], Iterable[Any]], n: int,
               changes: list[tuple[int, bool]], settle: Sequence[int]) -> Stream:
    """``make(seed)`` draws ``WARM`` events of the first concept and then the stream, whose
    concept ``k`` holds from ``changes[k-1]`` (plus ``settle[k]`` events of transition) to the
    next change (positions counted in the stream, after the warm-up). The warm-up fits the
    served model; oracles are offline fits on two fresh draws of each concept's stretch."""
    features, X, y = _take(make(1), WARM + n)
    bounds = [0, *[position for position, _ in changes], n]
    fresh = [_take(make(seed), WARM + n) for seed in (3, 4)]
    oracle = np.full(n, np.nan)
    for k in range(len(bounds) - 1):
        start, stop = WARM + bounds[k] + settle[k], WARM + bounds[k + 1]
        X_fit = np.vstack([f[1][start:stop] for f in fresh])
        y_fit = np.concatenate([f[2][start:stop] for f in fresh])
        oracle[bounds[k]:bounds[k + 1]] = _predict(kind, _fit(kind, X_fit, y_fit),
                                                   X[WARM + bounds[k]:stop])
    return Stream(name, kind, features, X[WARM:], y[WARM:], X[:WARM], y[:WARM], DELAY,
                  changes, oracle, quiet=WARM // 2)


def friedman(kind: str, scale: float) -> Stream:
    """Friedman #1 with abrupt global recurring (``gra``) or global slow gradual (``gsg``) drift."""
    p1, p2, n = int(6_000 * scale), int(12_000 * scale), int(18_000 * scale)
    window = int(1_000 * scale)
    at = (WARM + p1, WARM + p2)
    if kind == "gra":
        return _synthetic("friedman_gra", "regressor", lambda seed: synth.FriedmanDrift(
            "gra", position=at, seed=seed), n, [(p1, True), (p2, True)], [0, 0, 0])
    return _synthetic("friedman_gsg", "regressor", lambda seed: synth.FriedmanDrift(
        "gsg", position=at, transition_window=window, seed=seed), n,
        [(p1, False), (p2, False)], [0, window, window])


def hyperplane(scale: float) -> Stream:
    """A hyperplane rotating all the time (10 features, 2 drifting, 5% label noise)."""
    n = int(18_000 * scale)
    stream = _synthetic("hyperplane", "classifier", lambda seed: synth.Hyperplane(
        seed=seed, n_features=10, n_drift_features=2, mag_change=0.001), n, [], [0])
    stream.oracle = None  # the concept moves with every event: no fixed oracle
    return stream


def sea(scale: float) -> Stream:
    """SEA (10% label noise) with abrupt threshold changes 7 → 9.5 → 8 (ConceptDriftStream).

    A change takes about ``width`` = 50 events: with width 1, river's ConceptDriftStream
    overflows ``math.exp`` more than 177 events before the change."""
    p1, p2, n = int(6_000 * scale), int(12_000 * scale), int(18_000 * scale)

    def make(seed: int) -> Any:
        def concept(variant: int, offset: int) -> Any:
            return synth.SEA(variant=variant, noise=0.1, seed=seed * 10 + offset)
        return synth.ConceptDriftStream(
            concept(2, 0), synth.ConceptDriftStream(concept(3, 1), concept(0, 2),
                                                    position=p2 - p1, width=50, seed=seed),
            position=WARM + p1, width=50, seed=seed)

    return _synthetic("sea", "classifier", make, n, [(p1, True), (p2, True)], [0, 0, 0])


def real(name: str) -> Stream:
    """A river dataset bundled with the package; its first 20% fit the served model."""
    dataset: Any = Phishing() if name == "phishing" else TrumpApproval()
    kind = "classifier" if name == "phishing" else "regressor"
    features, X, y = _take(dataset, 10**9)
    warm = len(y) // 5
    return Stream(name, kind, features, X[warm:], y[warm:], X[:warm], y[:warm], delay=30,
                  quiet=100)


def streams(scale: float, only: str | None) -> list[Stream]:
    makers: dict[str, Callable[[], Stream]] = {
        "friedman_gra": lambda: friedman("gra", scale),
        "friedman_gsg": lambda: friedman("gsg", scale),
        "hyperplane": lambda: hyperplane(scale),
        "sea": lambda: sea(scale),
        "phishing": lambda: real("phishing"),
        "trump_approval": lambda: real("trump_approval"),
    }
    if only is not None and only not in makers:
        raise SystemExit(f"unknown stream {only!r}; choose one of: {', '.join(makers)}")
    return [make() for name, make in makers.items() if only in (None, name)]


# --- poisoning ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    name: str
    start: int
    length: int
    """Events the scenario spans."""


def scenarios(stream: Stream) -> list[Scenario]:
    """The three scenarios, in the first quiet stretch (shorter on the short real streams)."""
    span = min(2_000, len(stream.y) // 3)
    burst = min(500, span // 4)
    wrong = "flipped" if stream.kind == "classifier" else "x1000"
    return [Scenario(f"{wrong} 10%", stream.quiet, span),
            Scenario("constant", stream.quiet, burst),
            Scenario("stuck 1e6", stream.quiet, burst)]


def poison(stream: Stream, scenario: Scenario, seed: int = 11,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels) as the learners receive them under ``scenario``, and which events
    were poisoned."""
    X, y = stream.X.copy(), stream.y.copy()
    hit = np.zeros(len(y), dtype=bool)
    if scenario.name.endswith("10%"):
        rng = np.random.default_rng(seed)
        hit[scenario.start + rng.choice(scenario.length, scenario.length // 10,
                                        replace=False)] = True
        y[hit] = 1.0 - y[hit] if stream.kind == "classifier" else 1000.0 * y[hit]
    else:
        hit[scenario.start:scenario.start + scenario.length] = True
        if scenario.name == "constant":
            y[hit] = y[scenario.start]  # a label feed stuck at one value
        else:
            X[hit, 0] = 1e6  # the first feature's sensor stuck
    return X, y, hit


# --- the models, evaluated prequentially ----------------------------------------------------

def loss(kind: str, prediction: float, label: float) -> float:
    if kind == "regressor":
        return (prediction - label) ** 2
    p = min(max(prediction, EPS), 1.0 - EPS)
    return -math.log(p if label >= 0.5 else 1.0 - p)


def losses(kind: str, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if kind == "regressor":
        return np.asarray((predictions - labels) ** 2)
    p = np.clip(predictions, EPS, 1.0 - EPS)
    return np.asarray(-np.log(np.where(labels >= 0.5, p, 1.0 - p)))


@dataclass
class Run:
    """Per-event losses (against the true labels) of each model, the alerts the maintainer
    raised and the guard's counters."""

    losses: dict[str, np.ndarray]
    signals: Counter[str]
    guard: dict[str, int]
    seconds: float
    fed_x: np.ndarray
    """The features the models were given."""

    def summary(self) -> str:
        """What the guard did, and the alerts, in a few words."""
        parts = [f"{self.guard[name]} {label}" for name, label in (
            ("held", "held"), ("changes", "changes"), ("rollbacks", "rollbacks"),
            ("rebaselines", "rebaselines")) if self.guard.get(name)]
        alerts = ", ".join(f"{count} {kind}" for kind, count in sorted(self.signals.items()))
        return f"{', '.join(parts) or 'nothing'}; alerts: {alerts or 'none'}"


def maintained(stream: Stream, served_path: Path, X_fed: np.ndarray, y_fed: np.ndarray,
               params: dict[str, Any], settings: dict[str, Any], *, with_river: bool,
               poisoned: np.ndarray | None = None) -> Run:
    """Prequential losses of the guarded, unguarded (and river) models on one feed; with
    ``poisoned``, also of the ideal defence: the learner that skips exactly those events."""
    n, delay, kind = len(stream.y), stream.delay, stream.kind
    learner = "sgd_classifier" if kind == "classifier" else "sgd_regressor"
    config = ModelsConfig(enabled=True, learner=learner, publish_every=0, publish_interval_s=0.0,
                          overrides={MODEL: {"warm_start": str(served_path),
                                             "params": {"feature_names": stream.features,
                                                        **params}}}, **settings)
    maintainer = ModelMaintainer(config)
    unguarded: Learner = from_joblib(served_path, stream.features, **params)
    fresh: Learner = from_joblib(served_path, stream.features, **params)  # before the first join
    ideal: Learner = from_joblib(served_path, stream.features, **params)
    river: Any = None
    if with_river:
        final = linear_model.LogisticRegression() if kind == "classifier" \
            else linear_model.LinearRegression()
        river = preprocessing.StandardScaler() | final
        for x, label in zip(stream.engine.events(stream.warm_X), stream.warm_y, strict=True):
            river.learn_one(x, bool(label) if kind == "classifier" else label)
    served = _predict(kind, joblib.load(served_path), X_fed)
    events = stream.engine.events(X_fed)
    out = {name: np.zeros(n) for name in ("guarded", "unguarded", "river", "ideal")}
    clean_events = stream.engine.events()
    signals: Counter[str] = Counter()
    began = time.perf_counter()
    for i in range(n + delay):
        if i < n:
            maintainer.on_prediction(PredictionEvent(MODEL, START + i, events[i], float(served[i]),
                                                     prediction_id=f"p{i}"), PARTITION, False)
        j = i - delay
        if j < 0:
            continue
        x, truth, fed = events[j], float(stream.y[j]), float(y_fed[j])
        guard = maintainer.guard_of(PARTITION, MODEL)
        out["guarded"][j] = loss(kind, (guard or fresh).predict_one(x), truth)
        for signal in maintainer.on_label(LabelEvent(f"p{j}", fed, START + i), PARTITION):
            signals[signal.kind] += 1
        out["unguarded"][j] = loss(kind, unguarded.predict_one(x), truth)
        unguarded.learn_one(x, fed)
        if poisoned is not None:
            out["ideal"][j] = loss(kind, ideal.predict_one(x), truth)
            if not poisoned[j]:
                ideal.learn_one(clean_events[j], truth)
        if river is not None:
            if kind == "classifier":
                out["river"][j] = loss(kind, river.predict_proba_one(x).get(True, 0.5), truth)
                river.learn_one(x, fed >= 0.5)
            else:
                out["river"][j] = loss(kind, river.predict_one(x), truth)
                river.learn_one(x, fed)
        if i % 500 == 0:
            maintainer.end_batch()
    seconds = time.perf_counter() - began
    out["frozen"] = losses(kind, served, stream.y)
    if stream.oracle is not None:
        out["oracle"] = losses(kind, stream.oracle, stream.y)
    if not with_river:
        del out["river"]
    if poisoned is None:
        del out["ideal"]
    guard = maintainer.guard_of(PARTITION, MODEL)
    return Run(out, signals, {} if guard is None else guard.counters(), seconds, X_fed)


# --- figures --------------------------------------------------------------------------------

def rolling(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing means over ``window`` values (NaN before the first full window)."""
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        sums = np.cumsum(np.concatenate([[0.0], values]))
        out[window - 1:] = (sums[window:] - sums[:-window]) / window
    return out


@dataclass(frozen=True)
class Recovery:
    change: int
    labels: int | None
    """Labels after the change until the rolling loss is within 10% of the oracle's (None:
    not within the stream)."""
    ratio: float
    """Rolling loss over the window ending RECOVERY_BUDGET labels after the change, / oracle's."""


def recoveries(stream: Stream, run: Run) -> list[Recovery]:
    if "oracle" not in run.losses:
        return []
    model = rolling(run.losses["guarded"], RECOVERY_WINDOW)
    oracle = rolling(run.losses["oracle"], RECOVERY_WINDOW)
    bounds = [position for position, _ in stream.changes] + [len(stream.y)]
    out = []
    for (position, abrupt), stop in zip(stream.changes, bounds[1:], strict=True):
        if not abrupt:
            continue
        first = position + RECOVERY_WINDOW - 1  # the first window wholly after the change
        within = [j for j in range(first, stop) if model[j] <= 1.1 * oracle[j]]
        at = min(position + RECOVERY_BUDGET - 1, stop - 1)
        out.append(Recovery(position, within[0] - position + 1 if within else None,
                            float(model[at] / oracle[at])))
    return out


def _fmt(value: float) -> str:
    return f"{value:.4g}" if value < 1000 else f"{value:,.0f}"


def drift_table(results: list[tuple[Stream, Run]]) -> None:
    header("prequential loss on the drift streams (lower is better)")
    print("| stream | loss | guarded | unguarded | river | frozen | guarded/river | "
          "guarded/unguarded | after each abrupt change: labels until the rolling loss is "
          f"within 10% of the oracle's (ratio at {RECOVERY_BUDGET:,}) | guard; alerts |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for stream, run in results:
        mean = {name: float(values.mean()) for name, values in run.losses.items()}
        recovered = "; ".join(
            f"@{r.change:,}: {'never' if r.labels is None else f'{r.labels:,}'} ({r.ratio:.2f})"
            for r in recoveries(stream, run)) or "–"
        print(f"| {stream.name} | {'squared' if stream.kind == 'regressor' else 'log'} | "
              f"{_fmt(mean['guarded'])} | {_fmt(mean['unguarded'])} | {_fmt(mean['river'])} | "
              f"{_fmt(mean['frozen'])} | {mean['guarded'] / mean['river']:.3f} | "
              f"{mean['guarded'] / mean['unguarded']:.3f} | {recovered} | {run.summary()} |")


def poison_table(rows: list[tuple[Stream, Scenario, Run, Run]]) -> None:
    header("poisoning: loss against the true labels, during and after each scenario")
    print("Loss during: over the scenario's events whose features are intact (– when none "
          f"are). After: over the {RECOVERY_BUDGET:,} labels that follow it (fewer on the short "
          "real streams), relative to the same model's on the clean stream; ideal: the "
          "learner that skips exactly the poisoned events.")
    print("| stream | scenario | events | guarded during | unguarded during | clean during | "
          "guarded after / clean | unguarded after / clean | ideal after / clean | "
          "guard; alerts |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for stream, scenario, clean, run in rows:
        window = np.zeros(len(stream.y), dtype=bool)
        window[scenario.start:scenario.start + scenario.length] = True
        intact = window & (run.fed_x == stream.X).all(axis=1)
        after = slice(scenario.start + scenario.length,
                      min(scenario.start + scenario.length + RECOVERY_BUDGET, len(stream.y)))
        ratio = {name: float(run.losses[name][after].mean()
                             / clean.losses["unguarded" if name == "ideal" else name][after].mean())
                 for name in ("guarded", "unguarded", "ideal")}
        during = [_fmt(float(losses[intact].mean())) if intact.any() else "–" for losses in
                  (run.losses["guarded"], run.losses["unguarded"], clean.losses["guarded"])]
        print(f"| {stream.name} | {scenario.name} | {scenario.start:,}–"
              f"{scenario.start + scenario.length:,} | {' | '.join(during)} | "
              f"{ratio['guarded']:.3f} | {ratio['unguarded']:.3g} | {ratio['ideal']:.3f} | "
              f"{run.summary()} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a third of the stream lengths")
    parser.add_argument("--stream", help="run only this stream")
    parser.add_argument("--no-poison", action="store_true", help="skip the poisoning scenarios")
    parser.add_argument("--params", type=json.loads, default={},
                        help='learner parameters as JSON, e.g. \'{"eta0": 0.02}\'')
    parser.add_argument("--models", type=json.loads, default={},
                        help='[models] settings as JSON, e.g. \'{"accept_after": 2000}\'')
    args = parser.parse_args(argv)
    print_machine()
    scale = 1.0 / 3.0 if args.quick else 1.0
    folder = WORKDIR / "drift"
    folder.mkdir(parents=True, exist_ok=True)
    results: list[tuple[Stream, Run]] = []
    poisoned: list[tuple[Stream, Scenario, Run, Run]] = []
    for stream in streams(scale, args.stream):
        served_path = folder / f"{stream.name}.joblib"
        joblib.dump(_fit(stream.kind, stream.warm_X, stream.warm_y), served_path)
        clean = maintained(stream, served_path, stream.X, stream.y, args.params, args.models,
                           with_river=True)
        results.append((stream, clean))
        print(f"{stream.name}: {len(stream.y):,} events, delay {stream.delay}, "
              f"{clean.seconds:.1f} s", file=sys.stderr)
        if args.no_poison:
            continue
        for scenario in scenarios(stream):
            X_fed, y_fed, hit = poison(stream, scenario)
            poisoned.append((stream, scenario, clean, maintained(
                stream, served_path, X_fed, y_fed, args.params, args.models, with_river=False,
                poisoned=hit)))
    drift_table(results)
    if poisoned:
        poison_table(poisoned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
