"""The series bank: batch rounds give bit-identical results and states to the object charts."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.detectors.bank import BankSeries, SeriesBank
from vigil.detectors.base import Detector, PointResult, build_detector, restore_detector
from vigil.detectors.ensemble import EnsembleDetector

SPECS: list[tuple[str, dict[str, Any]]] = [
    *[(name, {"warmup": 10, "outliers": policy})
      for name in ("shewhart", "cusum", "ewma") for policy in ("clip", "exclude", "learn")],
    ("shewhart", {"k": 2.0, "warmup": 5}),
    ("cusum", {"k": 0.0, "h": 2.0, "warmup": 5}),
    ("ewma", {"lambda_": 0.5, "L": 2.0, "warmup": 5, "limits": "asymptotic"}),
    ("ewma", {"lambda_": 1.0, "L": 2.5, "warmup": 5}),
    *[(name, {"warmup": 8, "lag": lag, "outliers": "exclude"})
      for name in ("shewhart", "cusum", "ewma") for lag in (0, 1, 3)],
    ("ensemble", {}),
    *[("ensemble", {"warmup": 10, "clear_after": 5, "rebaseline_after": 20, "arl0": 200.0,
                    "outliers": policy}) for policy in ("clip", "exclude", "learn")],
]


def stream(rng: random.Random, length: int) -> list[float]:
    """A series with level shifts, spikes, variance changes, constant runs and odd scales."""
    scale = rng.choice([1.0, 1.0, 1e-300, 1e-9, 1e6, 1e100, 1e149])
    level, spread = rng.uniform(-5, 5), rng.uniform(0.1, 3.0)
    values: list[float] = []
    while len(values) < length:
        kind = rng.random()
        run = rng.randint(1, 60)
        if kind < 0.1:
            values += [level * scale] * run  # constant
        elif kind < 0.2:
            level += rng.choice([-1, 1]) * rng.uniform(1, 8) * spread
        elif kind < 0.3:
            spread *= rng.choice([0.2, 4.0])
        elif kind < 0.4:
            values.append((level + rng.choice([-1, 1]) * rng.uniform(4, 50) * spread) * scale)
        elif kind < 0.45:
            values.append(float(rng.randint(-3, 3)))
        else:
            values += [rng.gauss(level, spread) * scale for _ in range(run)]
    return values[:length]


def interleave(rng: random.Random, streams: list[list[float]]) -> list[tuple[int, float]]:
    """(series, value) of all streams, randomly interleaved, each in its own order."""
    cursors = [0] * len(streams)
    live = [i for i, s in enumerate(streams) if s]
    out: list[tuple[int, float]] = []
    while live:
        i = rng.choice(live)
        out.append((i, streams[i][cursors[i]]))
        cursors[i] += 1
        if cursors[i] == len(streams[i]):
            live.remove(i)
    return out


def same(a: PointResult, b: PointResult) -> bool:
    return repr(a) == repr(b)


def state_text(detector: Detector | BankSeries) -> str:
    return json.dumps(detector.state_dict())


def run_both(name: str, params: dict[str, Any], seed: int, *, series: int = 6,
             length: int = 400, report_all: bool = True) -> None:
    rng = random.Random(seed)
    streams = [stream(rng, rng.randint(1, length)) for _ in range(series)]
    objects = [build_detector(name, params) for _ in range(series)]
    bank = SeriesBank.for_template(build_detector(name, params))
    assert bank is not None
    handles = [bank.new_series(owner=i) for i in range(series)]
    points = interleave(rng, streams)
    start = 0
    while start < len(points):
        batch = points[start:start + rng.choice([1, 2, 7, 50, 300])]
        start += len(batch)
        # numpy rounds only, the bank's own choice, or object detectors from the first round
        bank.round_cost = rng.choice([0.0, 12.0, 1e9])
        expected = [objects[i].update(v, float(t)) for t, (i, v) in enumerate(batch, start)]
        queued: list[int] = []
        inline: dict[int, PointResult] = {}
        for t, (i, value) in enumerate(batch, start):
            handle = handles[i]
            if handle.slot < 0 and not bank.rebank(handle):
                inline[t - start] = handle.update(value, float(t))
                continue
            bank.pending_slots.append(handle.slot)
            bank.pending_values.append(value)
            queued.append(t - start)
        got = {queued[j]: result for j, _, result in bank.flush(
            lambda j, q=queued, s=start: float(s + q[j]),
            range(len(queued)) if report_all else ())}
        got.update(inline)
        for at, result in enumerate(expected):
            if at in got:
                assert same(got[at], result), (at, got[at], result)
            else:
                assert not report_all
                assert not (result.anomaly or result.resolved or result.rebaselined), result
    for handle, obj in zip(handles, objects, strict=True):
        assert state_text(handle) == state_text(obj)


@pytest.mark.parametrize(("name", "params"), SPECS, ids=[f"{n}-{p}" for n, p in SPECS])
@pytest.mark.parametrize("seed", range(4))
def test_bank_matches_the_object_charts(name: str, params: dict[str, Any], seed: int) -> None:
    run_both(name, params, seed, report_all=seed % 2 == 0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), spec=st.sampled_from(SPECS))
def test_bank_matches_on_any_stream(seed: int, spec: tuple[str, dict[str, Any]]) -> None:
    run_both(spec[0], spec[1], seed, series=4, length=150, report_all=seed % 3 != 0)


def test_state_moves_between_bank_and_object_exactly() -> None:
    rng = random.Random(3)
    values = [rng.gauss(0, 1) for _ in range(200)] + [rng.gauss(6, 1) for _ in range(100)]
    reference = build_detector("ensemble", {"warmup": 10, "clear_after": 5,
                                            "rebaseline_after": 20})
    bank = SeriesBank.for_template(reference)
    assert bank is not None
    handle = bank.adopt(build_detector("ensemble", {"warmup": 10, "clear_after": 5,
                                                    "rebaseline_after": 20}), owner=None)
    assert handle.slot == -1  # a fresh detector holds its first points as an object
    for t, value in enumerate(values):
        expected = reference.update(value, float(t))
        if t % 3:
            if handle.slot < 0:
                bank.rebank(handle)
            if handle.slot >= 0:
                bank.pending_slots.append(handle.slot)
                bank.pending_values.append(value)
                results = bank.flush(lambda j, t=t: float(t), [0])
                assert same(results[0][2], expected)
                continue
        assert same(handle.update(value, float(t)), expected)  # takes it out of the bank
        assert handle.slot == -1
        assert state_text(restore_detector("ensemble", handle.state_dict())) == \
            state_text(reference)
    assert state_text(handle) == state_text(reference)


def test_unsupported_configurations_have_no_bank() -> None:
    assert SeriesBank.for_template(build_detector("shewhart", {"rules": ["we1", "we2"]})) is None
    assert SeriesBank.for_template(build_detector("ewma", {"season": "hour_of_day"})) is None
    assert SeriesBank.for_template(build_detector("ensemble", {"season": "hour_of_day"})) is None
    assert SeriesBank.for_template(build_detector("robust")) is None
    assert SeriesBank.for_template(build_detector("ewma", {"lambda_": 1e-9})) is None
    bank = SeriesBank.for_template(build_detector("shewhart"))
    assert bank is not None and bank.adopt(build_detector("shewhart", {"k": 2.0}), 0).slot == -1


def test_an_open_episode_stays_with_the_object() -> None:
    detector = EnsembleDetector(warmup=5)
    for t in range(20):
        detector.update(float(t % 2), float(t))
    detector.update(100.0, 20.0)
    assert not detector.in_control
    bank = SeriesBank.for_template(EnsembleDetector(warmup=5))
    assert bank is not None
    handle = bank.adopt(detector, owner=None)
    assert handle.slot == -1 and handle.detector is detector
    assert handle.state_dict() == detector.state_dict()
    with pytest.raises(TypeError):
        BankSeries.from_state({})


def started(name: str) -> Detector:
    """A detector past its first points (the statistics have started: bankable)."""
    detector = build_detector(name)
    for t in range(40):
        detector.update(float(t % 3), float(t))
    return detector


def test_a_new_series_holds_its_first_points_as_an_object_then_moves_in() -> None:
    bank = SeriesBank.for_template(build_detector("shewhart", {"warmup": 5}))
    assert bank is not None
    handle = bank.new_series(owner="a")
    assert handle.slot == -1 and isinstance(handle.detector, Detector)
    for t in range(4):
        handle.update(float(t), float(t))
        assert not bank.rebank(handle)
    handle.update(2.0, 4.0)  # the fifth point: the statistics start
    assert bank.rebank(handle) and handle.slot == 0


def test_dropped_series_slots_are_reused_after_their_points() -> None:
    bank = SeriesBank.for_template(build_detector("shewhart"))
    assert bank is not None
    first = bank.adopt(started("shewhart"), owner="a")
    assert first.slot == 0
    bank.pending_slots.append(first.slot)
    bank.pending_values.append(1.0)
    bank.discard(first)
    second = bank.adopt(started("shewhart"), owner="b")
    assert second.slot != first.slot  # the queued point still needs the slot
    assert bank.flush(lambda j: 0.0) == []
    assert first.slot == -1 and bank.adopt(started("shewhart"), owner="c").slot == 0
    with pytest.raises(RuntimeError):
        first.state_dict()
