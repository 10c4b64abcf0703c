"""Real-world judgement: the NAB development half replayed with the default configuration.

    .venv/bin/python bench/nab.py [--nab DIR] [--workers 2] [--per-file]
                                  [--detector NAME --param K=V ...]

Every file of the Numenta Anomaly Benchmark's development half (31 series, 57 labelled anomaly
windows; see its README.md) goes through ``stream.replay.replay`` — the code path of
``vigil replay`` — with the default configuration of ``stream.config``, and the result folders
are scored by NAB's scorer (``nab_score.py`` beside the data) in two variants:

- (a) ``anomaly_score`` = Vigil's calibrated score: the scorer picks one threshold per profile
  over the whole corpus, so this measures how well the scores rank across series;
- (b) Vigil's own alerts at its default alert threshold as 0/1 detections: what an operator
  gets. (b) close to (a) says the score is calibrated and the default threshold is sound.

Each is also scored on the two halves of the 31 files (alternate files within each category,
each half with its own threshold), a guard against choices that help one set of files only.
The published detectors' scores on the same 31 files, same scorer, are printed beside Vigil's.
Result folders are left in ``var/bench/nab/`` for the scorer's ``--per-file`` view.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from vigil.stream.cli import parse_params
from vigil.stream.config import load_config
from vigil.stream.replay import replay

REPO = Path(__file__).resolve().parent.parent
WORKDIR = REPO / "var" / "bench" / "nab"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PUBLISHED = {  # the development half's README: same 31 files, same scorer
    "ARTime": (78.2, 70.4, 83.1),
    "CAD OSE": (74.1, 71.7, 76.9),
    "Numenta HTM": (71.2, 65.0, 75.9),
    "KNN CAD": (64.4, 50.4, 71.0),
    "Relative Entropy": (56.3, 48.8, 60.9),
    "earthgecko Skyline": (56.1, 45.1, 61.4),
    "Random Cut Forest": (52.0, 38.3, 61.0),
    "Twitter ADVec": (46.4, 33.2, 52.6),
    "Windowed Gaussian": (36.7, 21.4, 45.2),
}
TARGETS = {"standard": 75.0, "reward_low_FP_rate": 65.0}


def default_nab() -> Path | None:
    """The development half next to the repository (``../shared/datasets/nab-dev``), or
    ``$VIGIL_NAB``."""
    candidates = [os.environ.get("VIGIL_NAB", "")]
    candidates += [str(parent / "shared" / "datasets" / "nab-dev") for parent in REPO.parents]
    for candidate in candidates:
        if candidate and (Path(candidate) / "labels" / "combined_windows.json").exists():
            return Path(candidate)
    return None


def load_scorer(nab: Path) -> ModuleType:
    """NAB's scorer as a module: the copy beside the data, else ``shared/tools``."""
    for path in (nab / "nab_score.py", nab.parent.parent / "tools" / "nab_score.py"):
        if path.exists():
            spec = importlib.util.spec_from_file_location("nab_score", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise SystemExit(f"no nab_score.py beside {nab}")


def data_files(nab: Path) -> list[str]:
    """Relative paths (``category/name.csv``) of every labelled file, sorted."""
    windows = json.loads((nab / "labels" / "combined_windows.json").read_text())
    return sorted(windows)


def halves(files: Sequence[str]) -> tuple[list[str], list[str]]:
    """Alternate files within each category: two halves with every category in both."""
    first: list[str] = []
    second: list[str] = []
    seen: dict[str, int] = {}
    for rel in files:
        category = rel.split("/", 1)[0]
        index = seen.get(category, 0)
        seen[category] = index + 1
        (first if index % 2 == 0 else second).append(rel)
    return first, second


_JOB: dict[str, Any] = {}  # set before the pool forks


def replay_file(rel: str) -> tuple[str, list[str], list[str], float]:
    """Replay one file through ``vigil replay``'s code path: its scores, its alerts (0/1) and
    the seconds it took."""
    path = Path(_JOB["nab"]) / "data" / rel
    output = io.StringIO()
    began = time.perf_counter()
    replay(path, output, _JOB["config"], errors=io.StringIO())
    spent = time.perf_counter() - began
    output.seek(0)
    scores, alerts = [], []
    for row in csv.DictReader(output):
        scores.append(row["score"])
        alerts.append(row["anomaly"])
    return rel, scores, alerts, spent


def write_results(nab: Path, folder: Path, columns: dict[str, list[str]]) -> None:
    """A NAB result folder: ``folder/<category>/<name>.csv`` with timestamp, value and
    anomaly_score, one row per data row."""
    shutil.rmtree(folder, ignore_errors=True)
    for rel, scores in columns.items():
        with (nab / "data" / rel).open(newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        if len(rows) != len(scores):
            raise SystemExit(f"{rel}: {len(rows)} data rows but {len(scores)} scored rows")
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(("timestamp", "value", "anomaly_score"))
            writer.writerows((row[0], row[1], score) for row, score in zip(rows, scores,
                                                                            strict=True))


def score(scorer: ModuleType, nab: Path, folder: Path, subset: bool = False,
          per_file: bool = False) -> dict[str, Any]:
    """The scorer's summary of a result folder (``subset``: only the files in it;
    ``per_file``: with each file's standard-profile rows under ``per_file_standard``)."""
    argv = ["--nab", str(nab), "--results", str(folder), "--quiet"]
    if subset:
        argv.append("--allow-missing")
    if per_file:
        argv.append("--per-file")
    summary: dict[str, Any] = scorer.main(argv)
    return summary


def subset(nab: Path, folder: Path, files: Sequence[str], target: Path) -> Path:
    """A copy of ``folder`` holding only ``files``, with a windows file of just those."""
    shutil.rmtree(target, ignore_errors=True)
    for rel in files:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, target / rel)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, default=None, help="the nab-dev folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--detector", help="instead of the configured default")
    parser.add_argument("--param", action="append", default=[], metavar="K=V",
                        help="detector parameter (with or without --detector), repeatable")
    parser.add_argument("--quick", action="store_true", help="the same run (about a minute)")
    parser.add_argument("--per-file", action="store_true",
                        help="also print each file's raw score, windows found and detections "
                             "outside windows (calibrated score, standard profile)")
    args = parser.parse_args(argv)
    nab = args.nab or default_nab()
    if nab is None:
        print("NAB development half not found (../shared/datasets/nab-dev or $VIGIL_NAB): "
              "skipped")
        return 0
    scorer = load_scorer(nab)
    config = load_config(None, environ={})
    detector = args.detector or config.detector.name
    params: dict[str, Any] = {} if detector != config.detector.name \
        else dict(config.detector.params)
    params.update(parse_params(args.param))
    _JOB.update(nab=str(nab), config=dataclasses.replace(config, detector=dataclasses.replace(
        config.detector, name=detector, params=params)))

    began = time.perf_counter()
    files = data_files(nab)
    scores: dict[str, list[str]] = {}
    alerts: dict[str, list[str]] = {}
    seconds = 0.0
    context = multiprocessing.get_context("fork")
    with context.Pool(args.workers) as pool:
        for rel, file_scores, file_alerts, spent in pool.imap_unordered(replay_file, files):
            scores[rel], alerts[rel] = file_scores, file_alerts
            seconds += spent
    points = sum(len(column) for column in scores.values())
    alarms = sum(a == "1" for column in alerts.values() for a in column)
    folders = {"score": WORKDIR / "score", "alerts": WORKDIR / "alerts"}
    write_results(nab, folders["score"], scores)
    write_results(nab, folders["alerts"], alerts)
    summaries = {name: score(scorer, nab, folder, per_file=args.per_file)
                 for name, folder in folders.items()}
    halves_of = halves(files)
    half_scores = {
        (name, h): score(scorer, nab, subset(nab, folder, half, WORKDIR / f"{name}-half{h}"),
                         subset=True)
        for name, folder in folders.items() for h, half in enumerate(halves_of, start=1)}

    shown = f"{detector} {params}" if params else detector
    windows = json.loads((nab / "labels" / "combined_windows.json").read_text())
    print(f"# NAB development half: {len(files)} files, {points:,} points, "
          f"{sum(len(w) for w in windows.values())} windows")
    print(f"\nVigil: `{shown}` through `vigil replay`'s code path; {alarms} alerts "
          f"({1e4 * alarms / points:.1f} per 10,000 points), {1e6 * seconds / points:.1f} µs "
          f"per point\n")
    print("| detector | standard | low FP | low FN |")
    print("|---|---:|---:|---:|")
    rows = [("**Vigil (a): calibrated score**", summaries["score"]),
            ("**Vigil (b): alerts at the default threshold**", summaries["alerts"])]
    for label, summary in rows:
        cells = " | ".join(f"{summary['profiles'][p]['normalized']:.1f}" for p in PROFILES)
        print(f"| {label} | {cells} |")
    for name, figures in PUBLISHED.items():
        print(f"| {name} | " + " | ".join(f"{x:.1f}" for x in figures) + " |")

    print("\nBy half (alternate files within each category, each half with its own threshold):"
          "\n")
    print("| variant | half | files | standard | low FP | low FN | windows found |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (name, h), summary in half_scores.items():
        cells = " | ".join(f"{summary['profiles'][p]['normalized']:.1f}" for p in PROFILES)
        found = summary["profiles"]["standard"]
        print(f"| ({'a' if name == 'score' else 'b'}) {name} | {h} | {summary['files']} | "
              f"{cells} | {found['windows_detected']}/{summary['windows']} |")
    print()
    for label, summary in rows:
        standard = summary["profiles"]["standard"]
        print(f"{label.strip('*')}: threshold {standard['threshold']:.6g}, "
              f"{standard['windows_detected']}/{summary['windows']} windows found, "
              f"{standard['fp_rows']} detections outside windows (standard profile)")
    if args.per_file:
        print("\nPer file (calibrated score, standard profile, at its corpus threshold):\n")
        print("| file | raw | windows found | detections outside |")
        print("|---|---:|---:|---:|")
        for row in summaries["score"]["per_file_standard"]:
            print(f"| {row['file']} | {row['raw']:.3f} | {row['windows_detected']}/"
                  f"{row['windows']} | {row['fp']} |")
    print("\nTargets (default configuration, development half):")
    for profile, target in TARGETS.items():
        for label, summary in rows:
            got = summary["profiles"][profile]["normalized"]
            print(f"- {'met' if got >= target else 'NOT met'}: {profile} >= {target:.0f} "
                  f"with {label.strip('*').split(':')[0]} - {got:.1f}")
    print(f"\nResult folders in {WORKDIR}; total {time.perf_counter() - began:.0f} s on "
          f"{args.workers} workers.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
