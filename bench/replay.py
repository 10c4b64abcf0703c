"""Rate of offline `vigil replay` on a large CSV, split into read, score and write.

    .venv/bin/python bench/replay.py            # 10,000,000 rows, 1,000 keys (make bench)
    .venv/bin/python bench/replay.py --quick    # 200,000 rows
    .venv/bin/python bench/replay.py --cli      # also `vigil replay` end to end, as a child
    .venv/bin/python bench/replay.py --profile  # also py-spy over `vigil replay` (--profile-rows)

The input (``timestamp,value,key``: 1,000 keys, one row per key in turn, N(100, 10) values)
is generated once and cached in var/bench/. For each detector (the config's default,
adaptive, and ensemble side by side) the stages of a CSV replay are timed in-process, through
the functions `vigil replay` calls: read (Arrow's CSV reader into checked columns), score (each
series over its arrays: `score_series`), write (the CSV text of every row, to /dev/null).
rows/s of a stage is the rows over that stage's time; the total is the rows over the three
together. Target (issue 7): >= 1,000,000 rows/s in total.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common
from common import WORKDIR, fmt_rate, header

TARGET = 1_000_000
STAGES = ("read", "score", "write")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--detector", action="append", default=None,
                        help="replay with this detector (repeatable; 'default' is the config "
                        "default; default: the config default and ensemble)")
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    parser.add_argument("--cli", action="store_true",
                        help="also time `vigil replay IN.csv -o /dev/null` as a child process")
    parser.add_argument("--profile", action="store_true",
                        help="then profile `vigil replay` with py-spy")
    parser.add_argument("--profile-rows", type=int, default=1_000_000)
    parser.add_argument("--profile-rate", type=int, default=100)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.profile_rows = 200_000, 200_000
    return run(args)


def ensure_csv(rows: int, keys: int) -> Path:
    """``timestamp,value,key`` rows, generated once (about 28 bytes a row)."""
    path = WORKDIR / f"replay-{rows}-{keys}.csv"
    if path.exists() and path.stat().st_size > rows * 20:
        return path
    WORKDIR.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    gauss = rng.gauss
    names = [f"k{k}" for k in range(keys)]
    started = time.perf_counter()
    partial = path.with_suffix(".part")
    with partial.open("w", encoding="utf-8") as handle:
        handle.write("timestamp,value,key\n")
        start = 1_767_225_600.0
        chunk = 100_000
        for first in range(0, rows, chunk):
            handle.write("".join(
                f"{start + i * 0.001:.3f},{gauss(100.0, 10.0):.4f},{names[i % keys]}\n"
                for i in range(first, min(first + chunk, rows))))
    partial.rename(path)
    print(f"generated {path} ({path.stat().st_size / 2**20:,.0f} MiB) in "
          f"{time.perf_counter() - started:.0f} s")
    return path


def vigil_command(csv_path: Path, detector: str | None) -> list[str]:
    command = [sys.executable, "-m", "vigil.stream.cli", "replay", str(csv_path), "-o", os.devnull]
    return command + (["--detector", detector] if detector else [])


def timed(command: list[str]) -> tuple[float, float, str]:
    """(wall s, child CPU s, stderr) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, cwd=common.REPO, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr.decode().strip()


def stages(path: Path, detector: str) -> dict[str, float]:
    """Seconds of each stage of a CSV replay of ``path`` with ``detector``, in this process."""
    import numpy as np

    from vigil.stream.config import DetectorConfig, VigilConfig
    from vigil.stream.engine.processor import build_engine
    from vigil.stream.replay import (
        CSV_METRIC,
        WRITE_ROWS,
        JudgedRows,
        judge_series,
        read_csv_columns,
    )

    monitor = build_engine(VigilConfig(detector=DetectorConfig(detector))).monitor
    started = time.perf_counter()
    columns = read_csv_columns(path)
    read = time.perf_counter()
    if columns is None or columns.malformed:
        raise RuntimeError(f"{path} is not read over columns")
    judged = judge_series(columns, monitor)
    scored = time.perf_counter()
    if judged is None:
        raise RuntimeError(f"{path} is not scored over arrays")
    score, anomaly, centre, lower, upper, _ = judged
    rows = JudgedRows(columns.timestamp, columns.key_code, columns.keys,
                      np.zeros(len(score), np.int64), [CSV_METRIC], columns.value, score,
                      anomaly, centre, lower, upper, columns.timestamp_text, columns.value_text)
    with open(os.devnull, "wb") as sink:
        for start in range(0, len(rows), WRITE_ROWS):
            sink.write(memoryview(rows.slice(start, WRITE_ROWS).csv_bytes()))
    written = time.perf_counter()
    return {"read": read - started, "score": scored - read, "write": written - scored,
            "anomalies": float(np.count_nonzero(anomaly))}


def run(args: argparse.Namespace) -> int:
    from vigil.stream.config import load_config

    print(__doc__.strip().splitlines()[0])
    common.print_machine()
    default = load_config(environ={}).detector.name
    detectors = list(dict.fromkeys(
        default if d == "default" else d for d in (args.detector or [default, "ensemble"])))
    print(f"default detector: {default}; replaying with: {', '.join(detectors)}")
    path = ensure_csv(args.rows, args.keys)
    print(f"input: {path} ({args.rows:,} rows, {args.keys:,} keys, "
          f"{path.stat().st_size / 2**20:,.0f} MiB)")

    seconds: dict[str, dict[str, float]] = {}
    for detector in detectors:
        header(f"stages in-process, --detector {detector}")
        seconds[detector] = stages(path, detector)
        print(", ".join(f"{stage} {seconds[detector][stage]:.2f} s" for stage in STAGES)
              + f"; {seconds[detector]['anomalies']:.0f} anomalies")

    cli: dict[str, dict[str, float]] = {}
    if args.cli:
        tiny = ensure_csv(1, 1)
        header("start-up: vigil replay of a one-row file")
        startup = min(timed(vigil_command(tiny, detectors[0]))[0] for _ in range(3))
        print(f"{startup:.2f} s (best of 3; subtracted below)")
        for detector in detectors:
            header(f"vigil replay {path.name} -o /dev/null --detector {detector}")
            wall, cpu, stderr = timed(vigil_command(path, detector))
            print(stderr.splitlines()[-1] if stderr else "")
            cli[detector] = {"wall_s": wall, "cpu_s": cpu, "startup_s": startup,
                             "rows_per_s": args.rows / max(wall - startup, 1e-9)}
            print(f"wall {wall:.1f} s (CPU {cpu:.1f} s): "
                  f"{fmt_rate(cli[detector]['rows_per_s'])} rows/s without start-up")

    header(f"result: rows/s, {args.rows:,} rows")
    print("| stage | " + " | ".join(detectors) + " |")
    print("|---|" + "---:|" * len(detectors))
    totals = {d: args.rows / sum(seconds[d][stage] for stage in STAGES) for d in detectors}
    for stage in STAGES:
        print(f"| {stage} | " + " | ".join(fmt_rate(args.rows / seconds[d][stage])
                                          for d in detectors) + " |")
    print("| **total (read + score + write)** | "
          + " | ".join(f"**{fmt_rate(totals[d])}**" for d in detectors) + " |")
    if cli:
        print("| `vigil replay` end to end, without start-up | "
              + " | ".join(fmt_rate(cli[d]["rows_per_s"]) for d in detectors) + " |")
    for detector in detectors:
        rate = totals[detector]
        print(f"{detector}: target >= {fmt_rate(TARGET)} rows/s "
              f"{'met' if rate >= TARGET else 'NOT met'} ({rate / TARGET:.3f} of it)")
    common.print_load()
    result: dict[str, Any] = {"machine": common.machine(), "args": vars(args),
                              "stages_s": seconds, "rows_per_s": totals, "cli": cli}
    if args.profile:
        source = path if args.profile_rows >= args.rows else ensure_csv(args.profile_rows,
                                                                        args.keys)
        for detector in detectors:
            header(f"profile: py-spy over vigil replay --detector {detector}, "
                   f"{args.profile_rows:,} rows")
            out = WORKDIR / f"replay-{detector}.pyspy.txt"
            done, wall = common.record_command(vigil_command(source, detector), out,
                                               args.profile_rate)
            if done.returncode != 0:
                raise RuntimeError(done.stderr.decode())
            print(f"(profiled run: {wall:.1f} s; raw stacks in {out}; start-up imports "
                  "left out of the tables below)")
            profile = common.Profile.read(out, threads=["MainThread"],
                                          within="replay (stream/replay.py")
            everything = common.Profile.read(out, threads=["MainThread"])
            print(f"{everything.samples} samples in all, {profile.samples} inside replay(): "
                  f"~{everything.samples / (wall * args.profile_rate):.0%} of a core "
                  "(the rest of the wall time this process waited for a CPU)")
            common.print_profile(profile)
    common.dump_json(WORKDIR / "replay.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
