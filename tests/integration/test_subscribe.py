"""`vigil alerts` against the real embedded broker: real alert messages in, readable lines out.

The command runs as a process, as an operator runs it, without and with --follow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import IO

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from tests.integration.support import produce, wait_for
from vigil.detectors import PointResult
from vigil.stream.engine.alerts import Alert, SourceRef, build_alert
from vigil.stream.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def _alert(key: str, metric: str, offset: int, *, score: float = 0.58, kind: str = "anomaly",
           episode_id: str | None = None) -> Alert:
    return build_alert(
        result=PointResult(score, kind == "anomaly", 120.0, 75.0, 165.0, 4.2, 250),
        source=SourceRef("telemetry", offset % 3, offset), event_type="telemetry", key=key,
        metric=metric, detector="shewhart", value=412.0, event_timestamp=1767225600.25 + offset,
        detected_at=1767225601.0 + offset, critical_score=2 / 3, kind=kind,
        episode_id=episode_id,
    )


def _history() -> list[Alert]:
    opened = _alert("web-1", "latency_ms", 1, score=0.9)
    return [
        opened,
        _alert("web-1", "cpu_percent", 2),
        _alert("web-2", "latency_ms", 3),
        _alert("db-1", "latency_ms", 4, score=0.95),
        _alert("web-1", "latency_ms", 5, score=0.2, kind="resolved", episode_id=opened.alert_id),
        _alert("db-1", "errors", 6),
    ]


def _create(broker: EmbeddedBroker, topic: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def _publish(broker: EmbeddedBroker, topic: str, alerts: list[Alert],
             extra: tuple[bytes, ...] = ()) -> None:
    produce(broker, [(topic, a.message_key, a.to_json()) for a in alerts]
            + [(topic, b"junk", raw) for raw in extra])


def _vigil_alerts(broker: EmbeddedBroker, topic: str,
                  *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil.stream.cli", "alerts", "--bootstrap-servers",
         broker.bootstrap_servers, "--topic", topic, *flags],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_prints_the_alerts_on_the_topic_and_exits(broker: EmbeddedBroker,
                                                  topic_prefix: str) -> None:
    topic = f"{topic_prefix}-alerts"
    _create(broker, topic)
    history = _history()
    _publish(broker, topic, history, extra=(b"{not json",))

    result = _vigil_alerts(broker, topic)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(history)
    for alert in history:  # one series keeps its order on its partition
        assert sum(f" {alert.key}/{alert.metric} " in line and alert.kind in line
                   and alert.event_timestamp in line for line in lines) == 1, alert
    assert "6 of 7 alerts shown, 1 unreadable" in result.stderr
    assert f"skipping {topic}/" in result.stderr

    critical = _vigil_alerts(broker, topic, "--severity", "critical")
    assert sorted(line.split()[4] for line in critical.stdout.splitlines()) == [
        "db-1/latency_ms", "web-1/latency_ms"]
    assert all(" CRITICAL anomaly " in line for line in critical.stdout.splitlines())

    web = _vigil_alerts(broker, topic, "--key", "web-*", "--kind", "anomaly", "--json")
    shown = [json.loads(line) for line in web.stdout.splitlines()]
    assert sorted((a["key"], a["metric"]) for a in shown) == [
        ("web-1", "cpu_percent"), ("web-1", "latency_ms"), ("web-2", "latency_ms")]
    published = {a.alert_id: json.loads(a.to_json()) for a in history}
    assert all(published[a["alert_id"]] == a for a in shown), "--json prints the message as is"

    resolved = _vigil_alerts(broker, topic, "--kind", "resolved", "--key", "web-1/latency_*")
    assert len(resolved.stdout.splitlines()) == 1
    assert " INFO     resolved " in resolved.stdout
    assert f"episode={history[0].alert_id[:8]}" in resolved.stdout


def test_a_missing_topic_is_reported(broker: EmbeddedBroker, topic_prefix: str) -> None:
    result = _vigil_alerts(broker, f"{topic_prefix}-nowhere")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert result.stdout == ""


class _Follower:
    """`vigil alerts --follow ...` with its output collected line by line in threads."""

    def __init__(self, broker: EmbeddedBroker, topic: str, *flags: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vigil.stream.cli", "alerts", "--follow", "--bootstrap-servers",
             broker.bootstrap_servers, "--topic", topic, *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out),
                                  (self.process.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def interrupt(self) -> int:
        """Ctrl-C, as an operator stops it."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for reader in self._readers:
                reader.join(timeout=5)
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()


def test_follow_prints_new_alerts_until_interrupted(broker: EmbeddedBroker,
                                                    topic_prefix: str) -> None:
    topic = f"{topic_prefix}-alerts"
    _create(broker, topic)
    history = _history()
    _publish(broker, topic, history)
    newest = _Follower(broker, topic, "--key", "web-*")
    everything = _Follower(broker, topic, "--from-beginning")
    try:
        for follower in (newest, everything):
            wait_for(lambda f=follower: any("following" in line for line in f.err), 30,
                     f"the follower to reach the end of {topic}")
        fresh = [_alert("web-3", "latency_ms", 100, score=0.9), _alert("db-2", "errors", 101)]
        _publish(broker, topic, fresh)
        wait_for(lambda: len(everything.out) == len(history) + 2, 30,
                 f"all {len(history) + 2} alerts from --from-beginning; got {everything.out}")
        wait_for(lambda: len(newest.out) >= 1, 30, "the new web-* alert")
    finally:
        codes = [newest.interrupt(), everything.interrupt()]
    assert codes == [0, 0]
    assert len(newest.out) == 1 and " web-3/latency_ms " in newest.out[0], newest.out
    assert sum(" db-2/errors " in line for line in everything.out) == 1
    assert not any("Traceback" in line for line in newest.err + everything.err)
