"""Alerts: what Vigil publishes when a point falls outside its series' control limits.

An anomaly alert names what fired: the detector's test, its statistic and the limit it crossed
(``test``, ``statistic``, ``limit``; :meth:`Alert.explain` says it in a few words).

An alert's ``alert_id`` is a hash of the source event's position (topic, partition, offset),
the series and the detector, so reprocessing the same event (after a crash, or in a backfill)
yields the same id and subscribers can de-duplicate on it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from vigil.detectors import PointResult


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where an event came from: its topic, partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert message, as published (JSON) on the alert topic."""

    alert_id: str
    kind: str
    severity: str
    event_type: str
    key: str
    metric: str
    detector: str
    value: float
    score: float
    z: float | None
    n: int
    centre: float | None
    lower: float | None
    upper: float | None
    model_version: str | None
    prediction_id: str | None
    event_timestamp: str
    detected_at: str
    source: SourceRef
    episode_id: str | None
    """The alert_id of the alert that opened this anomaly episode (same for its resolution)."""
    details: dict[str, float | None] | None = None
    """Kind-specific figures: both models' rolling losses for ``performance`` and
    ``rollback`` alerts; None for series alerts."""
    test: str | None = None
    """What fired (an anomaly alert): the detector's test, e.g. ``shewhart``, ``cusum up``,
    ``extreme high``, ``shift down``; None for other kinds."""
    statistic: float | None = None
    """That test's statistic at the alarm (for limits on the values, the value)."""
    limit: float | None = None
    """The limit the statistic crossed."""

    def explain(self) -> str:
        """What raised the alert, in a few words: the test, its statistic and its limit, or,
        without them, the value and the limits.

        >>> Alert("0" * 32, "anomaly", "warning", "telemetry", "web-1", "cpu", "adaptive",
        ...       0.93, 0.6, 3.1, 500, 0.4, 0.1, 0.7, None, None, "", "",
        ...       SourceRef("t", 0, 1), None, test="shift up", statistic=12.3,
        ...       limit=10.1).explain()
        'shift up 12.3 > 10.1'
        """
        if self.test is not None and self.statistic is not None and self.limit is not None:
            sign = ">" if self.statistic >= self.limit else "<"
            return f"{self.test} {self.statistic:.4g} {sign} {self.limit:.4g}"
        bounds = ", ".join("-" if v is None else f"{v:.4g}" for v in (self.lower, self.upper))
        return f"value {self.value:.4g} against [{bounds}]"

    @property
    def message_key(self) -> bytes:
        """Kafka key: the series, so that one series' alerts stay in order on one partition."""
        return f"{self.event_type}/{self.key}/{self.metric}".encode()

    def to_json(self) -> bytes:
        """Compact JSON; non-finite numbers (such as z on a constant series) become null."""
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False).encode()


def alert_id(source: SourceRef, event_type: str, key: str, metric: str, detector: str,
             kind: str = "anomaly") -> str:
    """Deterministic id: same event + series + detector (+ kind) → same id.

    >>> alert_id(SourceRef("telemetry", 0, 42), "telemetry", "web-1", "latency_ms", "shewhart")
    'e26ead1566bc98e9eb1d57a78d30ab9d'
    """
    parts = [source.topic, str(source.partition), str(source.offset), event_type, key, metric,
             detector]
    if kind != "anomaly":
        parts.append(kind)
    identity = "\x1f".join(parts)
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


ALERT_KINDS = ("anomaly", "resolved", "rebaselined", "performance", "rollback")


def severity(score: float, critical_score: float, kind: str = "anomaly") -> str:
    """``critical`` from ``critical_score`` up, else ``warning``; ``info`` for a resolution."""
    if kind == "resolved":
        return "info"
    return "critical" if score >= critical_score else "warning"


def iso_utc(epoch_seconds: float) -> str:
    """ISO-8601 UTC with milliseconds and a trailing Z.

    >>> iso_utc(0.5)
    '1970-01-01T00:00:00.500Z'
    """
    seconds, millis = divmod(round(epoch_seconds * 1000), 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def build_alert(
    *,
    result: PointResult,
    source: SourceRef,
    event_type: str,
    key: str,
    metric: str,
    detector: str,
    value: float,
    event_timestamp: float,
    detected_at: float,
    critical_score: float,
    model_version: str | None = None,
    prediction_id: str | None = None,
    kind: str = "anomaly",
    episode_id: str | None = None,
    details: dict[str, float | None] | None = None,
) -> Alert:
    """The alert of ``kind`` for ``result`` of one series' detector on one event.

    An ``anomaly`` alert opens an episode: its ``episode_id`` is its own ``alert_id``.
    """
    identifier = alert_id(source, event_type, key, metric, detector, kind)
    fired = result.explanation if kind == "anomaly" else None
    return Alert(
        alert_id=identifier,
        kind=kind,
        severity=severity(result.score, critical_score, kind),
        event_type=event_type,
        key=key,
        metric=metric,
        detector=detector,
        value=value,
        score=result.score,
        z=_finite_or_none(result.z),
        n=result.n,
        centre=_finite_or_none(result.centre),
        lower=_finite_or_none(result.lower),
        upper=_finite_or_none(result.upper),
        model_version=model_version,
        prediction_id=prediction_id,
        event_timestamp=iso_utc(event_timestamp),
        detected_at=iso_utc(detected_at),
        source=source,
        episode_id=identifier if kind == "anomaly" else episode_id,
        details=None if details is None else {
            name: _finite_or_none(value) if value is not None else None
            for name, value in details.items()},
        test=None if fired is None else fired.test,
        statistic=None if fired is None else _finite_or_none(fired.statistic),
        limit=None if fired is None else _finite_or_none(fired.limit),
    )


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def parse_alert(raw: bytes) -> dict[str, Any]:
    """Decode an alert message from the alert topic (for subscribers and tests)."""
    decoded: dict[str, Any] = json.loads(raw)
    return decoded
