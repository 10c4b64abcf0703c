"""Event-to-alert latency of `vigil run` at 50% and 80% of its maximum rate, on the embedded broker.

    .venv/bin/python bench/latency.py              # 200,000 backlogged events, then 30 s per load
    .venv/bin/python bench/latency.py --quick      # 20,000 backlogged events, then 10 s per load
    .venv/bin/python bench/latency.py --rate 8000  # skip measuring: take this as the maximum

1. Prefill the 6-partition input topics with a backlog (every series gets past its warm-up),
   start `vigil run` (default config) and time how fast it drains it once its checkpoints
   have come due (after ``state.checkpoint_interval_s``): that is the maximum sustained rate
   (unless ``--rate`` gives one).
2. A process of its own reads the alert topic (no group, ``fetch.wait.max.ms`` 5) and stamps
   each alert with its receive time.
3. For each load (``--fractions``, 50% and 80% of the maximum): a producer in a process of its
   own (confluent-kafka, acks=all, linger 0) sends synthetic events with injected anomalies
   at that rate for ``--seconds``, stamping each send; the offsets of the delivery reports map
   each alert's ``source`` back to its event. The next load starts once Vigil has processed
   everything.

Event-to-alert latency = alert receive time - event send time, for every anomaly alert on an
event carrying an injected anomaly of the alert's metric (and, as a second row, every anomaly
alert on the load's events). Targets: p99 <= 100 ms at 50%, <= 250 ms at 80%.
``--config KEY=VALUE`` sets any of Vigil's settings (e.g. ``runtime.max_poll_records=5000``)
to compare latency settings in the same way.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import common
import numpy as np
from common import WORKDIR, fmt_rate, header

from tests.vigil_process import VigilProcess

TARGETS_MS = {0.5: 100.0, 0.8: 250.0}
"""p99 event-to-alert latency targets by fraction of the maximum rate."""

TOPICS = {"prediction": "predictions", "telemetry": "telemetry"}

PROBE_TOPIC = "latency-probe"
"""Where the paced producer sends one message before its timed sends."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-events", type=int, default=200_000,
                        help="backlog drained to warm up and to measure the maximum rate")
    parser.add_argument("--models", type=int, default=1_000)
    parser.add_argument("--sources", type=int, default=1_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per load")
    parser.add_argument("--fractions", default="0.5,0.8",
                        help="loads as fractions of the maximum rate (comma-separated)")
    parser.add_argument("--rate", type=float, default=None,
                        help="maximum rate in events/s (default: measure it)")
    parser.add_argument("--anomaly-rate", type=float, default=0.02,
                        help="share of events that start an injected anomaly")
    parser.add_argument("--client", choices=("kafka-python", "confluent-kafka"), default=None,
                        help="kafka.client for vigil (default: Vigil's default)")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="a Vigil setting, e.g. kafka.fetch_max_wait_ms=100 (repeatable)")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--quick", action="store_true",
                        help="20,000 warm-up events over 100 models + 100 sources, 10 s per load")
    args = parser.parse_args(argv)
    if args.quick:
        args.warm_events, args.models, args.sources, args.seconds = 20_000, 100, 100, 10.0
    if args.client:
        args.config.append(f'kafka.client="{args.client}"')
    return run(args)


# --- child processes --------------------------------------------------------------------------

def read_alerts(bootstrap: str, topic: str, out: Path, ready: EventType,
                stop: EventType) -> None:
    """In a child process: every alert on ``topic`` with the time it was received."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-latency-reader",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5,
                         "fetch.min.bytes": 1})
    metadata = consumer.list_topics(topic, timeout=30).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in sorted(metadata.partitions)])
    rows: list[tuple[Any, ...]] = []
    ready.set()
    while not stop.is_set():
        messages = consumer.consume(num_messages=1000, timeout=0.02)
        received = time.time()
        for message in messages:
            if message.error() is not None:
                continue
            alert = json.loads(message.value())
            source = alert["source"]
            rows.append((received, alert["kind"], source["topic"], source["partition"],
                         source["offset"], alert["metric"]))
    consumer.close()
    out.write_text(json.dumps(rows))


def produce_paced(bootstrap: str, rate: float, count: int, seed: int, models: int, sources: int,
                  anomaly_rate: float, out: Path, ready: EventType, go: EventType) -> None:
    """In a child process: generate ``count`` events (event time advancing with the rate),
    then on ``go`` send them at ``rate`` per second; write each event's send time, partition,
    offset and injected metric to ``out``."""
    from confluent_kafka import Producer

    from vigil.stream.generate import generate_events

    start = time.time()
    events = [(TOPICS[e.kind], e.key.encode(), json.dumps(e.body, separators=(",", ":")).encode(),
               (e.body.get("injected") or {}).get("metric"))
              for e in generate_events(count, models=models, sources=sources, seed=seed,
                                       anomaly_rate=anomaly_rate, start=start,
                                       interval_s=1.0 / rate)]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 0})
    sent_at = [0.0] * count
    placed: list[tuple[str, int, int]] = [("", -1, -1)] * count

    def delivered(index: int, error: Any, message: Any) -> None:
        if error is None:
            placed[index] = (message.topic(), message.partition(), message.offset())

    # connect and get the idempotent producer's id now, not in the first timed sends
    producer.produce(PROBE_TOPIC, value=b"ready")
    producer.flush(60)
    ready.set()
    go.wait()
    produce, clock = producer.produce, time.time
    started = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - started) * rate) + 1)
        while sent < due:
            topic, key, value, _ = events[sent]
            sent_at[sent] = clock()
            produce(topic, value=value, key=key,
                    on_delivery=functools.partial(delivered, sent))
            sent += 1
        producer.poll(0)
        if sent < count:
            ahead = started + sent / rate - time.perf_counter()
            if ahead > 0.0002:
                time.sleep(ahead)
    seconds = time.perf_counter() - started
    producer.flush(60)
    out.write_text(json.dumps({
        "seconds": seconds,
        "events": [[when, *where, event[3]]
                   for when, where, event in zip(sent_at, placed, events, strict=True)]}))


# --- the run ------------------------------------------------------------------------------------

@dataclass
class Load:
    """One paced load: its rate, what was sent and when."""

    fraction: float
    target: float
    achieved: float
    sources: dict[tuple[str, int, int], tuple[float, str | None]]
    last_send: float
    """Wall-clock time of the last send."""


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from vigil.stream.config import load_config
    from vigil.stream.kafka.broker import free_port

    print(__doc__.strip().splitlines()[0])
    common.print_machine()
    fractions = [float(f) for f in args.fractions.split(",")]
    broker = common.start_broker("latency")
    vigil: VigilProcess | None = None
    reader: Any = None
    stop_reader = multiprocessing.Event()
    try:
        bootstrap = broker.bootstrap_servers
        common.create_topics(bootstrap, {"predictions": args.partitions,
                                         "telemetry": args.partitions,
                                         "alerts": args.partitions, PROBE_TOPIC: 1})
        port = free_port()
        overrides = dict(setting.split("=", 1) for setting in args.config)
        kafka_lines = "".join(f"{key.partition('.')[2]} = {value}\n"
                              for key, value in overrides.items() if key.startswith("kafka."))
        config_path = common.write_config(
            WORKDIR / "latency.toml", bootstrap, group="bench-latency", metrics_port=port,
            kafka_extra=kafka_lines,
            extra=_sections({k: v for k, v in overrides.items() if not k.startswith("kafka.")}))
        config = load_config(config_path, environ={})
        print(f"vigil config: defaults{' + ' if overrides else ''}"
              f"{', '.join(f'{k}={v}' for k, v in overrides.items())} (detector "
              f"{config.detector.name}, client {config.kafka.client}, fetch_max_wait_ms "
              f"{config.kafka.fetch_max_wait_ms}, max_poll_records "
              f"{config.runtime.max_poll_records}); {args.models} models + {args.sources} "
              f"sources, {args.partitions} partitions")

        header("1. warm-up and maximum sustained rate")
        now = time.time()
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        warm = 0
        for kind, key, value, _ in common.encoded_events(
                args.warm_events, models=args.models, sources=args.sources, seed=args.seed,
                anomaly_rate=0.0, start=round(now - args.warm_events * 0.01, 3)):
            producer.send(TOPICS[kind], key=key, value=value)
            warm += 1
        producer.flush()
        producer.close()
        vigil = VigilProcess(config_path, WORKDIR / "latency-vigil.log", port)
        drained = drain_rate(vigil, warm, settle_s=config.state.checkpoint_interval_s)
        maximum = args.rate if args.rate else drained
        print(f"maximum sustained rate: {fmt_rate(maximum)} events/s "
              f"({'given' if args.rate else 'measured'})")

        header("2. alert reader")
        alerts_out = WORKDIR / "latency-alerts.json"
        alerts_out.unlink(missing_ok=True)
        ready = multiprocessing.Event()
        reader = multiprocessing.Process(target=read_alerts, args=(
            bootstrap, config.topics.alerts, alerts_out, ready, stop_reader))
        reader.start()
        if not ready.wait(60):
            raise RuntimeError("the alert reader did not start")

        loads: list[Load] = []
        processed = warm
        for number, fraction in enumerate(fractions):
            target = fraction * maximum
            header(f"3.{number + 1} paced load at {fraction:.0%}: {fmt_rate(target)} events/s "
                   f"for {args.seconds:.0f} s (producer in its own process)")
            count = int(target * args.seconds)
            load = produce_load(args, bootstrap, fraction, target, count, seed=args.seed + 1
                                + number)
            processed += count
            common.wait_until_processed(vigil.processed, processed,
                                        timeout_s=120 + count / 1000, alive=vigil.alive,
                                        interval_s=0.05)
            print(f"sent {count:,} events at {fmt_rate(load.achieved)} events/s; vigil had "
                  f"processed all of them {time.time() - load.last_send:.2f} s after the last "
                  "send")
            loads.append(load)
        time.sleep(2.0)
        samples = vigil.metrics()
        stop_reader.set()
        reader.join(30)
        rows = json.loads(alerts_out.read_text())
        report(args, rows, loads, samples, maximum)
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


def drain_rate(vigil: VigilProcess, total: int, *, settle_s: float) -> float:
    """Events/s at which Vigil drains a backlog of ``total`` events, counted from
    ``settle_s`` after its first progress (once every partition's checkpoints have come due,
    so their cost is in the rate) to the end of the backlog."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + 300 + total / 500
    while not samples or samples[-1][1] < total:
        if time.monotonic() > deadline or not vigil.alive():
            raise RuntimeError(f"vigil processed {samples[-1][1] if samples else 0} of "
                               f"{total} backlogged events")
        seen = vigil.processed()
        if seen > 0:
            samples.append((time.monotonic(), seen))
        time.sleep(0.2)
    first_time, _ = samples[0]
    steady = [(t, c) for t, c in samples if t >= first_time + settle_s]
    start_time, start_count = steady[0] if len(steady) > 1 else samples[0]
    end_time, end_count = samples[-1]
    rate = (end_count - start_count) / max(end_time - start_time, 1e-9)
    print(f"vigil drained {total:,} backlogged events in {end_time - first_time:.1f} s; "
          f"{fmt_rate(rate)} events/s over the last {end_count - start_count:,} "
          f"({'after' if len(steady) > 1 else 'the backlog ended within'} the first "
          f"{settle_s:g} s)")
    return rate


def _sections(overrides: dict[str, str]) -> str:
    """``section.key=value`` settings as TOML sections (values as TOML literals)."""
    by_section: dict[str, list[str]] = {}
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        by_section.setdefault(section, []).append(f"{key} = {value}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in by_section.items())


def produce_load(args: argparse.Namespace, bootstrap: str, fraction: float, target: float,
                 count: int, *, seed: int) -> Load:
    """Run the paced producer process for one load; what it sent and when."""
    out = WORKDIR / f"latency-sent-{fraction:g}.json"
    out.unlink(missing_ok=True)
    ready, go = multiprocessing.Event(), multiprocessing.Event()
    producer = multiprocessing.Process(target=produce_paced, args=(
        bootstrap, target, count, seed, args.models, args.sources, args.anomaly_rate, out,
        ready, go))
    producer.start()
    if not ready.wait(300):
        producer.terminate()
        raise RuntimeError("the producer process did not get ready")
    go.set()
    producer.join(args.seconds * 4 + 120)
    if producer.exitcode != 0:
        raise RuntimeError(f"the producer process failed (exit code {producer.exitcode})")
    sent = json.loads(out.read_text())
    events = sent["events"]
    sources = {(topic, partition, offset): (when, metric)
               for when, topic, partition, offset, metric in events if offset >= 0}
    last_send = max(e[0] for e in events)
    return Load(fraction, target, count / sent["seconds"], sources, last_send)


def report(args: argparse.Namespace, rows: list[list[Any]], loads: list[Load],
           samples: dict[str, float], maximum: float) -> None:
    header("result: event-to-alert latency (alert receive time - event send time)")
    print(f"maximum sustained rate: {fmt_rate(maximum)} events/s")
    batches = samples.get("vigil_processing_seconds_count", 0.0)
    if batches:
        mean_ms = 1000 * samples.get("vigil_processing_seconds_sum", 0.0) / batches
        print(f"vigil: {batches:.0f} batches, mean processing {mean_ms:.1f} ms per batch")
    checkpoints = samples.get("vigil_checkpoint_seconds_count", 0.0)
    if checkpoints:
        mean_ms = 1000 * samples.get("vigil_checkpoint_seconds_sum", 0.0) / checkpoints
        print(f"vigil: {checkpoints:.0f} checkpoints, mean {mean_ms:.1f} ms each")
    print("| load | events/s | alerts | count | p50 ms | p95 ms | p99 ms | max ms | "
          "target p99 | |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    results: list[dict[str, Any]] = []
    for load in loads:
        injected: list[float] = []
        every: list[float] = []
        for received, kind, topic, partition, offset, metric in rows:
            found = load.sources.get((topic, partition, offset))
            if found is None or kind != "anomaly":
                continue
            sent, label = found
            every.append(received - sent)
            if label == metric:
                injected.append(received - sent)
        goal = TARGETS_MS.get(load.fraction)
        for name, values in (("on injected anomalies", injected), ("all anomaly alerts", every)):
            figures = _percentiles(values)
            verdict = ""
            if goal is not None and name == "on injected anomalies":
                verdict = "met" if figures and figures["p99_ms"] <= goal else "NOT met"
            results.append({"fraction": load.fraction, "target_rate": load.target,
                            "achieved_rate": load.achieved, "alerts": name, **figures,
                            "target_p99_ms": goal, "verdict": verdict})
            cells = ("– | – | – | – |" if not figures else
                     f"{figures['p50_ms']:.1f} | {figures['p95_ms']:.1f} | "
                     f"{figures['p99_ms']:.1f} | {figures['max_ms']:.1f} |")
            print(f"| {load.fraction:.0%} | {fmt_rate(load.achieved)} | {name} | {len(values)} "
                  f"| {cells} {'' if goal is None else f'≤ {goal:.0f}'} | {verdict} |")
    common.print_load()
    common.dump_json(WORKDIR / "latency.json", {
        "machine": common.machine(), "args": vars(args), "maximum": maximum,
        "results": results})


def _percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in ms (empty: no values)."""
    if not seconds:
        return {}
    ms = np.array(seconds) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"count": len(ms), "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
            "max_ms": float(ms.max())}


if __name__ == "__main__":
    sys.exit(main())
