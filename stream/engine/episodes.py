"""Anomaly episodes and the alert cooldown, decided in one place.

An episode opens with a published anomaly alert on a series whose detector says the point is
inside one (``details["episode"]``), and it ends with the detector's next ``resolved`` or
``rebaselined`` point. The cooldown holds back a series' anomaly alerts for
``alerts.cooldown_s`` of event time after its last published one. A series keeps its open
episode and last alert time (``Series.episode``, ``Series.last_alert``, checkpointed with
it); only :class:`Episodes` writes them, and the monitor asks :func:`in_episode` and
:func:`worth_reporting` which points to report, so that no point of an episode is missed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from vigil.detectors import PointResult
from vigil.stream.engine.alerts import Alert

if TYPE_CHECKING:
    from vigil.stream.engine.monitor import Series


class AlertBuilder(Protocol):
    """Builds the alert of one point, of a kind, in an episode (or none)."""

    def __call__(self, kind: str, episode_id: str | None = None) -> Alert: ...


def in_episode(series: Series) -> bool:
    """True while the series has an open episode: each of its points is reported."""
    return series.episode is not None


def worth_reporting(result: PointResult, series: Series, hot: set[Series],
                    wanted: Callable[[Series], bool]) -> bool:
    """True when a point scored in a batch is one to report: it alarms, resolves or
    rebaselines, its series alarmed earlier in the batch (``hot``, kept here) and has not
    resolved since, its detector is inside an episode, or ``wanted(series)``."""
    shown = (result.anomaly or result.resolved or result.rebaselined or series in hot
             or (result.details or {}).get("episode", 0.0) > 0.0 or wanted(series))
    if result.resolved:
        hot.discard(series)
    elif result.anomaly:
        hot.add(series)
    return shown


class Episodes:
    """Turns a series' judged point into its alerts: resolves, opens (or holds back, within
    the cooldown) and rebaselines the series' episode."""

    def __init__(self, cooldown_s: float) -> None:
        self.cooldown_s = cooldown_s

    def alerts(self, series: Series, result: PointResult, timestamp: float,
               build: AlertBuilder) -> tuple[list[Alert], bool]:
        """The point's alerts, in order, and whether an anomaly alert was held back."""
        alerts = []
        if result.resolved and series.episode is not None:
            alerts.append(build("resolved", series.episode))
            series.episode = None
        suppressed = result.anomaly and self._cooling(series, timestamp)
        if result.anomaly and not suppressed:
            alert = build("anomaly")
            # an episode stays open only with a detector that ends it (and says how long it is)
            series.episode = alert.episode_id if (result.details or {}).get("episode") else None
            series.last_alert = timestamp
            alerts.append(alert)
        if result.rebaselined:
            alerts.append(build("rebaselined", series.episode))
            series.episode = None
        return alerts, suppressed

    def _cooling(self, series: Series, timestamp: float) -> bool:
        """True within the cooldown after the series' last published anomaly alert."""
        return bool(self.cooldown_s) and series.last_alert is not None \
            and timestamp - series.last_alert < self.cooldown_s
