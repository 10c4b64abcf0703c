"""The default per-series detector: Shewhart, CUSUM and EWMA combined, with anomaly episodes.

Three charts watch every point, each for what it is best at: the Shewhart individuals chart
for isolated spikes, the tabular CUSUM (``k = 0.5``, optimal for a 1σ shift) for small
sustained shifts, and the EWMA (``λ = 0.2``) for medium shifts. Their limits come from one
false-alarm budget: the ensemble's in-control ARL ``arl0`` is split evenly between the three
by the union bound (each chart is designed for ``3·arl0``, computed with
:mod:`detectors.budget`), so with known mean and σ the ensemble raises at most one false alarm
per ``arl0`` in-control points. Any limit given explicitly replaces its derived value.

**Score.** The maximum of the three charts' scores. Each is 0.5 at its own limit and every
limit has the same false-alarm rate, so the maximum is 0.5 exactly when some chart is at its
limit; a weighted mix would need p-values, which the sequential charts do not give.

**Episodes.** The series is either in control or in an anomaly episode. A chart's alarm
while in control opens an episode: that point alone has ``anomaly=True``. Further alarms
inside the episode raise nothing. The episode ends when the last ``clear_after`` points are
back in control: each scored below ``clear_score`` (hysteresis: the closing level is lower
than the opening one), and their z-values against the baseline as it was when the episode
began (each clipped to ±``Z_CLIP``; with ``season``, against their buckets' current
baselines) look like in-control ones — mean within ``RETURN_Z`` standard errors of 0, mean
square within ``RETURN_Z`` standard errors of 1. The z-tests keep an episode open through a
sustained small shift, or a wider spread, while a reset CUSUM re-accumulates. The closing
point has ``resolved=True``, and the charts forget the episode: they go back to their state
when it began and learn only its quiet last ``clear_after`` points, so an anomaly never
widens the limits.

**Re-baselining.** A level shift that persists is the new normal, not an anomaly for weeks.
When an episode has lasted ``rebaseline_after`` points without returning to the baseline, and
the change is confirmed — CUSUM or EWMA (the charts of sustained shifts) alarmed in it, or
the Shewhart chart alarmed again after the opening point (a wider spread) — the episode ends
at that point with ``rebaselined=True`` instead of ``resolved``, and the three charts restart
from the last ``rebaseline_after`` points: new mean and σ. With ``season`` those points
cannot rebuild every bucket (most would restart empty and blind), so the charts go back to
their state when the episode began and the ensemble moves its level instead: from then on it
feeds them each value minus the mean deviation of those points from their buckets' centres,
and they learn those points at the new level (the shift is accepted, the seasonal profile
and σ are kept; a change of σ is not re-learned this way).

``centre``, ``lower``, ``upper``, ``z`` and ``n`` are the Shewhart chart's (the limits on the
individual values); ``details`` holds each chart's score, the CUSUM sums, the EWMA and the
length of the open episode (0 when in control).

>>> import random
>>> rng = random.Random(1)
>>> det = EnsembleDetector(warmup=50)
>>> values = [rng.gauss(10, 1) for _ in range(300)] + [rng.gauss(13, 1) for _ in range(300)]
>>> flags = [(t, r.anomaly, r.resolved, r.rebaselined)
...          for t, r in enumerate(det.update(v, float(t)) for t, v in enumerate(values))]
>>> [(t, "alarm") for t, a, _, _ in flags if a] + [(t, "rebaselined") for t, *_, b in flags if b]
[(302, 'alarm'), (401, 'rebaselined')]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Self

from vigil.detectors.base import Explanation, InputKind, PointResult, register
from vigil.detectors.budget import cusum_h_for_arl, ewma_L_for_arl, shewhart_k_for_arl
from vigil.detectors.checks import check_outliers, check_positive, check_warmup
from vigil.detectors.cusum import CusumChart
from vigil.detectors.ewma import EwmaChart
from vigil.detectors.seasonal import Season, check_season
from vigil.detectors.shewhart import ShewhartChart

RETURN_Z = 2.0
"""An episode's last points are back at the baseline when their mean z is within this many
standard errors of 0 (the test is repeated every point, so a low bar only delays the end of
an episode by a few points, while it keeps a small sustained shift from looking over)."""
Z_CLIP = 5.0
"""|z| of one point counts at most this much in that test, so one spike cannot hold it open."""
DEFAULT_ARL0 = 20_000.0
"""In-control points per false alarm of the whole ensemble: ≤ 0.5 per 10,000 points."""

# The budget's derived limits (to its 1e-7 bracket) for the default arl0, cusum_k and
# ewma_lambda, so that building the default ensemble skips the ARL inversions (~2 s); a unit
# test checks them.
_DEFAULT_LIMITS: dict[tuple[float, float, float], tuple[float, float, float]] = {
    (3 * DEFAULT_ARL0, 0.5, 0.2): (4.305423384962419, 9.843984227242466, 4.2682114256473795),
}


def member_limits(arl0: float, cusum_k: float, ewma_lambda: float) -> tuple[float, float, float]:
    """(Shewhart k, CUSUM h, EWMA L) each giving an in-control ARL of ``3·arl0``.

    >>> [round(x, 3) for x in member_limits(DEFAULT_ARL0, 0.5, 0.2)]
    [4.305, 9.844, 4.268]
    """
    share = 3.0 * arl0
    known = _DEFAULT_LIMITS.get((share, cusum_k, ewma_lambda))
    if known is not None:
        return known
    return (shewhart_k_for_arl(share), cusum_h_for_arl(share, cusum_k),
            ewma_L_for_arl(share, ewma_lambda, "exact"))


def opening_explanation(members: Sequence[PointResult], offset: float) -> Explanation | None:
    """What opened an episode: the explanation of the alarming member with the highest score
    (values moved back by the seasonal re-baselines' ``offset``)."""
    fired = max((m for m in members if m.anomaly), key=_by_score)
    explanation = fired.explanation
    if explanation is not None and explanation.test in ("shewhart", "ewma") and offset:
        explanation = Explanation(explanation.test, explanation.statistic + offset,
                                  explanation.limit + offset)
    return explanation


def _by_score(result: PointResult) -> float:
    return result.score


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@register("ensemble")
class EnsembleDetector:
    """Shewhart + CUSUM + EWMA on one series: one score, one alarm per anomaly episode."""

    name: str = "ensemble"
    input_kind: InputKind = "scalar"

    def __init__(
        self,
        arl0: float = DEFAULT_ARL0,
        shewhart_k: float | None = None,
        cusum_k: float = 0.5,
        cusum_h: float | None = None,
        ewma_lambda: float = 0.2,
        ewma_L: float | None = None,  # noqa: N803 - the SPC name
        warmup: int = 50,
        clear_after: int = 30,
        clear_score: float = 0.4,
        rebaseline_after: int = 100,
        outliers: str = "clip",
        season: Season | None = None,
    ) -> None:
        self.arl0 = check_positive("arl0", arl0, "in-control points per false alarm")
        if self.arl0 <= 1.0:
            raise ValueError(f"arl0 must be > 1 (points per false alarm), got {arl0!r}")
        self.cusum_k = check_positive("cusum_k", cusum_k, "CUSUM reference value in σ",
                                      zero=True)
        self.ewma_lambda = check_positive("ewma_lambda", ewma_lambda, "EWMA weight in (0, 1]")
        if self.ewma_lambda > 1.0:
            raise ValueError(f"ewma_lambda must be a number in (0, 1], got {ewma_lambda!r}")
        if shewhart_k is None or cusum_h is None or ewma_L is None:
            k, h, L = member_limits(self.arl0, self.cusum_k, self.ewma_lambda)  # noqa: N806
            shewhart_k = k if shewhart_k is None else shewhart_k
            cusum_h = h if cusum_h is None else cusum_h
            ewma_L = L if ewma_L is None else ewma_L  # noqa: N806
        self.shewhart_k = check_positive("shewhart_k", shewhart_k, "Shewhart limit width in σ")
        self.cusum_h = check_positive("cusum_h", cusum_h, "CUSUM decision interval in σ")
        self.ewma_L = check_positive("ewma_L", ewma_L, "EWMA limit width in σ of the EWMA")
        self.warmup = check_warmup(warmup)
        self.clear_after = _check_count("clear_after", clear_after, 1)
        self.clear_score = check_positive("clear_score", clear_score, "score below which a "
                                          "point counts as quiet")
        if self.clear_score > 0.5:
            raise ValueError(f"clear_score must be <= 0.5 (the alarm level), got {clear_score!r}")
        self.rebaseline_after = _check_count("rebaseline_after", rebaseline_after, 2)
        if self.rebaseline_after <= self.clear_after:
            raise ValueError(f"rebaseline_after ({rebaseline_after!r}) must exceed clear_after "
                             f"({clear_after!r}): a shift has to outlast the quiet wait")
        self.outliers = check_outliers(outliers)
        self.season = None if season is None else check_season(season)
        self._shewhart, self._cusum, self._ewma = self._new_members()
        # (value, timestamp, deviation from the Shewhart centre) of the open episode's points
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=self.rebaseline_after)
        self._offset = 0.0  # level moved by seasonal re-baselines, subtracted before the charts
        self._snapshot: dict[str, Any] | None = None  # the charts when the open episode began
        self._reference: tuple[float, float] | None = None  # its (mean, σ), without season
        self._episode = 0  # points in the open episode, 0 when in control
        self._quiet = 0  # consecutive quiet points in the open episode
        self._z: deque[float] = deque(maxlen=self.clear_after)  # the episode's latest clipped z
        self._confirmations = 0  # points of the open episode confirming a lasting change

    def _new_members(self) -> tuple[ShewhartChart, CusumChart, EwmaChart]:
        # no learning lag: an episode's points never reach the members' baselines anyway
        common: dict[str, Any] = {"warmup": self.warmup, "outliers": self.outliers,
                                  "season": self.season, "lag": 0}
        return (ShewhartChart(k=self.shewhart_k, **common),
                CusumChart(k=self.cusum_k, h=self.cusum_h, **common),
                EwmaChart(lambda_=self.ewma_lambda, L=self.ewma_L, **common))

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` with the three charts, then advance the episode and learn."""
        offset = self._offset
        x = value - offset
        shewhart = self._shewhart.update(x, timestamp)
        cusum = self._cusum.update(x, timestamp)
        ewma = self._ewma.update(x, timestamp)
        score = max(shewhart.score, cusum.score, ewma.score)
        opened = resolved = rebaselined = False
        in_control = self._episode == 0
        if not in_control or shewhart.anomaly or cusum.anomaly or ewma.anomaly:
            # Only an episode's points are ever read back (by its end or its re-baseline).
            self._recent.append((value, timestamp, x - shewhart.centre))
            reference = self._reference
            z = shewhart.z if reference is None else (x - reference[0]) / reference[1]
            self._z.append(Z_CLIP if z > Z_CLIP else -Z_CLIP if z < -Z_CLIP else z)
        if in_control:
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
            self._recent.clear()
            self._z.clear()

        details = {"shewhart_score": shewhart.score, "cusum_score": cusum.score,
                   "ewma_score": ewma.score, "episode": float(episode)}
        for member in (cusum, ewma):
            if member.details:
                details.update(member.details)
        explanation = opening_explanation((shewhart, cusum, ewma), offset) if opened else None
        return PointResult(score, opened, shewhart.centre + offset, shewhart.lower + offset,
                           shewhart.upper + offset, shewhart.z, shewhart.n, resolved=resolved,
                           rebaselined=rebaselined, details=details, explanation=explanation)

    @property
    def in_control(self) -> bool:
        """True when no anomaly episode is open (the state a :mod:`detectors.bank` can hold)."""
        return self._episode == 0

    def columns_ready(self) -> bool:
        """Whether every chart's statistics have started (see :meth:`MeanChart.columns_ready`)."""
        return (self._shewhart.columns_ready() and self._cusum.columns_ready()
                and self._ewma.columns_ready())

    def _back_at_baseline(self) -> bool:
        """True when the latest z-values' mean and mean square are those of the baseline."""
        latest = self._z
        m = len(latest)
        if abs(math.fsum(latest)) >= RETURN_Z * math.sqrt(m):
            return False
        return math.fsum(z * z for z in latest) / m < 1.0 + RETURN_Z * math.sqrt(2.0 / m)

    def _member_states(self) -> dict[str, Any]:
        return {"shewhart": self._shewhart.state_dict(), "cusum": self._cusum.state_dict(),
                "ewma": self._ewma.state_dict()}

    def _load_members(self, states: Mapping[str, Any]) -> None:
        self._shewhart = ShewhartChart.from_state(states["shewhart"])
        self._cusum = CusumChart.from_state(states["cusum"])
        self._ewma = EwmaChart.from_state(states["ewma"])

    def _replay(self, points: Sequence[tuple[float, float, float]]) -> None:
        """Let the charts learn ``points`` (value, timestamp, _) at the current level."""
        members = (self._shewhart, self._cusum, self._ewma)
        offset = self._offset
        for value, timestamp, _ in points:
            for member in members:
                member.update(value - offset, timestamp)

    def _forget_episode(self) -> None:
        """Back to the charts as they were when the episode began, plus its quiet last points:
        the anomalous points never enter the baselines."""
        if self._snapshot is not None:
            self._load_members(self._snapshot)
            self._replay(list(self._recent)[-self.clear_after:])

    def _rebaseline(self) -> None:
        """Accept the recent points' level (those of the confirmed shift) as the baseline."""
        if self.season is None:
            self._shewhart, self._cusum, self._ewma = self._new_members()
        else:
            self._offset += math.fsum(d for _, _, d in self._recent) / len(self._recent)
            if self._snapshot is not None:
                self._load_members(self._snapshot)
        self._replay(self._recent)

    def params(self) -> dict[str, Any]:
        """The ensemble's parameters by name (the keys of its state that are not learned)."""
        return {"arl0": self.arl0, "shewhart_k": self.shewhart_k, "cusum_k": self.cusum_k,
                "cusum_h": self.cusum_h, "ewma_lambda": self.ewma_lambda, "ewma_L": self.ewma_L,
                "warmup": self.warmup, "clear_after": self.clear_after,
                "clear_score": self.clear_score, "rebaseline_after": self.rebaseline_after,
                "outliers": self.outliers, "season": self.season}

    def state_dict(self) -> dict[str, Any]:
        """Parameters, the charts' states, the episode and its points; exact round-trip."""
        return {
            **self.params(),
            "members": {"shewhart": self._shewhart.state_dict(),
                        "cusum": self._cusum.state_dict(), "ewma": self._ewma.state_dict()},
            "recent": [[v, t, d] for v, t, d in self._recent],
            "offset": self._offset,
            "episode": self._episode,
            "quiet": self._quiet,
            "z": list(self._z),
            "confirmations": self._confirmations,
            "snapshot": self._snapshot,
            "reference": None if self._reference is None else list(self._reference),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector whose future outputs equal those of the one that saved ``state``."""
        det = cls(**{name: state[name] for name in (
            "arl0", "shewhart_k", "cusum_k", "cusum_h", "ewma_lambda", "ewma_L", "warmup",
            "clear_after", "clear_score", "rebaseline_after", "outliers", "season")})
        members = state["members"]
        det._shewhart = ShewhartChart.from_state(members["shewhart"])
        det._cusum = CusumChart.from_state(members["cusum"])
        det._ewma = EwmaChart.from_state(members["ewma"])
        if int(state["episode"]) > 0:  # in control, older snapshots' points are never read
            det._recent.extend((float(v), float(t), float(d)) for v, t, d in state["recent"])
        det._offset = float(state["offset"])
        episode, quiet, confirmations = (int(state[k]) for k in ("episode", "quiet",
                                                                 "confirmations"))
        if episode < 0 or not 0 <= quiet < max(episode, 1) or confirmations < 0:
            raise ValueError(f"bad ensemble episode state: episode={episode}, quiet={quiet}, "
                             f"confirmations={confirmations}")
        det._episode, det._quiet, det._confirmations = episode, quiet, confirmations
        if episode > 0:
            det._z.extend(float(z) for z in state["z"])
        snapshot = state.get("snapshot")
        if (snapshot is None) != (episode == 0):
            raise ValueError("bad ensemble state: an open episode needs its snapshot, and only it")
        det._snapshot = None if snapshot is None else dict(snapshot)
        reference = state.get("reference")
        det._reference = None if reference is None else (float(reference[0]),
                                                         float(reference[1]))
        return det

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if v is not None)
        return f"EnsembleDetector({args})"
