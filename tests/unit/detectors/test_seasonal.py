"""Seasonal baselines: buckets from UTC time, per-bucket charts, state, and the season option."""

from __future__ import annotations

import json
import math
import pickle
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pytest

from vigil.detectors import (
    CusumChart,
    EwmaChart,
    RobustChart,
    Seasonal,
    ShewhartChart,
    build_detector,
    restore_detector,
)
from vigil.detectors.seasonal import SeasonBuckets, check_season

DAY = 86_400.0
START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
CHARTS = {"shewhart": ShewhartChart, "ewma": EwmaChart, "cusum": CusumChart, "robust": RobustChart}


def epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> float:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC).timestamp()


def test_named_seasons_bucket_by_utc_hour() -> None:
    day, week = SeasonBuckets("hour_of_day"), SeasonBuckets("hour_of_week")
    assert (day.count, week.count) == (24, 168)
    assert day.bucket(epoch(2026, 3, 14, 15, 59, 59)) == 15
    assert week.bucket(START) == 0  # Monday 00:00
    assert week.bucket(epoch(2026, 1, 11, 23, 30)) == 167  # Sunday 23:30
    assert week.bucket(epoch(2026, 1, 7, 13)) == 2 * 24 + 13  # Wednesday 13:00
    assert day.bucket(-1.0) == 23  # before the epoch, still in range


def test_a_period_in_seconds_has_24_buckets_from_the_epoch() -> None:
    assert SeasonBuckets(86_400).bucket(epoch(2026, 3, 14, 15)) == 15  # like hour_of_day
    ten_minutes = SeasonBuckets(600.0)
    assert [ten_minutes.bucket(t) for t in (0.0, 24.9, 25.0, 599.999, 600.0)] == [0, 0, 1, 23, 0]


@pytest.mark.parametrize("bad", ["daily", "", 0, -3600, math.inf, math.nan, True, None, [24]])
def test_bad_seasons_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="^season must"):
        check_season(bad)


def test_non_finite_timestamps_and_values_are_refused_without_a_trace() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        SeasonBuckets("hour_of_day").bucket(math.nan)
    chart = ShewhartChart(season="hour_of_day")
    state = chart.state_dict()
    for value, timestamp in ((1.0, math.inf), (math.nan, START)):
        with pytest.raises(ValueError, match="finite"):
            chart.update(value, timestamp)
    assert chart.state_dict() == state


def daily_cycle(days: int, per_hour: int, seed: int = 0) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    times = [START + i * 3600.0 / per_hour for i in range(days * 24 * per_hour)]
    values = [20.0 * math.sin(2 * math.pi * t / DAY) + rng.standard_normal() for t in times]
    return values, times


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_a_daily_cycle_is_not_an_anomaly_per_hour_but_a_spike_within_the_hour_is(
    name: str,
) -> None:
    values, times = daily_cycle(days=12, per_hour=12)
    seasonal = build_detector(name, {"season": "hour_of_day"})
    results = [seasonal.update(v, t) for v, t in zip(values, times, strict=True)]
    late = results[len(results) // 2 :]
    assert sum(r.anomaly for r in late) <= len(late) * 0.01
    spike_at = START + 13 * DAY + 6 * 3600.0  # 06:00, the top of the cycle
    spike = seasonal.update(20.0 * math.sin(2 * math.pi * spike_at / DAY) + 6.0, spike_at)
    assert spike.anomaly and spike.details is not None and spike.details["bucket"] == 6.0

    plain = build_detector(name)  # the cycle inflates σ: the same spike goes unseen
    for v, t in zip(values, times, strict=True):
        plain.update(v, t)
    assert not plain.update(20.0 * math.sin(2 * math.pi * spike_at / DAY) + 6.0, spike_at).anomaly


@pytest.mark.parametrize("name", sorted(CHARTS))
@pytest.mark.parametrize("season", ["hour_of_day", "hour_of_week", 3 * 3600])
def test_state_round_trip_keeps_every_bucket(name: str, season: str | int) -> None:
    values, times = daily_cycle(days=9, per_hour=6, seed=1)
    values[300] += 50.0
    chart = build_detector(name, {"season": season, "warmup": 3})
    half = len(values) // 2
    for v, t in zip(values[:half], times[:half], strict=True):
        chart.update(v, t)
    state = json.loads(json.dumps(chart.state_dict(), allow_nan=False))
    assert state["season"] == season and "stats" not in state
    restored = restore_detector(name, state)
    assert isinstance(restored, CHARTS[name])
    copy = pickle.loads(pickle.dumps(chart))  # noqa: S301 - our own bytes
    tail = list(zip(values[half:], times[half:], strict=True))
    expected = [chart.update(v, t) for v, t in tail]
    assert [restored.update(v, t) for v, t in tail] == expected
    assert [copy.update(v, t) for v, t in tail] == expected
    assert restored.state_dict() == chart.state_dict()


def test_each_bucket_chart_gets_the_resolved_parameters() -> None:
    chart = ShewhartChart(arl0=1000.0, warmup=3, rules=["we1", "we4"], season="hour_of_day")
    chart.update(1.0, START)
    state = chart.state_dict()
    inner = state["buckets"]["0"]
    assert inner["k"] == chart.k and inner["rules"] == ["we1", "we4"] and inner["season"] is None
    assert state["arl0"] == 1000.0


def test_seasonal_wrapper_works_for_any_detector_and_checks_the_season_on_load() -> None:
    seasonal = Seasonal(600.0, partial(EwmaChart, warmup=3), EwmaChart.from_state)
    for i in range(100):
        seasonal.update(float(i % 7), i * 25.0)
    assert sorted(seasonal.inner) == list(range(24))
    other = Seasonal(1200.0, partial(EwmaChart, warmup=3), EwmaChart.from_state)
    with pytest.raises(ValueError, match="season"):
        other.load_state(seasonal.state_dict())
    with pytest.raises(ValueError, match="outside"):
        seasonal.load_state({"season": 600.0, "buckets": {"24": EwmaChart().state_dict()}})


def test_season_from_the_command_line_and_config_values() -> None:
    assert build_detector("cusum", {"season": 86400}).state_dict()["season"] == 86400
    with pytest.raises(ValueError, match="season must"):
        build_detector("ewma", {"season": "86400"})
