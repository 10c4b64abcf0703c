"""The ensemble keeps its recent points and z-values only while an episode is open: the same
results as keeping them always (as it once did), and old snapshots still restore."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from typing import Any, Self

import pytest

from vigil.detectors.base import PointResult
from vigil.detectors.ensemble import Z_CLIP, EnsembleDetector, opening_explanation


class AlwaysRecording(EnsembleDetector):
    """The ensemble as it was: every point enters ``_recent`` and ``_z``, in control too."""

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        det = super().from_state(state)
        det._recent.clear()
        det._recent.extend((float(v), float(t), float(d)) for v, t, d in state["recent"])
        det._z.clear()
        det._z.extend(float(z) for z in state["z"])
        return det

    def update(self, value: float, timestamp: float) -> PointResult:
        offset = self._offset
        x = value - offset
        shewhart = self._shewhart.update(x, timestamp)
        cusum = self._cusum.update(x, timestamp)
        ewma = self._ewma.update(x, timestamp)
        score = max(shewhart.score, cusum.score, ewma.score)
        self._recent.append((value, timestamp, x - shewhart.centre))
        reference = self._reference
        z = shewhart.z if reference is None else (x - reference[0]) / reference[1]
        self._z.append(Z_CLIP if z > Z_CLIP else -Z_CLIP if z < -Z_CLIP else z)
        opened = resolved = rebaselined = False
        if self._episode == 0:
            if shewhart.anomaly or cusum.anomaly or ewma.anomaly:
                opened = True
                self._snapshot = self._member_states()
                sigma = (shewhart.upper - shewhart.centre) / self.shewhart_k
                if self.season is None and 0.0 < sigma < math.inf:
                    self._reference = (shewhart.centre, sigma)
                self._episode = 1
                self._quiet = 0
                self._confirmations = int(cusum.anomaly or ewma.anomaly)
        else:
            self._episode += 1
            self._confirmations += int(shewhart.anomaly or cusum.anomaly or ewma.anomaly)
            self._quiet = self._quiet + 1 if score < self.clear_score else 0
            if self._quiet >= self.clear_after and self._back_at_baseline():
                resolved = True
            elif self._episode >= self.rebaseline_after and self._confirmations:
                rebaselined = True
        episode = self._episode
        if resolved:
            self._forget_episode()
        elif rebaselined:
            self._rebaseline()
        if resolved or rebaselined:
            self._episode = self._quiet = self._confirmations = 0
            self._snapshot = self._reference = None
        details = {"shewhart_score": shewhart.score, "cusum_score": cusum.score,
                   "ewma_score": ewma.score, "episode": float(episode)}
        for member in (cusum, ewma):
            if member.details:
                details.update(member.details)
        explanation = opening_explanation((shewhart, cusum, ewma), offset) if opened else None
        return PointResult(score, opened, shewhart.centre + offset, shewhart.lower + offset,
                           shewhart.upper + offset, shewhart.z, shewhart.n, resolved=resolved,
                           rebaselined=rebaselined, details=details, explanation=explanation)


def shifty(seed: int, length: int = 3000) -> list[float]:
    """Noise with level shifts (some lasting, some returning), spikes and variance changes."""
    rng = random.Random(seed)
    level, spread, values = 10.0, 1.0, []
    for t in range(length):
        if rng.random() < 0.004:
            level += rng.choice([-1, 1]) * rng.uniform(0.5, 6.0)
        if rng.random() < 0.002:
            spread = rng.choice([0.3, 1.0, 3.0])
        value = rng.gauss(level, spread) + 3.0 * math.sin(t / 50.0)
        if rng.random() < 0.01:
            value += rng.choice([-1, 1]) * rng.uniform(5, 30)
        values.append(value)
    return values


PARAMS: list[dict[str, Any]] = [
    {},
    {"warmup": 20, "clear_after": 10, "rebaseline_after": 40, "arl0": 500.0},
    {"warmup": 20, "clear_after": 5, "rebaseline_after": 30, "arl0": 300.0, "outliers": "exclude"},
    {"warmup": 20, "clear_after": 10, "rebaseline_after": 40, "arl0": 500.0, "season": 600.0},
]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("seed", range(3))
def test_same_results_as_recording_every_point(params: dict[str, Any], seed: int) -> None:
    old, new = AlwaysRecording(**params), EnsembleDetector(**params)
    kinds = set()
    for t, value in enumerate(shifty(seed)):
        expected, got = old.update(value, t * 7.0), new.update(value, t * 7.0)
        assert repr(got) == repr(expected), t
        kinds |= {k for k in ("anomaly", "resolved", "rebaselined") if getattr(got, k)}
        state = new.state_dict()
        if state["episode"] == 0:
            assert state["recent"] == [] and state["z"] == []
        else:
            assert len(state["recent"]) == min(state["episode"], new.rebaseline_after)
    assert kinds == {"anomaly", "resolved", "rebaselined"}  # the stream exercises every path
    new_state, old_state = new.state_dict(), old.state_dict()
    for name in ("recent", "z"):
        new_state.pop(name), old_state.pop(name)
    assert json.dumps(new_state) == json.dumps(old_state)


@pytest.mark.parametrize("params", PARAMS)
def test_old_snapshots_restore_to_the_same_future(params: dict[str, Any]) -> None:
    values = shifty(11)
    old = AlwaysRecording(**params)
    for cut, (t, value) in enumerate(enumerate(values)):
        old.update(value, t * 7.0)
        if cut % 97:
            continue
        snapshot = json.loads(json.dumps(old.state_dict()))
        restored_old = AlwaysRecording.from_state(snapshot)
        restored_new = EnsembleDetector.from_state(snapshot)
        for u in range(t + 1, min(t + 150, len(values))):
            expected = restored_old.update(values[u], u * 7.0)
            assert repr(restored_new.update(values[u], u * 7.0)) == repr(expected), (t, u)
