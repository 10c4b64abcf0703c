"""Throughput of `vigil run` against the raw rate of its Kafka client, measured in one run.

    .venv/bin/python bench/throughput.py            # 1,000,000 events (a few minutes)
    .venv/bin/python bench/throughput.py --quick    # 50,000 events, smoke test
    .venv/bin/python bench/throughput.py --profile  # also a py-spy profile of both consumers
    .venv/bin/python bench/throughput.py --client confluent-kafka   # one client only

On the embedded broker: prefill the 6-partition ``predictions``, ``telemetry`` and ``labels``
topics with synthetic events of 1,000 models and 1,000 sources (4 series each: 8,000 series;
each prediction's label follows 50 events later), timing the produce; then, for each Kafka
client (``--client``: kafka-python, confluent-kafka, or both, the default when
confluent-kafka is installed), each in a fresh consumer group and a process of its own:

(a) the raw client: the consumer ``make_consumer`` (stream/kafka/kafka_python.py) builds from the
same config
    (same fetch settings, poll timeout and max_poll_records; for confluent-kafka the bare
    confluent_kafka.Consumer inside Vigil's adapter, read with ``consume``), polling and
    ``json.loads``-ing every event and doing nothing else;
(b) `vigil run` with the same client and the default config and detector (``--detector`` adds
    runs with another detector, e.g. shewhart) and per-event SGD (``[models] enabled``, an
    ``sgd_classifier`` per model learning every label), until /metrics counts every event.

Each rate is taken from the first observed progress to the last event, so group joins and
imports are left out. The ratio b/a of each client is the figure issue 7 targets (≥ 0.8).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import common
from common import WORKDIR, fmt_rate, header

from tests.vigil_process import VigilProcess

SGD_NOTE = ("a third of the events are label events (each prediction's label, 50 events "
            "later); (b) runs with [models] enabled (sgd_classifier per model), so every "
            "label is joined and learned")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=1_000)
    parser.add_argument("--sources", type=int, default=1_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true",
                        help="50,000 events over 100 models and 100 sources")
    parser.add_argument("--profile", action="store_true",
                        help="then run both consumers again under py-spy and print profiles")
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--detector", action="append", default=None,
                        help="run (b) with this detector too (repeatable; 'default' is the "
                        "config default; default: just the default)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate (a) and (b) this many times (shared machines drift)")
    parser.add_argument("--client", choices=("kafka-python", "confluent-kafka", "both"),
                        default=None, help="Kafka client(s) to measure (default: both when "
                        "confluent-kafka is installed, else kafka-python)")
    parser.add_argument("--client-ceiling", action="store_true",
                        help="also measure the raw client without json decoding")
    parser.add_argument("--raw-consumer", nargs=3, metavar=("CONFIG", "TOTAL", "GROUP"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--no-decode", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw_consumer:
        config, total, group = args.raw_consumer
        print(json.dumps(raw_consume(Path(config), int(total), group, not args.no_decode)))
        return 0
    if args.quick:
        args.events, args.models, args.sources = 50_000, 100, 100
    if args.client is None:
        import importlib.util

        args.client = "both" if importlib.util.find_spec("confluent_kafka") else "kafka-python"
    return run(args)


def raw_consume(config_path: Path, total: int, group: str, decode: bool) -> dict[str, Any]:
    """(a): consume ``total`` events with Vigil's consumer settings, json-decode each, no more."""
    from vigil.stream.config import load_config
    from vigil.stream.kafka.kafka_python import make_consumer

    config = load_config(config_path, environ={})
    consumer = make_consumer(config, group_id=group)
    if config.kafka.client == "confluent-kafka":
        return raw_consume_confluent(consumer.native, config, total, decode)
    consumer.subscribe([config.topics.predictions, config.topics.telemetry,
                        config.topics.labels])
    loads = json.loads
    timeout_ms = config.runtime.poll_timeout_ms
    max_records = config.runtime.max_poll_records
    count = 0
    started = time.monotonic()
    t_first: float | None = None
    c_first = 0
    while count < total:
        polled = consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        for records in polled.values():
            if decode:
                for record in records:
                    loads(record.value)
            count += len(records)
        if count and t_first is None:
            t_first, c_first = time.monotonic(), count
    t_end = time.monotonic()
    consumer.close()
    assert t_first is not None
    return {"events": count - c_first, "seconds": t_end - t_first,
            "startup_s": t_first - started, "first_batch": c_first}


def raw_consume_confluent(consumer: Any, config: Any, total: int, decode: bool) -> dict[str, Any]:
    """(a) for confluent-kafka: the bare client's ``consume`` batches, json-decoded, no more."""
    consumer.subscribe([config.topics.predictions, config.topics.telemetry,
                        config.topics.labels])
    loads = json.loads
    timeout_s = config.runtime.poll_timeout_ms / 1000
    max_records = config.runtime.max_poll_records
    count = 0
    started = time.monotonic()
    t_first: float | None = None
    c_first = 0
    while count < total:
        for message in consumer.consume(num_messages=max_records, timeout=timeout_s):
            if message.error() is not None:
                continue
            if decode:
                loads(message.value())
            count += 1
        if count and t_first is None:
            t_first, c_first = time.monotonic(), count
    t_end = time.monotonic()
    consumer.close()
    assert t_first is not None
    return {"events": count - c_first, "seconds": t_end - t_first,
            "startup_s": t_first - started, "first_batch": c_first}


def run_raw(config: Path, total: int, group: str, *, decode: bool = True,
            profile: Path | None = None, rate: int = 100) -> dict[str, Any]:
    """(a) in a child process, optionally under py-spy."""
    command = [sys.executable, __file__, "--raw-consumer", str(config), str(total), group]
    if not decode:
        command.append("--no-decode")
    if profile is not None:
        done, _ = common.record_command(command, profile, rate)
    else:
        import subprocess

        done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"raw consumer failed: {done.stderr.decode(errors='replace')}")
    lines = [line for line in done.stdout.decode().splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    result["rate"] = result["events"] / result["seconds"]
    return result


def run_vigil(config: Path, total: int, name: str, port: int, *, timeout_s: float,
              profile: Path | None = None, rate: int = 100) -> dict[str, Any]:
    """(b): `vigil run` until /metrics counts ``total`` events."""
    vigil = VigilProcess(config, WORKDIR / f"{name}.log", port)
    profiler: common.Profiler | None = None

    def attach() -> None:
        nonlocal profiler
        if profile is not None:
            profiler = common.Profiler(vigil.pid, profile, rate)

    try:
        # Scrape once a second: /metrics with ~1,000 per-series gauges is not free, and at
        # 5 Hz it took ~8% of vigil's samples in a profile.
        window = common.wait_until_processed(vigil.processed, total, timeout_s=timeout_s,
                                             on_first=attach, alive=vigil.alive,
                                             interval_s=1.0)
        profiled_s = 0.0
        if profiler is not None:
            profiler.stop()
            profiled_s = profiler.seconds
        samples = vigil.metrics()
    except BaseException:
        print(vigil.log_tail(), file=sys.stderr)
        raise
    finally:
        if profiler is not None and profiler.process.poll() is None:
            profiler.stop()
        code = vigil.stop(timeout_s=60.0)
    alerts = sum(v for k, v in samples.items() if k.startswith("vigil_alerts_produced_total{"))
    return {
        "events": window.events, "seconds": window.seconds, "rate": window.rate,
        "startup_s": window.startup_s, "exit_code": code,
        "processing_s": samples.get("vigil_processing_seconds_sum", 0.0),
        "batches": samples.get("vigil_processing_seconds_count", 0.0),
        "series": samples.get("vigil_series", 0.0), "alerts": alerts,
        "invalid": sum(v for k, v in samples.items()
                       if k.startswith("vigil_events_invalid_total{")),
        "profiled_s": profiled_s,
    }


def produce(bootstrap: str, config_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Prefill the input topics with Vigil's own producer settings (idempotent, acks=all)."""
    from vigil.stream.config import load_config
    from vigil.stream.kafka.kafka_python import make_producer

    config = load_config(config_path, environ={})
    topics = {"prediction": config.topics.predictions, "telemetry": config.topics.telemetry,
              "label": config.topics.labels}
    started = time.perf_counter()
    messages = [(topics[kind], key, value) for kind, key, value, _ in common.encoded_events(
        args.events, models=args.models, sources=args.sources, seed=args.seed, labels=True)]
    generated_s = time.perf_counter() - started
    size = sum(len(v) for _, _, v in messages) / len(messages)
    producer = make_producer(config)
    started = time.perf_counter()
    futures = [producer.send(topic, key=key, value=value) for topic, key, value in messages]
    producer.flush()
    seconds = time.perf_counter() - started
    failed = sum(1 for f in futures if f.failed())
    producer.close()
    del messages, futures
    gc.collect()
    return {"events": args.events, "seconds": seconds, "rate": args.events / seconds,
            "failed": failed, "generate_s": generated_s, "bytes": size}


def run(args: argparse.Namespace) -> int:
    from vigil.stream.kafka.broker import free_port

    print(__doc__.strip().splitlines()[0])
    common.print_machine()
    print(f"sizes: {args.events:,} events, {args.models:,} models + {args.sources:,} sources "
          f"(~{4 * (args.models + args.sources):,} series), {args.partitions} partitions each "
          "on predictions and telemetry")
    print(f"note: {SGD_NOTE}")
    from vigil.stream.config import load_config

    default_name = load_config(environ={}).detector.name
    detectors = list(dict.fromkeys(args.detector or ["default"]))
    if default_name in detectors:
        detectors = ["default" if d == default_name else d for d in detectors]
    print(f"default detector: {default_name}; (b) runs with: "
          + ", ".join(default_name if d == "default" else d for d in detectors))
    timeout_s = 300 + args.events / 1_000
    broker = common.start_broker("throughput")
    try:
        bootstrap = broker.bootstrap_servers
        common.create_input_topics(bootstrap, args.partitions)
        port = free_port()

        clients = (["kafka-python", "confluent-kafka"] if args.client == "both"
                   else [args.client])

        def config(group: str, detector: str = "default", client: str = clients[0]) -> Path:
            extra = "" if detector == "default" else f'[detector]\nname = "{detector}"\n'
            extra += '[models]\nenabled = true\nlearner = "sgd_classifier"\n'
            return common.write_config(WORKDIR / f"throughput-{group}.toml", bootstrap,
                                       group=group, metrics_port=port, extra=extra,
                                       kafka_extra=f'client = "{client}"\n')

        header("prefill (kafka-python producer, idempotent, acks=all, linger 5 ms)")
        made = produce(bootstrap, config("bench-produce", client="kafka-python"), args)
        print(f"generated {made['events']:,} events in {made['generate_s']:.1f} s "
              f"(mean {made['bytes']:.0f} bytes); produced in {made['seconds']:.1f} s: "
              f"{fmt_rate(made['rate'])} events/s, {made['failed']} failed")
        if made["failed"]:
            raise RuntimeError("some events were not acknowledged")

        rounds = []
        for index in range(1, args.rounds + 1):
            suffix = "" if args.rounds == 1 else f" — round {index} of {args.rounds}"
            item: dict[str, Any] = {}
            for client in clients:
                item[client] = measure_client(client, index, suffix, config, detectors,
                                              default_name, args, port, timeout_s)
            common.print_load()
            rounds.append(item)
        report(rounds, clients, made, default_name, args)
        if args.profile:
            profile_both(args, config, port, timeout_s, detectors[0])
    finally:
        broker.stop()
    return 0


def measure_client(client: str, index: int, suffix: str, config: Any, detectors: list[str],
                   default_name: str, args: argparse.Namespace, port: int,
                   timeout_s: float) -> dict[str, Any]:
    """(a) then (b) for one Kafka client, each in a fresh group."""
    header(f"(a) raw client: {client} consumer + json.loads, nothing else{suffix}")
    raw = run_raw(config(f"bench-raw-{client}-{index}", client=client), args.events,
                  f"bench-raw-{client}-{index}")
    print(f"{raw['events']:,} events in {raw['seconds']:.2f} s: "
          f"{fmt_rate(raw['rate'])} events/s (group join + first batch "
          f"{raw['startup_s']:.1f} s, left out)")
    ceiling = None
    if args.client_ceiling:
        ceiling = run_raw(config(f"bench-ceiling-{client}-{index}", client=client),
                          args.events, f"bench-ceiling-{client}-{index}", decode=False)
        print(f"    without json.loads: {fmt_rate(ceiling['rate'])} events/s")
    runs = {}
    for detector in detectors:
        label = default_name if detector == "default" else detector
        header(f"(b) vigil run, client {client}, detector {label}"
               f"{' (the default)' if detector == 'default' else ''}{suffix}")
        vig = run_vigil(config(f"bench-vigil-{client}-{label}-{index}", detector, client),
                        args.events, f"throughput-vigil-{client}-{label}-{index}", port,
                        timeout_s=timeout_s)
        busy = vig["processing_s"] / vig["seconds"] if vig["seconds"] else 0.0
        print(f"{vig['events']:,} events in {vig['seconds']:.2f} s: "
              f"{fmt_rate(vig['rate'])} events/s (start-up until first progress "
              f"{vig['startup_s']:.1f} s, left out); {vig['series']:.0f} series, "
              f"{vig['alerts']:.0f} alerts, {vig['invalid']:.0f} invalid; "
              f"exit code {vig['exit_code']}")
        print(f"    vigil_processing_seconds (decode+detect+produce per batch): "
              f"{vig['processing_s']:.1f} s over {vig['batches']:.0f} batches "
              f"= {busy:.0%} of the window; the rest is poll (fetch + record "
              "parsing), lag, checkpoints")
        vig["ratio"] = vig["rate"] / raw["rate"]
        runs[label] = vig
    return {"raw": raw, "client_ceiling": ceiling, "vigil": runs}


def report(rounds: list[dict[str, Any]], clients: list[str], made: dict[str, Any],
           default_name: str, args: argparse.Namespace) -> None:
    """The table of every round and client, then per client the medians and the ratio b/a."""
    header("result")
    labels = list(rounds[0][clients[0]]["vigil"])
    print("| round | client | produce (prefill) | raw client, no decode "
          "| (a) raw client + json.loads "
          + "".join(f"| (b) vigil run, {label} | b/a " for label in labels) + "|")
    print("|---:|---|---:|---:|---:|" + "---:|---:|" * len(labels))
    for index, item in enumerate(rounds, start=1):
        for client in clients:
            measured = item[client]
            ceiling = measured["client_ceiling"]
            print(f"| {index} | {client} | {fmt_rate(made['rate'])} | "
                  f"{fmt_rate(ceiling['rate']) if ceiling else '–'} | "
                  f"{fmt_rate(measured['raw']['rate'])} | "
                  + "".join(f"{fmt_rate(measured['vigil'][label]['rate'])} | "
                            f"{measured['vigil'][label]['ratio']:.3f} | " for label in labels))

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    several = " (medians of rounds)" if len(rounds) > 1 else ""
    ratios: dict[str, dict[str, float]] = {}
    for client in clients:
        raw_rate = median([item[client]["raw"]["rate"] for item in rounds])
        print(f"{client}: (a) raw client + json.loads: {fmt_rate(raw_rate)} events/s "
              f"({1e6 / raw_rate:.1f} µs/event){several}")
        ratios[client] = {}
        for label in labels:
            rate = median([item[client]["vigil"][label]["rate"] for item in rounds])
            ratio = ratios[client][label] = median(
                [item[client]["vigil"][label]["ratio"] for item in rounds])
            print(f"{client}: (b) vigil run, {label}: {fmt_rate(rate)} events/s "
                  f"({1e6 / rate:.1f} µs/event, vigil adds {1e6 / rate - 1e6 / raw_rate:.1f} "
                  f"µs); ratio b/a = {ratio:.3f} "
                  f"(target >= 0.8: {'met' if ratio >= 0.8 else 'not met'})")
    print(f"note: {SGD_NOTE}")
    common.dump_json(WORKDIR / "throughput.json", {
        "machine": common.machine(), "args": vars(args), "default_detector": default_name,
        "clients": clients, "produce": made, "rounds": rounds, "ratios": ratios})


def profile_both(args: argparse.Namespace, config: Any, port: int, timeout_s: float,
                 detector: str) -> None:
    """Run (a) and (b) once more in fresh groups under py-spy; print where the time goes."""
    rate = args.profile_rate
    header(f"profile of (b) vigil run, detector {detector}, under py-spy (separate run, "
           "fresh group)")
    out = WORKDIR / f"throughput-vigil-{detector}.pyspy.txt"
    vig = run_vigil(config("bench-vigil-profiled", detector), args.events,
                    "throughput-vigil-profiled",
                    port, timeout_s=timeout_s, profile=out, rate=rate)
    print(f"(profiled run: {fmt_rate(vig['rate'])} events/s; raw stacks in {out})")
    common.print_profile(common.Profile.read(out), seconds=vig["profiled_s"], rate=rate)
    main_thread = common.Profile.read(out, threads=["MainThread"])
    print("\nmain thread only:")
    common.print_profile(main_thread)
    header("profile of (a) raw client under py-spy")
    out = WORKDIR / "throughput-raw.pyspy.txt"
    raw = run_raw(config("bench-raw-profiled"), args.events, "bench-raw-profiled",
                  profile=out, rate=rate)
    print(f"(profiled run: {fmt_rate(raw['rate'])} events/s; raw stacks in {out})")
    common.print_profile(common.Profile.read(out, skip_frames=("<module>",)), top=12)


if __name__ == "__main__":
    sys.exit(main())
