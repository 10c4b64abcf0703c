"""Offline engine benchmark: per-event ``Monitor.observe`` against batch ``observe_many``.

    .venv/bin/python bench/engine.py            # 200,000 events, shewhart and ensemble
    .venv/bin/python bench/engine.py --quick    # 40,000 events

No broker: synthetic events (``common.encoded_events``, 1,000 models and 1,000 sources, four
points per event) are encoded once, then judged in batches of ``--batch`` records by
``BatchProcessor.process`` (stream/engine/processor.py), exactly as the consume loop would
(decode, score,
alerts): ``tests.per_event.PerEventProcessor`` scores one event at a time (``Monitor.observe``),
``BatchProcessor`` scores the batch together (``Monitor.observe_many``). The first half of the
events warms the series up (not timed), the second half is timed. Both paths must raise the
same alerts. Printed: events/s and µs/event of each path, their ratio, and the ratio to a Kafka
client consuming and decoding at ``--client-us`` µs/event (target: Vigil's whole pipeline at ≥ 0.8
of the client's rate). Then the decode step alone on the same records: ``decode_event`` one
record at a time against ``decode_batch`` over each batch (the processor's), and orjson.loads.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections import namedtuple
from typing import Any

import common
from common import encoded_events

from tests.per_event import PerEventProcessor
from vigil.stream.config import load_config
from vigil.stream.engine.events import EventKind, decode_batch, decode_event
from vigil.stream.engine.processor import BatchProcessor, BatchResult, build_engine

Record = namedtuple("Record", "topic partition offset key value")


def records(count: int, predictions: str, telemetry: str) -> list[Record]:
    out = []
    for i, (kind, key, value, _) in enumerate(
            encoded_events(count, models=1000, sources=1000, seed=1)):
        topic = predictions if kind == "prediction" else telemetry
        out.append(Record(topic, zlib.crc32(key) % 6, i, key, value))
    return out


def measure(detector: str, count: int, batch_size: int) -> dict[str, Any]:
    config = load_config(environ={}, overrides={"detector.name": detector})
    recs = records(count, config.topics.predictions, config.topics.telemetry)
    half = count // 2
    figures: dict[str, Any] = {}
    alerts: dict[str, list[str]] = {}
    for path in ("per-event", "batch"):
        # a fixed clock after every event (2033): the same detected_at each run, no event ahead
        engine = PerEventProcessor if path == "per-event" else BatchProcessor
        processor = build_engine(config, clock=lambda: 2e9, processor=engine)

        def run(chunk: list[Record], processor: BatchProcessor = processor) -> BatchResult:
            return processor.process(chunk)

        found: list[str] = []
        for j in range(0, half, batch_size):
            found += [a.alert_id for a in run(recs[j:j + batch_size]).alerts]
        started = time.perf_counter()
        for j in range(half, count, batch_size):
            found += [a.alert_id for a in run(recs[j:j + batch_size]).alerts]
        elapsed = time.perf_counter() - started
        figures[path] = (count - half) / elapsed
        alerts[path] = found
    figures["same_alerts"] = alerts["per-event"] == alerts["batch"]
    figures["alerts"] = len(alerts["batch"])
    return figures


def decode_figures(count: int, batch_size: int, repeats: int = 5) -> dict[str, float]:
    """µs/event of each way to decode the benchmark's records (best of ``repeats``)."""
    import orjson

    config = load_config(environ={})
    recs = records(count, config.topics.predictions, config.topics.telemetry)
    kinds: dict[str, EventKind] = {config.topics.predictions: "prediction",
                                   config.topics.telemetry: "telemetry"}
    values = [r.value for r in recs]
    topics = [kinds[r.topic] for r in recs]

    def per_record() -> None:
        for value, kind in zip(values, topics, strict=True):
            try:
                decode_event(value, kind)
            except Exception:  # noqa: BLE001, S112 - a dead letter counts as decoded
                continue

    def batched() -> None:
        for j in range(0, count, batch_size):
            decode_batch(values[j:j + batch_size], topics[j:j + batch_size])

    def plain_orjson() -> None:
        for value in values:
            orjson.loads(value)

    figures = {}
    for name, run in (("decode_event", per_record), ("decode_batch", batched),
                      ("orjson.loads", plain_orjson)):
        best = min(_timed(run) for _ in range(repeats))
        figures[name] = best / count * 1e6
    return figures


def _timed(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000, help="records per batch")
    parser.add_argument("--detectors", default="shewhart,ensemble")
    parser.add_argument("--client-us", type=float, default=22.0,
                        help="µs/event of the Kafka client alone (consume + decode)")
    parser.add_argument("--quick", action="store_true", help="40,000 events")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 40_000
    print(__doc__.strip().splitlines()[0])
    common.print_machine()
    print(f"{args.events:,} events ({args.events // 2:,} timed), batches of {args.batch:,}")
    print("| detector | per-event events/s (µs/event) | batch events/s (µs/event) | "
          "batch / per-event | pipeline / client (batch) | alerts | same alerts |")
    print("|---|---:|---:|---:|---:|---:|---|")
    ok = True
    for detector in args.detectors.split(","):
        f = measure(detector.strip(), args.events, args.batch)
        per, batch = f["per-event"], f["batch"]
        pipeline = 1e6 / (args.client_us + 1e6 / batch)
        client = 1e6 / args.client_us
        print(f"| {detector} | {per:,.0f} ({1e6 / per:.1f}) | {batch:,.0f} ({1e6 / batch:.1f}) "
              f"| {batch / per:.2f}x | {pipeline / client:.2f} | {f['alerts']:,} "
              f"| {'yes' if f['same_alerts'] else 'NO'} |")
        ok = ok and f["same_alerts"]
    print("pipeline / client: the client's rate with Vigil's batch path added per event "
          f"(client at {args.client_us:g} µs/event, which includes its decode; the figures "
          "above include Vigil's own decode, so this ratio is pessimistic)")
    decode = decode_figures(min(args.events, 40_000), args.batch)
    print("decode alone (µs/event, best of 5): "
          + ", ".join(f"{name} {us:.2f}" for name, us in decode.items())
          + f"; decode_event / decode_batch = "
          f"{decode['decode_event'] / decode['decode_batch']:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
