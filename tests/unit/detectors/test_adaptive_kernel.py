"""The compiled adaptive step gives exactly what ``AdaptiveDetector.update`` gives: the same
``PointResult`` for every point (scores, alarms, limits, what fired) and the same state."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.detectors.adaptive import AdaptiveDetector
from vigil.detectors.adaptive_kernel import AdaptiveKernel
from vigil.detectors.bank import SeriesBank
from vigil.detectors.base import PointResult

Series = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
EPOCH = 1.7e9  # a Tuesday, mid-2023
FIVE_MINUTES, HOUR = 300.0, 3600.0


def _regular(values: np.ndarray[Any, Any], step: float = 60.0) -> Series:
    return values.astype(float), EPOCH + step * np.arange(len(values))


def _daily(step: float, days: int, seed: int) -> Series:
    rng = np.random.default_rng(seed)
    t = EPOCH + step * np.arange(int(days * 86400 / step))
    hour = (t % 86400) / 3600
    values = 100 + 40 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 3, len(t))
    values[len(t) // 2] += 60  # a spike against the season
    return values, t


def _weekly(days: int, seed: int) -> Series:
    rng = np.random.default_rng(seed)
    t = EPOCH + HOUR * np.arange(days * 24)
    weekday = ((t + 3 * 86400) // 86400 % 7).astype(int)  # 0 Monday
    hour = (t % 86400) // 3600
    busy = (weekday < 5) & (hour >= 8) & (hour < 18)
    return np.where(busy, 500.0, 50.0) + rng.normal(0, 5, len(t)), t


def _season_lost(seed: int) -> Series:
    """Three weeks of a daily season (found), then flat noise (lost: the tests restart)."""
    values, t = _daily(FIVE_MINUTES, 35, seed)
    flat = t >= EPOCH + 21 * 86400
    values[flat] = 100 + np.random.default_rng(seed + 1).normal(0, 3, int(flat.sum()))
    return values, t


def _series(kind: str, seed: int) -> Series:
    rng = np.random.default_rng(seed)
    n = 3000
    if kind == "gaussian":
        return _regular(rng.normal(10, 1, n))
    if kind == "constant":
        return _regular(np.full(n, 42.0))
    if kind == "constant_changes":
        return _regular(np.where(np.arange(n) < 1500, 7.0, 7.5))
    if kind == "square_wave":
        return _regular(np.where(np.arange(n) // 50 % 2, 1.0, 0.0) + rng.normal(0, 0.01, n))
    if kind == "counts":
        values = rng.poisson(3, n).astype(float)
        values[2000] = 40
        return _regular(values)
    if kind == "lognormal":
        return _regular(rng.lognormal(2, 1, n))
    if kind == "pareto_bursts":
        values = 5 + rng.normal(0, 0.5, n)
        bursts = rng.random(n) < 0.01
        values[bursts] += 10 * (1 + rng.pareto(1.5, int(bursts.sum())))
        return _regular(values)
    if kind == "spikes":
        values = rng.normal(100, 5, n)
        values[rng.choice(n, 12, replace=False)] += rng.choice([-1, 1], 12) * 60
        return _regular(values)
    if kind == "level_shifts":
        return _regular(rng.normal(0, 1, n) + 4 * (np.arange(n) // 700 % 2)
                        - 3 * (np.arange(n) >= 2500))
    if kind == "drift":
        return _regular(rng.normal(0, 1, n) + np.maximum(0, np.arange(n) - 1000) * 0.01)
    if kind == "long":  # beyond the memories' 8,192 points, so their oldest blocks go
        values = rng.normal(50, 2, 12000)
        values[9000:] += 8
        values[11000] = 200
        return _regular(values)
    if kind == "irregular":
        gaps = rng.exponential(60, n) * np.where(rng.random(n) < 0.02, 300, 1)
        values = rng.gamma(2, 10, n)
        values[1800:] *= 2
        return values, EPOCH + np.cumsum(gaps)
    if kind == "daily_5min":
        return _daily(FIVE_MINUTES, 16, seed)
    if kind == "daily_hourly":
        return _daily(HOUR, 60, seed)
    if kind == "weekly_hourly":
        return _weekly(42, seed)
    if kind == "season_lost":
        return _season_lost(seed)
    if kind == "tiny_and_huge":
        return _regular(rng.normal(1e-9, 1e-11, n) * np.where(np.arange(n) < 2000, 1, 1e30))
    raise ValueError(kind)


KINDS = ("gaussian", "constant", "constant_changes", "square_wave", "counts", "lognormal",
         "pareto_bursts", "spikes", "level_shifts", "drift", "long", "irregular", "daily_5min",
         "daily_hourly", "weekly_hourly", "season_lost", "tiny_and_huge")

PARAMETERS: tuple[dict[str, Any], ...] = (
    {}, {"season": None, "warmup": 2, "rebaseline_after": 31},
    {"alpha": 1e-3, "visibility": 0.0, "season": "hour_of_day"},
    {"alpha": 1e-7, "season": "hour_of_week", "warmup": 200, "rebaseline_after": 500})


def _object_results(detector: AdaptiveDetector, series: Series) -> list[PointResult]:
    return [detector.update(float(v), float(t)) for v, t in zip(*series, strict=True)]


def _kernel_results(kernel: AdaptiveKernel, row: int, series: Series) -> list[PointResult]:
    values, times = series
    out = kernel.score_points(np.full(len(values), row), values, times)
    return [kernel.point_result(out, j) for j in range(len(values))]


def _assert_same(expected: list[PointResult], found: list[PointResult]) -> None:
    for j, (want, got) in enumerate(zip(expected, found, strict=True)):
        assert got == want, f"point {j}: {got} != {want}"


def _check(series: Series, parameters: dict[str, Any]) -> list[PointResult]:
    detector = AdaptiveDetector(**parameters)
    kernel = AdaptiveKernel(1)
    kernel.load(0, detector.state_dict())
    expected = _object_results(detector, series)
    _assert_same(expected, _kernel_results(kernel, 0, series))
    assert kernel.export(0) == detector.state_dict()
    return expected


@pytest.mark.parametrize("kind", KINDS)
def test_every_point_and_the_state_equal_the_objects(kind: str) -> None:
    results = _check(_series(kind, seed=len(kind)), {})
    if kind in ("spikes", "level_shifts", "long", "counts"):
        assert any(r.anomaly for r in results)  # the comparison covered alarms


@pytest.mark.parametrize("parameters", PARAMETERS[1:])
@pytest.mark.parametrize("kind", ("spikes", "level_shifts", "daily_5min", "weekly_hourly"))
def test_parameters_are_followed(kind: str, parameters: dict[str, Any]) -> None:
    _check(_series(kind, seed=7), parameters)


def test_the_series_cover_what_the_detector_does() -> None:
    """Episodes open on both tests, escalate, resolve and re-baseline; seasons are found
    (daily and weekly) and lost; the memories drop their oldest blocks."""
    seen: dict[str, set[float]] = {"test": set(), "season": set()}
    resolved = rebaselined = escalated = 0
    for kind in KINDS:
        for result in _object_results(AdaptiveDetector(), _series(kind, seed=len(kind))):
            assert result.details is not None
            if result.anomaly:
                seen["test"].add(result.details["test"])
                escalated += result.details["episode"] > 1
            seen["season"].add(result.details["season"])
            resolved += result.resolved
            rebaselined += result.rebaselined
    assert seen["test"] == {1.0, -1.0, 2.0}
    assert seen["season"] == {0.0, 1.0, 2.0}
    assert resolved and rebaselined and escalated


@pytest.mark.parametrize("kind", ("daily_5min", "level_shifts", "season_lost", "long"))
def test_state_round_trips_mid_series(kind: str) -> None:
    """object → kernel → object, at several points: every result on the way equals an object
    detector's that never stopped, and every state converts back exactly."""
    series = _series(kind, seed=3)
    reference = AdaptiveDetector()
    expected = _object_results(reference, series)
    detector = AdaptiveDetector()
    kernel = AdaptiveKernel(3)
    cuts = np.linspace(0, len(series[0]), 8).astype(int)
    for step, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        part = (series[0][a:b], series[1][a:b])
        if step % 2:
            row = step % 3
            state = json.loads(json.dumps(detector.state_dict()))  # as the state topic holds it
            kernel.load(row, state)
            assert kernel.export(row) == state
            _assert_same(expected[a:b], _kernel_results(kernel, row, part))
            detector = AdaptiveDetector.from_state(kernel.export(row))
        else:
            _assert_same(expected[a:b], _object_results(detector, part))
    assert detector.state_dict() == reference.state_dict()


def test_interleaved_series_in_one_call() -> None:
    """A poll of many series' points, interleaved at random, scores each as its own detector."""
    rng = np.random.default_rng(11)
    kinds = KINDS[:10] + ("irregular", "daily_5min")
    series = [_series(kind, seed=i) for i, kind in enumerate(kinds)]
    series = [(v[:2500], t[:2500]) for v, t in series]
    detectors = [AdaptiveDetector(**PARAMETERS[i % len(PARAMETERS)]) for i in range(len(kinds))]
    kernel = AdaptiveKernel(len(kinds) + 5)
    rows = [len(kinds) + 4 - i for i in range(len(kinds))]  # rows need not be in order
    for detector, row in zip(detectors, rows, strict=True):
        kernel.load(row, detector.state_dict())
    order = rng.permutation(np.repeat(np.arange(len(kinds)), 2500))
    position = np.zeros(len(kinds), int)
    index = np.empty(len(order), int)
    for j, s in enumerate(order):
        index[j] = position[s]
        position[s] += 1
    point_rows = np.array(rows)[order]
    values = np.array([series[s][0][i] for s, i in zip(order, index, strict=True)])
    times = np.array([series[s][1][i] for s, i in zip(order, index, strict=True)])
    for chunk in np.array_split(np.arange(len(order)), 7):  # several polls
        out = kernel.score_points(point_rows[chunk], values[chunk], times[chunk])
        for k, j in enumerate(chunk):
            expected = detectors[order[j]].update(float(values[j]), float(times[j]))
            assert kernel.point_result(out, k) == expected, f"point {j}"
    for detector, row in zip(detectors, rows, strict=True):
        assert kernel.export(row) == detector.state_dict()


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def _points(draw: Callable[..., Any]) -> Series:
    """Short series of a few levels or of any values, quantised or not, with spikes and
    shifts, at any pace (gaps and repeated timestamps included)."""
    n = draw(st.integers(1, 600))
    levels = draw(st.lists(finite, min_size=1, max_size=4))
    noise = draw(st.sampled_from([0.0, 1e-6, 0.1, 1.0, 100.0]))
    quantum = draw(st.sampled_from([0.0, 1.0, 0.25]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = np.array(levels)[rng.integers(0, len(levels), n) if draw(st.booleans())
                              else np.arange(n) * len(levels) // n]
    values = values + rng.standard_t(3, n) * noise
    if quantum:
        values = np.round(values / quantum) * quantum
    for _ in range(draw(st.integers(0, 3))):
        values[rng.integers(0, n)] = draw(finite)
    pace = draw(st.sampled_from([1.0, 60.0, 300.0, 3600.0, 5400.0]))
    gaps = pace * rng.choice([0.0, 1.0, 1.0, 1.0, 7.0, 500.0], n)
    return values, draw(st.floats(-1e9, 3e9)) + np.cumsum(gaps)


@settings(max_examples=60, deadline=None)
@given(series=_points(), parameters=st.sampled_from(PARAMETERS))
def test_any_series_gives_identical_results(series: Series,
                                            parameters: dict[str, Any]) -> None:
    _check(series, parameters)


def test_an_unscorable_point_stops_the_call() -> None:
    kernel = AdaptiveKernel(1)
    kernel.load(0, AdaptiveDetector().state_dict())
    with pytest.raises(ValueError, match="point 2 cannot be scored"):
        kernel.score_points([0, 0, 0], [1.0, 2.0, math.nan], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="rows must be"):
        kernel.score_points([1], [1.0], [0.0])


def test_a_memory_of_another_shape_is_refused() -> None:
    state = AdaptiveDetector().state_dict()
    state["values"] = {**state["values"], "capacity": 32}
    with pytest.raises(ValueError, match="values memory"):
        AdaptiveKernel(1).load(0, state)


def test_a_bank_of_adaptive_series_reports_what_the_objects_would() -> None:
    """``SeriesBank`` scores adaptive series with the kernel: every point an object path
    reports (alarms, episodes, resolved and re-baselined points, a hot series' later points,
    the series asked for) is reported with the object's result, and no other."""
    kinds = ("spikes", "level_shifts", "counts", "gaussian", "square_wave", "daily_5min")
    series = [_series(kind, seed=i) for i, kind in enumerate(kinds)]
    bank = SeriesBank.for_template(AdaptiveDetector())
    assert bank is not None and bank.kernel is not None
    handles = [bank.new_series(owner=kind) for kind in kinds]
    objects = [AdaptiveDetector() for _ in kinds]
    for handle in handles:
        assert bank.rebank(handle)
    rng = np.random.default_rng(5)
    position = np.zeros(len(kinds), int)
    hot: set[int] = set()
    while position.min() < 2500:
        queued = [s for s in rng.integers(0, len(kinds), 400) if position[s] < 2500]
        times: list[float] = []
        expected: dict[int, PointResult] = {}
        asked = {int(s) for s in rng.integers(0, len(kinds), 1)}
        wanted = [j for j, s in enumerate(queued) if s in asked]
        for j, s in enumerate(queued):
            value, timestamp = (float(a[position[s]]) for a in series[s])
            position[s] += 1
            bank.pending_slots.append(handles[s].slot)
            bank.pending_values.append(value)
            times.append(timestamp)
            result = objects[s].update(value, timestamp)
            assert result.details is not None
            if result.anomaly or result.resolved or result.rebaselined or s in hot \
                    or result.details["episode"] > 0 or s in asked:
                expected[j] = result
            if result.resolved:
                hot.discard(s)
            elif result.anomaly:
                hot.add(s)
        reported = bank.flush(times.__getitem__, wanted)
        assert {j: result for j, _, result in reported} == expected
        assert all(owner == kinds[queued[j]] for j, owner, _ in reported)
        hot.clear()
    for handle, detector in zip(handles, objects, strict=True):
        assert handle.state_dict() == detector.state_dict()
