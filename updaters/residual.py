"""Residual detection: chart what a metric does beyond what the other metrics explain.

A :class:`ResidualDetector` keeps, for one source, an online linear regression of a target
metric on input metrics (latency on request rate and CPU, say) and feeds the residual
``target − expected`` to a control chart. A latency rise that the load explains leaves the
residual in control; one the load does not explain is an anomaly.

Per point: the regression predicts the target from the inputs (before learning the point),
the residual is charted once the regression has learned ``warmup`` points (before that the
point scores 0), and then the regression learns the point — unless the point was flagged
(don't learn from what you flag). The result's ``centre``/``lower``/``upper`` are in the
target's units (expected value plus the residual chart's limits) and ``details`` holds the
``expected`` value and the ``residual``.

The regression is a :class:`~updaters.sgd.LinearRegressor` (standardised inputs, squared
loss, constant learning rate 0.02 by default; ``learner`` params override) whose intercept
starts at the first target value. A missing input takes its running mean; a missing or
non-finite target, or a non-finite input, is a ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from vigil.detectors import PointResult, build_detector, restore_detector
from vigil.updaters.base import check_feature_names
from vigil.updaters.sgd import LinearRegressor

DEFAULT_LEARNER: dict[str, Any] = {"learning_rate": "constant", "eta0": 0.02, "alpha": 0.0}


class ResidualDetector:
    """Control chart of the residuals of an online regression of ``target`` on ``inputs``.

    >>> detector = ResidualDetector("latency_ms", ["rps"], warmup=200,
    ...                             chart_params={"warmup": 30})
    >>> for i in range(1500):
    ...     rps = 100.0 + 50.0 * ((i * 7) % 11) / 10
    ...     r = detector.update({"rps": rps, "latency_ms": 20.0 + 0.1 * rps + (i % 3)}, i)
    >>> r.anomaly  # latency follows the load: in control
    False
    >>> detector.update({"rps": 120.0, "latency_ms": 60.0}, 1500.0).anomaly
    True
    """

    name = "residual"
    input_kind = "vector"

    def __init__(
        self,
        target: str,
        inputs: Sequence[str],
        learner: Mapping[str, Any] | None = None,
        chart: str = "shewhart",
        chart_params: Mapping[str, Any] | None = None,
        warmup: int = 200,
        learn_anomalies: bool = False,
    ) -> None:
        if not isinstance(target, str) or not target:
            raise ValueError(f"target must be a metric name, got {target!r}")
        self.target = target
        self.inputs = check_feature_names(inputs)
        if target in self.inputs:
            raise ValueError(f"the target {target!r} cannot also be an input")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(
                f"warmup must be an integer >= 0 (points learned before charting), got {warmup!r}"
            )
        self.learner_params = {**DEFAULT_LEARNER, **dict(learner or {})}
        LinearRegressor(self.inputs, **self.learner_params)  # check the parameters now
        self.chart = chart
        self.chart_params = dict(chart_params or {})
        self.warmup = warmup
        self.learn_anomalies = bool(learn_anomalies)
        self._model: LinearRegressor | None = None
        self._chart = build_detector(chart, self.chart_params)
        self.n = 0

    @property
    def model(self) -> LinearRegressor | None:
        """The regression (None before the first point)."""
        return self._model

    def update(self, metrics: Mapping[str, float], timestamp: float) -> PointResult:
        """Score the target's residual against the chart, then learn the point."""
        y = metrics.get(self.target)
        if y is None or isinstance(y, bool) or not isinstance(y, int | float):
            raise ValueError(f"metrics must hold the target {self.target!r} as a number")
        if not math.isfinite(y):
            raise ValueError(f"the target {self.target!r} must be finite, got {y!r}")
        x = {name: metrics[name] for name in self.inputs if name in metrics}
        model = self._model
        if model is None:
            params = {**self.learner_params, "intercept": float(y)}
            model = self._model = LinearRegressor(self.inputs, **params)
        expected = model.predict_one(x)
        if not math.isfinite(expected):
            raise ValueError(f"inputs must be finite numbers, got {x!r}")
        residual = y - expected
        self.n += 1
        if self.n <= self.warmup:
            model.learn_one(x, y)
            return PointResult(
                0.0,
                False,
                expected,
                -math.inf,
                math.inf,
                0.0,
                0,
                details={"expected": expected, "residual": residual},
            )
        chart = self._chart.update(residual, timestamp)
        if self.learn_anomalies or not chart.anomaly:
            model.learn_one(x, y)
        details = {"expected": expected, "residual": residual, **(chart.details or {})}
        return PointResult(
            chart.score,
            chart.anomaly,
            expected + chart.centre,
            expected + chart.lower,
            expected + chart.upper,
            chart.z,
            chart.n,
            resolved=chart.resolved,
            rebaselined=chart.rebaselined,
            provisional=chart.provisional,
            details=details,
        )

    def state_dict(self) -> dict[str, Any]:
        """Settings, the regression and the chart; JSON-serialisable."""
        return {
            "target": self.target,
            "inputs": list(self.inputs),
            "learner": self.learner_params,
            "chart": self.chart,
            "chart_params": self.chart_params,
            "warmup": self.warmup,
            "learn_anomalies": self.learn_anomalies,
            "n": self.n,
            "model": None if self._model is None else self._model.state_dict(),
            "detector": self._chart.state_dict(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ResidualDetector:
        """Rebuild a detector whose future outputs equal those of the one that saved ``state``."""
        detector = cls(
            state["target"],
            state["inputs"],
            learner=state["learner"],
            chart=state["chart"],
            chart_params=state["chart_params"],
            warmup=state["warmup"],
            learn_anomalies=state["learn_anomalies"],
        )
        detector.n = int(state["n"])
        if state["model"] is not None:
            detector._model = LinearRegressor.from_state(state["model"])
        detector._chart = restore_detector(state["chart"], state["detector"])
        return detector

    def __repr__(self) -> str:
        return (
            f"ResidualDetector(target={self.target!r}, inputs={list(self.inputs)!r}, "
            f"chart={self.chart!r}, n={self.n})"
        )
