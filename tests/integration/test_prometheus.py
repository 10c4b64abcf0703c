"""Vigil's shipped alert rules, evaluated by a real Prometheus scraping a real `vigil run`.

Prometheus (Debian's /usr/bin/prometheus) and Alertmanager (prometheus-alertmanager) run on
free loopback ports. Prometheus gets a temporary config derived from
deploy/prometheus/prometheus.yml: the vigil job's target is rewritten to this test's Vigil,
scrape and evaluation intervals are 1 s, the other scrape jobs are dropped and alerts go to
the test's Alertmanager, which runs the shipped deploy/alertmanager/alertmanager.yml.

The rules are the shipped deploy/prometheus/rules/vigil.rules.yml with one change, made in a
temporary copy: every alert's ``for:`` window is cut to FOR_IN_TEST, so that a test of a
minute proves what the shipped windows (1-30 min) do in production. Expressions, thresholds,
labels and rate windows are unchanged.

What it proves: with anomalies and malformed events injected into a live stream,
VigilAnomalyRate and VigilInvalidEventsHigh fire (and reach Alertmanager, routed by
severity), while VigilConsumerLagHigh, VigilBrokerDown, VigilDown and VigilNotCommitting do
not, on series Prometheus really has; once Vigil stops, VigilDown fires and reaches the
critical receiver.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from tests.integration.support import Topics, wait_for, write_config
from tests.vigil_process import VigilProcess
from vigil.stream.generate import generate_events
from vigil.stream.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

FOR_IN_TEST = "3s"
EVENTS_PER_S = 300.0
INVALID_EVERY = 20
"""One malformed event in this many: 5% dead letters, above VigilInvalidEventsHigh's 1%."""
ANOMALY_RATE = 0.02
"""Injected anomalies per event: ~10% of events flagged, above VigilAnomalyRate's 5%."""


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps` (Debian packages "
                    "prometheus and prometheus-alertmanager)", pytrace=False)
    return path


def _until(fetch: Callable[[], T], ok: Callable[[T], bool], timeout_s: float,
           what: Callable[[], str]) -> T:
    """Poll ``fetch`` until ``ok`` holds for its value, and return the value (bounded)."""
    found: list[T] = []

    def check() -> bool:
        value = fetch()
        found[:] = [value]
        return ok(value)

    try:
        wait_for(check, timeout_s, "a condition")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {what()}") from None
    return found[0]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback http
        return json.loads(response.read())


@contextmanager
def _server(command: list[str], log_path: Path, ready_url: str) -> Iterator[None]:
    """A child process serving HTTP, stopped (and reaped) however the test ends."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"{command[0]} exited:\n{log_path.read_text()}")
                with urllib.request.urlopen(ready_url, timeout=2) as response:  # noqa: S310
                    return bool(response.status == 200)
            wait_for(ready, 30, f"{command[0]} to be ready; log:\n{log_path}")
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _rules_for_test(directory: Path) -> list[Path]:
    """The shipped rule files, copied with every alert's `for:` cut to FOR_IN_TEST."""
    shipped = yaml.safe_load(PROMETHEUS_YML.read_text())["rule_files"]
    copies = []
    for name in shipped:
        rules = yaml.safe_load((PROMETHEUS_YML.parent / name).read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "alert" in rule and "for" in rule:
                    rule["for"] = FOR_IN_TEST
        copy = directory / Path(name).name
        copy.write_text(yaml.safe_dump(rules, sort_keys=False))
        copies.append(copy)
    return copies


def _prometheus_config(path: Path, *, vigil_port: int, alertmanager_port: int,
                       rule_files: list[Path]) -> Path:
    """The shipped prometheus.yml, pointed at this test's Vigil and Alertmanager."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "vigil"]
    assert len(jobs) == 1, "the shipped config must have one scrape job named vigil"
    jobs[0]["scrape_interval"] = "1s"
    jobs[0]["static_configs"] = [{"targets": [f"127.0.0.1:{vigil_port}"]}]
    config["scrape_configs"] = jobs
    config["rule_files"] = [str(p) for p in rule_files]
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class _Traffic:
    """Synthetic events with injected anomalies, and some malformed ones, at a steady rate."""

    def __init__(self, broker: EmbeddedBroker, topics: Topics) -> None:
        self.broker = broker
        self.topics = topics
        self.stop = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> _Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.broker.bootstrap_servers,
                                     acks="all", linger_ms=20)
            topic = {"prediction": self.topics.predictions, "telemetry": self.topics.telemetry}
            started = time.monotonic()
            events = generate_events(10**7, seed=5, anomaly_rate=ANOMALY_RATE,
                                     start=round(time.time(), 3), interval_s=1 / EVENTS_PER_S)
            for index, event in enumerate(events):
                if self.stop.is_set():
                    break
                if index % INVALID_EVERY == INVALID_EVERY - 1:
                    producer.send(self.topics.telemetry, key=b"bad", value=b'{"source": "host-0"')
                else:
                    producer.send(topic[event.kind], key=event.key.encode(),
                                  value=json.dumps(event.body).encode())
                self.sent += 1
                ahead = started + self.sent / EVENTS_PER_S - time.monotonic()
                if ahead > 0:
                    self.stop.wait(ahead)
            producer.flush()
            producer.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost
            self.error = exc


class _Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def alerts(self, state: str = "firing") -> dict[str, list[dict[str, str]]]:
        """Alert name → label sets of the alerts in ``state``."""
        found: dict[str, list[dict[str, str]]] = {}
        for alert in _get(f"{self.base}/api/v1/alerts")["data"]["alerts"]:
            if alert["state"] == state:
                found.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return found

    def rule_states(self) -> dict[str, str]:
        """Alert rule name → inactive, pending or firing."""
        groups = _get(f"{self.base}/api/v1/rules?type=alert")["data"]["groups"]
        return {rule["name"]: rule["state"] for group in groups for rule in group["rules"]}

    def query(self, expression: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        result: list[dict[str, Any]] = _get(url)["data"]["result"]
        return result


def _alertmanager_alerts(port: int) -> dict[str, dict[str, Any]]:
    """Alert name → (labels, receivers) of the alerts Alertmanager holds."""
    alerts = _get(f"http://127.0.0.1:{port}/api/v2/alerts")
    return {a["labels"]["alertname"]: {"labels": a["labels"],
                                       "receivers": sorted(r["name"] for r in a["receivers"])}
            for a in alerts}


def _create_inputs(broker: EmbeddedBroker, topics: Topics) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topics.predictions, 3, 1), NewTopic(topics.telemetry, 3, 1)])
    finally:
        admin.close()


def test_shipped_alert_rules_fire_on_a_live_vigil(
    broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    prometheus_bin = _binary("prometheus")
    alertmanager_bin = _binary("prometheus-alertmanager")
    topics = Topics(topic_prefix)
    vigil_port, prometheus_port, alertmanager_port = free_port(), free_port(), free_port()
    config = _prometheus_config(
        tmp_path / "prometheus.yml", vigil_port=vigil_port, alertmanager_port=alertmanager_port,
        rule_files=_rules_for_test(tmp_path))
    prometheus = _Prometheus(prometheus_port)
    _create_inputs(broker, topics)
    vigil_toml = write_config(
        tmp_path / "vigil.toml", broker, topics, metrics_port=vigil_port,
        # A chart that alarms on every point beyond its limits, so injected anomalies drive
        # the anomaly rate past VigilAnomalyRate's threshold (the default ensemble raises one
        # alarm per episode).
        extra=f'[state]\ntopic = "{topic_prefix}-state"\ncheckpoint_interval_s = 2.0\n'
              '[detector]\nname = "shewhart"\n')

    with _server([alertmanager_bin, f"--config.file={ALERTMANAGER_YML}",
                  f"--storage.path={tmp_path / 'alertmanager'}",
                  f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                  "--cluster.listen-address="],
                 tmp_path / "alertmanager.log",
                 f"http://127.0.0.1:{alertmanager_port}/-/ready"), \
         _server([prometheus_bin, f"--config.file={config}",
                  f"--storage.tsdb.path={tmp_path / 'prometheus'}",
                  f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                 tmp_path / "prometheus.log", f"{prometheus.base}/-/ready"):
        vigil = VigilProcess(vigil_toml, tmp_path / "vigil.log", vigil_port)
        try:
            with _Traffic(broker, topics) as traffic:
                # Anomalies and dead letters well above the thresholds: both alerts fire.
                firing = _until(
                    prometheus.alerts,
                    lambda f: {"VigilAnomalyRate", "VigilInvalidEventsHigh"} <= set(f), 60,
                    lambda: "VigilAnomalyRate and VigilInvalidEventsHigh firing; rules: "
                    f"{prometheus.rule_states()}; vigil log:\n{vigil.log_text()[-3000:]}")
                assert traffic.error is None, traffic.error
                assert {a["detector"] for a in firing["VigilAnomalyRate"]} == {"shewhart"}
                assert all(a["severity"] == "warning" and a["job"] == "vigil"
                           for a in firing["VigilAnomalyRate"] + firing["VigilInvalidEventsHigh"])

                # The quiet rules are quiet on series Prometheus really has.
                lag = prometheus.query('sum by (topic) (vigil_consumer_lag{job="vigil"})')
                assert {s["metric"]["topic"] for s in lag} == {topics.predictions,
                                                               topics.telemetry}, lag
                assert all(float(s["value"][1]) < 10_000 for s in lag), lag
                assert prometheus.query('vigil_broker_up{job="vigil"} == 1'), "broker_up"
                assert prometheus.query(
                    'vigil_alerts_produced_total{job="vigil", kind="anomaly"} > 0'), \
                    "vigil_alerts_produced_total{kind} is not exported"
                wait_for(lambda: prometheus.query(
                    'time() - vigil_last_commit_timestamp_seconds{job="vigil"} < 60'), 20,
                    "a recent offset commit")
                states = _until(prometheus.rule_states,
                                lambda s: s["VigilNotCommitting"] == "inactive", 20,
                                lambda: "VigilNotCommitting inactive after a commit")
                for quiet in ("VigilConsumerLagHigh", "VigilBrokerDown", "VigilDown",
                              "VigilProduceErrors"):
                    assert states[quiet] == "inactive", (quiet, states)

                # Prometheus hands the alerts to Alertmanager, which routes them by severity.
                received = _until(lambda: _alertmanager_alerts(alertmanager_port),
                                  lambda a: "VigilAnomalyRate" in a, 30,
                                  lambda: "Alertmanager to receive VigilAnomalyRate")
                assert received["VigilAnomalyRate"]["receivers"] == ["warning"]
        finally:
            exit_code = vigil.stop()
        assert exit_code == 0, vigil.log_text()

        # Vigil is gone: its target is down, and VigilDown fires and pages.
        down = _until(prometheus.alerts, lambda f: "VigilDown" in f, 30,
                      lambda: f"VigilDown firing; rules: {prometheus.rule_states()}")["VigilDown"]
        assert [(a["instance"], a["severity"]) for a in down] == [
            (f"127.0.0.1:{vigil_port}", "critical")]
        received = _until(lambda: _alertmanager_alerts(alertmanager_port),
                          lambda a: "VigilDown" in a, 30,
                          lambda: "Alertmanager to receive VigilDown")
        assert received["VigilDown"]["receivers"] == ["critical"]
