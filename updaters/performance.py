"""How well a model predicts its labels, watched with control charts.

Per-event losses are noisy and skewed (a squared error is far from normal), so a
:class:`LossChart` averages them over blocks of ``block`` events and feeds each block mean
to a control chart from :mod:`detectors` (CUSUM by default): a block whose mean loss is
out of control *upwards* is a degradation. A fall of the loss is not one.

:class:`PerformanceMonitor` keeps one chart for the served model (its prediction against
the label) and one for the maintained model (its prediction made before it learned the
event — prequential evaluation), plus an exponentially weighted rolling loss of each for
gauges. A degradation of the served model sets ``alarm``; the result carries both rolling
losses, which is what a ``performance`` alert reports.

Losses (``prediction`` against a numeric ``label``; classifiers: the probability of the
positive class against 0.0/1.0, e.g. from a learner's ``encode_label``):

- ``"squared"``: ``(prediction − label)²``; ``"absolute"``: ``|prediction − label|``.
- ``"log"``: ``−log p`` of the true class, ``p`` clipped to [1e-15, 1 − 1e-15].
- ``"zero_one"``: 1.0 when ``prediction >= 0.5`` disagrees with ``label >= 0.5``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vigil.detectors import PointResult, build_detector, restore_detector
from vigil.detectors.base import detector_parameters
from vigil.detectors.checks import check_positive
from vigil.updaters.statecheck import StateReader, restored_exactly

_EPS = 1e-15


def _log_loss(prediction: float, label: float) -> float:
    p = min(max(prediction, _EPS), 1.0 - _EPS)
    return -math.log(p) if label >= 0.5 else -math.log(1.0 - p)


LOSSES: dict[str, Callable[[float, float], float]] = {
    "squared": lambda prediction, label: (prediction - label) ** 2,
    "absolute": lambda prediction, label: abs(prediction - label),
    "log": _log_loss,
    "zero_one": lambda prediction, label: float((prediction >= 0.5) != (label >= 0.5)),
}


def loss_function(name: str) -> Callable[[float, float], float]:
    """The loss named ``name`` as ``f(prediction, label) -> float``.

    >>> loss_function("squared")(3.0, 1.0), loss_function("zero_one")(0.7, 1.0)
    (4.0, 0.0)
    """
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None


@functools.cache
def _has_lag(chart: str) -> bool:
    """The chart takes a ``lag`` (asked once per chart: a signature costs ~100 µs)."""
    return "lag" in detector_parameters(chart)


def check_block(block: object) -> int:
    """``block`` if it is an integer >= 1, else ValueError."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be an integer >= 1 (events per chart point), got {block!r}")
    return block


class LossChart:
    """Mean loss over blocks of events, fed to a control chart that flags a rise.

    >>> chart = LossChart(block=2, chart="shewhart", params={"warmup": 5})
    >>> results = [chart.observe(1.0 + 0.1 * (i % 3), float(i)) for i in range(20)]
    >>> [r is None for r in results[:4]]  # a chart point every second event
    [True, False, True, False]
    >>> LossChart.rose(chart.observe(9.0, 20.0) or chart.observe(9.0, 21.0))
    True
    """

    def __init__(
        self, chart: str = "cusum", params: Mapping[str, Any] | None = None, block: int = 50
    ) -> None:
        self.chart = chart
        self.params = dict(params or {})
        self.block = check_block(block)
        defaults = {"lag": 0} if _has_lag(chart) else {}
        # a block-mean loss learns at once: the guard restarts the chart on a change itself
        self._detector = build_detector(chart, defaults | self.params)
        self._sum = 0.0
        self._count = 0
        self.last: PointResult | None = None
        """The chart's result for the last completed block."""
        self.last_value: float | None = None
        """The mean loss of the last completed block."""

    def observe(self, loss: float, timestamp: float) -> PointResult | None:
        """Add one event's loss; the chart's result when this event completes a block."""
        if not math.isfinite(loss) or loss < 0.0:
            raise ValueError(f"a loss must be a finite number >= 0, got {loss!r}")
        self._sum += loss
        self._count += 1
        if self._count < self.block:
            return None
        value = self._sum / self._count
        self._sum = 0.0
        self._count = 0
        result = self._detector.update(value, timestamp)
        self.last = result
        self.last_value = value
        return result

    @staticmethod
    def rose(result: PointResult | None) -> bool:
        """True when ``result`` is an alarm on the high side (the loss went up)."""
        return result is not None and result.anomaly and result.z > 0.0

    def state_dict(self) -> dict[str, Any]:
        """Settings, the block so far and the chart's state; JSON-serialisable."""
        return {
            "chart": self.chart,
            "params": self.params,
            "block": self.block,
            "sum": self._sum,
            "count": self._count,
            "last_value": self.last_value,
            "detector": self._detector.state_dict(),
        }

    @classmethod
    def from_state(cls, state: object) -> LossChart:
        """Rebuild a chart that continues exactly as the one that saved ``state``; anything
        else raises ``ValueError``."""
        r = StateReader(state, "loss chart")
        r.keys("chart", "params", "block", "sum", "count", "last_value", "detector")
        name = r.text("chart")
        params = r.mapping("params").state
        try:
            chart = cls(name, params, r.integer("block", minimum=1))
        except Exception as exc:  # noqa: BLE001 - a detector may refuse params in any way
            raise r.fail(f"its chart cannot be built: {exc}") from exc
        chart._sum = r.number("sum", minimum=0.0)
        chart._count = r.integer("count", maximum=chart.block - 1)
        chart.last_value = r.optional_number("last_value", minimum=0.0)
        chart._detector = restored_exactly(lambda saved: restore_detector(name, saved),
                                           r.value("detector"), f"loss chart {name}",
                                           lambda detector: detector.state_dict())
        return chart


@dataclass(slots=True)
class PerformanceResult:
    """The losses of both models after one labelled event, and whether they went out of control."""

    served_loss: float | None
    """Rolling (exponentially weighted) loss of the served model; None before its first event."""
    maintained_loss: float | None
    """Rolling prequential loss of the maintained model; None before its first event."""
    alarm: bool
    """The served model's loss rose out of control at this event: raise a performance alert."""
    maintained_alarm: bool = False
    """The maintained model's loss rose out of control at this event."""
    served_event_loss: float | None = None
    maintained_event_loss: float | None = None
    served_chart: PointResult | None = None
    """The served chart's result when this event completed a block."""
    maintained_chart: PointResult | None = None


class PerformanceMonitor:
    """Rolling losses and control charts of a served and a maintained model.

    ``span`` sets the rolling loss's weight ``2 / (span + 1)``; ``block``, ``chart`` and
    ``chart_params`` configure both :class:`LossChart` instances. Either prediction may be
    None (no such model, or it could not predict this event).

    >>> monitor = PerformanceMonitor("absolute", block=5, chart="shewhart",
    ...                              chart_params={"warmup": 10}, span=9)
    >>> for i in range(100):
    ...     r = monitor.observe(1.0 + 0.2 * (i % 2), 1.1 + 0.1 * (i % 3), 1.0, float(i))
    >>> r.alarm, round(r.served_loss, 2), round(r.maintained_loss, 2)
    (False, 0.11, 0.19)
    >>> alarms = [monitor.observe(3.0, 1.0, 1.0, 100.0 + i).alarm for i in range(10)]
    >>> any(alarms)
    True
    """

    def __init__(
        self,
        loss: str = "squared",
        *,
        block: int = 50,
        chart: str = "cusum",
        chart_params: Mapping[str, Any] | None = None,
        span: float = 200.0,
    ) -> None:
        self.loss = loss
        self._loss = loss_function(loss)
        self.span = check_positive("span", span, "events the rolling loss weighs")
        self.weight = 2.0 / (self.span + 1.0)
        """Weight of the newest loss in the rolling losses."""
        self.served = LossChart(chart, chart_params, block)
        self.maintained = LossChart(chart, chart_params, block)
        self.served_loss: float | None = None
        self.maintained_loss: float | None = None
        self.n = 0

    def observe(
        self,
        served_prediction: float | None,
        maintained_prediction: float | None,
        label: float,
        timestamp: float,
    ) -> PerformanceResult:
        """Score both predictions against ``label``, update the rolling losses and charts."""
        self.n += 1
        result = PerformanceResult(self.served_loss, self.maintained_loss, alarm=False)
        if served_prediction is not None:
            loss = self._loss(served_prediction, label)
            self.served_loss = self._roll(self.served_loss, loss)
            point = self.served.observe(loss, timestamp)
            result.served_event_loss = loss
            result.served_chart = point
            result.alarm = LossChart.rose(point)
        if maintained_prediction is not None:
            loss = self._loss(maintained_prediction, label)
            self.maintained_loss = self._roll(self.maintained_loss, loss)
            point = self.maintained.observe(loss, timestamp)
            result.maintained_event_loss = loss
            result.maintained_chart = point
            result.maintained_alarm = LossChart.rose(point)
        result.served_loss = self.served_loss
        result.maintained_loss = self.maintained_loss
        return result

    def _roll(self, rolling: float | None, loss: float) -> float:
        return loss if rolling is None else rolling + self.weight * (loss - rolling)

    def state_dict(self) -> dict[str, Any]:
        """Settings, rolling losses and both charts; JSON-serialisable."""
        return {
            "loss": self.loss,
            "span": self.span,
            "served_loss": self.served_loss,
            "maintained_loss": self.maintained_loss,
            "n": self.n,
            "served": self.served.state_dict(),
            "maintained": self.maintained.state_dict(),
        }

    @classmethod
    def from_state(cls, state: object) -> PerformanceMonitor:
        """Rebuild a monitor that continues exactly as the one that saved ``state``; anything
        else raises ``ValueError``."""
        r = StateReader(state, "performance monitor")
        r.keys("loss", "span", "served_loss", "maintained_loss", "n", "served", "maintained")
        served = LossChart.from_state(r.value("served"))
        monitor = cls(r.text("loss", tuple(LOSSES)), block=served.block, chart=served.chart,
                      chart_params=served.params, span=r.number("span", above=0.0))
        monitor.served = served
        monitor.maintained = LossChart.from_state(r.value("maintained"))
        monitor.served_loss = r.optional_number("served_loss", minimum=0.0)
        monitor.maintained_loss = r.optional_number("maintained_loss", minimum=0.0)
        monitor.n = r.integer("n")
        return monitor
