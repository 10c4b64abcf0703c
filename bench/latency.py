"""Event-to-alert latency of `vigil run` at half its maximum rate, on the embedded broker.

    .venv/bin/python bench/latency.py              # 100,000 warm-up events, then 30 s at 50%
    .venv/bin/python bench/latency.py --quick      # 20,000 warm-up events, then 10 s
    .venv/bin/python bench/latency.py --rate 8000  # skip measuring: take this as the maximum

1. Prefill the 6-partition input topics with warm-up events (every series gets past its
   warm-up), start `vigil run` (default config, shewhart) and time how fast it drains them:
   that is the maximum rate (unless ``--rate`` gives one).
2. A separate process reads the alert topic (no group, fetch_max_wait_ms=10) and stamps each
   alert with its receive time.
3. Produce synthetic events with injected anomalies at ``--fraction`` (0.5) of the maximum
   rate for ``--seconds``, stamping each send (producer linger 0, acks=all); the offsets from
   the acknowledgements map each alert's ``source`` back to its event.

Latency = alert receive time - event send time, for every anomaly alert raised on an event
carrying an injected anomaly (and, as a second row, on every event of step 3). Vigil's
checkpoint interval does not delay alerts (they are produced and acknowledged per batch);
``--poll-timeout-ms`` sets runtime.poll_timeout_ms to see whether the poll wait matters,
``--fetch-max-wait-ms`` kafka.fetch_max_wait_ms (how long the broker holds an empty fetch) and
``--client`` kafka.client.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import common
import numpy as np
from common import WORKDIR, fmt_rate, header

from tests.vigil_process import VigilProcess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-events", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=1_000)
    parser.add_argument("--sources", type=int, default=1_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fraction", type=float, default=0.5,
                        help="produce at this fraction of the maximum rate")
    parser.add_argument("--rate", type=float, default=None,
                        help="maximum rate in events/s (default: measure it)")
    parser.add_argument("--anomaly-rate", type=float, default=0.002)
    parser.add_argument("--poll-timeout-ms", type=int, default=None,
                        help="runtime.poll_timeout_ms for vigil (default: Vigil's default)")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=None,
                        help="kafka.fetch_max_wait_ms for vigil (default: Vigil's default)")
    parser.add_argument("--client", choices=("kafka-python", "confluent-kafka"), default=None,
                        help="kafka.client for vigil (default: Vigil's default)")
    parser.add_argument("--detector", default=None,
                        help="detector.name for vigil (default: the config default)")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--quick", action="store_true",
                        help="20,000 warm-up events over 100 models + 100 sources, 10 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.warm_events, args.models, args.sources, args.seconds = 20_000, 100, 100, 10.0
    return run(args)


def read_alerts(bootstrap: str, topic: str, out: Path, ready: EventType,
                stop: EventType) -> None:
    """In a child process: every alert on ``topic`` with the time it was received."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=10)
    deadline = time.monotonic() + 30
    partitions = None
    while not partitions and time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic)
        time.sleep(0.1)
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions or [])])
    rows: list[tuple[Any, ...]] = []
    first = True
    while not stop.is_set():
        polled = consumer.poll(timeout_ms=20)
        received = time.time()
        if first:
            ready.set()
            first = False
        for records in polled.values():
            for record in records:
                alert = json.loads(record.value)
                source = alert["source"]
                rows.append((received, alert["kind"], source["topic"], source["partition"],
                             source["offset"], alert["metric"]))
    consumer.close()
    out.write_text(json.dumps(rows))


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from vigil.stream.kafka.broker import free_port

    print(__doc__.strip().splitlines()[0])
    common.print_machine()
    broker = common.start_broker("latency")
    vigil: VigilProcess | None = None
    reader: Any = None
    stop_reader = multiprocessing.Event()
    try:
        bootstrap = broker.bootstrap_servers
        common.create_topics(bootstrap, {"predictions": args.partitions,
                                         "telemetry": args.partitions,
                                         "alerts": args.partitions})
        port = free_port()
        extra = ("" if args.poll_timeout_ms is None
                 else f"[runtime]\npoll_timeout_ms = {args.poll_timeout_ms}\n")
        if args.detector:
            extra += f'[detector]\nname = "{args.detector}"\n'
        kafka_extra = ""
        if args.fetch_max_wait_ms is not None:
            kafka_extra += f"fetch_max_wait_ms = {args.fetch_max_wait_ms}\n"
        if args.client:
            kafka_extra += f'client = "{args.client}"\n'
        from vigil.stream.config import load_config

        detector = args.detector or load_config(environ={}).detector.name
        config = common.write_config(WORKDIR / "latency.toml", bootstrap, group="bench-latency",
                                     metrics_port=port, extra=extra, kafka_extra=kafka_extra)
        topics = {"prediction": "predictions", "telemetry": "telemetry"}
        changes = (kafka_extra + extra).strip().replace("\n", "; ")
        print(f"vigil config: defaults{' + ' + changes if changes else ''} "
              f"(detector {detector}); "
              f"{args.models} models + {args.sources} sources, {args.partitions} partitions")

        header("1. warm-up and maximum rate")
        now = time.time()
        warm = [(topics[k], key, value) for k, key, value, _ in common.encoded_events(
            args.warm_events, models=args.models, sources=args.sources, seed=args.seed,
            anomaly_rate=0.0, start=round(now - args.warm_events * 0.01, 3))]
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        for topic, key, value in warm:
            producer.send(topic, key=key, value=value)
        producer.flush()
        vigil = VigilProcess(config, WORKDIR / "latency-vigil.log", port)
        window = common.wait_until_processed(vigil.processed, len(warm),
                                             timeout_s=300 + len(warm) / 1000,
                                             alive=vigil.alive)
        measured = window.rate
        print(f"vigil drained {window.events:,} backlogged events at {fmt_rate(measured)} "
              f"events/s")
        maximum = args.rate if args.rate else measured
        target = args.fraction * maximum
        print(f"maximum rate {fmt_rate(maximum)} events/s "
              f"({'given' if args.rate else 'measured'}); producing at {args.fraction:.0%}: "
              f"{fmt_rate(target)} events/s for {args.seconds:.0f} s")

        header("2. alert reader")
        out = WORKDIR / "latency-alerts.json"
        out.unlink(missing_ok=True)
        ready = multiprocessing.Event()
        reader = multiprocessing.Process(target=read_alerts,
                                         args=(bootstrap, "alerts", out, ready, stop_reader))
        reader.start()
        if not ready.wait(60):
            raise RuntimeError("the alert reader did not start")

        header("3. paced produce with injected anomalies")
        count = int(target * args.seconds)
        events = list(common.encoded_events(
            count, models=args.models, sources=args.sources, seed=args.seed + 1,
            anomaly_rate=args.anomaly_rate, start=round(time.time(), 3)))
        producer.close()
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        sent_at: list[float] = []
        futures = []
        started = time.perf_counter()
        for index, (kind, key, value, _) in enumerate(events):
            ahead = started + index / target - time.perf_counter()
            if ahead > 0.0005:
                time.sleep(ahead)
            sent_at.append(time.time())
            futures.append(producer.send(topics[kind], key=key, value=value))
        producer.flush()
        produce_s = time.perf_counter() - started
        last_send = time.monotonic()
        print(f"sent {count:,} events in {produce_s:.1f} s: {fmt_rate(count / produce_s)} "
              f"events/s (target {fmt_rate(target)})")
        sources: dict[tuple[str, int, int], tuple[float, dict[str, Any] | None]] = {}
        for future, when, (_, _, _, injected) in zip(futures, sent_at, events, strict=True):
            meta = future.get(timeout=30)
            sources[(meta.topic, meta.partition, meta.offset)] = (when, injected)
        producer.close()
        common.wait_until_processed(vigil.processed, len(warm) + count,
                                    timeout_s=120 + count / 1000, alive=vigil.alive)
        drained = time.monotonic() - last_send
        print(f"vigil had processed every event {drained:.2f} s after the last send")
        time.sleep(2.0)
        samples = vigil.metrics()
        stop_reader.set()
        reader.join(30)
        rows = json.loads(out.read_text())
        report(args, rows, sources, samples, target, maximum, count / produce_s)
    finally:
        stop_reader.set()
        if reader is not None and reader.is_alive():
            reader.join(10)
            if reader.is_alive():
                reader.terminate()
        if vigil is not None:
            vigil.stop(timeout_s=60.0)
        broker.stop()
    return 0


def report(args: argparse.Namespace, rows: list[list[Any]],
           sources: dict[tuple[str, int, int], tuple[float, dict[str, Any] | None]],
           samples: dict[str, float], target: float, maximum: float, achieved: float) -> None:
    injected: list[float] = []
    every: list[float] = []
    kinds: dict[str, int] = {}
    for received, kind, topic, partition, offset, metric in rows:
        found = sources.get((topic, partition, offset))
        if found is None or kind != "anomaly":
            continue
        sent, label = found
        every.append(received - sent)
        if label is not None and label.get("metric") == metric:
            injected.append(received - sent)
            kinds[label["type"]] = kinds.get(label["type"], 0) + 1
    header("result: event-to-alert latency (receive time - send time)")
    print(f"rate: maximum {fmt_rate(maximum)} events/s, target {fmt_rate(target)}, "
          f"achieved {fmt_rate(achieved)}")
    batches = samples.get("vigil_processing_seconds_count", 0.0)
    if batches:
        mean_ms = 1000 * samples.get("vigil_processing_seconds_sum", 0.0) / batches
        print(f"vigil: {batches:.0f} batches, mean processing {mean_ms:.1f} ms per batch "
              "(decode + detect + produce + acks)")
    print("| alerts | count | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    figures: dict[str, Any] = {}
    for name, values in (("on injected anomalies", injected), ("all anomaly alerts", every)):
        if not values:
            print(f"| {name} | 0 | – | – | – |")
            continue
        ms = np.array(values) * 1000
        p50, p99, top = np.percentile(ms, 50), np.percentile(ms, 99), ms.max()
        figures[name] = {"count": len(ms), "p50_ms": p50, "p99_ms": p99, "max_ms": top}
        print(f"| {name} | {len(ms)} | {p50:.1f} | {p99:.1f} | {top:.1f} |")
    print("injected alerts by type: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    p99 = figures.get("on injected anomalies", {}).get("p99_ms")
    if p99 is not None:
        print(f"target p99 <= 100 ms: {'met' if p99 <= 100 else 'not met'}")
    common.print_load()
    common.dump_json(WORKDIR / "latency.json", {
        "machine": common.machine(), "args": vars(args), "maximum": maximum, "target": target,
        "achieved": achieved, "figures": figures})


if __name__ == "__main__":
    sys.exit(main())
