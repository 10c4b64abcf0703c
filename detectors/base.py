"""The detector protocol, the per-point result type, and the registry of detectors by name.

Every detector scores a point against what it learned *before* that point, then learns
from it. Scores share one scale: ``r / (1 + r)`` where ``r`` is the detector's statistic
divided by its alarm threshold, so 0.5 is exactly at the control limit, and the score keeps
growing (never clipped) as the evidence grows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self, runtime_checkable

from vigil.detectors.registry import Registry


@dataclass(frozen=True, slots=True)
class Explanation:
    """What raised an alarm: the test that fired, its statistic and the limit it crossed.

    >>> Explanation("cusum up", 12.34, 9.84).describe()
    'cusum up 12.34 > 9.84'
    >>> Explanation("extreme low", 3.2, 5.1).describe()
    'extreme low 3.2 < 5.1'
    """

    test: str
    """The test, e.g. ``"shewhart"``, ``"cusum up"``, ``"extreme high"``, ``"shift down"``."""
    statistic: float
    """Its statistic at the alarm (for limits on the values, the value itself)."""
    limit: float
    """The limit the statistic crossed (upwards, or downwards when it is below it)."""

    def describe(self) -> str:
        """``test statistic > limit`` (or ``<``), numbers to four significant digits."""
        sign = ">" if self.statistic >= self.limit else "<"
        return f"{self.test} {self.statistic:.4g} {sign} {self.limit:.4g}"


@dataclass(slots=True)
class PointResult:
    """How one point looks against a detector's limits, computed before it learned the point.

    Not frozen on purpose: one is built per point per series, and a frozen dataclass's
    ``__init__`` costs four times as much.
    """

    score: float
    """Anomaly score in [0, 1]: 0.5 at the limit, growing without bound towards 1."""
    anomaly: bool
    """True when this point itself raised an alarm: an alert is published for it."""
    centre: float
    lower: float
    upper: float
    z: float
    """Signed distance of the point from the centre in standard deviations (0 while unknown)."""
    n: int
    """Number of points the limits rest on."""
    resolved: bool = False
    """True when this point ended an anomaly episode (detectors with episodes only)."""
    rebaselined: bool = False
    """True when the detector restarted its baseline at a confirmed new level at this point."""
    provisional: bool = False
    """True while the limits rest on borrowed (pooled) statistics rather than the series' own."""
    details: dict[str, float] | None = None
    """Detector-specific figures (e.g. the CUSUM sums), for alerts and plots."""
    explanation: Explanation | None = None
    """On an alarm: the test that fired, its statistic and its limit."""


def score_from_ratio(ratio: float) -> float:
    """Map ``statistic / threshold`` (>= 0) to [0, 1) with 0.5 at the threshold.

    >>> score_from_ratio(0.0), score_from_ratio(1.0), round(score_from_ratio(3.0), 2)
    (0.0, 0.5, 0.75)
    """
    if math.isnan(ratio):
        return 0.0
    ratio = abs(ratio)
    if math.isinf(ratio):
        return 1.0
    return ratio / (1.0 + ratio)


InputKind = Literal["scalar", "vector"]
"""What a detector's ``update`` takes: one number, or a mapping of named numbers."""

Features = Mapping[str, float]
"""The point of a ``"vector"`` detector: named values observed together."""


@runtime_checkable
class Detector(Protocol):
    """An online detector of one numeric series, or of feature vectors when its ``input_kind``
    is ``"vector"`` (then it is a :class:`VectorDetector`)."""

    name: str
    input_kind: InputKind

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against the limits learned so far, then learn from it."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this detector is (JSON-serialisable)."""
        ...

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector whose future outputs equal those of the one that saved ``state``."""
        ...


@runtime_checkable
class VectorDetector(Protocol):
    """A detector whose ``input_kind`` is ``"vector"``: each point is a mapping of values."""

    name: str
    input_kind: InputKind

    def update(self, values: Features, timestamp: float) -> PointResult:
        """Score ``values`` against what was learned so far, then learn from them."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this detector is (JSON-serialisable)."""
        ...

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector whose future outputs equal those of the one that saved ``state``."""
        ...


DETECTORS: Registry[Detector] = Registry("detector", defaults={"input_kind": "scalar"})
"""Every detector by name, scalar or vector (a class that declares no ``input_kind`` is
scalar); importing :mod:`detectors` fills it."""

register = DETECTORS.register
"""Class decorator: make a detector buildable by ``name`` from config and the CLI."""
detector_names = DETECTORS.names
build_detector = DETECTORS.build
detector_parameters = DETECTORS.parameters
restore_detector = DETECTORS.restore
