"""The metrics endpoint: exposition on /metrics, liveness on /healthz, readiness on /readyz."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

from vigil.stream.metrics import Liveness, MetricsServer, VigilMetrics


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_endpoints_follow_the_loop_state() -> None:
    now = [100.0]
    liveness = Liveness(timeout_s=30.0, clock=lambda: now[0])
    metrics = VigilMetrics()
    metrics.events_processed.labels(topic="telemetry").inc(3)
    server = MetricsServer(metrics.registry, liveness, "127.0.0.1", 0).start()
    try:
        status, body = _get(server.port, "/metrics")
        assert status == 200
        assert 'vigil_events_processed_total{topic="telemetry"} 3.0' in body
        assert "vigil_processing_seconds_bucket" in body
        assert _get(server.port, "/healthz")[0] == 503
        liveness.beat()
        assert _get(server.port, "/healthz")[0] == 200
        assert _get(server.port, "/readyz")[0] == 503
        liveness.ready = True
        assert _get(server.port, "/readyz")[0] == 200
        now[0] += 31.0  # the loop stopped coming round
        assert _get(server.port, "/healthz")[0] == 503
        assert _get(server.port, "/nope")[0] == 404
    finally:
        server.stop()


def test_each_instance_has_its_own_registry() -> None:
    first, second = VigilMetrics(), VigilMetrics()
    first.anomalies.labels(detector="shewhart").inc()
    assert first.registry.get_sample_value("vigil_anomalies_total", {"detector": "shewhart"}) == 1
    assert second.registry.get_sample_value(
        "vigil_anomalies_total", {"detector": "shewhart"}) is None


def test_idle_connections_hold_neither_threads_nor_the_endpoint() -> None:
    """300 idle connections used to hold 300 threads, for as long as their clients liked."""
    server = MetricsServer(VigilMetrics().registry, Liveness(), "127.0.0.1", 0,
                           timeout_s=0.5, max_connections=8).start()
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
    try:
        time.sleep(0.2)
        assert threading.active_count() <= before + 8
        for sock in idle:  # silent clients are dropped after the timeout: the server closes
            sock.settimeout(5.0)
            assert sock.recv(1) == b""
        assert _get(server.port, "/metrics")[0] == 200
    finally:
        for sock in idle:
            sock.close()
        server.stop()
