"""Drift detectors: river's decision, Vigil's score and band, exact state round-trip."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from vigil.detectors.base import Detector, PointResult, build_detector, restore_detector
from vigil.detectors.drift import AdwinDrift, KswinDrift, PageHinkleyDrift

DRIFTS = {"adwin": AdwinDrift, "page_hinkley": PageHinkleyDrift, "kswin": KswinDrift}
CHANGE = 600


def shifted(n: int = 1200, shift: float = 3.0, seed: int = 11) -> list[float]:
    """N(0, 1), then N(shift, 1) from CHANGE on."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, n)
    values[CHANGE:] += shift
    out: list[float] = values.tolist()
    return out


def feed(detector: Any, values: list[float], start: int = 0) -> list[PointResult]:
    return [detector.update(v, float(start + t)) for t, v in enumerate(values)]


@pytest.mark.parametrize("name", DRIFTS)
def test_registered_and_a_detector(name: str) -> None:
    detector = build_detector(name)
    assert isinstance(detector, DRIFTS[name])
    assert isinstance(detector, Detector)
    assert detector.name == name


@pytest.mark.parametrize("name", DRIFTS)
def test_drift_detected_soon_after_a_shift_and_scored_above_half(name: str) -> None:
    results = feed(build_detector(name), shifted())
    alarms = [t for t, r in enumerate(results) if r.anomaly]
    after = [t for t in alarms if t >= CHANGE]
    assert after and after[0] < CHANGE + 60, alarms
    assert all(results[t].score > 0.5 for t in alarms)
    assert all(0.0 <= r.score <= 1.0 for r in results)


@pytest.mark.parametrize(("name", "params"), [("adwin", {}), ("kswin", {"alpha": 0.0001})])
def test_no_drift_in_a_stationary_series(name: str, params: dict[str, Any]) -> None:
    # KSWIN tests every point, so its default alpha (0.005) alarms now and then on noise.
    results = feed(build_detector(name, params), shifted(shift=0.0))
    assert sum(r.anomaly for r in results) <= 1


def test_page_hinkley_score_is_its_statistic_over_the_threshold() -> None:
    detector = PageHinkleyDrift(threshold=10.0, min_instances=5)
    results = feed(detector, [0.0, 0.0, 0.0, 0.0, 0.0, 4.0])
    last = results[-1]
    assert last.details is not None
    statistic = max(last.details["ph_increase"], last.details["ph_decrease"])
    assert statistic > 0.0
    assert last.score == pytest.approx(statistic / 10.0 / (1.0 + statistic / 10.0))


def test_page_hinkley_mode_up_ignores_decreases() -> None:
    down = shifted(shift=-3.0)
    up_only = feed(PageHinkleyDrift(mode="up"), down)
    both = feed(PageHinkleyDrift(mode="both"), down)
    assert not any(r.anomaly for r in up_only[CHANGE:CHANGE + 100])
    assert any(r.anomaly for r in both[CHANGE:CHANGE + 100])


def test_kswin_scores_nothing_until_its_window_is_full() -> None:
    detector = KswinDrift(window_size=50, stat_size=20)
    results = feed(detector, shifted()[:60])
    assert all(r.score == 0.0 for r in results[:49])
    assert results[49].details is not None and results[49].details["p_value"] < 1.0


def test_band_is_the_window_before_the_point() -> None:
    detector = PageHinkleyDrift()
    values = [1.0, 2.0, 3.0, 4.0]
    results = feed(detector, values)
    first, last = results[0], results[-1]
    assert (first.centre, first.lower, first.upper, first.n) == (1.0, -math.inf, math.inf, 0)
    assert last.n == 3 and last.centre == 2.0
    assert last.upper == pytest.approx(2.0 + 3.0 * 1.0)
    assert last.z == pytest.approx(2.0)


def test_adwin_band_and_window_width() -> None:
    detector = AdwinDrift()
    results = feed(detector, [float(i % 4) for i in range(40)])
    last = results[-1]
    assert last.n == 39
    assert last.centre == pytest.approx(np.mean([i % 4 for i in range(39)]))
    assert last.details is not None and last.details["width"] == 40.0


@pytest.mark.parametrize("name", DRIFTS)
def test_state_round_trip_gives_identical_futures(name: str) -> None:
    values = shifted(n=1500)
    reference = build_detector(name)
    results = feed(reference, values)
    # Cut right at the first drift too: river restarts the detector on the next point.
    first_alarm = next(t for t, r in enumerate(results) if r.anomaly and t >= CHANGE)
    for cut in (0, 1, 150, first_alarm + 1, 1300):
        detector = build_detector(name)
        feed(detector, values[:cut])
        state = json.loads(json.dumps(detector.state_dict(), allow_nan=False))
        restored = restore_detector(name, state)
        assert feed(restored, values[cut:], cut) == results[cut:], f"cut {cut}"


def test_adwin_state_is_plain_numbers_and_checks_the_river_version() -> None:
    detector = AdwinDrift()
    feed(detector, shifted(n=300))
    state = detector.state_dict()
    window = state["window"]
    assert window["width"] == 300.0
    assert all(isinstance(x, float) for row in window["buckets"] for x in row["totals"])
    with pytest.raises(ValueError, match="river"):
        AdwinDrift.from_state({**state, "river": "0.1"})
    broken = {**state, "window": {**window, "buckets": [{"max_size": 5, "current_idx": 9,
                                                         "totals": [], "variances": []}]}}
    with pytest.raises(ValueError, match="bad ADWIN"):
        AdwinDrift.from_state(broken)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("adwin", {"delta": 0.0}),
        ("adwin", {"clock": 0}),
        ("page_hinkley", {"threshold": -1.0}),
        ("page_hinkley", {"mode": "sideways"}),
        ("page_hinkley", {"alpha": 0.0}),
        ("kswin", {"alpha": 1.5}),
        ("kswin", {"window_size": 40, "stat_size": 30}),
    ],
)
def test_bad_parameters_are_refused(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_detector(name, params)


@pytest.mark.parametrize("name", DRIFTS)
def test_non_finite_values_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        build_detector(name).update(math.nan, 0.0)


def test_adwin_refuses_a_river_whose_state_layout_it_cannot_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import vigil.detectors.drift as drift_module

    def unreadable(blob: bytes) -> dict[str, Any]:
        raise ValueError("unexpected layout")

    monkeypatch.setattr(drift_module, "_decode_adwin", unreadable)
    drift_module._check_adwin_layout.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="river"):
            AdwinDrift()
    finally:
        drift_module._check_adwin_layout.cache_clear()
