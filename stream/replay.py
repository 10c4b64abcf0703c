"""Offline replay: judge a CSV or JSONL file with the engine of a configuration, no Kafka.

The series are scored by the monitor :func:`.engine.processor.build_engine` builds, the same as
``vigil run``'s: every ``[detector]`` setting (overrides, groups, residual and multivariate
series) and the ``[state]`` limits apply, so a replay gives the live judgement of its events.

CSV input has a header with ``timestamp`` and ``value`` (and optionally ``key``); JSONL input
holds one prediction or telemetry event per line; either may start with a UTF-8 byte order
mark. Values obey the same bounds in both (finite, within ±1e150). The output CSV has one row
per point and series, in input order: ``timestamp,key,metric,value,score,anomaly,centre,lower,
upper``. A :class:`SeriesCapture` passed to :func:`replay` also keeps one series' points, for
a chart (by default the series with the most alarms).
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from vigil.detectors.plot import (
    ChartPoint,
    PlotUnavailable,
    render_control_chart,
    require_matplotlib,
)
from vigil.stream.config import VigilConfig
from vigil.stream.engine.events import LARGEST, decode_event, parse_timestamp
from vigil.stream.engine.monitor import Monitor, Observation
from vigil.stream.engine.processor import build_engine
from vigil.stream.errors import EventError, VigilError
from vigil.stream.text import printable

OUTPUT_HEADER = ("timestamp", "key", "metric", "value", "score", "anomaly", "centre", "lower",
                 "upper")
CSV_DEFAULT_KEY = "series"
CSV_METRIC = "value"


@dataclass
class ReplaySummary:
    """Counts for the summary line on stderr."""

    rows: int = 0
    points: int = 0
    anomalies: int = 0
    skipped: int = 0
    series: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One human-readable summary line."""
        return (f"replayed {self.rows} rows: {self.points} points in {self.series} series, "
                f"{self.anomalies} anomalies, {self.skipped} malformed rows skipped")

    @property
    def valid(self) -> int:
        """Rows that were replayed (not skipped)."""
        return self.rows - self.skipped


class SeriesCapture:
    """Keeps the points of one series as the replay meets them, for drawing its chart.

    ``wanted`` is ``"KEY/METRIC"`` (the key may itself contain ``/``), or a bare ``KEY`` for
    that key's first metric, or None for the series with the most alarms (the first of them
    in the input on a tie): :func:`replay` then counts every series' alarms and replays the
    input a second time to keep that series' points.
    """

    def __init__(self, wanted: str | None = None) -> None:
        try:
            require_matplotlib()
        except PlotUnavailable as exc:
            raise VigilError(str(exc)) from exc
        self.wanted = wanted
        self.series: str | None = None
        """``"KEY/METRIC"`` of the captured series, once it has been met."""
        self.points: list[ChartPoint] = []
        self.seen: list[str] = []
        """Every series of the input, in order of first appearance (for error messages)."""
        self._seen: set[str] = set()
        self.alarms: Counter[str] = Counter()
        """Alarms per series, while the wanted series is not known yet."""

    def offer(self, timestamp: float, obs: Observation) -> None:
        """Keep ``obs`` if it belongs to the wanted series (count its alarm if none is)."""
        name = f"{obs.key}/{obs.metric}"
        if name not in self._seen:
            self._seen.add(name)
            self.seen.append(name)
        if self.wanted is None:
            if obs.result.anomaly:
                self.alarms[name] += 1
            return
        if self.series is None and self.wanted in (name, obs.key):
            self.series = name
        if name == self.series:
            self.points.append(ChartPoint(timestamp, obs.value, obs.result))

    def busiest(self) -> str | None:
        """The series with the most alarms (the first seen on a tie; the first series if none
        alarmed), or None for an input without series."""
        if not self.seen:
            return None
        most = max(self.alarms.values(), default=0)
        return next(name for name in self.seen if self.alarms[name] == most)

    def render(self, detector: str) -> bytes:
        """PNG of the captured series' control chart; VigilError when there is nothing to draw
        or matplotlib is missing."""
        if not self.points:
            seen = ", ".join(self.seen[:10]) + (", ..." if len(self.seen) > 10 else "")
            raise VigilError(f"series {self.wanted!r} is not in the input; "
                             f"series found: {seen or 'none'}")
        try:
            return render_control_chart(self.points, title=f"{self.series} — {detector}")
        except PlotUnavailable as exc:
            raise VigilError(str(exc)) from exc


class MalformedRow(VigilError):
    """A row that cannot be replayed; reported with its line number and skipped."""


def replay(
    input_path: str | Path,
    output: TextIO,
    config: VigilConfig,
    *,
    errors: TextIO = sys.stderr,
    capture: SeriesCapture | None = None,
) -> ReplaySummary:
    """Replay ``input_path`` through a fresh engine of ``config`` and write per-point rows;
    ``capture``, when given, also keeps the points of its series. VigilError (one line) when
    the input cannot be read."""
    path = Path(input_path)
    monitor = build_engine(config).monitor
    summary = ReplaySummary()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(OUTPUT_HEADER)
    try:
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise VigilError(f"input file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise VigilError(f"input {str(path)!r} is a directory; give a CSV or JSONL file") \
            from None
    except OSError as exc:
        raise VigilError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    with handle:
        points = _jsonl_points(handle, monitor) if _is_jsonl(path, handle) else _csv_points(
            handle, monitor)
        for line_number, item in points:
            summary.rows += 1
            if isinstance(item, MalformedRow):
                summary.skipped += 1
                print(printable(f"{path}:{line_number}: skipped: {item}"), file=errors)
                continue
            timestamp, observations = item
            for obs in observations:
                summary.points += 1
                summary.anomalies += obs.result.anomaly
                writer.writerow(_row(timestamp, obs))
                if capture is not None:
                    capture.offer(timestamp, obs)
    summary.series = monitor.series_count
    if capture is not None and capture.wanted is None:
        capture.wanted = capture.busiest()
        if capture.wanted is not None:  # the same replay again, keeping that series' points
            with open(os.devnull, "w", encoding="utf-8") as discard:
                replay(path, discard, config, errors=io.StringIO(), capture=capture)
    return summary


def _is_jsonl(path: Path, handle: IO[str]) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    if path.suffix.lower() == ".csv":
        return False
    first = handle.read(1)
    handle.seek(0)
    return first == "{"


Replayed = tuple[int, "tuple[float, list[Observation]] | MalformedRow"]


def _csv_points(handle: IO[str], monitor: Monitor) -> Iterator[Replayed]:
    reader = csv.reader(handle)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise VigilError(f"the CSV header is unreadable: {exc}") from None
    for column in ("timestamp", "value"):
        if column not in header:
            raise VigilError(f"CSV header {header} lacks a {column!r} column; "
                             "expected timestamp,value[,key]")
    t_col, v_col = header.index("timestamp"), header.index("value")
    k_col = header.index("key") if "key" in header else None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field beyond the csv module's 128 KiB limit
            yield reader.line_num, MalformedRow(str(exc))
            continue
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            if len(row) != len(header):
                raise MalformedRow(f"expected {len(header)} columns, got {len(row)}")
            timestamp = _csv_timestamp(row[t_col])
            value = _csv_value(row[v_col])
            key = row[k_col].strip() if k_col is not None else CSV_DEFAULT_KEY
            if not key:
                raise MalformedRow("empty key")
        except MalformedRow as exc:
            yield line, exc
            continue
        yield line, (timestamp, [monitor.observe_point("series", key, CSV_METRIC, value,
                                                       timestamp)])


def _jsonl_points(handle: IO[str], monitor: Monitor) -> Iterator[Replayed]:
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            event = decode_event(line.encode("utf-8", "surrogateescape"))
        except EventError as exc:
            yield line_number, MalformedRow(str(exc))
            continue
        yield line_number, (event.timestamp, list(monitor.observe(event)))


def _csv_timestamp(text: str) -> float:
    try:
        return parse_timestamp(_number_or_text(text.strip()))
    except EventError as exc:
        raise MalformedRow(f"timestamp {_short(text)}: {exc.detail}") from None


def _csv_value(text: str) -> float:
    """A value within the bounds JSONL events have (finite, within ±1e150)."""
    try:
        value = float(text)
    except ValueError:
        raise MalformedRow(f"value {_short(text)} is not a number") from None
    if not -LARGEST <= value <= LARGEST:  # also NaN, which fails every comparison
        raise MalformedRow(f"value {_short(text)} is not a finite number within ±1e150")
    return value


def _short(text: str) -> str:
    return repr(text) if len(text) <= 60 else f"{text[:60]!r}..."


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _row(timestamp: float, obs: Observation) -> list[str]:
    result = obs.result
    return [repr(timestamp), obs.key, obs.metric, repr(obs.value), f"{result.score:.6g}",
            "1" if result.anomaly else "0", f"{result.centre:.10g}", f"{result.lower:.10g}",
            f"{result.upper:.10g}"]
