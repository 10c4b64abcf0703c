"""Vigil's configuration: TOML file → environment → command-line flags, read in one place.

Every section is a frozen dataclass with named defaults, so ``vigil run`` works with no file
at all. Unknown keys and bad values raise :class:`ConfigError` naming the key, the value and
the fix. This is the only module that reads environment variables.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import math
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.detectors import ResidualDetector, build_detector, detector_names
from vigil.stream.errors import ConfigError
from vigil.updaters import learner_names
from vigil.updaters.performance import LOSSES


@dataclass(frozen=True)
class KafkaConfig:
    """How to reach the cluster and join the consumer group."""

    bootstrap_servers: str = "localhost:9092"
    group_id: str = "vigil"
    client_id: str = "vigil"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    auto_offset_reset: str = "earliest"
    request_timeout_ms: int = 30_000
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_password: str = field(default="", repr=False)
    ssl_password_file: str = ""
    ssl_check_hostname: bool = True
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    sasl_password_file: str = ""
    client: str = "kafka-python"
    """Client library of the consume loop and its producer: kafka-python or confluent-kafka."""
    fetch_max_wait_ms: int = 20
    """Longest the broker holds a fetch for data: the latency floor on quiet partitions (a
    broker that answers only when the wait ends, such as the embedded one, adds up to this to
    every event's latency; Apache Kafka answers as soon as ``fetch_min_bytes`` are there)."""
    fetch_min_bytes: int = 1
    """Bytes the broker waits for before answering a fetch (up to ``fetch_max_wait_ms``):
    1 answers as soon as one event is there; more trades latency for fewer, larger fetches."""
    linger_ms: int = 0
    """How long the producer holds output (alerts, dead letters, snapshots) to batch it:
    0 sends each poll's output at once; a few ms saves requests at high output rates."""

    def __post_init__(self) -> None:
        _require(self.client in KAFKA_CLIENTS, "kafka.client", self.client,
                 f"use one of {', '.join(KAFKA_CLIENTS)}")
        _require(self.client != "confluent-kafka" or _installed("confluent_kafka"),
                 "kafka.client", self.client,
                 "the confluent-kafka package is not installed: "
                 "pip install 'vigil-kafka[confluent]'")
        _require(0 <= self.fetch_max_wait_ms < self.request_timeout_ms,
                 "kafka.fetch_max_wait_ms", self.fetch_max_wait_ms,
                 "use 0 or more milliseconds, below kafka.request_timeout_ms")
        _require(0 < self.fetch_min_bytes <= MAX_FETCH_MIN_BYTES, "kafka.fetch_min_bytes",
                 self.fetch_min_bytes,
                 f"use 1 (lowest latency) up to {MAX_FETCH_MIN_BYTES:,} bytes")
        _require(0 <= self.linger_ms <= MAX_LINGER_MS, "kafka.linger_ms", self.linger_ms,
                 f"use 0 (send at once) up to {MAX_LINGER_MS:,} milliseconds")
        _require(self.bootstrap_servers.strip() != "", "kafka.bootstrap_servers",
                 self.bootstrap_servers, "give host:port[,host:port...]")
        _require(self.group_id.strip() != "", "kafka.group_id", self.group_id,
                 "give a non-empty consumer group name")
        _require(self.auto_offset_reset in ("earliest", "latest"), "kafka.auto_offset_reset",
                 self.auto_offset_reset, 'use "earliest" or "latest"')
        _require(self.session_timeout_ms > 0, "kafka.session_timeout_ms",
                 self.session_timeout_ms, "use a positive number of milliseconds")
        _require(0 < self.heartbeat_interval_ms < self.session_timeout_ms,
                 "kafka.heartbeat_interval_ms", self.heartbeat_interval_ms,
                 "use a positive value below kafka.session_timeout_ms (about a third of it)")
        _require(self.security_protocol in SECURITY_PROTOCOLS, "kafka.security_protocol",
                 self.security_protocol, f"use one of {', '.join(SECURITY_PROTOCOLS)}")
        sasl = self.security_protocol.startswith("SASL_")
        _require(not sasl or self.sasl_mechanism in SASL_MECHANISMS, "kafka.sasl_mechanism",
                 self.sasl_mechanism, f"with SASL use one of {', '.join(SASL_MECHANISMS)}")
        _require(not sasl or bool(self.sasl_username), "kafka.sasl_username",
                 self.sasl_username, "SASL needs a user name")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password_file",
                     "sasl_password_file"):
            path = getattr(self, name)
            _require(not path or Path(path).is_file(), f"kafka.{name}", path,
                     "the file does not exist or is not readable")
        _require(not self.ssl_keyfile or bool(self.ssl_certfile),
                 "kafka.ssl_keyfile", self.ssl_keyfile,
                 "a client key needs its certificate in kafka.ssl_certfile")

    def secret(self, name: str) -> str | None:
        """``ssl_password`` or ``sasl_password``: the value, else the file's first line."""
        value: str = getattr(self, name)
        path: str = getattr(self, f"{name}_file")
        if value:
            return value
        if path:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
            return lines[0] if lines else ""
        return None


@dataclass(frozen=True)
class TopicsConfig:
    """Input and output topic names, and how output topics are created when missing."""

    predictions: str = "predictions"
    telemetry: str = "telemetry"
    alerts: str = "alerts"
    dead_letter: str = "vigil-dlq"
    labels: str = "labels"
    """Label events, read when ``[models] enabled``; keyed like the predictions (by model) and
    with as many partitions, so each label meets its prediction in one instance."""
    model_updates: str = "model-updates"
    """Compacted, keyed by model: the maintained models' latest parameters."""
    create_partitions: int = -1
    """Partitions for output topics Vigil creates (-1: the broker's default)."""
    create_replication_factor: int = -1
    """Replication factor for output topics Vigil creates (-1: the broker's default)."""

    def __post_init__(self) -> None:
        for name in ("predictions", "telemetry", "alerts", "dead_letter", "labels",
                     "model_updates"):
            value = getattr(self, name)
            _require(_valid_topic(value), f"topics.{name}", value,
                     "use 1-249 characters from [a-zA-Z0-9._-]")
        inputs = {self.predictions, self.telemetry}
        _require(len(inputs) == 2, "topics.telemetry", self.telemetry,
                 "use different topics for predictions and telemetry")
        _require(self.labels not in inputs, "topics.labels", self.labels,
                 "labels need a topic of their own, apart from predictions and telemetry")
        inputs.add(self.labels)
        for name in ("alerts", "dead_letter", "model_updates"):
            _require(getattr(self, name) not in inputs, f"topics.{name}", getattr(self, name),
                     "an output topic must not be one of the input topics")
        for name in ("create_partitions", "create_replication_factor"):
            value = getattr(self, name)
            _require(value == -1 or value >= 1, f"topics.{name}", value,
                     "use -1 (broker default) or a positive number")


@dataclass(frozen=True)
class MetricsConfig:
    """Where the Prometheus endpoint listens, and which series get their own gauges."""

    host: str = "127.0.0.1"
    port: int = 9108
    series_allowlist: list[str] = field(default_factory=list)
    """Globs over ``event_type/key/metric`` whose gauges are always exported."""
    max_series_gauges: int = 1_000
    """Hard cap on exported per-series label sets (allow-listed plus currently anomalous)."""

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "metrics.port", self.port,
                 "use a TCP port between 1 and 65535 (0 picks a free one)")
        _require(self.max_series_gauges >= 0, "metrics.max_series_gauges",
                 self.max_series_gauges, "use 0 (none) or a positive number of series")


@dataclass(frozen=True)
class StateConfig:
    """Checkpoints of per-series state to a compacted Kafka topic, and bounds on memory."""

    topic: str = "vigil-state"
    checkpoint_interval_s: float = 30.0
    """Snapshot and commit each partition at least this often while events flow. A snapshot
    holds the loop for its partition's export, so shorter intervals cost throughput and
    latency; longer ones mean more events processed again after a crash."""
    checkpoint_every_events: int = 0
    """Also snapshot and commit after this many events (0: by time only)."""
    max_series: int = 1_000_000
    """Series held at once; beyond it the least recently seen one is evicted (counted)."""
    max_series_per_key: int = 10_000
    """Series of one model or source at once (at most ``max_series``); beyond it that key's
    own least recently seen series go, so one key cannot evict the others."""
    max_names_per_event: int = 1_000
    """Metrics of one telemetry event or features of one prediction; more: dead-lettered."""
    max_name_length: int = 256
    """Characters of a name or id in an event; longer: dead-lettered."""
    series_ttl_s: float = 30 * 24 * 3600.0
    """A series idle this long in event time restarts from warm-up (counted); 0 keeps all.
    A month: a source down for a week-long outage comes back judged by its history, not blind
    in warm-up; memory stays bounded by ``max_series`` either way."""
    max_snapshot_mb: int = 1024
    """A snapshot that decompresses to more is refused on restore (a zlib bomb guard)."""
    hmac_key: str = field(default="", repr=False)
    """Key that signs and verifies snapshots (HMAC-SHA256); empty: snapshots are unsigned."""
    hmac_key_file: str = ""
    """File of keys, one a line: the first signs, any verifies (for rotation)."""

    def __post_init__(self) -> None:
        _require(_valid_topic(self.topic), "state.topic", self.topic,
                 "use 1-249 characters from [a-zA-Z0-9._-]")
        _require(self.checkpoint_interval_s > 0, "state.checkpoint_interval_s",
                 self.checkpoint_interval_s, "use a positive number of seconds")
        _require(self.checkpoint_every_events >= 0, "state.checkpoint_every_events",
                 self.checkpoint_every_events, "use 0 (time only) or a positive count")
        _require(self.max_series > 0, "state.max_series", self.max_series,
                 "use a positive number of series")
        _require(self.max_series_per_key > 0, "state.max_series_per_key",
                 self.max_series_per_key, "use a positive number of series")
        _require(0 < self.max_names_per_event <= 100_000, "state.max_names_per_event",
                 self.max_names_per_event, "use a number from 1 to 100000")
        _require(0 < self.max_name_length <= 4_096, "state.max_name_length",
                 self.max_name_length, "use a number of characters from 1 to 4096")
        _require(self.series_ttl_s >= 0, "state.series_ttl_s", self.series_ttl_s,
                 "use 0 (never expire) or a positive number of seconds")
        _require(self.max_snapshot_mb > 0, "state.max_snapshot_mb", self.max_snapshot_mb,
                 "use a positive number of megabytes")
        _require(not (self.hmac_key and self.hmac_key_file), "state.hmac_key_file",
                 self.hmac_key_file, "give the key in state.hmac_key or in a file, not both")
        _require(not self.hmac_key_file or Path(self.hmac_key_file).is_file(),
                 "state.hmac_key_file", self.hmac_key_file,
                 "the file does not exist or is not readable")
        for key in self.hmac_keys():
            if len(key) < 16:
                raise ConfigError("state.hmac_key is too short: use at least 16 bytes, e.g. "
                                  "the output of `openssl rand -hex 32`")

    def hmac_keys(self) -> tuple[bytes, ...]:
        """The snapshot keys: the first signs, all verify; none when snapshots are unsigned."""
        if self.hmac_key:
            return (self.hmac_key.encode(),)
        if self.hmac_key_file:
            lines = Path(self.hmac_key_file).read_text(encoding="utf-8").splitlines()
            return tuple(line.strip().encode() for line in lines if line.strip())
        return ()


@dataclass(frozen=True)
class DetectorConfig:
    """Which detector each series gets: the default, and overrides by series glob."""

    name: str = "adaptive"
    params: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Glob over ``event_type/key/metric`` → ``{ name = ..., params = {...} }``; the first
    matching glob wins, series that match none get ``name``/``params``."""
    groups: Mapping[str, str] = field(default_factory=dict)
    """Event type → regex with a ``group`` capture over the key, e.g. ``'^(?P<group>.+)-\\d+$'``:
    a new key of a group starts from the group's pooled statistics (cold start)."""
    multivariate: Mapping[str, Any] = field(default_factory=dict)
    """``{ name = "hst", params = {...} }``: one more series per model, ``features``, whose
    detector sees each prediction's whole feature vector. Empty: none."""
    residual: Mapping[str, Any] = field(default_factory=dict)
    """Glob over telemetry sources → ``{ target = "latency_ms", inputs = [...], params }``:
    one more series per matching source, ``residual.<target>``, charting what the target
    does beyond an online regression on the inputs. The first matching glob wins."""

    def __post_init__(self) -> None:
        _check_detector("detector", self.name, self.params)
        for event_type, pattern in self.groups.items():
            _require(event_type in ("prediction", "telemetry"), f"detector.groups.{event_type}",
                     pattern, 'keys are "prediction" or "telemetry"')
            try:
                compiled = re.compile(pattern)
            except (re.error, TypeError) as exc:
                raise ConfigError(f"detector.groups.{event_type} = {pattern!r} is not a "
                                  f"regular expression: {exc}") from None
            _require("group" in compiled.groupindex, f"detector.groups.{event_type}", pattern,
                     r"name the group part of the key: (?P<group>...), e.g. '^(?P<group>.+)-\d+$'")
        if self.multivariate:
            spec = self.multivariate
            name = spec.get("name")
            if not isinstance(name, str) or set(spec) - {"name", "params"} \
                    or not isinstance(spec.get("params", {}), Mapping):
                raise ConfigError('detector.multivariate must be a table like '
                                  '{ name = "hst", params = { threshold = 0.995 } }')
            _check_detector("detector.multivariate", name, spec.get("params", {}))
            built = build_detector(name, spec.get("params", {}))
            _require(built.input_kind == "vector",
                     "detector.multivariate.name", name,
                     "choose a detector of feature vectors, such as hst")
        for pattern, spec in self.residual.items():
            where = f'detector.residual."{pattern}"'
            if not isinstance(spec, Mapping) or set(spec) - {"target", "inputs", "params"} \
                    or not isinstance(spec.get("params", {}), Mapping):
                raise ConfigError(f'{where} must be a table like {{ target = "latency_ms", '
                                  f'inputs = ["requests_per_s", "cpu_percent"] }}')
            try:
                ResidualDetector(spec.get("target"), spec.get("inputs"),  # type: ignore[arg-type]
                                 **spec.get("params", {}))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {exc}") from exc
        for pattern, spec in self.overrides.items():
            where = f'detector.overrides."{pattern}"'
            if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) \
                    or not isinstance(spec.get("params", {}), Mapping) \
                    or set(spec) - {"name", "params"}:
                raise ConfigError(
                    f"{where} must be a table like {{ name = \"robust\", params = {{ k = 3.5 }} }}"
                )
            _check_detector(where, spec["name"], spec.get("params", {}))

    def spec_for(self, series: str) -> tuple[str, Mapping[str, Any]]:
        """(name, params) of the detector for the series ``event_type/key/metric``."""
        for pattern, spec in self.overrides.items():
            if fnmatch.fnmatchcase(series, pattern):
                return spec["name"], spec.get("params", {})
        return self.name, self.params


def _check_detector(where: str, name: str, params: Mapping[str, Any]) -> None:
    _require(name in detector_names(), f"{where}.name", name,
             f"choose one of: {', '.join(detector_names())}")
    try:
        build_detector(name, params)
    except ValueError as exc:
        raise ConfigError(f"{where}.params: {exc}") from exc


LEARNER_KEYS = frozenset({"learner", "params", "warm_start", "loss"})


@dataclass(frozen=True)
class ModelsConfig:
    """Online maintenance of each model from its labelled predictions (off by default)."""

    enabled: bool = False
    learner: str = "sgd_regressor"
    """Learner of every model without an override: sgd_regressor, sgd_classifier or river."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Learner parameters; ``feature_names`` default to the model's features, sorted, at its
    first labelled event."""
    loss: str = ""
    """Loss charted for both models: squared, absolute, log or zero_one ("" = squared for
    regressors, log for classifiers)."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Glob over the model name → ``{ learner, params, warm_start, loss }``; the first match
    wins. ``warm_start`` is the path of a joblib file of a fitted scikit-learn estimator."""
    label_ttl_s: float = 86_400.0
    """How long (event time) a prediction waits for its label before it is counted expired."""
    max_waiting_predictions: int = 100_000
    """Predictions waiting for labels, per input partition; the oldest go first beyond it."""
    max_waiting_mb: int = 128
    """... and at most about this many megabytes of them (features included), per partition."""
    max_models: int = 1_000
    """Models maintained per instance (and label sets of vigil_model_*); others are counted."""
    publish_every: int = 1_000
    """Publish a model's parameters after this many updates (0: only by time)."""
    publish_interval_s: float = 300.0
    """... or when this much event time passed since its last message and it learned
    something (0: only by count)."""
    block: int = 50
    """Labelled events per block mean of the loss charts."""
    span: float = 200.0
    """Events the rolling losses (vigil_model_loss) weigh."""
    chart: str = "cusum"
    chart_params: Mapping[str, Any] = field(default_factory=dict)
    max_step: float = 0.0
    """Largest parameter change of one update (0: no cap)."""
    snapshot_every: int = 1_000
    """Learned events per quiet span: a snapshot followed by one becomes the reference."""
    max_rollbacks: int = 20
    accept_after: int = 1_000
    """Labelled events for which data the guard holds back (features or labels far out of
    range, a stuck label) must persist before it is accepted as the new normal."""
    influence: float = 10.0
    """A regression label is learned at most this many median absolute residuals away from
    the prediction (0: no bound)."""
    alert_cooldown_s: float = 3_600.0
    """Event time between two performance alerts of one model."""

    def __post_init__(self) -> None:
        _check_learner("models", {"learner": self.learner, "params": self.params,
                                  "loss": self.loss}, learner_names(), LOSSES)
        for pattern, spec in self.overrides.items():
            where = f'models.overrides."{pattern}"'
            if not isinstance(spec, Mapping) or set(spec) - LEARNER_KEYS:
                raise ConfigError(f'{where} must be a table with keys among '
                                  f'{", ".join(sorted(LEARNER_KEYS))}, e.g. {{ learner = '
                                  f'"sgd_classifier", warm_start = "/etc/vigil/fraud.joblib" }}')
            _check_learner(where, {"learner": self.learner, **spec}, learner_names(), LOSSES)
            path = spec.get("warm_start")
            _require(path is None or (isinstance(path, str) and Path(path).is_file()),
                     f"{where}.warm_start", path,
                     "give the path of a readable joblib file of a fitted estimator")
        positive = {"label_ttl_s": "seconds", "max_waiting_predictions": "predictions",
                    "max_waiting_mb": "megabytes",
                    "max_models": "models", "block": "events", "span": "events",
                    "snapshot_every": "updates", "max_rollbacks": "rollbacks",
                    "accept_after": "events"}
        for name, unit in positive.items():
            _require(getattr(self, name) > 0, f"models.{name}", getattr(self, name),
                     f"use a positive number of {unit}")
        for name in ("publish_every", "publish_interval_s", "max_step", "alert_cooldown_s",
                     "influence"):
            _require(getattr(self, name) >= 0, f"models.{name}", getattr(self, name),
                     "use 0 (off) or a positive number")
        _require(self.chart in detector_names(), "models.chart", self.chart,
                 f"choose one of: {', '.join(detector_names())}")
        try:
            build_detector(self.chart, self.chart_params)
        except ValueError as exc:
            raise ConfigError(f"models.chart_params: {exc}") from exc

    def spec_for(self, model: str) -> dict[str, Any]:
        """{learner, params, warm_start, loss} for ``model``: its first override, or defaults."""
        spec: dict[str, Any] = {"learner": self.learner, "params": dict(self.params),
                                "warm_start": None, "loss": self.loss}
        for pattern, override in self.overrides.items():
            if fnmatch.fnmatchcase(model, pattern):
                spec.update(override)
                break
        return spec


def _check_learner(where: str, spec: Mapping[str, Any], names: list[str],
                   losses: Collection[str]) -> None:
    learner = spec.get("learner")
    _require(learner in names, f"{where}.learner", learner, f"choose one of: {', '.join(names)}")
    _require(isinstance(spec.get("params", {}), Mapping), f"{where}.params",
             spec.get("params"), "give a table of learner parameters")
    loss = spec.get("loss", "")
    _require(loss in ("", *losses), f"{where}.loss", loss,
             f"choose one of: {', '.join(losses)} (or \"\" for the learner's own)")


@dataclass(frozen=True)
class AlertsConfig:
    """Alert severity from the score, and routing of alerts to topics."""

    critical_score: float = 2.0 / 3.0
    """Score from which an alert is ``critical`` (2/3: twice as far out as the limit)."""
    routes: Mapping[str, str] = field(default_factory=dict)
    """``"kind:K"`` or ``"severity:S"`` → topic; the first match wins, else ``topics.alerts``."""
    cooldown_s: float = 0.0
    """After an anomaly alert, further anomaly alerts of the same series within this much
    event time are suppressed (counted); 0 publishes every one."""

    def __post_init__(self) -> None:
        _require(0.5 <= self.critical_score <= 1.0, "alerts.critical_score",
                 self.critical_score, "use a score between 0.5 (the limit) and 1.0")
        _require(self.cooldown_s >= 0, "alerts.cooldown_s", self.cooldown_s,
                 "use 0 (no cooldown) or a positive number of seconds")
        for selector, topic in self.routes.items():
            field_name, _, wanted = selector.partition(":")
            allowed = ROUTE_VALUES.get(field_name, ())
            _require(wanted in allowed, f"alerts.routes.{selector}", topic,
                     "keys are kind:<" + "|".join(ROUTE_VALUES["kind"]) + "> or severity:<"
                     + "|".join(ROUTE_VALUES["severity"]) + ">")
            _require(isinstance(topic, str) and _valid_topic(topic),
                     f'alerts.routes."{selector}"', topic, "give a valid topic name")

    def topic_for(self, kind: str, severity: str, default: str) -> str:
        """The topic an alert of ``kind`` and ``severity`` goes to."""
        for selector, topic in self.routes.items():
            if selector in (f"kind:{kind}", f"severity:{severity}"):
                return topic
        return default


@dataclass(frozen=True)
class RuntimeConfig:
    """How the consume loop batches its work."""

    poll_timeout_ms: int = 500
    """Longest a poll waits for records when none are there (an idle loop's beat)."""
    max_poll_records: int = 250
    """Records judged per batch: a batch's output goes out when the whole batch is judged, so
    this bounds how long an alert waits behind its batch (more saves per-batch work)."""
    log_level: str = "INFO"
    log_format: str = "text"
    shutdown_grace_s: float = 30.0
    """On SIGTERM: at most this long to finish the batch, snapshot and commit."""
    max_clock_skew_s: float = 3_600.0
    """An event stamped later than the wall clock plus this is dead-lettered
    (``future_timestamp``), and restored event-time clocks are held to it."""

    def __post_init__(self) -> None:
        _require(self.poll_timeout_ms > 0, "runtime.poll_timeout_ms", self.poll_timeout_ms,
                 "use a positive number of milliseconds")
        _require(self.max_poll_records > 0, "runtime.max_poll_records", self.max_poll_records,
                 "use a positive number of records")
        _require(self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
                 "runtime.log_level", self.log_level, "use DEBUG, INFO, WARNING or ERROR")
        _require(self.log_format in ("text", "json"), "runtime.log_format", self.log_format,
                 'use "text" (human-readable) or "json" (one object per line)')
        _require(self.shutdown_grace_s > 0, "runtime.shutdown_grace_s", self.shutdown_grace_s,
                 "use a positive number of seconds")
        _require(self.max_clock_skew_s > 0, "runtime.max_clock_skew_s", self.max_clock_skew_s,
                 "use a positive number of seconds")


@dataclass(frozen=True)
class VigilConfig:
    """The whole configuration; build it with :func:`load_config`."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        outputs = {self.topics.alerts, self.topics.dead_letter, self.topics.model_updates}
        inputs = {self.topics.predictions, self.topics.telemetry, self.topics.labels}
        _require(self.state.topic not in outputs | inputs, "state.topic", self.state.topic,
                 "the state topic must be a topic of its own")


ENVIRONMENT: dict[str, str] = {
    "VIGIL_BOOTSTRAP_SERVERS": "kafka.bootstrap_servers",
    "VIGIL_GROUP_ID": "kafka.group_id",
    "VIGIL_CLIENT_ID": "kafka.client_id",
    "VIGIL_KAFKA_CLIENT": "kafka.client",
    "VIGIL_AUTO_OFFSET_RESET": "kafka.auto_offset_reset",
    "VIGIL_TOPIC_PREDICTIONS": "topics.predictions",
    "VIGIL_TOPIC_TELEMETRY": "topics.telemetry",
    "VIGIL_TOPIC_ALERTS": "topics.alerts",
    "VIGIL_TOPIC_DEAD_LETTER": "topics.dead_letter",
    "VIGIL_TOPIC_LABELS": "topics.labels",
    "VIGIL_TOPIC_MODEL_UPDATES": "topics.model_updates",
    "VIGIL_MODELS_ENABLED": "models.enabled",
    "VIGIL_METRICS_HOST": "metrics.host",
    "VIGIL_METRICS_PORT": "metrics.port",
    "VIGIL_DETECTOR": "detector.name",
    "VIGIL_LOG_LEVEL": "runtime.log_level",
    "VIGIL_LOG_FORMAT": "runtime.log_format",
    "VIGIL_STATE_TOPIC": "state.topic",
    "VIGIL_SECURITY_PROTOCOL": "kafka.security_protocol",
    "VIGIL_SSL_CAFILE": "kafka.ssl_cafile",
    "VIGIL_SSL_CERTFILE": "kafka.ssl_certfile",
    "VIGIL_SSL_KEYFILE": "kafka.ssl_keyfile",
    "VIGIL_SSL_PASSWORD": "kafka.ssl_password",
    "VIGIL_SASL_MECHANISM": "kafka.sasl_mechanism",
    "VIGIL_SASL_USERNAME": "kafka.sasl_username",
    "VIGIL_SASL_PASSWORD": "kafka.sasl_password",
    "VIGIL_STATE_HMAC_KEY": "state.hmac_key",
}
"""Environment variables and the ``section.key`` each one overrides."""

_SECTIONS: dict[str, type[Any]] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(VigilConfig)
}


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> VigilConfig:
    """Read ``path`` (optional TOML), then environment variables, then ``overrides``.

    ``overrides`` maps ``section.key`` to a value (what the CLI flags set); later sources win.

    >>> load_config(environ={"VIGIL_METRICS_PORT": "9200"}).metrics.port
    9200
    """
    tree: dict[str, dict[str, Any]] = {}
    if path is not None:
        tree = _read_toml(Path(path))
    env = os.environ if environ is None else environ
    for variable, dotted in ENVIRONMENT.items():
        if variable in env:
            _set(tree, dotted, env[variable], origin=variable)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set(tree, dotted, value, origin=dotted)
    return _build(tree)


def _read_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist; check the -c path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    for section, body in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"unknown section [{section}] in {path}; valid sections: {', '.join(_SECTIONS)}"
            )
        if not isinstance(body, dict):
            raise ConfigError(f"{section} in {path} must be a table: write [{section}]")
    return raw


def _set(tree: dict[str, dict[str, Any]], dotted: str, value: Any, *, origin: str) -> None:
    section, _, key = dotted.partition(".")
    if section not in _SECTIONS or not key:
        raise ConfigError(f"{origin}: unknown setting {dotted!r}")
    tree.setdefault(section, {})[key] = value


def _build(tree: Mapping[str, Mapping[str, Any]]) -> VigilConfig:
    sections: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        body = dict(tree.get(section, {}))
        defaults = cls()
        fields = [f.name for f in dataclasses.fields(cls)]
        for key, value in list(body.items()):
            if key not in fields:
                raise ConfigError(
                    f"unknown key {section}.{key}; valid keys in [{section}]: {', '.join(fields)}"
                )
            body[key] = _coerce(f"{section}.{key}", value, getattr(defaults, key))
        sections[section] = cls(**body)
    return VigilConfig(**sections)


def _coerce(dotted: str, value: Any, default: Any) -> Any:
    """Turn strings from the environment into the default's type; reject wrong TOML types and
    non-finite numbers (TOML's inf and nan, at any depth). A secret's value is never shown."""
    try:
        coerced = _coerce_type(dotted, value, default)
    except ConfigError:
        if dotted in SECRETS:
            raise ConfigError(f"{dotted} must be a string (its value is not shown: it is a "
                              "secret); quote it in TOML") from None
        raise
    where = _non_finite(coerced)
    if where is not None:
        raise ConfigError(f"{dotted}{where} is not a finite number; give a finite value "
                          "(inf and nan are refused everywhere)")
    return coerced


def _non_finite(value: Any) -> str | None:
    """The path (``""``, ``".h"``, ``"[2]"``) of the first NaN or infinity in ``value``."""
    if isinstance(value, float):
        return None if math.isfinite(value) else ""
    items: Any = ()
    if isinstance(value, Mapping):
        items = ((f".{key}", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"[{index}]", item) for index, item in enumerate(value))
    for where, item in items:
        inner = _non_finite(item)
        if inner is not None:
            return f"{where}{inner}"
    return None


def _coerce_type(dotted: str, value: Any, default: Any) -> Any:
    """Turn strings from the environment into the default's type; reject wrong TOML types."""
    expected = type(default)
    if isinstance(default, list):
        if isinstance(value, str):  # from the environment: comma-separated
            return [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f'{dotted} must be a list of strings, e.g. ["telemetry/*/latency_ms"]'
            )
        return list(value)
    if isinstance(default, bool) and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{dotted} = {value!r} is not a boolean; give true or false")
        return value.lower() in ("true", "1", "yes")
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{dotted} must be a table, e.g. {dotted} = {{ k = 3.0 }}")
        return dict(value)
    if isinstance(value, str) and expected is not str:
        try:
            return expected(value)
        except ValueError:
            raise ConfigError(
                f"{dotted} = {value!r} is not a valid {expected.__name__}; "
                f"give a {expected.__name__} such as {default!r}"
            ) from None
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not expected:
        raise ConfigError(
            f"{dotted} = {value!r} has the wrong type; give a {expected.__name__} "
            f"such as {default!r}"
        )
    return value


ROUTE_VALUES: dict[str, tuple[str, ...]] = {
    "kind": ("anomaly", "resolved", "rebaselined", "performance", "rollback"),
    "severity": ("info", "warning", "critical"),
}
KAFKA_CLIENTS = ("kafka-python", "confluent-kafka")
MAX_FETCH_MIN_BYTES = 1024 * 1024
"""Largest ``kafka.fetch_min_bytes``: beyond a mebibyte every fetch waits its full time."""
MAX_LINGER_MS = 1_000
"""Longest ``kafka.linger_ms``: alerts held longer than a second defeat the monitor."""
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SECRETS = frozenset({"kafka.ssl_password", "kafka.sasl_password", "state.hmac_key"})
"""Settings never printed or logged."""


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def _require(ok: bool, key: str, value: object, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} is invalid: {fix}")


def _valid_topic(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    return 0 < len(name) <= 249 and set(name) <= allowed and name not in (".", "..")
