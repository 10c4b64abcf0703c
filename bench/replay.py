"""Rate of offline `vigil replay` on a large CSV, against the csv module's own ceilings.

    .venv/bin/python bench/replay.py            # 10,000,000 rows, 1,000 keys (a few minutes)
    .venv/bin/python bench/replay.py --quick    # 200,000 rows
    .venv/bin/python bench/replay.py --profile  # also py-spy over `vigil replay` (--profile-rows)

The input (``timestamp,value,key``: 1,000 keys, one row per key in turn, N(100, 10) values)
is generated once and cached in var/bench/. `vigil replay IN.csv -o /dev/null` runs as a
child process with the config's default detector (and shewhart, if that is not the default);
its wall time, less the start-up of a replay of a one-row file, gives rows/s. For scale, the
same run measures in-process what reading and writing alone cost: the csv module reading and
splitting the rows, and parsing the numbers; numpy.loadtxt (C parser) reading all three
columns; csv.writer writing 9-column rows; and column-wise formatting of the 9 output columns
(``map(repr, ...)`` and ``",".join``), the best a vectorised writer without a C extension can
do. Target (issue 7): ≥ 1,000,000 rows/s.
"""

from __future__ import annotations

import argparse
import csv
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--detector", action="append", default=None,
                        help="replay with this detector (repeatable; 'default' is the config "
                        "default; default: the config default, and shewhart if different)")
    parser.add_argument("--quick", action="store_true", help="200,000 rows")
    parser.add_argument("--ceiling-rows", type=int, default=1_000_000,
                        help="rows for the in-process csv-module ceilings")
    parser.add_argument("--profile", action="store_true",
                        help="then profile `vigil replay` with py-spy")
    parser.add_argument("--profile-rows", type=int, default=1_000_000)
    parser.add_argument("--profile-rate", type=int, default=100)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.ceiling_rows, args.profile_rows = 200_000, 200_000, 200_000
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


def ceilings(path: Path, rows: int) -> dict[str, float]:
    """Rows/s of the csv module alone over the first ``rows`` rows (in this process)."""
    out: dict[str, float] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        started = time.perf_counter()
        for count, _ in enumerate(reader, start=1):
            if count >= rows:
                break
        out["csv.reader, rows only"] = count / (time.perf_counter() - started)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        started = time.perf_counter()
        total = 0.0
        for count, row in enumerate(reader, start=1):
            total += float(row[0]) + float(row[1])
            if count >= rows:
                break
        out["csv.reader + float() of timestamp and value"] = count / (
            time.perf_counter() - started)
    with open(os.devnull, "w", encoding="utf-8") as sink:
        writer = csv.writer(sink, lineterminator="\n")
        row = ["1767225600.0", "k1", "value", "100.25", "0.123457", "0", "100.0012",
               "70.00123", "130.0012"]
        started = time.perf_counter()
        for _ in range(rows):
            writer.writerow(row)
        out["csv.writer, 9 pre-formatted columns"] = rows / (time.perf_counter() - started)
    import numpy as np

    started = time.perf_counter()
    table = np.loadtxt(path, delimiter=",", skiprows=1, max_rows=rows,
                       dtype=[("timestamp", "f8"), ("value", "f8"), ("key", "U32")])
    out["numpy.loadtxt, all 3 columns (C parser)"] = len(table) / (time.perf_counter() - started)
    n = len(table)
    numbers = np.random.default_rng(3).normal(100.0, 10.0, size=(6, n))
    started = time.perf_counter()
    timestamps = list(map(repr, table["timestamp"].tolist()))
    keys = table["key"].tolist()
    metric = ["value"] * n
    values = list(map(repr, table["value"].tolist()))
    scores = list(map("{:.6g}".format, numbers[0].tolist()))
    flags = ["0"] * n
    limits = [list(map("{:.10g}".format, column.tolist())) for column in numbers[1:4]]
    text = "\n".join(map(",".join, zip(timestamps, keys, metric, values, scores, flags,
                                        *limits, strict=True)))
    out["column-wise formatting of the 9 output columns + join"] = n / (
        time.perf_counter() - started)
    del text
    return out


def run(args: argparse.Namespace) -> int:
    from vigil.stream.config import load_config

    print(__doc__.strip().splitlines()[0])
    common.print_machine()
    default = load_config(environ={}).detector.name
    detectors = list(dict.fromkeys(
        default if d == "default" else d for d in (args.detector or [default, "shewhart"])))
    print(f"default detector: {default}; replaying with: {', '.join(detectors)}")
    path = ensure_csv(args.rows, args.keys)
    print(f"input: {path} ({args.rows:,} rows, {args.keys:,} keys, "
          f"{path.stat().st_size / 2**20:,.0f} MiB)")
    tiny = ensure_csv(1, 1)

    header("start-up: vigil replay of a one-row file")
    startup = min(timed(vigil_command(tiny, detectors[0]))[0] for _ in range(3))
    print(f"{startup:.2f} s (best of 3; subtracted below)")

    rates: dict[str, dict[str, float]] = {}
    for detector in detectors:
        header(f"vigil replay {path.name} -o /dev/null --detector {detector}")
        wall, cpu, stderr = timed(vigil_command(path, detector))
        print(stderr.splitlines()[-1] if stderr else "")
        rate = args.rows / max(wall - startup, 1e-9)
        print(f"wall {wall:.1f} s (CPU {cpu:.1f} s): {fmt_rate(args.rows / wall)} rows/s "
              f"including start-up, {fmt_rate(rate)} rows/s without")
        rates[detector] = {"wall_s": wall, "cpu_s": cpu, "rows_per_s": rate}

    header(f"csv-module ceilings, in-process, first {args.ceiling_rows:,} rows")
    ceiling = ceilings(path, min(args.ceiling_rows, args.rows))
    for name, value in ceiling.items():
        print(f"{name}: {fmt_rate(value)} rows/s")

    header("result")
    print("| what | rows/s | µs/row |")
    print("|---|---:|---:|")
    for detector, item in rates.items():
        print(f"| vigil replay --detector {detector} (without start-up) | "
              f"{fmt_rate(item['rows_per_s'])} | {1e6 / item['rows_per_s']:.2f} |")
    for name, value in ceiling.items():
        print(f"| {name} | {fmt_rate(value)} | {1e6 / value:.2f} |")
    for detector, item in rates.items():
        rate = item["rows_per_s"]
        print(f"{detector}: target >= {fmt_rate(TARGET)} rows/s "
              f"{'met' if rate >= TARGET else 'not met'} ({rate / TARGET:.3f} of it)")
    print(f"start-up {startup:.2f} s is paid once per replay")
    common.print_load()
    result: dict[str, Any] = {"machine": common.machine(), "args": vars(args),
                              "startup_s": startup, "detectors": rates, "ceilings": ceiling}
    if args.profile:
        source = path if args.profile_rows >= args.rows else ensure_csv(args.profile_rows,
                                                                        args.keys)
        for detector in detectors:
            header(f"profile: py-spy over vigil replay --detector {detector}, "
                   f"{args.profile_rows:,} rows")
            out = WORKDIR / f"replay-{detector}.pyspy.txt"
            done, seconds = common.record_command(vigil_command(source, detector), out,
                                                  args.profile_rate)
            if done.returncode != 0:
                raise RuntimeError(done.stderr.decode())
            print(f"(profiled run: {seconds:.1f} s; raw stacks in {out}; start-up imports "
                  "left out of the tables below)")
            profile = common.Profile.read(out, threads=["MainThread"],
                                          within="replay (stream/replay.py")
            everything = common.Profile.read(out, threads=["MainThread"])
            print(f"{everything.samples} samples in all, {profile.samples} inside replay(): "
                  f"~{everything.samples / (seconds * args.profile_rate):.0%} of a core "
                  "(the rest of the wall time this process waited for a CPU)")
            common.print_profile(profile)
    common.dump_json(WORKDIR / "replay.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
