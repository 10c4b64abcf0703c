"""The skeleton every control chart shares: parameters, state and ``repr`` derived from the
``__init__`` signature (as river's ``Base`` derives them), one chart per season bucket,
finiteness, the warm-up on a :class:`~detectors.stats.ChartBaseline`, σ = 0, and the outlier
policy.

A chart lists its parameters once, in ``__init__``, and keeps each as the attribute of the same
name; ``state_dict`` holds them in that order, then the chart's statistics. Each mean-and-σ
chart (:class:`MeanChart`) also carries its vectorised step, which :mod:`detectors.bank` runs
on many series' columns at once with exactly the scalar step's float operations.

>>> from vigil.detectors.cusum import CusumChart
>>> chart = CusumChart(h=4.0, arl0=None, warmup=10)
>>> chart.params()
{'k': 0.5, 'h': 4.0, 'warmup': 10, 'outliers': 'clip', 'arl0': None, 'season': None, 'lag': 64}
>>> chart
CusumChart(k=0.5, h=4.0, warmup=10, outliers='clip', lag=64)
>>> old = {key: value for key, value in chart.state_dict().items() if key != "lag"}
>>> CusumChart.from_state(old).lag  # a snapshot from before the lag restores without it
0
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from vigil.detectors.base import Explanation, InputKind, PointResult
from vigil.detectors.checks import check_arl0
from vigil.detectors.seasonal import Season, Seasonal, check_season
from vigil.detectors.stats import ChartBaseline

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Columns = dict[str, npt.NDArray[Any]]

SCREEN_K = 3.0
"""Individual points beyond mean ± SCREEN_K·σ are clipped or excluded from the baseline (by
the charts whose limits are not on the individual points)."""


def limit_crossed(test: str, value: float, centre: float, lower: float,
                  upper: float) -> Explanation:
    """The explanation of an alarm on limits for the values: ``value`` against the limit on
    its side of ``centre``."""
    return Explanation(test, value, upper if value >= centre else lower)


def deviation(value: float, centre: float, sd: float, beyond: float = math.inf) -> float:
    """``(value - centre) / sd``; with ``sd`` 0, 0 at the centre and ±``beyond`` off it (a
    constant series that changes is an anomaly). Hot paths divide themselves when ``sd > 0``
    and call this for the rest."""
    if sd > 0.0:
        return (value - centre) / sd
    if value == centre:
        return 0.0
    return beyond if value > centre else -beyond


def deviations(x: Floats, centre: Floats, sd: Floats, beyond: float = math.inf) -> Floats:
    """:func:`deviation` of columns."""
    return np.where(sd > 0.0, (x - centre) / sd,
                    np.where(x == centre, 0.0, np.where(x > centre, beyond, -beyond)))


def screened(policy: str, value: float, low: float, high: float, warm: bool,
             beyond: bool) -> float | None:
    """What the outlier ``policy`` learns of ``value`` against [low, high] (None: nothing):
    everything in warm-up; once warm clipped, excluded when ``beyond``, or as it is."""
    if not warm or policy == "learn":
        return value
    if policy == "clip":
        return low if value < low else high if value > high else value
    return None if beyond else value


def screened_columns(policy: str, x: Floats, low: Floats, high: Floats, warm: Bools,
                     beyond: Bools) -> tuple[Floats, Bools | None]:
    """:func:`screened` of columns: the values to learn and which to learn (None: all)."""
    if policy == "learn":
        return x, None
    if policy == "clip":
        return np.where(warm, np.where(x < low, low, np.where(x > high, high, x)), x), None
    return x, ~(warm & beyond)


@dataclass(slots=True)
class ColumnStep:
    """One vectorised step of a chart: the state before the points, how each point looked,
    the chart's figures per point, and what the baseline learns."""

    pre: Columns
    lower: Floats
    upper: Floats
    z: Floats
    ratio: Floats
    anomaly: Bools
    figures: dict[str, Floats]
    learn: Floats
    keep: Bools | None


class Chart:
    """A control chart of one series: the parts every chart shares; see the module docstring.

    A subclass sets ``season``, ``arl0`` and its other parameters in ``__init__``, then calls
    :meth:`_start_season`, and writes :meth:`_score`, :meth:`_statistics` and :meth:`_load`.
    """

    name: str
    input_kind: InputKind = "scalar"
    season: Season | None
    arl0: float | None
    _seasonal: Seasonal[Any] | None
    _signature: ClassVar[Mapping[str, inspect.Parameter]] = {}
    RESTORED_DEFAULTS: ClassVar[Mapping[str, Any]] = {}
    """Values of parameters that snapshots written before the parameter existed lack."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        parameters = dict(inspect.signature(cls.__init__).parameters)
        parameters.pop("self")
        cls._signature = parameters

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """The chart's parameters, in ``__init__`` order."""
        return tuple(cls._signature)

    def params(self) -> dict[str, Any]:
        """The chart's parameters by name, in ``__init__`` order (values as kept)."""
        return {name: getattr(self, name) for name in self._signature}

    def _start_season(self, season: object) -> None:
        """Keep ``season`` and, with one, delegate to one chart per bucket built with these
        parameters (``arl0`` already turned into the width it sets)."""
        self.season = None if season is None else check_season(season)
        self._seasonal = None
        if self.season is not None:
            params = {name: value for name, value in self.params().items()
                      if name not in ("arl0", "season")}
            cls = type(self)
            self._seasonal = Seasonal(self.season, partial(cls, **params), cls.from_state)

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against what the chart learned before it, then learn from it."""
        if self._seasonal is not None:
            return self._seasonal.update(value, timestamp)
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite number, got {value!r}")
        return self._score(value)

    def _score(self, value: float) -> PointResult:
        """Score and learn a finite ``value`` (no season)."""
        raise NotImplementedError

    def _statistics(self) -> dict[str, Any]:
        """What the chart learned, JSON-serialisable (the state beyond the parameters)."""
        raise NotImplementedError

    def _load(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`_statistics` saved."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Parameters and statistics, JSON-serialisable; ``from_state`` continues exactly."""
        state = {name: list(value) if isinstance(value, tuple) else value
                 for name, value in self.params().items()}
        if self._seasonal is not None:
            state["buckets"] = self._seasonal.state_dict()["buckets"]
        else:
            state.update(self._statistics())
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a chart whose future outputs equal those of the one that saved ``state``."""
        kwargs = {}
        for name, parameter in cls._signature.items():
            if name == "arl0":
                continue
            if name in state or (parameter.default is not None
                                 and name not in cls.RESTORED_DEFAULTS):
                kwargs[name] = state[name]
            else:
                kwargs[name] = cls.RESTORED_DEFAULTS.get(name)
        chart = cls(**kwargs)
        chart.arl0 = check_arl0(state.get("arl0"))  # the width it set is saved: not recomputed
        if chart._seasonal is not None:
            chart._seasonal.load_state({"season": state.get("season"),
                                        "buckets": state["buckets"]})
        else:
            chart._load(state)
        return chart

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.params().items()
                          if value is not None)
        return f"{type(self).__name__}({shown})"


class MeanChart(Chart):
    """A chart whose limits rest on the mean and σ of a :class:`ChartBaseline`.

    Subclasses write :meth:`_judge` (the scalar step once σ is known) and :meth:`step_columns`
    (the same for many series at once); ``COLUMNS`` names their own state columns.
    """

    warmup: int
    lag: int
    outliers: str
    _baseline: ChartBaseline
    RESTORED_DEFAULTS: ClassVar[Mapping[str, Any]] = {"lag": 0}
    COLUMNS: ClassVar[Mapping[str, type]] = {}
    """The chart's own state columns beyond the baseline's, with their dtype."""

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against the baseline's limits, then learn from it."""
        stats = self._baseline.stats
        n = stats.count
        if n < 2 or self._seasonal is not None or not math.isfinite(value):
            return super().update(value, timestamp)  # the skeleton's rarer paths
        return self._judge(value, n, stats.mean, math.sqrt(stats.m2 / (n - 1)))

    def _score(self, value: float) -> PointResult:
        baseline = self._baseline
        stats = baseline.stats
        n = stats.count
        mean = stats.mean
        if n < 2:  # no spread yet: the first points are held, the limits are ±inf
            centre = baseline.start[0] if baseline.start else value
            baseline.offer(value)
            return PointResult(0.0, False, centre, -math.inf, math.inf, 0.0, 0)
        return self._judge(value, n, mean, math.sqrt(stats.m2 / (n - 1)))

    def _judge(self, value: float, n: int, mean: float, sigma: float) -> PointResult:
        """Score ``value`` against the baseline's ``mean`` and ``sigma`` (``n`` points), then
        offer the baseline what the outlier policy learns."""
        raise NotImplementedError

    def _offer_screened(self, value: float, mean: float, sigma: float) -> None:
        """Offer the baseline ``value`` of a warm chart as the policy screens it at mean ±
        SCREEN_K σ (the callers learn every point as it is in warm-up or with ``"learn"``)."""
        screen = SCREEN_K * sigma
        policy = self.outliers
        if policy == "clip":  # screened(), inlined: this runs once per point
            low, high = mean - screen, mean + screen
            self._baseline.offer(low if value < low else high if value > high else value)
        elif policy == "learn":
            self._baseline.offer(value)
        else:
            self._baseline.offer(None if abs(value - mean) > screen else value)

    def _statistics(self) -> dict[str, Any]:
        return self._baseline.state_dict()

    def _load(self, state: Mapping[str, Any]) -> None:
        self._baseline.load_state(state)

    def columns_ready(self) -> bool:
        """Whether the statistics have started from the first points it held (before that a
        :class:`~detectors.bank.SeriesBank` cannot hold it); cheaper than ``state_dict``."""
        baseline = self._baseline
        return baseline.stats.count >= 2 and not baseline.start

    def check_columns(self) -> None:
        """ValueError when the vectorised step cannot follow this chart (it stays an object)."""
        if self.season is not None:
            raise ValueError("seasonal charts stay on the object path")

    def load_columns(self, columns: Columns, slot: int, state: Mapping[str, Any]) -> None:
        """Put the chart's own state from ``state`` into ``columns`` at ``slot``."""

    def export_columns(self, values: Mapping[str, npt.NDArray[Any]], at: int,
                       state: dict[str, Any]) -> None:
        """Write the chart's own state at ``at`` of ``values`` into ``state``."""

    def step_columns(self, columns: Columns, pre: Columns, slots: npt.NDArray[np.intp],
                     x: Floats, sigma: Floats) -> ColumnStep:
        """Score one point per slot of ``slots`` (distinct) as :meth:`_judge` does, updating
        the chart's own columns; the baseline's are the caller's to update."""
        raise NotImplementedError

    def column_result(self, step: ColumnStep, at: int, value: float) -> PointResult:
        """The PointResult of the point ``at`` of a step (``value`` as given)."""
        raise NotImplementedError

    def _screened_columns(self, x: Floats, mean: Floats, sigma: Floats,
                          warm: Bools) -> tuple[Floats, Bools | None]:
        """:meth:`_offer_screened` of columns."""
        screen = SCREEN_K * sigma
        return screened_columns(self.outliers, x, mean - screen, mean + screen, warm,
                                ~(np.abs(x - mean) <= screen))
