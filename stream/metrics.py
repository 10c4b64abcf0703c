"""Prometheus metrics on Vigil's own registry, and the HTTP endpoint that serves them.

The endpoint answers ``/metrics`` (exposition format), ``/healthz`` (200 while the consume
loop is alive) and ``/readyz`` (200 once the loop has joined the group and is consuming).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest


class VigilMetrics:
    """The metrics Vigil exports, registered on a registry that the caller owns."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.events_processed = Counter(
            "vigil_events_processed", "Valid events processed, by input topic.",
            ["topic"], registry=self.registry,
        )
        self.events_invalid = Counter(
            "vigil_events_invalid", "Events sent to the dead-letter topic, by reason.",
            ["reason"], registry=self.registry,
        )
        self.anomalies = Counter(
            "vigil_anomalies", "Anomalous points found, by detector.",
            ["detector"], registry=self.registry,
        )
        self.alerts_produced = Counter(
            "vigil_alerts_produced", "Alerts acknowledged by the broker on the alert topic.",
            registry=self.registry,
        )
        self.processing_seconds = Histogram(
            "vigil_processing_seconds",
            "Wall time to process one polled batch: decode, detect, produce, commit.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.series = Gauge(
            "vigil_series", "Series (key, metric) currently tracked.", registry=self.registry,
        )
        self.produce_errors = Counter(
            "vigil_produce_errors", "Failed attempts to produce a batch's output (retried).",
            registry=self.registry,
        )
        self.last_commit = Gauge(
            "vigil_last_commit_timestamp_seconds",
            "Unix time of the last successful offset commit.", registry=self.registry,
        )


class Liveness:
    """Heartbeat of the consume loop: alive while it has beaten within ``timeout_s``."""

    def __init__(self, timeout_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.timeout_s = timeout_s
        self._clock = clock
        self._last_beat: float | None = None
        self.ready = False

    def beat(self) -> None:
        """Record that the loop has just come round."""
        self._last_beat = self._clock()

    def stop(self) -> None:
        """The loop has ended: no longer alive nor ready."""
        self._last_beat = None
        self.ready = False

    @property
    def alive(self) -> bool:
        """True while the loop has beaten recently."""
        return self._last_beat is not None and self._clock() - self._last_beat < self.timeout_s


class MetricsServer:
    """A small threaded HTTP server for /metrics, /healthz and /readyz."""

    def __init__(
        self, registry: CollectorRegistry, liveness: Liveness, host: str, port: int
    ) -> None:
        handler = _handler_class(registry, liveness)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="vigil-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound (useful when 0 was asked for)."""
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()


def _handler_class(
    registry: CollectorRegistry, liveness: Liveness
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = liveness.alive
                self._send(200 if ok else 503, b"ok\n" if ok else b"consume loop not alive\n")
            elif path == "/readyz":
                ok = liveness.alive and liveness.ready
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Scrapes are not worth a log line each."""

    return Handler
