"""The adaptive detector per point: the object path (``AdaptiveDetector.update``) against the
compiled kernel (``AdaptiveKernel.score_points``), side by side in one run.

    .venv/bin/python bench/adaptive_kernel.py            # 100,000-point series, 10,000 series
    .venv/bin/python bench/adaptive_kernel.py --quick    # a tenth of it

Two workloads: one long series (a replay: a daily season at 5-minute points, noise, spikes and a
shift), and 10,000 series warmed up with 300 points each, then 10 points each interleaved at
random (a consume loop's polls, ``--poll`` points per call). Both paths must give the same
scores. Printed: µs per point of each path and their ratio, and the JIT compile time (a fresh
cache directory) against loading the compiled functions from numba's on-disk cache. Times are
the process's CPU time, so that other work on a shared machine weighs less on them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from vigil.detectors.adaptive import AdaptiveDetector
from vigil.detectors.adaptive_kernel import AdaptiveKernel

EPOCH = 1.7e9
_FIRST_CALL = """
import time
started = time.process_time()
import numpy as np
from vigil.detectors.adaptive import AdaptiveDetector
from vigil.detectors.adaptive_kernel import AdaptiveKernel
kernel = AdaptiveKernel(1)
kernel.load(0, AdaptiveDetector().state_dict())
kernel.score_points([0] * 10, np.arange(10.0), np.arange(10.0))
print(time.process_time() - started)
"""


def long_series(points: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = EPOCH + 300.0 * np.arange(points)
    values = 100 + 30 * np.sin(2 * np.pi * (t % 86400) / 86400) + rng.normal(0, 3, points)
    values[rng.choice(points, points // 2000, replace=False)] += 50
    values[points * 2 // 3:] += 10
    return values, t


def per_point(seconds: float, points: int) -> float:
    return 1e6 * seconds / points


def bench_long(points: int) -> tuple[float, float]:
    values, times = long_series(points)
    detector = AdaptiveDetector()
    kernel = AdaptiveKernel(1)
    kernel.load(0, detector.state_dict())
    started = time.process_time()
    expected = [detector.update(v, t) for v, t in zip(values.tolist(), times.tolist(),
                                                       strict=True)]
    object_seconds = time.process_time() - started
    rows = np.zeros(points, np.int64)
    started = time.process_time()
    out = kernel.score_points(rows, values, times)
    kernel_seconds = time.process_time() - started
    if [r.score for r in expected] != out.score.tolist():
        sys.exit("the kernel's scores differ from the object path's")
    return per_point(object_seconds, points), per_point(kernel_seconds, points)


def bench_interleaved(series: int, poll: int) -> tuple[float, float]:
    rng = np.random.default_rng(2)
    warm, timed = 300, 10
    kernel = AdaptiveKernel(series)
    for row in range(series):
        kernel.load(row, AdaptiveDetector().state_dict())
    levels = rng.lognormal(3, 1, series)
    total = warm + timed
    rows = np.tile(np.arange(series), total)  # round by round, every series once a minute
    values = levels[rows] * (1 + 0.05 * rng.standard_normal(len(rows)))
    times = EPOCH + 60.0 * np.repeat(np.arange(total), series)
    split = warm * series
    kernel.score_points(rows[:split], values[:split], times[:split])
    detectors = [AdaptiveDetector.from_state(kernel.export(row)) for row in range(series)]
    # each round has every series once, in a random order (a series' points stay in order)
    order = np.concatenate([split + r * series + rng.permutation(series) for r in range(timed)])
    t_rows, t_values, t_times = rows[order], values[order], times[order]
    started = time.process_time()
    expected = [detectors[r].update(v, t) for r, v, t in
                zip(t_rows.tolist(), t_values.tolist(), t_times.tolist(), strict=True)]
    object_seconds = time.process_time() - started
    scores = []
    started = time.process_time()
    for at in range(0, len(order), poll):
        scores.append(kernel.score_points(t_rows[at:at + poll], t_values[at:at + poll],
                                          t_times[at:at + poll]).score)
    kernel_seconds = time.process_time() - started
    if [r.score for r in expected] != np.concatenate(scores).tolist():
        sys.exit("the kernel's scores differ from the object path's")
    return per_point(object_seconds, len(order)), per_point(kernel_seconds, len(order))


def first_call_seconds(cache_dir: str) -> float:
    """Seconds from import to the first scored point in a fresh process caching in
    ``cache_dir``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    done = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                          capture_output=True, text=True)
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the points")
    parser.add_argument("--poll", type=int, default=500, help="points per kernel call")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile timing")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    if not args.no_compile:
        with tempfile.TemporaryDirectory() as cache_dir:
            compiled = first_call_seconds(cache_dir)
            loaded = first_call_seconds(cache_dir)
        print(f"JIT compile (empty cache) {compiled:6.1f} s   from the on-disk cache "
              f"{loaded:6.2f} s")
    warm = AdaptiveKernel(1)  # compiled (or loaded) before anything is timed
    warm.load(0, AdaptiveDetector().state_dict())
    warm.score_points([0], [1.0], [EPOCH])
    print(f"{'workload':<34} {'object µs/pt':>13} {'kernel µs/pt':>13} {'ratio':>7}")
    for name, (obj, ker) in (
            (f"one series, {100_000 // scale:,} points", bench_long(100_000 // scale)),
            (f"{10_000 // scale:,} series interleaved", bench_interleaved(10_000 // scale,
                                                                         args.poll))):
        print(f"{name:<34} {obj:13.2f} {ker:13.3f} {obj / ker:7.0f}")


if __name__ == "__main__":
    main()
