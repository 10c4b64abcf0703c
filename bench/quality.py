"""Detection quality on labelled synthetic series: precision, recall, F1, delay, false alarms.

    .venv/bin/python bench/quality.py [--seed 0] [--workers 2] [--kswin-every 5]

Every series is Gaussian noise in σ units (σ = 1, a random level) with labelled anomalies:

| type            | series | points | anomalies                                                  |
|-----------------|--------|--------|------------------------------------------------------------|
| spike           | 100    | 1000   | 3 isolated spikes of 6–10σ, either sign                    |
| shift 1σ/2σ/3σ  | 60 each| 1000   | one permanent level shift of that size, either sign        |
| variance        | 90     | 1000   | σ multiplied by 2, 3 or 4 for good                          |
| drift           | 60     | 1000   | the mean drifts 0.01σ per point for 300 points, then stays |
| seasonal        | 60     | 2304   | 16 days every 10 min, daily cycle of ±4σ; a 6–10σ spike and |
|                 |        |        | a permanent 3σ shift after day 10                          |
| feature drift   | 60     | 1000   | prediction events of 3 correlated features (ρ = 0.5) that   |
|                 |        |        | drift together by 1.5–3σ over 50 events, then stay         |

Scoring is per anomaly episode. An anomaly occupies a window: its single point for a spike,
``SUSTAINED`` points from the onset for the sustained types (the time a detector is given
to notice; afterwards the new regime *is* in control), and for drifts the ramp plus
``SUSTAINED`` points (the change is complete only when the ramp ends). A detection
is an alarm (a point with ``anomaly`` True) inside the window or within ``TOLERANCE`` points
after its start; its delay is the first such alarm's index minus the start. Precision is
detected anomalies / (detected anomalies + false alarms), recall detected / all anomalies. A
false alarm is an alarm outside every window, after the burn-in (the first ``BURN_IN`` points,
``SEASONAL_BURN_IN`` for the seasonal series, where nothing is injected and the detectors
warm up); "FA/10k" divides them by the in-control points after the burn-in. Further alarms
inside a window are neither: the "alarms/hit" column counts them (1.0 = one alert per
anomaly). On feature-drift series the univariate detectors watch each feature and an event
alarms when any feature does; ``hst`` watches the vector.

Detectors, each with its defaults: the default detector, ``adaptive``, with no configuration at
all (it finds the daily season by itself); ``ensemble`` (configured with
``season="hour_of_day"`` on the seasonal series, as an operator would configure such a metric;
the row ``ensemble (no season)`` shows it without; ``ensemble (arl0=200)`` is the same
ensemble with a false-alarm budget 100 times looser, to show what a 1σ delay of 10 points
costs), the single charts ``shewhart``, ``cusum``,
``ewma`` (textbook limits), river's ``adwin``, ``page_hinkley`` and ``kswin`` (KSWIN runs a
Kolmogorov-Smirnov test per point, ~0.4 ms, so it sees every ``--kswin-every``-th series
only), and ``hst`` (vectors only).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import vigil.detectors.coldstart  # noqa: F401
import vigil.detectors.drift  # noqa: F401
import vigil.detectors.ensemble  # noqa: F401
import vigil.detectors.multivariate  # noqa: F401
from vigil import detectors
from vigil.stream.config import load_config

TOLERANCE = 10
SUSTAINED = 150
BURN_IN = 150
SEASONAL_BURN_IN = 10 * 144
START = 1_767_225_600.0  # 2026-01-01 00:00 UTC

TYPES = ("spike", "shift 1σ", "shift 2σ", "shift 3σ", "variance ×2–×4", "drift", "seasonal",
         "feature drift")
SEASONAL_TYPE, VECTOR_TYPE = "seasonal", "feature drift"


@dataclass
class Series:
    """One labelled series: values (or feature rows), timestamps, anomaly windows."""

    kind: str
    values: list[Any]
    times: list[float]
    windows: list[tuple[int, int]]  # [start, end) of each anomaly
    burn_in: int


def _gauss(rng: np.random.Generator, n: int) -> np.ndarray:
    level = rng.uniform(0.0, 100.0)
    return level + rng.normal(0.0, 1.0, n)


def _start(rng: np.random.Generator, low: int = 300, high: int = 600) -> int:
    return int(rng.integers(low, high))


def make_series(seed: int) -> list[Series]:
    """All labelled series of the benchmark, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    minute = [START + 60.0 * i for i in range(1000)]
    out: list[Series] = []
    for _ in range(100):
        x = _gauss(rng, 1000)
        starts = [int(s) for s in sorted(rng.choice(np.arange(BURN_IN, 1000 - 20, 150), 3,
                                                    replace=False))]
        for s in starts:
            x[s] += rng.uniform(6.0, 10.0) * rng.choice([-1.0, 1.0])
        out.append(Series("spike", x.tolist(), minute, [(s, s + 1) for s in starts], BURN_IN))
    for size, kind in ((1.0, "shift 1σ"), (2.0, "shift 2σ"), (3.0, "shift 3σ")):
        for _ in range(60):
            x, s = _gauss(rng, 1000), _start(rng)
            x[s:] += size * rng.choice([-1.0, 1.0])
            out.append(Series(kind, x.tolist(), minute, [(s, s + SUSTAINED)], BURN_IN))
    for factor in (2.0, 3.0, 4.0):
        for _ in range(30):
            x, s = _gauss(rng, 1000), _start(rng)
            level = float(np.mean(x[:s]))
            x[s:] = level + factor * (x[s:] - level)
            out.append(Series("variance ×2–×4", x.tolist(), minute, [(s, s + SUSTAINED)],
                              BURN_IN))
    for _ in range(60):
        x, s = _gauss(rng, 1000), _start(rng, 250, 450)
        ramp = np.minimum(np.arange(1000 - s), 300) * 0.01 * rng.choice([-1.0, 1.0])
        x[s:] += ramp
        out.append(Series("drift", x.tolist(), minute, [(s, s + 300 + SUSTAINED)], BURN_IN))
    ten_minutes = [START + 600.0 * i for i in range(16 * 144)]
    phase = 2.0 * math.pi * np.arange(16 * 144) / 144.0
    for _ in range(60):
        x = _gauss(rng, 16 * 144) + 4.0 * np.sin(phase - rng.uniform(0, 2 * math.pi))
        spike, shift = _start(rng, 10 * 144, 12 * 144), _start(rng, 13 * 144, 14 * 144)
        x[spike] += rng.uniform(6.0, 10.0) * rng.choice([-1.0, 1.0])
        x[shift:] += 3.0 * rng.choice([-1.0, 1.0])
        out.append(Series(SEASONAL_TYPE, x.tolist(), ten_minutes,
                          [(spike, spike + 1), (shift, shift + SUSTAINED)], SEASONAL_BURN_IN))
    correlation = np.full((3, 3), 0.5) + 0.5 * np.eye(3)
    means, sigmas = np.array([50.0, 300.0, 3.0]), np.array([10.0, 50.0, 0.5])
    for _ in range(60):
        z = rng.multivariate_normal(np.zeros(3), correlation, 1000)
        s, size = _start(rng), rng.uniform(1.5, 3.0) * rng.choice([-1.0, 1.0])
        z[s:] += size * np.minimum(np.arange(1000 - s), 50)[:, None] / 50.0
        rows = means + sigmas * z
        values = [{"amount": float(a), "age_days": float(b), "items": float(c)}
                  for a, b, c in rows]
        out.append(Series(VECTOR_TYPE, values, minute, [(s, s + SUSTAINED)], BURN_IN))
    return out


# --- running the detectors ---------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """A detector as the benchmark runs it: a name and how to build it for a series type."""

    label: str
    build: Callable[[str], Any]
    kinds: tuple[str, ...] = TYPES
    every: int = 1  # run on every n-th series of each type only


def _default(name: str) -> Callable[[str], Any]:
    return lambda kind: detectors.build_detector(name)


def _ensemble(kind: str) -> Any:
    params = {"season": "hour_of_day"} if kind == SEASONAL_TYPE else {}
    return detectors.build_detector("ensemble", params)


def _sensitive(kind: str) -> Any:
    return detectors.build_detector("ensemble", {"arl0": 200.0})


DEFAULT = load_config(environ={}).detector.name
"""The detector of ``vigil run`` and ``vigil replay`` with no configuration."""


def contenders(kswin_every: int) -> list[Contender]:
    univariate = tuple(t for t in TYPES)
    return [
        Contender(DEFAULT, _default(DEFAULT)),
        Contender("ensemble", _ensemble),
        Contender("ensemble (no season)", _default("ensemble"), (SEASONAL_TYPE,)),
        Contender("ensemble (arl0=200)", _sensitive, ("spike", "shift 1σ", "shift 2σ",
                                                      "shift 3σ")),
        Contender("shewhart", _default("shewhart"), univariate),
        Contender("cusum", _default("cusum"), univariate),
        Contender("ewma", _default("ewma"), univariate),
        Contender("adwin", _default("adwin"), univariate),
        Contender("page_hinkley", _default("page_hinkley"), univariate),
        Contender("kswin", _default("kswin"), univariate, every=kswin_every),
        Contender("hst", _default("hst"), (VECTOR_TYPE,)),
    ]


_SERIES: list[Series] = []  # set before the worker pool forks, read by the workers


def _alarms(task: tuple[int, int]) -> tuple[int, int, list[int], float]:
    """Alarm indices of contender ``c`` on series ``s`` (and the seconds it took)."""
    c, s = task
    contender, series = _CONTENDERS[c], _SERIES[s]
    began = time.perf_counter()
    alarms: list[int] = []
    if series.kind == VECTOR_TYPE and contender.label != "hst":
        per_feature = {name: contender.build(series.kind) for name in series.values[0]}
        for t, (row, ts) in enumerate(zip(series.values, series.times, strict=True)):
            if any([d.update(row[name], ts).anomaly for name, d in per_feature.items()]):
                alarms.append(t)
    else:
        detector = contender.build(series.kind)
        update = detector.update
        for t, (v, ts) in enumerate(zip(series.values, series.times, strict=True)):
            if update(v, ts).anomaly:
                alarms.append(t)
    return c, s, alarms, time.perf_counter() - began


_CONTENDERS: list[Contender] = []


# --- scoring -----------------------------------------------------------------------------


@dataclass
class Tally:
    """Episode-level counts of one contender on one anomaly type."""

    anomalies: int = 0
    detected: int = 0
    false_alarms: int = 0
    in_control: int = 0
    extra_alarms: int = 0  # alarms inside windows beyond the first
    delays: list[int] = field(default_factory=list)
    series: int = 0

    def add(self, other: Tally) -> None:
        self.anomalies += other.anomalies
        self.detected += other.detected
        self.false_alarms += other.false_alarms
        self.in_control += other.in_control
        self.extra_alarms += other.extra_alarms
        self.delays.extend(other.delays)
        self.series += other.series

    @property
    def precision(self) -> float:
        flagged = self.detected + self.false_alarms
        return self.detected / flagged if flagged else math.nan

    @property
    def recall(self) -> float:
        return self.detected / self.anomalies if self.anomalies else math.nan

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def fa_per_10k(self) -> float:
        return 1e4 * self.false_alarms / self.in_control if self.in_control else math.nan


def score(series: Series, alarms: Sequence[int]) -> Tally:
    """Match one series' alarms to its anomaly windows."""
    n = len(series.values)
    inside = np.zeros(n, dtype=bool)
    spans = [(start, max(end, start + TOLERANCE)) for start, end in series.windows]
    for start, end in spans:
        inside[start:min(end, n)] = True
    tally = Tally(anomalies=len(spans), series=1)
    for start, end in spans:
        hits = [t for t in alarms if start <= t < end]
        if hits:
            tally.detected += 1
            tally.delays.append(hits[0] - start)
            tally.extra_alarms += len(hits) - 1
    counted = np.zeros(n, dtype=bool)
    counted[series.burn_in:] = True
    tally.in_control = int(np.count_nonzero(counted & ~inside))
    tally.false_alarms = sum(1 for t in alarms if counted[t] and not inside[t])
    return tally


def _fmt(x: float, digits: int = 2) -> str:
    return "—" if math.isnan(x) else f"{x:.{digits}f}"


def table(rows: list[tuple[str, str, Tally]]) -> str:
    """Markdown table, one row per (detector, type)."""
    lines = ["| detector | type | series | anomalies | precision | recall | F1 | "
             "mean delay | median delay | alarms/hit | FA/10k |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, kind, t in rows:
        delays = t.delays
        mean = statistics.fmean(delays) if delays else math.nan
        median = statistics.median(delays) if delays else math.nan
        per_hit = 1.0 + t.extra_alarms / t.detected if t.detected else math.nan
        lines.append(
            f"| {label} | {kind} | {t.series} | {t.anomalies} | {_fmt(t.precision)} | "
            f"{_fmt(t.recall)} | {_fmt(t.f1)} | {_fmt(mean, 1)} | {_fmt(median, 1)} | "
            f"{_fmt(per_hit)} | {_fmt(t.fa_per_10k)} |")
    return "\n".join(lines)


def matrix(results: dict[tuple[str, str], Tally], labels: list[str], value: Callable[[Tally],
           float], digits: int = 2) -> str:
    """Markdown matrix: detectors down, anomaly types across."""
    lines = ["| detector | " + " | ".join(TYPES) + " | overall |",
             "|---|" + "---:|" * (len(TYPES) + 1)]
    for label in labels:
        cells = []
        overall = Tally()
        for kind in TYPES:
            tally = results.get((label, kind))
            cells.append("n/a" if tally is None else _fmt(value(tally), digits))
            if tally is not None:
                overall.add(tally)
        cells.append(_fmt(value(overall), digits) if overall.series else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _tasks(series: list[Series], kswin_every: int) -> Iterator[tuple[int, int]]:
    counters: dict[tuple[int, str], int] = {}
    for c, contender in enumerate(_CONTENDERS):
        for s, item in enumerate(series):
            if item.kind not in contender.kinds:
                continue
            seen = counters.get((c, item.kind), 0)
            counters[(c, item.kind)] = seen + 1
            if seen % contender.every == 0:
                yield c, s


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kswin-every", type=int, default=5)
    parser.add_argument("--only", action="append", metavar="DETECTOR",
                        help="run only this detector (repeatable; default: all)")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    _SERIES[:] = make_series(args.seed)
    _CONTENDERS[:] = [c for c in contenders(args.kswin_every)
                      if not args.only or c.label in args.only]
    for params in ({"season": "hour_of_day"}, {"arl0": 200.0}):  # warm the caches pre-fork
        detectors.build_detector("ensemble", params)
    detectors.build_detector(DEFAULT)
    tasks = sorted(_tasks(_SERIES, args.kswin_every),
                   key=lambda task: _CONTENDERS[task[0]].label not in ("kswin", "hst"))
    per: dict[tuple[str, str], Tally] = {}
    seconds: dict[str, float] = {}
    points: dict[str, int] = {}
    context = multiprocessing.get_context("fork")
    with context.Pool(args.workers) as pool:
        for c, s, alarms, spent in pool.imap_unordered(_alarms, tasks, chunksize=4):
            label, item = _CONTENDERS[c].label, _SERIES[s]
            per.setdefault((label, item.kind), Tally()).add(score(item, alarms))
            seconds[label] = seconds.get(label, 0.0) + spent
            points[label] = points.get(label, 0) + len(item.values)

    labels = [c.label for c in _CONTENDERS]
    n_series = len(_SERIES)
    print(f"# Detection quality: {n_series} labelled series, seed {args.seed}\n")
    default_rows = [(DEFAULT, kind, per[(DEFAULT, kind)]) for kind in TYPES
                    if (DEFAULT, kind) in per]
    overall = Tally()
    for _, _, tally in default_rows:
        overall.add(tally)
    print(f"## Default detector ({DEFAULT}, no configuration)\n")
    print(table([*default_rows, (DEFAULT, "**overall**", overall)]))
    print("\n## F1 by detector and anomaly type\n")
    print(matrix(per, labels, lambda t: t.f1))
    print("\n## False alarms per 10,000 in-control points\n")
    print(matrix(per, labels, lambda t: t.fa_per_10k))
    print("\n## Median detection delay (points)\n")
    print(matrix(per, labels, lambda t: statistics.median(t.delays) if t.delays else math.nan,
                 1))
    print("\n## Every detector, every type\n")
    rows: list[tuple[str, str, Tally]] = []
    for label in labels:
        total = Tally()
        for kind in TYPES:
            if (label, kind) in per:
                rows.append((label, kind, per[(label, kind)]))
                total.add(per[(label, kind)])
        rows.append((label, "**overall**", total))
    print(table(rows))

    if not default_rows:
        return 0
    shifts = Tally()
    for kind in ("shift 2σ", "shift 3σ"):
        shifts.add(per[(DEFAULT, kind)])
    spike = per[(DEFAULT, "spike")]
    one_sigma = per[(DEFAULT, "shift 1σ")].delays
    median_one = statistics.median(one_sigma) if one_sigma else math.nan
    print(f"\n## Targets for the default detector ({DEFAULT})\n")
    checks = [
        ("overall F1 ≥ 0.9", overall.f1, overall.f1 >= 0.9),
        ("F1 on spikes ≥ 0.9", spike.f1, spike.f1 >= 0.9),
        ("F1 on level shifts ≥ 2σ ≥ 0.9", shifts.f1, shifts.f1 >= 0.9),
        ("median delay on 1σ shifts ≤ 10 points", median_one, median_one <= 10),
        ("false alarms ≤ 1 per 10,000 in-control points (all types)", overall.fa_per_10k,
         overall.fa_per_10k <= 1.0),
    ]
    for name, got, ok in checks:
        print(f"- {'met' if ok else 'NOT met'}: {name} — {_fmt(got)}")
    speed = ", ".join(f"{label} {1e6 * seconds[label] / points[label]:.1f}"
                      for label in labels if label in seconds)
    print(f"\nµs per point (one core): {speed}. KSWIN ran on every {args.kswin_every}th series."
          f" Total {time.perf_counter() - began:.0f} s on {args.workers} workers.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
