"""Resident memory per tracked series, at 1,000,000 series, for each cheap detector.

    .venv/bin/python bench/memory.py           # 1,000,000 series per detector
    .venv/bin/python bench/memory.py --quick   # 30,000 series
    .venv/bin/python bench/memory.py --path per-event   # Monitor.observe, one event at a time

For each detector (shewhart, ewma, cusum, and ensemble — their combination, and the default
detector of the config — when registered), in a fresh child process: build
the ``BatchProcessor`` of `vigil run` (default config but that detector, ``state.max_series``
= N), then feed it telemetry events as records of 64 partitions of ``telemetry``, each event
carrying ``--metrics`` (10) new series of a new source, so each of the N series gets one
point, exactly as the consume loop would decode and hold them (``BatchProcessor.process``,
batches of 1,000): ``--path batch`` (default) scores each batch with ``Monitor.observe_many``
(series of the common configurations live in a ``detectors.bank.SeriesBank``), ``--path
per-event`` one event at a time with ``Monitor.observe`` (one object detector per series).
Measured:

- RSS delta / N, with tracemalloc off (/proc/self/statm before and after, after gc);
- traced Python allocation delta / N, in a second child with tracemalloc on (no allocator
  rounding or free-list slack: the difference to RSS is pymalloc/malloc overhead);
- a breakdown of where the bytes go, by component, from ``sys.getsizeof`` of the real
  structures (containers) and tracemalloc of 10,000 copies (per-object state).

One point per series understates detectors that keep windows (the ensemble keeps its last
``rebaseline_after`` points): the steady-state column adds what a detector holds after
``--steady-points`` (2,500) points, from tracemalloc over ``--steady-copies`` detectors.

Targets: ≤ 1 KB per series for the Shewhart/EWMA/CUSUM state (issue 7), ≤ 4 KB for the
default adaptive detector, whose memories fill within its first 2,048 points (issue 11).
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import math
import subprocess
import sys
import time
import tracemalloc
from collections import namedtuple
from typing import Any

import common
from common import fmt_rate, header

Record = namedtuple("Record", "topic partition offset key value")
TARGETS = {"adaptive": 4096}
"""Bytes per series at steady state, by detector; 1,024 for the others."""
TARGET = 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--metrics", type=int, default=10, help="series per event (source)")
    parser.add_argument("--detectors", default=None,
                        help="comma-separated (default: shewhart, ewma, cusum if registered)")
    parser.add_argument("--trace-series", type=int, default=200_000,
                        help="series in the tracemalloc children (slow: ~8x; per-series "
                        "figures barely depend on the count)")
    parser.add_argument("--steady-points", type=int, default=2_500,
                        help="points per detector for the steady-state size (windows full)")
    parser.add_argument("--steady-copies", type=int, default=300,
                        help="detectors measured at steady state (tracemalloc)")
    parser.add_argument("--quick", action="store_true",
                        help="30,000 series; tracemalloc for the first detector at 10,000")
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="skip the tracemalloc children (they take ~2x as long)")
    parser.add_argument("--path", choices=("batch", "per-event"), default="batch",
                        help="the monitor's batch API (default) or one event at a time")
    parser.add_argument("--child", nargs=2, metavar=("DETECTOR", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.series, args.trace_series, args.steady_copies = 30_000, 10_000, 100
    if args.child:
        detector, mode = args.child
        print(json.dumps(child(detector, mode, args)))
        return 0
    return run(args)


def detectors_to_run(args: argparse.Namespace) -> list[str]:
    from vigil.detectors import detector_names

    names = detector_names()
    if args.detectors:
        return [d.strip() for d in args.detectors.split(",")]
    from vigil.stream.config import load_config

    default = load_config(environ={}).detector.name
    wanted = ["shewhart", "ewma", "cusum", "ensemble", default]
    return [d for d in dict.fromkeys(wanted) if d in names]


def run(args: argparse.Namespace) -> int:
    from vigil.detectors import detector_names

    print(__doc__.strip().splitlines()[0])
    common.print_machine()
    chosen = detectors_to_run(args)
    from vigil.stream.config import load_config

    print(f"registered detectors: {', '.join(detector_names())}; default: "
          f"{load_config(environ={}).detector.name}; measuring {', '.join(chosen)}")
    print(f"sizes: {args.series:,} series, one point each, {args.partitions} partitions, "
          f"{args.metrics} series per event; path: {args.path}")
    results: dict[str, dict[str, Any]] = {}
    for name in chosen:
        header(f"{name}")
        started = time.perf_counter()
        rss = run_child(name, "rss", args)
        print(f"RSS: {rss['rss_delta'] / args.series:,.0f} bytes/series "
              f"({rss['rss_delta'] / 2**20:,.0f} MiB for {rss['series']:,} series; "
              f"fed in {rss['feed_s']:.1f} s = {fmt_rate(rss['series'] / rss['feed_s'])} "
              f"points/s; child took {time.perf_counter() - started:.0f} s)")
        traced = None
        if not args.no_tracemalloc and not (args.quick and results):
            started = time.perf_counter()
            traced = run_child(name, "trace", args, series=min(args.series, args.trace_series))
            per = traced["traced_delta"] / traced["series"]
            traced["per_series"] = per
            print(f"traced Python allocations: {per:,.0f} bytes/series at "
                  f"{traced['series']:,} series (child took {time.perf_counter() - started:.0f} "
                  "s); where the held bytes were allocated:")
            print("| allocated at | code | bytes/series | objects/series |")
            print("|---|---|---:|---:|")
            for where, code, size, count in traced["sites"]:
                print(f"| `{where}` | `{code}` | {size / traced['series']:,.1f} | "
                      f"{count / traced['series']:.2f} |")
        results[name] = {"rss": rss, "trace": traced}
        print_breakdown(rss["breakdown"], rss["rss_delta"] / args.series,
                        traced["per_series"] if traced else None)
        one_point = rss["breakdown"][0][1]
        steady = rss["steady_detector"]
        rss["steady_per_series"] = rss["rss_delta"] / args.series - one_point + steady
        if rss["breakdown"][0][0].startswith("BankSeries"):
            print("steady state: a banked series holds the same handle and columns after any "
                  "number of in-control points (an open ensemble episode holds an object "
                  "detector until it ends)")
            continue
        print(f"steady state: the detector holds {steady:,.0f} bytes after "
              f"{args.steady_points} points (tracemalloc of {args.steady_copies:,}) against "
              f"{one_point:,.0f} after one: about {rss['steady_per_series']:,.0f} bytes/series "
              "once every series has that many points (RSS per series - one-point detector + "
              "steady detector; allocator overhead on the growth not included)")

    header("result: bytes per series")
    print(f"| detector | RSS delta / series (1 point each) | traced / series | steady state "
          f"({args.steady_points} points), estimated | target (steady state) |")
    print("|---|---:|---:|---:|---|")
    for name, item in results.items():
        per = item["rss"]["rss_delta"] / args.series
        traced_text = f"{item['trace']['per_series']:,.0f}" if item["trace"] else "–"
        steady = item["rss"]["steady_per_series"]
        target = TARGETS.get(name, TARGET)
        verdict = "met" if steady <= target else f"not met ({steady / target:.1f}x)"
        print(f"| {name} | {per:,.0f} | {traced_text} | {steady:,.0f} | ≤ {target:,}: "
              f"{verdict} |")
    common.print_load()
    common.dump_json(common.WORKDIR / "memory.json",
                     {"machine": common.machine(), "args": vars(args), "results": results})
    return 0


def run_child(detector: str, mode: str, args: argparse.Namespace,
              series: int | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", detector, mode, "--series",
               str(series or args.series), "--partitions", str(args.partitions), "--metrics",
               str(args.metrics), "--path", args.path, "--steady-points", str(args.steady_points),
               "--steady-copies", str(args.steady_copies)]
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {detector}/{mode} failed:\n{done.stderr.decode()}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


# --- in the child ----------------------------------------------------------------------------

def child(detector: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Feed one point to each of ``args.series`` series; report the memory they hold."""
    trace = mode == "trace"
    if trace:
        tracemalloc.start()
    from tests.per_event import PerEventProcessor
    from vigil.stream.config import load_config
    from vigil.stream.engine.processor import BatchProcessor, build_engine

    config = load_config(environ={}, overrides={"detector.name": detector,
                                                "state.max_series": args.series})
    engine = PerEventProcessor if args.path == "per-event" else BatchProcessor
    processor = build_engine(config, processor=engine)
    topic = config.topics.telemetry
    metrics = args.metrics
    events = math.ceil(args.series / metrics)
    names = [f"metric_{j}" for j in range(metrics)]
    gc.collect()
    rss_before = common.rss_bytes()
    traced_before = tracemalloc.get_traced_memory()[0] if trace else 0
    snapshot_before = tracemalloc.take_snapshot() if trace else None
    started = time.perf_counter()
    offsets = [0] * args.partitions
    batch: list[Record] = []
    left = args.series
    for index in range(events):
        width = min(metrics, left)
        left -= width
        value = {"source": f"source-{index:07d}", "timestamp": 1_767_225_600.0 + index * 1e-3,
                 "metrics": {names[j]: 100.0 + (index * 7 + j) % 13 for j in range(width)}}
        partition = index % args.partitions
        batch.append(Record(topic, partition, offsets[partition], value["source"].encode(),
                            json.dumps(value).encode()))
        offsets[partition] += 1
        if len(batch) == 1000:
            processor.process(batch)
            batch = []
    if batch:
        processor.process(batch)
    del batch
    feed_s = time.perf_counter() - started
    gc.collect()
    rss_after = common.rss_bytes()
    traced_after = tracemalloc.get_traced_memory()[0] if trace else 0
    monitor = processor.monitor
    result: dict[str, Any] = {
        "series": monitor.series_count, "rss_delta": rss_after - rss_before,
        "traced_delta": traced_after - traced_before, "feed_s": feed_s,
    }
    if snapshot_before is not None:
        grown = tracemalloc.take_snapshot().compare_to(snapshot_before, "lineno")
        result["sites"] = [
            (f"{frame.filename.replace(str(common.REPO) + '/', '')}:{frame.lineno}",
             linecache.getline(frame.filename, frame.lineno).strip(), stat.size_diff,
             stat.count_diff)
            for stat in grown[:12]
            for frame in [stat.traceback[0]]
        ]
    else:
        result["breakdown"] = breakdown(monitor, detector)
        if result["breakdown"][0][0].startswith("BankSeries"):
            # a banked series holds the same columns after any number of in-control points
            result["steady_detector"] = result["breakdown"][0][1]
        else:
            result["steady_detector"] = steady_detector_bytes(detector, args.steady_points,
                                                              args.steady_copies)
    return result


def breakdown(monitor: Any, detector: str) -> list[tuple[str, float, str]]:
    """(component, bytes per series, how it was measured) for what the monitor holds."""
    n = monitor.series_count
    parts: list[tuple[str, float, str]] = []
    partitions = monitor._partitions  # noqa: SLF001 - a benchmark looks inside on purpose
    recency = monitor._recency  # noqa: SLF001
    all_series = [(pid, sid, s) for pid, part in partitions.items()
                  for sid, s in part.series.items()]
    sample_series = all_series[0][2]

    handle = sample_series.detector
    if type(handle).__name__ == "BankSeries":
        banks = {id(s.detector.bank): s.detector.bank for _, _, s in all_series}
        columns = sum(column.nbytes for bank in banks.values() for chart in bank.charts
                      for column in chart.columns.values())
        slots = sum(sys.getsizeof(bank._handles) for bank in banks.values())  # noqa: SLF001
        parts.append(("BankSeries handle (slots: bank, slot, detector, owner, name)",
                      sys.getsizeof(handle), "getsizeof"))
        parts.append((f"bank columns ({len(banks)} bank(s), numpy, with growth slack)",
                      columns / n, "nbytes / N"))
        parts.append(("bank slot list (handle per slot)", slots / n, "getsizeof(list) / N"))
    else:
        det_bytes, det_note = traced_detector_bytes(detector)
        parts.append((f"detector object ({type(handle).__name__}), deep", det_bytes, det_note))
    stats = getattr(sample_series.detector, "_stats", None)
    if stats is not None:
        floats = sum(sys.getsizeof(getattr(stats, a)) for a in ("mean", "m2"))
        parts.append(("  (included above) RunningStats (slots) + its 2 floats",
                      sys.getsizeof(stats) + floats, "getsizeof"))
    parts.append(("Series (slots: detector, last_seen, episode, group, last_alert, id, "
                  "partition)",
                  sys.getsizeof(sample_series), "getsizeof"))
    seen: set[int] = set()
    last_seen = 0
    for _, _, series in all_series:
        if id(series.last_seen) not in seen:
            seen.add(id(series.last_seen))
            last_seen += sys.getsizeof(series.last_seen)
    parts.append(("Series.last_seen float (shared by an event's series)", last_seen / n,
                  "getsizeof, dedup by id"))
    tables = sum(sys.getsizeof(part.series) for part in partitions.values())
    parts.append((f"partition dicts' entries ({len(partitions)} dicts)", tables / n,
                  "getsizeof(dict) / N"))
    tuples = strings = 0
    seen.clear()
    for _, sid, _ in all_series:
        tuples += sys.getsizeof(sid)
        for text in sid:
            if id(text) not in seen:
                seen.add(id(text))
                strings += sys.getsizeof(text)
    parts.append(("SeriesId tuple (event_type, key, metric)", tuples / n, "getsizeof"))
    parts.append(("its str objects (key shared by an event's series)", strings / n,
                  "getsizeof, dedup by id"))
    parts.append(("recency OrderedDict (table + linked-list nodes)", sys.getsizeof(recency) / n,
                  "getsizeof(OrderedDict) / N"))
    inner = 0
    seen.clear()
    for series in recency:
        partition = series.partition
        if partition is not None and id(partition) not in seen:
            seen.add(id(partition))
            inner += sys.getsizeof(partition) + sys.getsizeof(partition[1])
    parts.append(("Series.partition (topic, partition) tuples (one per record)", inner / n,
                  "getsizeof, dedup by id"))
    for attr, value in vars(monitor).items():
        if attr in ("_partitions", "_recency") or not isinstance(value, dict) or not value:
            continue
        held = sys.getsizeof(value)
        seen.clear()
        for item in value.values():
            if isinstance(item, tuple) and id(item) not in seen:
                seen.add(id(item))
                held += sys.getsizeof(item)
        parts.append((f"Monitor.{attr} ({len(value):,} entries: table + tuple values)",
                      held / n, "getsizeof, dedup by id"))
    return parts


def traced_detector_bytes(name: str) -> tuple[float, str]:
    """Bytes one detector (default params) holds after one point: tracemalloc of 10,000."""
    from vigil.detectors import build_detector

    params: dict[str, Any] = {}
    copies = 10_000
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = []
    for i in range(copies):
        detector = build_detector(name, params)
        detector.update(100.0 + i % 13, 1_767_225_600.0)
        held.append(detector)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    list_bytes = sys.getsizeof(held)
    return (after - before - list_bytes) / copies, "tracemalloc of 10,000 copies"


def steady_detector_bytes(name: str, points: int, copies: int) -> float:
    """Bytes one detector holds after ``points`` points (its windows full): tracemalloc over
    ``copies`` detectors fed N(100, 10) values, one shared timestamp per step as from one
    event."""
    import random

    from vigil.detectors import build_detector

    rng = random.Random(9)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = [build_detector(name, {}) for _ in range(copies)]
    for step in range(points):
        timestamp = 1_767_225_600.0 + step
        for detector in held:
            detector.update(rng.gauss(100.0, 10.0), timestamp)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before - sys.getsizeof(held)) / copies


def print_breakdown(parts: list[list[Any]], rss_per: float, traced_per: float | None) -> None:
    print("| component | bytes/series | measured by |")
    print("|---|---:|---|")
    total = 0.0
    for name, size, how in parts:
        if "(included above)" not in name:
            total += size
        print(f"| {name} | {size:,.0f} | {how} |")
    print(f"| **sum of the above** | **{total:,.0f}** | |")
    if traced_per is not None:
        print(f"| traced total (tracemalloc child) | {traced_per:,.0f} | tracemalloc |")
    print(f"| RSS delta | {rss_per:,.0f} | /proc/self/statm |")
    print(f"| allocator overhead, fragmentation (RSS - sum) | {rss_per - total:,.0f} | |")


if __name__ == "__main__":
    sys.exit(main())
