"""TLS and mutual TLS end to end: `vigil run` against the embedded broker behind socat.

tansu listens in plain text on a loopback port but advertises the TLS port of a socat
terminator in front of it, so every connection a client makes after bootstrapping goes
through TLS too (../shared/FACTS.md). The CA and all certificates are made per test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from tests.integration.certs import CertificateAuthority, ClientCert, make_ca
from tests.integration.support import Topics, wait_for
from tests.vigil_process import VigilProcess
from vigil.stream.generate import generate_events
from vigil.stream.kafka.broker import (
    EmbeddedBroker,
    _die_with_parent,
    api_versions_answered,
    free_port,
)

pytestmark = pytest.mark.integration

SOCAT = "/usr/bin/socat"
EVENTS = 1500
KEY_PASSWORD = "vigil-Test-key-passw0rd-7f3a"  # noqa: S105 - a throwaway test key's password


@dataclass
class TlsBroker:
    """The embedded broker reachable only through a TLS terminator."""

    broker: EmbeddedBroker
    ca: CertificateAuthority
    tls_port: int
    socat_log: Path

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.tls_port}"

    def client_settings(self, client: ClientCert | None = None,
                        password: str | None = None) -> dict[str, Any]:
        """kafka-python settings for a TLS client, with a client certificate if given."""
        settings: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers,
                                    "security_protocol": "SSL", "ssl_cafile": str(self.ca.cert)}
        if client is not None:
            settings.update(ssl_certfile=str(client.cert), ssl_keyfile=str(client.key))
        if password is not None:
            settings["ssl_password"] = password
        return settings

    def answers_over_tls(self, client: ClientCert | None = None,
                         password: str | None = None) -> bool:
        """True when a Kafka ApiVersions request through the terminator gets its answer."""
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key), password)
        try:
            with socket.create_connection(("127.0.0.1", self.tls_port), timeout=3) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                return api_versions_answered(sock)
        except (OSError, ConnectionError):  # ssl.SSLError is an OSError
            return False


@contextlib.contextmanager
def tls_broker(directory: Path, *, require_client_cert: bool) -> Iterator[TlsBroker]:
    """A dedicated broker on a plain port behind socat; both stopped however the test ends."""
    ca = make_ca(directory / "pki")
    server = ca.server()
    plain_port, tls_port = free_port(), free_port()
    verify = f"verify=1,cafile={ca.cert}" if require_client_cert else "verify=0"
    listen = (f"openssl-listen:{tls_port},bind=127.0.0.1,reuseaddr,fork,"
              f"cert={server.bundle},{verify}")
    socat_log = directory / "socat.log"
    broker = EmbeddedBroker(directory / "tansu.log", port=plain_port, advertised_port=tls_port)
    socat: subprocess.Popen[bytes] | None = None
    try:
        broker.start()
        with socat_log.open("wb") as log:
            socat = subprocess.Popen(
                [SOCAT, "-d", "-d", listen, f"tcp:127.0.0.1:{plain_port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: the forked children stop with it
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - and it with a killed test run
            )
        running = TlsBroker(broker, ca, tls_port, socat_log)
        wait_for(lambda: _listening(tls_port) or socat.poll() is not None, 10,
                 "socat to listen")
        assert socat.poll() is None, socat_log.read_text(errors="replace")
        yield running
    finally:
        if socat is not None:
            _stop_group(socat)
        broker.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we created for socat, SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def write_tls_config(path: Path, tls: TlsBroker, topics: Topics, *, metrics_port: int,
                     security: str, log_level: str = "INFO") -> Path:
    """A `vigil run` config reaching the broker only through TLS, with short group timeouts."""
    path.write_text(f"""
[kafka]
bootstrap_servers = "{tls.bootstrap_servers}"
group_id = "{topics.group}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
security_protocol = "SSL"
ssl_cafile = "{tls.ca.cert}"
{security}

[topics]
predictions = "{topics.predictions}"
telemetry = "{topics.telemetry}"
alerts = "{topics.alerts}"
dead_letter = "{topics.dead_letter}"

[state]
topic = "{topics.state}"

[metrics]
port = {metrics_port}

[runtime]
poll_timeout_ms = 200
log_level = "{log_level}"
""")
    return path


def produce_events(tls: TlsBroker, topics: Topics, settings: dict[str, Any]) -> list[Any]:
    """Generated events with injected anomalies, produced through TLS; all acknowledged."""
    events = list(generate_events(EVENTS, seed=5, anomaly_rate=0.01, models=2, sources=2))
    inputs = {"prediction": topics.predictions, "telemetry": topics.telemetry}
    producer = KafkaProducer(**settings, acks="all", linger_ms=5)
    try:
        futures = [producer.send(inputs[e.kind], key=e.key.encode(),
                                 value=json.dumps(e.body).encode()) for e in events]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close(timeout=5)
    return events


def read_topic_tls(settings: dict[str, Any], topic: str, *, expect: int,
                   timeout_s: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the beginning, read with a group-less TLS consumer."""
    consumer = KafkaConsumer(**settings, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), 15,
                              f"topic {topic} over TLS")
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        idle = 0
        while time.monotonic() < deadline and not (len(records) >= expect and idle >= 3):
            batch = consumer.poll(timeout_ms=300)
            records.extend(r for part in batch.values() for r in part)
            idle = 0 if batch else idle + 1
        return records
    finally:
        consumer.close()


def run_vigil_and_check(topics: Topics, config: Path, log: Path, metrics_port: int,
                        reader: dict[str, Any], events: list[Any]) -> VigilProcess:
    """Run `vigil run` over TLS; check readiness, counts and the alerts it published."""
    vigil = VigilProcess(config, log, metrics_port)
    try:
        wait_with_log(vigil, lambda: _processed(vigil, topics) == len(events), 90,
                      f"{len(events)} events processed over TLS")
        wait_with_log(vigil, lambda: vigil.status("/readyz") == 200, 15, "/readyz 200")
        assert vigil.status("/healthz") == 200
        samples = vigil.metrics()
        assert samples["vigil_broker_up"] == 1  # the probe's own TLS handshake worked
        assert sum(v for k, v in samples.items()
                   if k.startswith("vigil_events_invalid_total")) == 0
        produced = int(sum(v for k, v in samples.items()
                           if k.startswith("vigil_alerts_produced_total")))
        anomalies = sum(v for k, v in samples.items() if k.startswith("vigil_anomalies_total"))
    finally:
        exit_code = vigil.stop()
    assert exit_code == 0, vigil.log_text()
    assert anomalies > 0

    alerts = [json.loads(r.value) for r in read_topic_tls(reader, topics.alerts, expect=produced)]
    assert len(alerts) == produced
    assert sum(a["kind"] == "anomaly" for a in alerts) == anomalies
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    spiked = {(e.key, e.body["injected"]["metric"]) for e in events
              if e.body.get("injected", {}).get("type") == "spike"}
    assert spiked & {(a["key"], a["metric"]) for a in alerts}, "no injected spike was alerted"
    return vigil


def can_produce(settings: dict[str, Any], topic: str) -> bool:
    """Whether a producer gets one message acknowledged within a few seconds."""
    # api_version given: the constructor does not bootstrap, so a refusal surfaces in send()
    # and close() still releases the client's sockets.
    producer = KafkaProducer(**settings, api_version=(2, 5), request_timeout_ms=3000,
                             max_block_ms=3000)
    try:
        producer.send(topic, b"probe").get(timeout=5)
        return True
    except KafkaError:
        return False
    finally:
        producer.close(timeout=2)


def client_cert_settings(directory: Path, cert: ClientCert) -> str:
    """The [kafka] lines for a client certificate whose key password is read from a file."""
    password_file = directory / "ssl-password"
    password_file.write_text(KEY_PASSWORD + "\n")
    password_file.chmod(0o600)
    return (f'ssl_certfile = "{cert.cert}"\nssl_keyfile = "{cert.key}"\n'
            f'ssl_password_file = "{password_file}"')


def advertised_ports(settings: dict[str, Any]) -> set[int]:
    """Ports of the brokers a client learns from the cluster metadata."""
    consumer = KafkaConsumer(**settings)
    try:
        consumer.topics()
        return {b.port for b in consumer._client.cluster.brokers()}
    finally:
        consumer.close()


def wait_with_log(vigil: VigilProcess, condition: Any, timeout_s: float, what: str) -> None:
    """``wait_for``, failing with the tail of vigil's log (read when it failed, not before)."""
    try:
        wait_for(condition, timeout_s, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; vigil log tail:\n{vigil.log_text()[-4000:]}") from None


def _processed(vigil: VigilProcess, topics: Topics) -> float:
    samples = vigil.metrics()
    return sum(samples.get(f'vigil_events_processed_total{{topic="{t}"}}', 0.0)
               for t in (topics.predictions, topics.telemetry))


def test_vigil_consumes_and_alerts_through_tls(tmp_path: Path, topic_prefix: str) -> None:
    topics = Topics(topic_prefix)
    with tls_broker(tmp_path, require_client_cert=False) as tls:
        settings = tls.client_settings()
        assert tls.answers_over_tls()
        events = produce_events(tls, topics, settings)
        # Clients are told only of the TLS port, so no connection bypasses the terminator.
        assert advertised_ports(settings) == {tls.tls_port}
        port = free_port()
        config = write_tls_config(tmp_path / "vigil.toml", tls, topics, metrics_port=port,
                                  security="")
        run_vigil_and_check(topics, config, tmp_path / "vigil.log", port, settings, events)
        assert "accepting connection" in tls.socat_log.read_text(errors="replace")


def test_mutual_tls_refuses_clients_without_a_certificate_and_serves_vigil_with_one(
    tmp_path: Path, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    with tls_broker(tmp_path, require_client_cert=True) as tls:
        producer_cert = tls.ca.client("producer")
        vigil_cert = tls.ca.client("vigil", password=KEY_PASSWORD)
        stranger = make_ca(tmp_path / "other-pki", "Another CA").client("stranger")

        # Refused at the TLS layer: no certificate, or one from a CA the terminator does not trust.
        assert not tls.answers_over_tls()
        assert not tls.answers_over_tls(stranger)
        assert tls.answers_over_tls(producer_cert)
        assert tls.answers_over_tls(vigil_cert, KEY_PASSWORD)
        assert not can_produce(tls.client_settings(), topics.telemetry)
        assert not can_produce(tls.client_settings(stranger), topics.telemetry)

        settings = tls.client_settings(producer_cert)
        events = produce_events(tls, topics, settings)
        security = client_cert_settings(tmp_path, vigil_cert)
        port = free_port()
        config = write_tls_config(tmp_path / "vigil.toml", tls, topics, metrics_port=port,
                                  security=security)
        vigil = run_vigil_and_check(topics, config, tmp_path / "vigil.log", port, settings,
                                    events)
        assert KEY_PASSWORD not in vigil.log_text()

        # The password never shows in the printed settings either, from a file or the environment.
        for env in ({}, {"VIGIL_SSL_PASSWORD": KEY_PASSWORD}):
            shown = subprocess.run(
                [sys.executable, "-m", "vigil.stream.cli", "check-config", "-c",
                 str(config)], capture_output=True, timeout=60, check=False,
                env={**os.environ, **env})
            output = (shown.stdout + shown.stderr).decode(errors="replace")
            assert shown.returncode == 0, output
            assert KEY_PASSWORD not in output


def test_the_key_password_stays_out_of_debug_logs(tmp_path: Path, topic_prefix: str) -> None:
    topics = Topics(topic_prefix)
    with tls_broker(tmp_path, require_client_cert=True) as tls:
        vigil_cert = tls.ca.client("vigil", password=KEY_PASSWORD)
        port = free_port()
        config = write_tls_config(tmp_path / "vigil.toml", tls, topics, metrics_port=port,
                                  security=client_cert_settings(tmp_path, vigil_cert),
                                  log_level="DEBUG")
        vigil = VigilProcess(config, tmp_path / "vigil.log", port)
        try:
            # No input topics here, so never ready; alive means the admin client has run.
            wait_with_log(vigil, lambda: vigil.status("/healthz") == 200, 60, "/healthz 200")
            wait_with_log(vigil, lambda: "consuming" in vigil.log_text(), 30, "the loop")
        finally:
            exit_code = vigil.stop()
        assert exit_code == 0
        log = vigil.log_text()
        # kafka-python's admin client logs its whole configuration at DEBUG, password included.
        assert "Starting KafkaAdminClient with configuration" in log
        assert "ssl_password" in log
        assert KEY_PASSWORD not in log
