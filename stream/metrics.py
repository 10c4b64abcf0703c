"""Prometheus metrics on Vigil's own registry, and the HTTP endpoint that serves them.

The endpoint answers ``/metrics`` (exposition format), ``/healthz`` (200 while the consume
loop is alive) and ``/readyz`` (200 once the loop has joined the group and is consuming).
It serves at most ``max_connections`` connections at once (more are closed at once) and
drops one that sends nothing for ``timeout_s``, so idle connections cannot pile up threads.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from vigil.stream.engine.episodes import in_episode
from vigil.updaters.guardrails import HOLD_REASONS

if TYPE_CHECKING:
    from vigil.stream.engine.monitor import Observation


def vigil_version() -> str:
    """The installed Vigil version (``0+unknown`` when run from a bare source tree)."""
    try:
        return version("vigil")
    except PackageNotFoundError:
        return "0+unknown"


class VigilMetrics:
    """The metrics Vigil exports, registered on a registry that the caller owns."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._add_event_metrics()
        self._add_state_metrics()
        self._add_client_metrics()
        self._add_model_metrics()
        self._add_series_gauges()

    def _add_event_metrics(self) -> None:
        """What the engine did with the events: processed, dead-lettered, alerted, and how long a
        batch took."""
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
            "vigil_alerts_produced", "Alerts produced, by kind (each acknowledged before the "
            "offset of its event is committed).",
            ["kind"], registry=self.registry,
        )
        self.alerts_suppressed = Counter(
            "vigil_alerts_suppressed", "Anomaly alerts held back by the per-series cooldown.",
            registry=self.registry,
        )
        self.processing_seconds = Histogram(
            "vigil_processing_seconds",
            "Wall time to process one polled batch: decode, detect, produce, commit.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )

    def _add_state_metrics(self) -> None:
        """The state it holds and checkpoints: series, evictions and expiries, snapshots."""
        self.checkpoint_seconds = Histogram(
            "vigil_checkpoint_seconds",
            "Wall time of one checkpoint: export and encode the state, wait for the broker's "
            "acknowledgement, commit.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.series = Gauge(
            "vigil_series", "Series (key, metric) currently tracked.", registry=self.registry,
        )
        self.last_checkpoint = Gauge(
            "vigil_last_checkpoint_timestamp_seconds",
            "Unix time of the last state snapshot acknowledged by the broker.",
            registry=self.registry,
        )
        self.snapshots_rejected = Counter(
            "vigil_snapshots_rejected", "Snapshots found on the state topic but not restored "
            "(unreadable, unsigned, beyond a limit, or unusable); an older one or warm-up is "
            "used instead.", registry=self.registry,
        )
        self.series_evicted = MonotonicCounter(
            "vigil_series_evicted", "Series dropped because state.max_series was reached.",
            self.registry,
        )
        self.series_expired = MonotonicCounter(
            "vigil_series_expired", "Series restarted or dropped after idling past the TTL.",
            self.registry,
        )
        self.series_gauges_dropped = Counter(
            "vigil_series_gauges_dropped",
            "Per-series gauge updates left out because metrics.max_series_gauges was reached.",
            registry=self.registry,
        )

    def _add_client_metrics(self) -> None:
        """The Kafka side: produce errors, commits, rebalances, lag, the broker reachable."""
        self.produce_errors = Counter(
            "vigil_produce_errors", "Failed attempts to produce a batch's output (retried).",
            registry=self.registry,
        )
        self.last_commit = Gauge(
            "vigil_last_commit_timestamp_seconds",
            "Unix time of the last successful offset commit.", registry=self.registry,
        )
        self.rebalances = Counter(
            "vigil_rebalances", "Consumer-group rebalances this instance took part in.",
            registry=self.registry,
        )
        self.consumer_lag = PartitionGauge(
            "vigil_consumer_lag", "Records behind the partition's high water mark.",
            self.registry,
        )
        self.broker_up = Gauge(
            "vigil_broker_up", "1 while a bootstrap broker answers Kafka requests, else 0.",
            registry=self.registry,
        )

    def _add_model_metrics(self) -> None:
        """Model maintenance: losses, updates, guard holds, labels joined to predictions."""
        self.model_loss = Gauge(
            "vigil_model_loss", "Rolling loss of a model on its labelled predictions: the "
            "served model's, and the maintained model's prequential one.",
            ["model", "kind"], registry=self.registry,
        )
        self.model_updates = Counter(
            "vigil_model_updates", "Online updates of a maintained model.",
            ["model"], registry=self.registry,
        )
        self.model_held = Counter(
            "vigil_model_held", "Labelled events a maintained model's guard held back as "
            "implausible (reason: feature, label, stuck_label): scored, not learned.",
            ["model", "reason"], registry=self.registry,
        )
        self.labels_joined = Counter(
            "vigil_labels_joined", "Labels joined to their predictions (or carried by them).",
            registry=self.registry,
        )
        self.labels_expired = Counter(
            "vigil_labels_expired", "Predictions whose label did not come within "
            "models.label_ttl_s.", registry=self.registry,
        )
        self.labels_unmatched = Counter(
            "vigil_labels_unmatched", "Labels that never found their prediction.",
            registry=self.registry,
        )
        self.labels_evicted = Counter(
            "vigil_labels_evicted", "Waiting predictions dropped because "
            "models.max_waiting_predictions was reached.", registry=self.registry,
        )
        self.models_untracked = Counter(
            "vigil_models_untracked", "Labelled events of models beyond models.max_models, "
            "not learned.", registry=self.registry,
        )

    def _add_series_gauges(self) -> None:
        """The build's version, and the per-series gauges of the exported series."""
        self.build = Info("vigil_build", "Vigil's version.", registry=self.registry)
        self.build.info({"version": vigil_version()})
        labels = ["event_type", "key", "metric"]
        self.series_value = Gauge("vigil_series_value", "Latest value of an exported series.",
                                  labels, registry=self.registry)
        self.series_centre = Gauge("vigil_series_centre", "Centre line of an exported series.",
                                   labels, registry=self.registry)
        self.series_upper = Gauge("vigil_series_upper", "Upper control limit of the series.",
                                  labels, registry=self.registry)
        self.series_lower = Gauge("vigil_series_lower", "Lower control limit of the series.",
                                  labels, registry=self.registry)
        self.series_score = Gauge("vigil_series_score", "Latest anomaly score of the series.",
                                  labels, registry=self.registry)


    def forget_model(self, model: str) -> None:
        """Drop a model's label sets (its partition moved to another instance)."""
        for kind in ("served", "maintained"):
            try:
                self.model_loss.remove(model, kind)
            except KeyError:
                pass
        try:
            self.model_updates.remove(model)
        except KeyError:
            pass
        for reason in HOLD_REASONS:
            try:
                self.model_held.remove(model, reason)
            except KeyError:
                pass


class MonotonicCounter:
    """A counter that follows a cumulative count kept elsewhere (it only adds the difference)."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._counter = Counter(name, documentation, registry=registry)
        self._seen = 0

    def set_total(self, total: int) -> None:
        """Advance the counter to ``total`` (ignored if lower)."""
        if total > self._seen:
            self._counter.inc(total - self._seen)
            self._seen = total


class PartitionGauge:
    """A gauge per (topic, partition), whose label sets leave with their partition."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._gauge = Gauge(name, documentation, ["topic", "partition"], registry=registry)

    def set_partition(self, topic: str, partition: int, value: float) -> None:
        """Set the partition's value."""
        self._gauge.labels(topic=topic, partition=str(partition)).set(value)

    def remove_partition(self, topic: str, partition: int) -> None:
        """Forget the partition (it moved to another instance)."""
        try:
            self._gauge.remove(topic, str(partition))
        except KeyError:
            pass


class SeriesGauges:
    """Per-series gauges, only for allow-listed or currently anomalous series, capped.

    Exporting every series would explode Prometheus' cardinality; this keeps the label sets
    to those an operator asked for (``metrics.series_allowlist`` globs over
    ``event_type/key/metric``) plus the series in an open anomaly episode, at most ``cap``.
    """

    def __init__(self, metrics: VigilMetrics, allowlist: list[str], cap: int) -> None:
        self.metrics = metrics
        self.patterns = list(allowlist)
        self.cap = cap
        self._allowed: dict[tuple[str, str, str], bool] = {}
        self._exported: set[tuple[str, str, str]] = set()

    def wants(self, labels: tuple[str, str, str]) -> bool:
        """True when every point of the series matters here: allow-listed, or exported now
        (so that it is retired once its episode is over)."""
        return labels in self._exported or self._allowed_series(labels)

    def _allowed_series(self, labels: tuple[str, str, str]) -> bool:
        allowed = self._allowed.get(labels)
        if allowed is None:
            allowed = self._allowed[labels] = self._matches(labels)
            if len(self._allowed) > 100_000:
                self._allowed.clear()  # bounded memo; recomputed on demand
        return allowed

    def observe(self, observation: Observation) -> None:
        """Update (or add, or retire) the gauges of the observation's series."""
        labels = (observation.event_type, observation.key, observation.metric)
        allowed = self._allowed_series(labels)
        result = observation.result
        wanted = allowed or in_episode(observation.series) or result.anomaly
        if not wanted:
            if labels in self._exported:
                self._retire(labels)
            return
        if labels not in self._exported:
            if len(self._exported) >= self.cap:
                self.metrics.series_gauges_dropped.inc()
                return
            self._exported.add(labels)
        m = self.metrics
        m.series_value.labels(*labels).set(observation.value)
        m.series_centre.labels(*labels).set(result.centre)
        m.series_upper.labels(*labels).set(result.upper)
        m.series_lower.labels(*labels).set(result.lower)
        m.series_score.labels(*labels).set(result.score)

    def _matches(self, labels: tuple[str, str, str]) -> bool:
        name = "/".join(labels)
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)

    def _retire(self, labels: tuple[str, str, str]) -> None:
        self._exported.discard(labels)
        m = self.metrics
        for gauge in (m.series_value, m.series_centre, m.series_upper, m.series_lower,
                      m.series_score):
            try:
                gauge.remove(*labels)
            except KeyError:
                pass


class Liveness:
    """Heartbeat of the consume loop: alive while it has beaten within ``timeout_s``."""

    def __init__(self, timeout_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.timeout_s = timeout_s
        self._clock = clock
        self._last_beat: float | None = None
        self.ready = False
        self.broker_up = True

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


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them: beyond, it closes at once."""

    daemon_threads = True
    request_queue_size = 64  # connections the kernel holds until accepted (socketserver: 5)

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsServer:
    """A small threaded HTTP server for /metrics, /healthz and /readyz."""

    def __init__(
        self, registry: CollectorRegistry, liveness: Liveness, host: str, port: int, *,
        timeout_s: float = 5.0, max_connections: int = 16,
    ) -> None:
        handler = _handler_class(registry, liveness, timeout_s)
        self._server = _BoundedHTTPServer((host, port), handler, max_connections)
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
    registry: CollectorRegistry, liveness: Liveness, timeout_s: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s
        """Seconds a connection may stay silent (socket timeout): a slow or idle client is
        dropped instead of holding its thread."""

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = liveness.alive
                self._send(200 if ok else 503, b"ok\n" if ok else b"consume loop not alive\n")
            elif path == "/readyz":
                ok = liveness.alive and liveness.ready and liveness.broker_up
                if ok:
                    self._send(200, b"ready\n")
                else:
                    reason = ("consume loop not alive" if not liveness.alive else
                              "broker unreachable" if not liveness.broker_up else
                              "no partitions assigned yet")
                    self._send(503, f"not ready: {reason}\n".encode())
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
