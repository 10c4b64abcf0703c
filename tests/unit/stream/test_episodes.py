"""Episodes open, resolve and rebaseline, and the cooldown holds anomalies back, in one place."""

from __future__ import annotations

import math

from vigil.detectors import PointResult, build_detector
from vigil.stream.engine.alerts import Alert, SourceRef, build_alert
from vigil.stream.engine.episodes import Episodes, in_episode
from vigil.stream.engine.monitor import Series


def _point(*, anomaly: bool = False, resolved: bool = False, rebaselined: bool = False,
           episode: float = 0.0) -> PointResult:
    return PointResult(0.9 if anomaly else 0.1, anomaly, 0.0, -1.0, 1.0, math.nan, 50,
                       resolved=resolved, rebaselined=rebaselined,
                       details={"episode": episode} if episode else None)


def _judge(episodes: Episodes, series: Series, result: PointResult, offset: int,
           timestamp: float) -> tuple[list[Alert], bool]:
    def build(kind: str, episode_id: str | None = None) -> Alert:
        return build_alert(result=result, source=SourceRef("telemetry", 0, offset),
                           event_type="telemetry", key="web-1", metric="cpu",
                           detector="shewhart", value=1.0, event_timestamp=timestamp,
                           detected_at=timestamp, critical_score=0.99, kind=kind,
                           episode_id=episode_id)
    return episodes.alerts(series, result, timestamp, build)


def test_an_episode_opens_with_its_anomaly_and_its_resolution_names_it() -> None:
    series = Series(build_detector("shewhart"), 0.0)
    episodes = Episodes(cooldown_s=0.0)
    (opened,), _ = _judge(episodes, series, _point(anomaly=True, episode=1.0), 1, 10.0)
    assert in_episode(series) and series.episode == opened.alert_id
    (resolved,), _ = _judge(episodes, series, _point(resolved=True), 2, 11.0)
    assert (resolved.kind, resolved.episode_id) == ("resolved", opened.alert_id)
    assert not in_episode(series)


def test_a_detector_without_episodes_leaves_none_open_and_rebaselining_closes_one() -> None:
    series = Series(build_detector("shewhart"), 0.0)
    episodes = Episodes(cooldown_s=0.0)
    _judge(episodes, series, _point(anomaly=True), 1, 10.0)
    assert not in_episode(series)
    (opened,), _ = _judge(episodes, series, _point(anomaly=True, episode=1.0), 2, 11.0)
    (rebaselined,), _ = _judge(episodes, series, _point(rebaselined=True), 3, 12.0)
    assert (rebaselined.kind, rebaselined.episode_id) == ("rebaselined", opened.alert_id)
    assert not in_episode(series)


def test_the_cooldown_holds_back_anomalies_after_the_last_published_one() -> None:
    series = Series(build_detector("shewhart"), 0.0)
    episodes = Episodes(cooldown_s=60.0)
    assert _judge(episodes, series, _point(anomaly=True), 1, 100.0)[1] is False
    assert _judge(episodes, series, _point(anomaly=True), 2, 159.0) == ([], True)
    assert series.last_alert == 100.0
    (again,), held = _judge(episodes, series, _point(anomaly=True), 3, 160.0)
    assert again.kind == "anomaly" and not held and series.last_alert == 160.0
