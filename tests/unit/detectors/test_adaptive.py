"""Behaviour of the adaptive default detector that its NAB judgement rests on."""

from __future__ import annotations

import random

from vigil.detectors.adaptive import BELOW_ALERT, AdaptiveDetector


def _noisy(points: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(10.0, 1.0) for _ in range(points)]


def test_an_episode_is_one_alert_in_the_score() -> None:
    """Inside an open episode the score stays below the alert level, even when the values
    escalate, so a threshold on the score counts the episode once."""
    values = _noisy(700)
    values[400] = 25.0
    values[405] = 60.0  # escalation inside the episode the spike opened
    det = AdaptiveDetector()
    results = [det.update(v, 60.0 * t) for t, v in enumerate(values)]
    assert [t for t, r in enumerate(results) if r.anomaly] == [400]
    assert results[400].score >= 0.5
    assert results[405].details is not None and results[405].details["episode"] > 0
    assert results[405].details["extreme_score"] > 0.5  # the escalation is still measured
    assert 0.4 < results[405].score <= BELOW_ALERT < 0.5
    assert [t for t, r in enumerate(results) if r.score >= 0.5] == [400]


def test_a_season_change_rewarms_for_a_whole_period() -> None:
    """When the series gains its daily season the tests restart, and they neither alarm nor
    score at the alert level until they have seen a whole day of the new stream."""
    step = 300.0  # five minutes: 288 points a day
    rng = random.Random(5)
    values = [(80.0 if (t // 12) % 24 >= 12 else 20.0) + rng.gauss(0.0, 0.5)
              for t in range(288 * 4)]
    det = AdaptiveDetector()
    results = [det.update(v, step * t) for t, v in enumerate(values)]
    gained = next(t for t, r in enumerate(results)
                  if r.details is not None and r.details["season"] == 1.0)
    settling = results[gained + 1:gained + 288]
    assert not any(r.anomaly for r in settling)
    assert max(r.score for r in settling) < 0.5
    assert det.state_dict()["season"] == "auto"
    restored = AdaptiveDetector.from_state(det.state_dict())
    assert restored.update(50.0, step * len(values)).score == det.update(
        50.0, step * len(values)).score


def test_the_shift_test_does_not_gather_evidence_while_warming() -> None:
    """After a restart (a season gained or lost) the baseline has its points long before the
    warm-up ends; a CUSUM summed over that settling stretch would alarm on its first
    scored point with evidence from points that could not be judged."""
    rng = random.Random(7)
    det = AdaptiveDetector(season=None)
    for t in range(500):
        det.update(rng.gauss(0.0, 1.0), 60.0 * t)
    det._restart(200)  # the warm-up is 200 + 32 points again
    results = [det.update(rng.gauss(0.0, 1.0) + 0.02 * t, 60.0 * (500 + t)) for t in range(232)]
    assert all(r.details is not None and r.details["cusum"] == 0.0 for r in results)
    assert not det.update(rng.gauss(0.0, 1.0) + 4.64, 60.0 * 732).anomaly


def test_the_baseline_sees_the_autocorrelation_of_a_young_series() -> None:
    """The first points, judged with a spread still near zero, must not swamp the lag-1
    autocorrelation: an AR(1) series with rho 0.8 shows it within a few hundred points."""
    rng = random.Random(11)
    det = AdaptiveDetector(season=None)
    x = 0.0
    for t in range(600):
        x = 0.8 * x + rng.gauss(0.0, 1.0)
        det.update(100.0 + x, 60.0 * t)
    rho = AdaptiveDetector.from_state(det.state_dict())._baseline.autocorrelation()
    assert 0.6 < rho < 0.95


def test_a_spike_on_a_shifted_level_alerts_again() -> None:
    """A shift opens an episode; a value far beyond the shifted level is another event and
    alerts, while the smaller escalations after it stay below the alert level."""
    values = _noisy(900, seed=3)
    values[500:] = [v + 4.0 for v in values[500:]]
    values[560] = 60.0
    values[565] = 70.0
    det = AdaptiveDetector()
    results = [det.update(v, 60.0 * t) for t, v in enumerate(values)]
    alerts = [(t, int(r.details["test"])) for t, r in enumerate(results)
              if r.anomaly and r.details is not None]
    assert alerts[0][1] == 2 and 500 <= alerts[0][0] < 560
    assert alerts[1:] == [(560, 1)]
    assert results[565].score < 0.5


def test_a_spike_right_after_a_shift_is_the_same_event() -> None:
    """A spike within the first quiet wait of a shift's episode does not alert again."""
    values = _noisy(900, seed=3)
    values[500:] = [v + 4.0 for v in values[500:]]
    det = AdaptiveDetector()
    results = [det.update(v, 60.0 * t) for t, v in enumerate(values[:600])]
    opened = next(t for t, r in enumerate(results) if r.anomaly)
    det = AdaptiveDetector()
    values[opened + 2] = 60.0
    results = [det.update(v, 60.0 * t) for t, v in enumerate(values)]
    assert [t for t, r in enumerate(results) if r.anomaly] == [opened]
    assert results[opened + 2].score < 0.5
