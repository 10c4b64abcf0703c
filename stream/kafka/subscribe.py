"""``vigil alerts``: print what Vigil publishes on the alert topic, as readable lines or JSON.

The reader joins no consumer group: it assigns itself every partition of the topic and
commits nothing, so looking never moves anyone's offsets nor triggers a rebalance.

Without ``--follow`` it prints the alerts that were on the topic when it started and exits;
with ``--follow`` it prints alerts as they arrive (after the retained ones with
``--from-beginning``) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from vigil.stream.engine.alerts import ALERT_KINDS
from vigil.stream.errors import BrokerError
from vigil.stream.loop.ports import InputRecord
from vigil.stream.text import printable, printable_json

if TYPE_CHECKING:
    from vigil.stream.config import VigilConfig

SEVERITIES = ("info", "warning", "critical")

_EXAMPLES = """examples:
  vigil alerts                               every alert on the topic now, then exit
  vigil alerts --follow                      new alerts as they arrive (Ctrl-C stops)
  vigil alerts -f --severity critical --key 'web-*'
  vigil alerts --kind anomaly --key 'fraud/features.*' --json | jq .score
"""


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts to show: any of ``kinds``, any of ``severities``, key matching a glob.

    An empty set or ``None`` lets everything through. A glob with a slash is matched against
    ``key/metric``, one without against the key alone.

    >>> alert = {"kind": "anomaly", "severity": "critical", "key": "web-1", "metric": "cpu"}
    >>> AlertFilter(severities=frozenset({"critical"}), key_glob="web-*").matches(alert)
    True
    >>> AlertFilter(key_glob="web-*/latency_ms").matches(alert)
    False
    """

    kinds: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()
    key_glob: str | None = None

    def matches(self, alert: Mapping[str, Any]) -> bool:
        """True when ``alert`` passes every condition."""
        if self.kinds and alert.get("kind") not in self.kinds:
            return False
        if self.severities and alert.get("severity") not in self.severities:
            return False
        if self.key_glob is not None:
            subject = str(alert.get("key", ""))
            if "/" in self.key_glob:
                subject += f"/{alert.get('metric', '')}"
            if not fnmatch.fnmatchcase(subject, self.key_glob):
                return False
        return True


def format_alert_line(alert: Mapping[str, Any]) -> str:
    """One readable line for an alert message; fields it lacks are shown as ``-``. An anomaly
    alert says what fired: its test, the test's statistic and the limit it crossed.

    >>> print(format_alert_line({"alert_id": "e26ead1566bc98e9eb1d57a78d30ab9d",
    ...   "kind": "anomaly", "severity": "critical", "event_type": "telemetry", "key": "web-1",
    ...   "metric": "latency_ms", "detector": "ensemble", "value": 131.0, "score": 0.76,
    ...   "z": 1.3, "n": 5120, "centre": 120.3, "lower": 75.1, "upper": 165.5,
    ...   "test": "cusum up", "statistic": 12.41, "limit": 9.844,
    ...   "event_timestamp": "2026-01-01T00:00:00.250Z",
    ...   "episode_id": "e26ead1566bc98e9eb1d57a78d30ab9d"}).replace(" fired", "\\n fired")
    ...   .replace(" n=", "\\n n="))
    2026-01-01T00:00:00.250Z CRITICAL anomaly     telemetry web-1/latency_ms value=131 z=+1.30
     fired=[cusum up 12.41 > 9.844] limits=[75.1, 165.5]
     n=5120 score=0.760 ensemble episode=e26ead15
    """
    z = alert.get("z")
    if isinstance(z, int | float):
        z_text = format(z, "+.2f")
    else:  # null: not finite (an anomaly on a constant series) or not applicable
        z_text = "inf" if alert.get("kind") == "anomaly" else "-"
    score = alert.get("score")
    parts = [
        str(alert.get("event_timestamp", "-")),
        f"{str(alert.get('severity', '-')).upper():<8}",
        f"{alert.get('kind', '-')!s:<11}",
        str(alert.get("event_type", "-")),
        f"{alert.get('key', '-')}/{alert.get('metric', '-')}",
        f"value={_number(alert.get('value'), 'g')}",
        f"z={z_text}",
        *_fired(alert),
        f"limits=[{_number(alert.get('lower'))}, {_number(alert.get('upper'))}]",
        f"n={alert.get('n', '-')}",
        f"score={_number(score, '.3f')}",
        str(alert.get("detector", "-")),
    ]
    for name in ("model_version", "prediction_id"):
        if alert.get(name) is not None:
            parts.append(f"{name}={alert[name]}")
    episode = alert.get("episode_id")
    if isinstance(episode, str) and episode:
        parts.append(f"episode={episode[:8]}")
    return printable(" ".join(parts))  # names come from whoever produced the events


def _fired(alert: Mapping[str, Any]) -> list[str]:
    """``fired=[test statistic > limit]`` when the alert names the test that fired."""
    test, statistic, limit = alert.get("test"), alert.get("statistic"), alert.get("limit")
    if not isinstance(test, str) or not test:
        return []
    sign = ">" if isinstance(statistic, int | float) and isinstance(limit, int | float) \
        and statistic >= limit else "<"
    return [f"fired=[{test} {_number(statistic)} {sign} {_number(limit)}]"]


def _number(value: Any, spec: str = ".4g") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return format(value, spec)


AlertRecord = InputRecord
"""The fields of a consumed record the reader uses: those the consume loop reads."""


class AlertConsumer(Protocol):
    """The group-less consumer calls the reader makes (kafka-python's KafkaConsumer has them)."""

    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def assign(self, partitions: list[Any]) -> None: ...
    def seek_to_beginning(self, *partitions: Any) -> None: ...
    def seek_to_end(self, *partitions: Any) -> None: ...
    def poll(self, timeout_ms: int = 0) -> Mapping[Any, Sequence[AlertRecord]]: ...
    def highwater(self, partition: Any) -> int | None: ...
    def position(self, partition: Any) -> int | None: ...


@dataclass
class ReadSummary:
    """What a read saw: records read, objects shown, records that were not JSON objects."""

    read: int = 0
    shown: int = 0
    unreadable: int = 0


@dataclass(frozen=True)
class TopicContent:
    """What a topic holds, for the reader's notes: one message's name, and where the topic
    comes from when it is missing."""

    noun: str
    missing_hint: str


ALERTS = TopicContent("an alert", "Vigil creates its alert topic when it starts (check "
                      "topics.alerts, or pass --topic)")
MODEL_UPDATES = TopicContent("a model update", "Vigil creates it when it starts with models "
                             "enabled (check topics.model_updates)")


def read_alerts(
    consumer: AlertConsumer,
    topics: Sequence[str],
    show: Callable[[dict[str, Any], AlertRecord], None],
    *,
    alert_filter: AlertFilter | None = None,
    follow: bool = False,
    from_beginning: bool = False,
    stop: threading.Event | None = None,
    idle_timeout_s: float = 30.0,
    topic_wait_s: float = 5.0,
    warn: Callable[[str], None] = lambda message: None,
) -> ReadSummary:
    """Read alerts from every partition of ``topics`` and ``show`` each that passes the filter,
    with the record it came in (see :func:`read_json_objects`)."""
    return read_json_objects(consumer, topics, show, ALERTS,
                             keep=(alert_filter or AlertFilter()).matches, follow=follow,
                             from_beginning=from_beginning, stop=stop,
                             idle_timeout_s=idle_timeout_s, topic_wait_s=topic_wait_s, warn=warn)


def read_model_updates(
    consumer: AlertConsumer,
    topic: str,
    show: Callable[[dict[str, Any], AlertRecord], None],
    *,
    warn: Callable[[str], None] = lambda message: None,
) -> ReadSummary:
    """Read the model updates on ``topic``, from the beginning to its end, and ``show`` each
    with the record it came in (``vigil export-model`` keeps the newest of a model)."""
    return read_json_objects(consumer, [topic], show, MODEL_UPDATES, warn=warn)


def read_json_objects(
    consumer: AlertConsumer,
    topics: Sequence[str],
    show: Callable[[dict[str, Any], AlertRecord], None],
    content: TopicContent,
    *,
    keep: Callable[[dict[str, Any]], bool] = lambda message: True,
    follow: bool = False,
    from_beginning: bool = False,
    stop: threading.Event | None = None,
    idle_timeout_s: float = 30.0,
    topic_wait_s: float = 5.0,
    warn: Callable[[str], None] = lambda message: None,
) -> ReadSummary:
    """Read the JSON objects on every partition of ``topics`` and ``show`` each that ``keep``
    accepts, with the record it came in; a record that is not one is noted and skipped.

    Without ``follow``: from the beginning up to each partition's end as first seen, then
    return (a :class:`BrokerError` when the broker gives nothing for ``idle_timeout_s``, or a
    topic is not found within ``topic_wait_s``).
    With ``follow``: until ``stop`` is set, skipping what was there at the start unless
    ``from_beginning``. The end of a partition is its high water mark in the first fetch
    answer, not a ListOffsets answer (which some Kafka-compatible brokers get wrong).
    """
    stop = stop or threading.Event()
    partitions = _assign(consumer, topics, content, follow=follow, stop=stop,
                         wait_s=topic_wait_s, warn=warn)
    summary = ReadSummary()
    if not partitions:
        return summary
    if from_beginning or not follow:
        consumer.seek_to_beginning(*partitions)
    else:
        consumer.seek_to_end(*partitions)
    ends: dict[Any, int] = {}
    deadline = time.monotonic() + idle_timeout_s
    while not stop.is_set():
        batch = consumer.poll(timeout_ms=200)
        if len(ends) < len(partitions) and _all_ends_known(consumer, partitions, ends) \
                and follow:
            warn(f"following {', '.join(topics)}; Ctrl-C stops")
        for partition, records in batch.items():
            deadline = time.monotonic() + idle_timeout_s
            there_at_start = ends.get(partition, 0) if follow and not from_beginning else 0
            for record in records:
                if record.offset < there_at_start:
                    continue  # following: what was there at the start is not shown
                summary.read += 1
                message = _decode(record, content, warn)
                if message is None:
                    summary.unreadable += 1
                elif keep(message):
                    summary.shown += 1
                    show(message, record)
        if follow:
            continue
        if len(ends) == len(partitions) and all(
                (consumer.position(p) or 0) >= ends[p] for p in partitions):
            break
        if time.monotonic() > deadline:
            raise BrokerError(f"no answer from the broker for {idle_timeout_s:.0f} s while "
                              f"reading {', '.join(topics)}")
    return summary


def _all_ends_known(consumer: AlertConsumer, partitions: list[Any],
                    ends: dict[Any, int]) -> bool:
    """Note each partition's end as first seen in a fetch answer; True once all are known."""
    for partition in partitions:
        highwater = consumer.highwater(partition)
        if partition not in ends and highwater is not None:
            ends[partition] = highwater
    return len(ends) == len(partitions)


def _assign(consumer: AlertConsumer, topics: Sequence[str], content: TopicContent, *,
            follow: bool, stop: threading.Event, wait_s: float,
            warn: Callable[[str], None]) -> list[Any]:
    """Assign every partition of ``topics``; with ``follow``, wait for missing topics."""
    from kafka import TopicPartition

    partitions: list[Any] = []
    for topic in topics:
        found = _partitions(consumer, topic, wait_s=wait_s, stop=stop)
        if not found and follow:
            warn(f"topic {topic!r} does not exist yet; waiting for it")
            while not found and not stop.is_set():
                found = _partitions(consumer, topic, wait_s=wait_s, stop=stop)
        if not found and not stop.is_set():
            raise BrokerError(f"topic {topic!r} does not exist; {content.missing_hint}")
        partitions.extend(TopicPartition(topic, p) for p in sorted(found))
    consumer.assign(partitions)
    return partitions


def _partitions(consumer: AlertConsumer, topic: str, *, wait_s: float,
                stop: threading.Event) -> set[int]:
    deadline = time.monotonic() + wait_s
    while True:
        found = consumer.partitions_for_topic(topic)
        if found or time.monotonic() >= deadline or stop.wait(0.2):
            return set(found or ())


def _decode(record: AlertRecord, content: TopicContent,
            warn: Callable[[str], None]) -> dict[str, Any] | None:
    try:
        message = json.loads(record.value or b"")
    except ValueError:
        message = None
    if not isinstance(message, dict):
        warn(f"skipping {record.topic}/{record.partition}/{record.offset}: not "
             f"{content.noun} (JSON object)")
        return None
    return message


# --- the command ------------------------------------------------------------------------------


def add_alerts_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``vigil alerts`` on the ``vigil`` command's subparsers."""
    alerts: argparse.ArgumentParser = commands.add_parser(
        "alerts", help="print the alerts on the alert topic, as readable lines or JSON",
        description="Print the alerts on Vigil's alert topic; without --follow, those on the\n"
        "topic now, then exit. Reads without a consumer group and commits nothing, so it\n"
        "never disturbs Vigil or other subscribers.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    alerts.add_argument("-f", "--follow", action="store_true",
                        help="keep printing alerts as they arrive, until Ctrl-C")
    alerts.add_argument("--from-beginning", action="store_true",
                        help="with --follow, print the alerts already on the topic first "
                        "(without --follow they are always printed)")
    alerts.add_argument("--kind", action="append", choices=ALERT_KINDS, default=[],
                        help="only alerts of this kind (repeatable)")
    alerts.add_argument("--severity", action="append", choices=SEVERITIES, default=[],
                        help="only alerts of this severity (repeatable)")
    alerts.add_argument("--key", metavar="GLOB",
                        help="only alerts whose key matches GLOB (e.g. 'web-*'); with a slash "
                        "GLOB matches key/metric (e.g. 'fraud/features.*')")
    alerts.add_argument("--json", action="store_true",
                        help="print each alert as one line of JSON (the message as published)")
    alerts.add_argument("--topic", action="append", default=[],
                        help="read this topic instead of topics.alerts (repeatable)")
    alerts.add_argument("-c", "--config", type=Path, help="TOML configuration file")
    alerts.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (host:port,...)")
    alerts.set_defaults(handler=_alerts)


def _alerts(args: argparse.Namespace) -> int:
    from vigil.stream.config import load_config

    config = load_config(args.config,
                         overrides={"kafka.bootstrap_servers": args.bootstrap_servers})
    topics = list(dict.fromkeys(args.topic)) or [config.topics.alerts]
    alert_filter = AlertFilter(frozenset(args.kind), frozenset(args.severity), args.key)
    return print_alerts(config, topics, alert_filter, follow=args.follow,
                        from_beginning=args.from_beginning, as_json=args.json)


def topic_reader(config: VigilConfig) -> Any:
    """A consumer outside any group, for reading whole topics (alerts, model updates)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from vigil.stream.kafka.kafka_python import client_settings

    try:
        return KafkaConsumer(**{
            **client_settings(config), "group_id": None, "enable_auto_commit": False,
            "allow_auto_create_topics": False, "fetch_max_wait_ms": 200,
        })
    except KafkaError as exc:
        raise BrokerError(f"cannot reach {config.kafka.bootstrap_servers}: {exc}") from exc


def print_alerts(config: VigilConfig, topics: Sequence[str], alert_filter: AlertFilter, *,
                 follow: bool, from_beginning: bool, as_json: bool,
                 out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print alerts from ``topics`` on ``out`` (notes on ``err``; default stdout, stderr);
    the command's exit code."""
    out = out or sys.stdout
    err = err or sys.stderr

    def show(alert: dict[str, Any], record: AlertRecord) -> None:
        line = printable_json(json.dumps(alert, separators=(",", ":"), ensure_ascii=False)) \
            if as_json else format_alert_line(alert)
        print(line, file=out, flush=True)

    def warn(message: str) -> None:
        print(f"vigil alerts: {message}", file=err, flush=True)

    consumer = topic_reader(config)
    try:
        summary = read_alerts(consumer, topics, show, alert_filter=alert_filter, follow=follow,
                              from_beginning=from_beginning, warn=warn)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python's final flush
        # of stdout from complaining.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        consumer.close()
    if not follow:
        warn(f"{summary.shown} of {summary.read} alerts shown"
             + (f", {summary.unreadable} unreadable" if summary.unreadable else ""))
    return 0
