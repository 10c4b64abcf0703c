"""Resident memory of `vigil run` per series, measured from outside the process as it grows.

    .venv/bin/python bench/run_memory.py                 # up to 1,000,000 series
    .venv/bin/python bench/run_memory.py --quick         # up to 50,000 series
    .venv/bin/python bench/run_memory.py --detector ensemble

On the embedded broker, `vigil run` (default configuration but the broker, a group and a
metrics port; ``--detector`` names another detector) consumes telemetry events of new
sources, each source a key with five metrics (five series per key), one event per source, so
every series gets ``--points`` points. After each milestone (a few thousand series, then more
up to the largest) has been processed and a checkpoint interval has passed, the process's
resident memory is read from ``/proc/PID/status`` (``VmRSS``, and ``VmHWM``, its peak).
Printed: RSS at each milestone and the growth per series from the first milestone, which is
what a deployment must provision per series (interpreter, libraries and buffers are in the
first figure). Target (the throughput issue): ≤ 1 KB per series.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import common
from common import WORKDIR, header

from tests.vigil_process import VigilProcess

METRICS = ("latency_ms", "cpu_percent", "memory_mb", "requests_per_s", "errors")
TARGET_BYTES = 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--milestones", default="5000,50000,250000,1000000",
                        help="series counts at which to read the memory (comma-separated)")
    parser.add_argument("--quick", action="store_true", help="milestones 5,000,20,000,50,000")
    parser.add_argument("--points", type=int, default=1, help="points per series")
    parser.add_argument("--detector", default="default")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--checkpoint-interval", type=float, default=None,
                        help="state.checkpoint_interval_s (default: the configuration's)")
    args = parser.parse_args(argv)
    milestones = [5_000, 20_000, 50_000] if args.quick else [
        int(m) for m in args.milestones.split(",")]
    if milestones != sorted(milestones) or milestones[0] < len(METRICS):
        parser.error("milestones must grow and hold at least one key each")
    return run(milestones, args)


def run(milestones: list[int], args: argparse.Namespace) -> int:
    from vigil.stream.config import load_config
    from vigil.stream.kafka.broker import free_port
    from vigil.stream.kafka.kafka_python import make_producer

    print(__doc__.strip().splitlines()[0])
    common.print_machine()
    name = load_config(environ={}).detector.name if args.detector == "default" else args.detector
    print(f"detector: {name}; {len(METRICS)} series per key; {args.points} point(s) per series")
    broker = common.start_broker("run-memory")
    vigil = None
    rows: list[tuple[int, int, int]] = []
    try:
        bootstrap = broker.bootstrap_servers
        common.create_input_topics(bootstrap, args.partitions)
        port = free_port()
        extra = "" if args.detector == "default" else f'[detector]\nname = "{args.detector}"\n'
        if args.checkpoint_interval is not None:
            extra += f"[state]\ncheckpoint_interval_s = {args.checkpoint_interval}\n"
        config_path = common.write_config(WORKDIR / "run-memory.toml", bootstrap,
                                          group="run-memory", metrics_port=port, extra=extra)
        config = load_config(config_path, environ={})
        vigil = VigilProcess(config_path, WORKDIR / "run-memory-vigil.log", port)
        _wait_until_up(vigil)
        producer = make_producer(config)
        keys = events = 0
        header("resident memory of `vigil run` (from /proc/PID/status)")
        print("| series | events | RSS MB | peak MB | growth per series since the first |")
        print("|---:|---:|---:|---:|---:|")
        for milestone in milestones:
            wanted = milestone // len(METRICS)
            for point in range(args.points):
                for key in range(keys, wanted):
                    body = {"source": f"host-{key}", "timestamp": 1_767_225_600.0 + point,
                            "metrics": {m: 100.0 + (key * 7 + point * 3 + i) % 17
                                        for i, m in enumerate(METRICS)}}
                    producer.send(config.topics.telemetry, key=f"host-{key}".encode(),
                                  value=json.dumps(body).encode())
                    events += 1
            producer.flush()
            keys = wanted
            common.wait_until_processed(vigil.processed, events, timeout_s=600 + events / 500,
                                        alive=vigil.alive)
            time.sleep(min(config.state.checkpoint_interval_s, 30.0) + 2.0)  # a checkpoint
            rss, peak = _memory(vigil.pid)
            rows.append((keys * len(METRICS), rss, peak))
            series = keys * len(METRICS)
            growth = ("" if len(rows) == 1 else
                      f"{(rss - rows[0][1]) / (series - rows[0][0]):,.0f} B")
            print(f"| {series:,} | {events:,} | {rss / 2**20:,.0f} | {peak / 2**20:,.0f} | "
                  f"{growth} |", flush=True)
        producer.close()
    finally:
        if vigil is not None:
            vigil.stop(timeout_s=120)
        broker.stop()
    if len(rows) > 1:
        per_series = (rows[-1][1] - rows[0][1]) / (rows[-1][0] - rows[0][0])
        verdict = "met" if per_series <= TARGET_BYTES else "NOT met"
        print(f"\n- {verdict}: resident memory ≤ {TARGET_BYTES:,} B per series — "
              f"{per_series:,.0f} B ({rows[0][0]:,} → {rows[-1][0]:,} series, {name})")
    return 0


def _wait_until_up(vigil: VigilProcess, timeout_s: float = 120.0) -> None:
    """Until its metrics endpoint answers (the process has started and subscribed)."""
    deadline = time.monotonic() + timeout_s
    while vigil.processed() < 0:
        if not vigil.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"vigil run did not start:\n{vigil.log_tail()}")
        time.sleep(0.2)


def _memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)


if __name__ == "__main__":
    raise SystemExit(main())
