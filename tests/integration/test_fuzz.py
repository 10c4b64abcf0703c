"""Hostile input against one long-running `vigil run`: it never dies and accounts for every byte.

Hypothesis generates 100,000 messages (broken JSON, wrong types, NaN and infinities, huge
numbers, deep nesting, invalid UTF-8, unknown fields, missing keys, timestamps far out)
interleaved with valid events, plus ~900 KB payloads and a flood of distinct keys. The oracle
is ``decode_event`` itself, the parser Vigil runs: every message is valid or has one reason.
After the run the counters, the dead-letter topic and the series cap must agree with it
exactly. Set VIGIL_FUZZ_SEED to replay a run (the seed is in every failure message).

The strategy is one drawn integer per message, which seeds everything else: a Hypothesis
draw costs ~100 us, and the whole file has a budget of about two minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.support import Topics, wait_for, write_config
from tests.vigil_process import VigilProcess
from vigil.stream.config import RuntimeConfig
from vigil.stream.engine.events import REASONS, EventKind, EventLimits, decode_event
from vigil.stream.errors import EventError
from vigil.stream.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

EXAMPLES = 2_000
PER_EXAMPLE = 50
FLOOD_KEYS = 3_000
MAX_SERIES = 500
FUZZ_SEED = int(os.environ.get("VIGIL_FUZZ_SEED", random.randrange(2**32)))  # noqa: S311

Message = tuple[EventKind, bytes | None]

# --- what the messages are made of ----------------------------------------------------------

NAMES = ["web-1", "db-2", "fraud", "ünïcødé", "名前", "x" * 300, " ", "\x00", "a\"b\\c",
         "\ud800", "ok\udfffok", "\U0001f525", "timestamp", "NaN"]
"""Model/source and metric names, lone surrogates (invalid_utf8) included."""

RAW_NUMBERS = ["NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400,
               "-" + "9" * 400, "9" * 5_000, "1e-400", "-0", "0.0", "1E+2", "01", "1.", ".5",
               "+1", "0x10", "1_000", "true", "null", '"1"', "[]", "{}"]
"""Number-ish JSON texts, valid and not: placed where a number belongs."""

RAW_TIMESTAMPS = ["1", "7258118399", "7258118400", "0", "-1", "1e20", "-1e20", "1e11",
                  "100000000001", "7258118399999", "1e400", "NaN", "-Infinity", "true", "null",
                  "[]", "{}", '""', '"yesterday"', '"1970-01-01T00:00:00Z"',
                  '"1970-01-01T00:00:01Z"', '"0001-01-01T00:00:00"', '"9999-12-31T23:59:59Z"',
                  '"2199-12-31T23:59:59"', '"2026-13-01"', '"2026-01-01T00:00:00+25:00"',
                  '"2026-01-01 12:00:00.123456+05:30"', '"2026-W01"', '"1767225600"']
"""Timestamps far in the past and future, at and beyond both bounds, in every format."""

WRONG_VALUES: list[Any] = ["1.5", True, False, [], [1.0], {}, {"v": 1}, "", "NaN", 0, -1.5]
"""JSON values put where another type belongs (some are in fact right for some fields)."""

DEPTHS = [3, 40, 200, 1_500]
"""Nesting depths. Not 700-1000: there json's outcome depends on the caller's stack depth."""

BAD_BYTES = [b"\xff", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
             b"\xe2\x82", b"\xc0\xaf", b"\x00"]
"""Invalid UTF-8 sequences (overlong, surrogate, truncated, out of range) and a NUL."""

TOP_LEVEL = [b"[]", b"[1, 2]", b"1", b"-1.5", b'"event"', b"null", b"true", b"NaN", b"[{}]"]

MUTATIONS = ["valid"] * 8 + ["unknown", "unknown", "drop", "null", "wrong", "number", "number",
                             "timestamp", "timestamp", "name", "empty_values", "deep",
                             "cross_topic"]
ENCODINGS = ["ascii"] * 8 + ["utf8"] * 3 + ["truncate", "bad_utf8", "garbage", "top_level",
                                            "empty", "bom", "padded", "duplicate_key"]

PLACEHOLDER = "\x01raw\x01"


HOSTILE_VALUES: list[float | int] = [
    0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 1e16, 9007199254740993,
    2**70, -(2**70), 1e150, -1e150, 10**150, 1.7976931348623157e308,
    -1.7976931348623157e308, 10**308, 2**1000,
]
"""Finite but awkward numbers; beyond ±1e150 a value is refused (not_finite), since its
square would overflow any variance."""

WARM_KEYS = [f"warm-{i}" for i in range(8)]
WARM_START = (int(time.time()) // 3600 - 1) * 3600
"""Warm series live in the hour before the last full hour: later than (almost) every other
valid timestamp here (those after the wall clock plus runtime.max_clock_skew_s are refused as
future_timestamp), so the partitions' event-time clocks do not expire them: they learn and
alert."""


def build_message(pick: int) -> Message:
    """One message: a valid event, then a mutation and an encoding, all chosen by ``pick``.

    Hypothesis draws one integer per message: a draw costs about 100 us and there are over
    100,000 messages, so the integer seeds every choice here.
    """
    rng = random.Random(pick)  # noqa: S311 - fuzz input
    kind: EventKind = "prediction" if rng.random() < 0.5 else "telemetry"
    if rng.random() < 0.25:  # a few long-lived series with spikes
        name, metric = rng.choice(WARM_KEYS), "latency"
        timestamp: float | int = WARM_START + rng.uniform(0.0, 3600.0)
        values = [_warm_value(rng) for _ in range(rng.randint(1, 3))]
    else:  # series that come and go
        name = rng.choice(NAMES) if rng.random() < 0.3 else f"k{rng.randrange(10**6)}"
        metric = rng.choice(NAMES)
        timestamp = _timestamp(rng)
        values = [_value(rng) for _ in range(rng.randint(1, 3))]
    mutation, encoding = rng.choice(MUTATIONS), rng.choice(ENCODINGS)
    pick = rng.getrandbits(24)
    body, fields = _body(kind, name, metric, timestamp, values, pick)
    raw = ""
    if mutation == "unknown":
        body["extra"] = {"nested": [1, {"deeper": None}], "tag": NAMES[pick % len(NAMES)],
                         "big": 10**30, "inf": float("inf"), "list": values}
        body[NAMES[pick % len(NAMES)] + "_x"] = pick
    elif mutation == "drop":
        body.pop(fields[pick % len(fields)], None)
    elif mutation == "null":
        body[fields[pick % len(fields)]] = None
    elif mutation == "wrong":
        body[fields[pick % len(fields)]] = WRONG_VALUES[pick % len(WRONG_VALUES)]
    elif mutation == "number":
        raw = RAW_NUMBERS[pick % len(RAW_NUMBERS)]
        _set_number(body, kind, pick, PLACEHOLDER)
    elif mutation == "timestamp":
        raw = RAW_TIMESTAMPS[pick % len(RAW_TIMESTAMPS)]
        body["timestamp"] = PLACEHOLDER
    elif mutation == "name":
        body["model" if kind == "prediction" else "source"] = ["", "\ud800", 7, None][pick % 4]
    elif mutation == "empty_values":
        body["features" if kind == "prediction" else "metrics"] = {}
    elif mutation == "deep":
        depth = DEPTHS[pick % len(DEPTHS)]
        opener, closer = ("[", "]") if pick % 3 else ('{"a":', "}")
        raw = opener * depth + "1" + closer * depth
        if pick % 2:
            body["extra"] = PLACEHOLDER
        else:
            _set_number(body, kind, pick, PLACEHOLDER)
    elif mutation == "cross_topic":
        kind = "telemetry" if kind == "prediction" else "prediction"
    text = json.dumps(body, ensure_ascii=encoding != "utf8")
    if raw:
        text = text.replace(json.dumps(PLACEHOLDER), raw, 1)
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8
    return kind, _encode(data, encoding, pick)


def _timestamp(rng: random.Random) -> float | int:
    """A valid timestamp anywhere from 1970 to 2199, as seconds, milliseconds or a float."""
    form = rng.randrange(4)
    if form == 0:
        return rng.uniform(1.0, 7.2e9)
    if form == 1:
        return rng.randrange(1, 7_258_118_399)
    if form == 2:
        return rng.randrange(100_000_000_001, 7_258_118_399_999)  # epoch milliseconds
    return 1_767_225_600 + rng.randrange(86_400)


def _value(rng: random.Random) -> float | int:
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(HOSTILE_VALUES)
    if roll < 0.2:
        return rng.randrange(-(2**40), 2**40)
    return rng.gauss(100.0, 10.0)


def _warm_value(rng: random.Random) -> float | int:
    roll = rng.random()
    if roll < 0.02:
        return rng.choice(HOSTILE_VALUES)
    if roll < 0.04:
        return 100.0 + rng.choice((-1, 1)) * rng.uniform(50.0, 250.0)  # a 10-50 sigma spike
    return rng.gauss(100.0, 5.0)


def _body(kind: EventKind, name: str, metric: str, timestamp: float | int,
          values: list[float | int], pick: int) -> tuple[dict[str, Any], list[str]]:
    numbers = {metric if i == 0 else f"m{i}": v for i, v in enumerate(values)}
    if kind == "telemetry":
        return ({"source": name, "timestamp": timestamp, "metrics": numbers},
                ["source", "timestamp", "metrics"])
    body: dict[str, Any] = {"model": name, "timestamp": timestamp, "prediction": values[0],
                            "features": numbers}
    if pick % 3 == 0:
        body.update(model_version="1.0", prediction_id=f"p{pick}", label=values[-1])
    return body, ["model", "timestamp", "prediction", "features", "model_version", "label"]


def _set_number(body: dict[str, Any], kind: EventKind, pick: int, value: Any) -> None:
    """Put ``value`` where a number belongs: a metric, a feature, the prediction or the label."""
    if kind == "telemetry":
        body["metrics"][next(iter(body["metrics"]))] = value
    else:
        body[["prediction", "label", "features"][pick % 3]] = (
            {"f": value} if pick % 3 == 2 else value)


def _encode(data: bytes, encoding: str, pick: int) -> bytes | None:
    if encoding == "truncate":
        return data[: pick % len(data)]
    if encoding == "bad_utf8":
        at = pick % len(data)
        return data[:at] + BAD_BYTES[pick % len(BAD_BYTES)] + data[at:]
    if encoding == "garbage":
        return random.Random(pick).randbytes(pick % 40)  # noqa: S311 - fuzz bytes
    if encoding == "top_level":
        return TOP_LEVEL[pick % len(TOP_LEVEL)]
    if encoding == "empty":
        return [b"", b" ", b"\n\t ", None][pick % 4]  # None: a tombstone, no value at all
    if encoding == "bom":
        return b"\xef\xbb\xbf" + data
    if encoding == "padded":
        return b" \n" + data + b"\r\n "
    if encoding == "duplicate_key":
        return data[:-1] + b', "timestamp": ' + RAW_TIMESTAMPS[pick % 9].encode() + b"}"
    return data


seeds = st.lists(st.integers(0, 2**32 - 1), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE)
"""One drawn integer per message; the message is built from it in the test body, since
building inside the strategy (``.map``) makes Hypothesis itself over twice as slow."""


def big_messages() -> list[Message]:
    """~900 KB payloads, near Kafka's default 1 MiB message limit (tansu has none): one valid
    with a big unknown field, two not; and 100,000-deep nesting."""
    filler = "a" * 900_000
    valid = {"source": "big", "timestamp": 1_767_225_600, "metrics": {"cpu": 1.0},
             "attachment": filler}
    wrong = {"source": "big", "timestamp": 1_767_225_600, "metrics": {"cpu": filler}}
    return [("telemetry", json.dumps(valid).encode()),
            ("telemetry", json.dumps(wrong).encode()),
            ("prediction", b'{"model": "big", "payload": "' + filler.encode()),
            ("telemetry", b"[" * 100_000 + b"]" * 100_000)]


def flood_messages() -> list[Message]:
    """Valid telemetry from ``FLOOD_KEYS`` distinct sources: far more series than the cap."""
    return [("telemetry", json.dumps({"source": f"flood-{i}", "timestamp": 1_767_225_600 + i,
                                      "metrics": {"cpu": float(i % 7)}}).encode())
            for i in range(FLOOD_KEYS)]


# --- the oracle and the sender ----------------------------------------------------------------


class Ledger:
    """The messages to send, and what the parser says about each one."""

    def __init__(self) -> None:
        self.outbox: list[Message] = []
        self.valid = 0
        self.invalid: Counter[str] = Counter()
        self.dead: Counter[tuple[str, bytes | None, str]] = Counter()
        """(input topic, bytes, reason) of every message that must be dead-lettered."""

    @property
    def total(self) -> int:
        return len(self.outbox)

    def book(self, batch: list[Message]) -> None:
        """Queue messages to send."""
        self.outbox.extend(batch)

    def judge(self, topics: dict[EventKind, str]) -> None:
        """Ask the parser Vigil runs about every queued message: valid, or which reason.

        Not inside a Hypothesis example: Hypothesis raises the recursion limit there, and
        json's verdict on deep nesting depends on that limit and on the stack depth.
        """
        limits = EventLimits(latest_timestamp=time.time() + RuntimeConfig().max_clock_skew_s)
        for kind, raw in self.outbox:
            try:
                decode_event(raw or b"", kind, limits)
                self.valid += 1
            except EventError as exc:
                self.invalid[exc.reason] += 1
                self.dead[(topics[kind], raw, exc.reason)] += 1

    def send(self, producer: KafkaProducer, topics: dict[EventKind, str]) -> None:
        """Produce every queued message in order and wait until all are acknowledged."""
        failures: list[BaseException] = []
        for kind, raw in self.outbox:
            key = b"tombstone" if raw is None else None  # Kafka wants a key or a value
            producer.send(topics[kind], key=key, value=raw).add_errback(failures.append)
        producer.flush(timeout=120)
        assert not failures, failures[:3]


class HealthWatch:
    """Polls /healthz and the process in a thread; remembers anything but 200 and alive."""

    def __init__(self, vigil: VigilProcess) -> None:
        self.vigil = vigil
        self.problems: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            code = self.vigil.process.poll()
            if code is not None:
                self.problems.append(f"vigil exited with {code}")
                return
            try:
                status = self.vigil.status("/healthz")
            except OSError as exc:
                status = -1
                self.problems.append(f"/healthz unreachable: {exc}")
            if status != 200:
                self.problems.append(f"/healthz answered {status}")
            self.checks += 1


# --- the test ---------------------------------------------------------------------------------


def test_hostile_input_is_dead_lettered_exactly_and_vigil_stays_up(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    topics = Topics(topic_prefix)
    create_inputs(broker, topics)
    port = free_port()
    config = write_config(tmp_path / "vigil.toml", broker, topics, metrics_port=port, extra=f"""
max_poll_records = 2000

[state]
topic = "{topics.prefix}-state"
max_series = {MAX_SERIES}
series_ttl_s = 60.0
checkpoint_interval_s = 1.0
""")
    vigil = VigilProcess(config, tmp_path / "vigil.log", port)
    # gzip: kafka-python checksums batches in pure Python (~3 MB/s without the crc32c
    # package), and compressed batches are several times smaller to checksum, here and in vigil.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all",
                             linger_ms=20, batch_size=256 * 1024, compression_type="gzip",
                             max_request_size=2 * 1024 * 1024)
    ledger = Ledger()
    inputs: dict[EventKind, str] = {"prediction": topics.predictions,
                                    "telemetry": topics.telemetry}
    try:
        ledger.book(big_messages())
        ledger.book(flood_messages())
        fuzz(ledger)  # while vigil starts and joins its group
        generated = time.monotonic() - started
        ledger.judge(inputs)
        wait_logged(vigil, lambda: vigil.status("/readyz") == 200, 60, "vigil ready")
        ready = time.monotonic() - started
        with HealthWatch(vigil) as health:
            ledger.send(producer, inputs)
            sent = time.monotonic() - started
            wait_logged(vigil, lambda: handled(vigil) == ledger.total, 120,
                        f"vigil to handle all {ledger.total} messages")
            drained = time.monotonic() - started
            # Series counters are published at checkpoints (every second here).
            wait_logged(vigil, lambda: vigil.metrics().get("vigil_series_evicted_total", 0) > 0,
                        15, "a checkpoint publishing the eviction counter")
            samples = vigil.metrics()
            letters = read_all(broker, topics.dead_letter, sum(ledger.invalid.values()))
            alerted = int(sum(v for k, v in samples.items()
                              if k.startswith("vigil_alerts_produced_total")))
            alerts = read_all(broker, topics.alerts, alerted)
            read = time.monotonic() - started
        assert vigil.process.poll() is None
        assert not health.problems, health.problems[:5]
        assert health.checks > 10
    finally:
        producer.close(timeout=10)
        exit_code = vigil.stop(timeout_s=30)
    assert exit_code == 0, vigil.log_text()[-4000:]

    context = f"(VIGIL_FUZZ_SEED={FUZZ_SEED})"
    assert ledger.total >= 100_000, context
    assert ledger.valid > 10_000 and sum(ledger.invalid.values()) > 10_000, context
    dead = Counter((dict(r.headers)["vigil.source.topic"].decode(), r.value,
                    dict(r.headers)["vigil.error.reason"].decode()) for r in letters)
    unexpected, missing = dead - ledger.dead, ledger.dead - dead
    assert not unexpected and not missing, (
        f"{context} dead letters the oracle did not expect: {_show(unexpected)}; "
        f"expected but not found: {_show(missing)}")
    processed = sum(v for k, v in samples.items() if k.startswith("vigil_events_processed_total"))
    invalid = {k.split('"')[1]: int(v) for k, v in samples.items()
               if k.startswith("vigil_events_invalid_total")}
    assert (processed, invalid) == (ledger.valid, dict(ledger.invalid)), context
    assert set(ledger.invalid) <= REASONS

    assert all(dict(r.headers).get("vigil.error.detail") for r in letters)

    assert len(alerts) == alerted > 0, context  # the warm series' spikes
    for alert in alerts:  # strict JSON: no NaN or Infinity from hostile values
        json.loads(alert.value, parse_constant=_refuse)

    assert samples["vigil_series"] <= MAX_SERIES
    assert samples["vigil_series_evicted_total"] > 0
    assert samples["vigil_series_expired_total"] > 0

    elapsed = time.monotonic() - started
    print(f"\nfuzz {context}: {ledger.total} messages, {ledger.valid} valid, "
          f"{sum(ledger.invalid.values())} dead-lettered {dict(sorted(ledger.invalid.items()))}, "
          f"{alerted} alerts; "
          f"series {samples['vigil_series']:.0f}, evicted "
          f"{samples['vigil_series_evicted_total']:.0f}, expired "
          f"{samples['vigil_series_expired_total']:.0f}; at s: generated {generated:.1f}, "
          f"ready {ready:.1f}, sent {sent:.1f}, drained {drained:.1f}, "
          f"dead letters read {read:.1f}, stopped {elapsed:.1f}")


def fuzz(ledger: Ledger) -> None:
    """Run Hypothesis: each example books its messages; they are sent all at once after.

    Sending from inside the examples, next to Hypothesis in one process, took 2.5 times as
    long (the producer's I/O thread and Hypothesis contend for the GIL).
    """

    @seed(FUZZ_SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(seeds)
    def send(picks: list[int]) -> None:
        ledger.book([build_message(pick) for pick in picks])

    send()


def create_inputs(broker: EmbeddedBroker, topics: Topics) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        admin.create_topics({name: {"num_partitions": 3, "replication_factor": 1}
                             for name in (topics.predictions, topics.telemetry)})
    finally:
        admin.close()


def read_all(broker: EmbeddedBroker, topic: str, count: int, timeout_s: float = 90.0,
             ) -> list[Any]:
    """The first ``count`` records of ``topic``, then any more that come within a second."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             check_crcs=False,  # the CRC is pure Python here: 3 MB/s
                             max_poll_records=10_000, fetch_max_bytes=64 * 1024 * 1024)
    try:
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), 15, topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            for part in consumer.poll(timeout_ms=500).values():
                records.extend(part)
        for part in consumer.poll(timeout_ms=1000).values():  # nothing beyond: no duplicates
            records.extend(part)
        return records
    finally:
        consumer.close()


def _refuse(constant: str) -> Any:
    raise AssertionError(f"an alert holds {constant}, which is not JSON")


def _show(letters: Counter[tuple[str, bytes | None, str]]) -> str:
    """A few dead letters, each cut short, and how many there are in all."""
    shown = [f"{reason} from {topic}: {(value or b'')[:120]!r}"
             for (topic, value, reason), _ in letters.most_common(5)]
    return f"{sum(letters.values())} in all, e.g. {shown}"


def handled(vigil: VigilProcess) -> float:
    """Messages vigil has accounted for: processed plus dead-lettered."""
    return sum(v for k, v in vigil.metrics().items()
               if k.startswith(("vigil_events_processed_total", "vigil_events_invalid_total")))


def wait_logged(vigil: VigilProcess, condition: Callable[[], Any], timeout_s: float,
                what: str) -> None:
    """``wait_for``, failing with the tail of vigil's log (read when it failed)."""
    try:
        wait_for(condition, timeout_s, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; vigil log tail:\n{vigil.log_text()[-4000:]}") from None


class VigilDied(AssertionError):
    """The vigil process exited."""


HUGE = b'{"source": "huge", "timestamp": 1767225600, "metrics": {"cpu": "' \
    + b"a" * 5_000_000 + b'"}}'  # tansu takes it, and a Kafka topic may allow it
EXTREMES = [json.dumps({"source": "web-1", "timestamp": 1_767_225_600 - i,
                        "metrics": {"cpu": value}}).encode()
            for i, value in enumerate([1.7976931348623157e308, -1.7976931348623157e308])]


@pytest.mark.parametrize(("poison", "invalid"), [
    pytest.param([HUGE], 1, id="dead letter above the message size limit"),
    pytest.param(EXTREMES, 2, id="finite values beyond 1e150"),
])
def test_vigil_survives_a_poison_message(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path, poison: list[bytes], invalid: int
) -> None:
    topics = Topics(topic_prefix)
    create_inputs(broker, topics)
    after = [json.dumps({"source": "web-1", "timestamp": 1_767_225_600 + i,
                         "metrics": {"cpu": 40.0 + i % 3}}).encode() for i in range(20)]
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all",
                             max_request_size=8 * 1024 * 1024)
    try:
        for value in [*poison, *after]:
            producer.send(topics.telemetry, key=b"k", value=value)  # one partition, in order
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    port = free_port()
    config = write_config(tmp_path / "vigil.toml", broker, topics, metrics_port=port,
                          extra=f'\n[state]\ntopic = "{topics.prefix}-state"\n')
    vigil = VigilProcess(config, tmp_path / "vigil.log", port)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if vigil.process.poll() is not None:
                raise VigilDied(f"vigil exited with {vigil.process.returncode}: "
                                f"{vigil.log_text()[-1500:]}")
            with contextlib.suppress(OSError):
                if handled(vigil) == len(poison) + len(after):
                    break
            time.sleep(0.3)
        samples = vigil.metrics()
        assert sum(v for k, v in samples.items()
                   if k.startswith("vigil_events_invalid_total")) == invalid
        processed = samples[f'vigil_events_processed_total{{topic="{topics.telemetry}"}}']
        assert processed == len(poison) + len(after) - invalid
    finally:
        vigil.stop()
