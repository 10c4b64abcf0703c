"""The control chart of one series, drawn as for a control-chart review: values, centre line,
upper and lower control limits, alarms marked, episode ends and re-baselines flagged; and
below it what fires: each test's statistic against its own limit (as a score, 0.5 at the
limit), every alarm labelled with the test that raised it, its statistic and its limit.

Rendering returns PNG bytes (no file is written here). matplotlib is an optional extra:
``pip install 'vigil-kafka[plot]'``; without it :func:`render_control_chart` raises
:class:`PlotUnavailable` saying so.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vigil.detectors.base import PointResult

EPOCH_AFTER = 1e8
"""Timestamps beyond this many seconds (1973) are drawn as UTC dates, else as plain numbers."""


DENSE_POINTS = 600
"""Beyond this many points the values are drawn as a plain line, without a dot per point."""


class PlotUnavailable(ImportError):
    """matplotlib is not installed."""


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One point of the series and what its detector said about it."""

    timestamp: float
    value: float
    result: PointResult


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.nan


def require_matplotlib() -> None:
    """Raise :class:`PlotUnavailable` now, rather than after a long replay, if matplotlib is
    missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailable(_MISSING) from exc


_MISSING = ("drawing the control chart needs matplotlib: install the 'plot' extra "
            "(pip install 'vigil-kafka[plot]')")


def render_control_chart(
    points: Sequence[ChartPoint],
    *,
    title: str = "",
    width: float = 11.0,
    height: float = 4.8,
    dpi: int = 110,
) -> bytes:
    """PNG image of the control chart of ``points`` (in time order)."""
    if not points:
        raise ValueError("no points to draw")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailable(_MISSING) from exc

    as_dates = all(p.timestamp > EPOCH_AFTER for p in points)
    x: list[Any] = [datetime.fromtimestamp(p.timestamp, tz=UTC) if as_dates else p.timestamp
                    for p in points]
    values = [p.value for p in points]
    centre = [_finite(p.result.centre) for p in points]
    upper = [_finite(p.result.upper) for p in points]
    lower = [_finite(p.result.lower) for p in points]

    figure = Figure(figsize=(width, height * 1.45), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes, tests = figure.subplots(2, 1, sharex=True, height_ratios=(3.0, 1.5))
    dense = len(points) > DENSE_POINTS
    axes.plot(x, values, color="#1f4e79", linewidth=0.6 if dense else 0.9,
              marker="" if dense else "o", markersize=2.2, label="value", zorder=3)
    axes.step(x, centre, where="post", color="#2e7d32", linewidth=1.2, label="centre line (CL)",
              zorder=3.5)
    axes.step(x, upper, where="post", color="#c62828", linewidth=1.1, linestyle="--",
              label="UCL / LCL")
    axes.step(x, lower, where="post", color="#c62828", linewidth=1.1, linestyle="--")

    provisional = [i for i, p in enumerate(points) if p.result.provisional]
    if provisional:
        axes.axvspan(x[provisional[0]], x[provisional[-1]], color="#ffb300", alpha=0.12,
                     label="provisional (pooled limits)")
    for n, (first, last) in enumerate(_episodes(points)):
        axes.axvspan(x[first], x[last], color="#d50000", alpha=0.07,
                     label="anomaly episode" if n == 0 else None)
    _mark(axes, x, points, lambda r: r.anomaly, "o", "#d50000", "anomaly", size=60)
    _mark(axes, x, points, lambda r: r.resolved, "v", "#00897b", "resolved", size=55)
    rebaselined = [i for i, p in enumerate(points) if p.result.rebaselined]
    for n, i in enumerate(rebaselined):
        axes.axvline(x[i], color="#6a1b9a", linestyle=":", linewidth=1.4,
                     label="rebaselined" if n == 0 else None)

    axes.set_ylim(*_value_range(values, lower, upper))
    anomalies = sum(p.result.anomaly for p in points)
    axes.set_title(title or "control chart", loc="left", fontsize=11)
    axes.set_xlabel("time (UTC)" if as_dates else "timestamp")
    axes.set_ylabel("value")
    axes.grid(True, color="#e0e0e0", linewidth=0.6)
    axes.text(1.0, 1.01, f"{len(points)} points, {anomalies} alarms", transform=axes.transAxes,
              ha="right", va="bottom", fontsize=9, color="#555555")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes.set_xlabel("")
    _draw_tests(tests, x, points, dense)
    tests.set_xlabel("time (UTC)" if as_dates else "timestamp")
    if as_dates:
        figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


TEST_SCORES = {"shewhart_score": "shewhart", "cusum_score": "cusum", "ewma_score": "ewma",
               "extreme_score": "extreme", "shift_score": "shift"}
"""``details`` keys that hold one test's score (its statistic over its limit, 0.5 at the
limit), and the test's name in the panel."""
LABELLED_ALARMS = 12
"""Up to this many alarms are labelled with what fired; more are only marked."""


def _draw_tests(axes: Any, x: Sequence[Any], points: Sequence[ChartPoint], dense: bool) -> None:
    """The panel of what fires: each test's score (its statistic over its own limit; 0.5 at
    the limit), or the detector's score when it has one test, and every alarm's test."""
    present = [key for key in TEST_SCORES
               if any(p.result.details and key in p.result.details for p in points)]
    width = 0.6 if dense else 0.9
    if present:
        for key in present:
            axes.plot(x, [_finite((p.result.details or {}).get(key, math.nan)) for p in points],
                      linewidth=width, label=TEST_SCORES[key])
    else:
        axes.plot(x, [p.result.score for p in points], linewidth=width, color="#1f4e79",
                  label="score")
    axes.axhline(0.5, color="#c62828", linestyle="--", linewidth=1.1, label="limit")
    alarms = [i for i, p in enumerate(points) if p.result.anomaly]
    axes.scatter([x[i] for i in alarms], [points[i].result.score for i in alarms], s=40,
                 marker="o", facecolors="none", edgecolors="#d50000", linewidths=1.4,
                 zorder=4, label="alarm")
    if len(alarms) <= LABELLED_ALARMS:
        for i in alarms:
            explanation = points[i].result.explanation
            if explanation is not None:
                axes.annotate(explanation.describe(), (x[i], points[i].result.score),
                              xytext=(3, 4), textcoords="offset points", fontsize=7,
                              rotation=20, color="#b71c1c")
    axes.set_ylim(0.0, 1.02)
    axes.set_ylabel("test score")
    axes.grid(True, color="#e0e0e0", linewidth=0.6)
    axes.text(0.0, 1.01, "what fires: each test's statistic over its limit (0.5 = the limit)",
              transform=axes.transAxes, ha="left", va="bottom", fontsize=8, color="#555555")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _episodes(points: Sequence[ChartPoint]) -> list[tuple[int, int]]:
    """(first, last) index of each run of points inside an anomaly episode (``details``'
    ``episode`` > 0, as the ensemble reports it)."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, p in enumerate(points):
        inside = bool(p.result.details and p.result.details.get("episode", 0.0) > 0.0)
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            spans.append((start, i - 1))
            start = None
    if start is not None:
        spans.append((start, len(points) - 1))
    return spans


def _value_range(values: Sequence[float], lower: Sequence[float],
                 upper: Sequence[float]) -> tuple[float, float]:
    """Y range showing every value and the limits as they usually are, not the first points'
    very wide limits while the spread is barely known."""
    low, high = min(values), max(values)
    for limits, pick in ((lower, min), (upper, max)):
        known = sorted(v for v in limits if not math.isnan(v))
        if known:
            typical = known[len(known) // 20 if pick is min else len(known) - 1 - len(known) // 20]
            low, high = min(low, typical), max(high, typical)
    pad = 0.06 * (high - low) if high > low else 1.0
    return low - pad, high + pad


def _mark(axes: Any, x: Sequence[Any], points: Sequence[ChartPoint],
          which: Callable[[PointResult], bool], marker: str, colour: str, label: str, *,
          size: float) -> None:
    chosen = [i for i, p in enumerate(points) if which(p.result)]
    if chosen:
        axes.scatter([x[i] for i in chosen], [points[i].value for i in chosen], s=size,
                     marker=marker, facecolors="none" if marker == "o" else colour,
                     edgecolors=colour, linewidths=1.6, label=label, zorder=4)
