"""Offline replay: judge a CSV or JSONL file with the engine of a configuration, no Kafka.

The series are scored by the monitor :func:`.engine.processor.build_engine` builds, the same as
``vigil run``'s: every ``[detector]`` setting (overrides, groups, residual and multivariate
series) and the ``[state]`` limits apply, so a replay gives the live judgement of its events.

CSV input has a header with ``timestamp`` and ``value`` (and optionally ``key``); JSONL input
holds one prediction or telemetry event per line; either may start with a UTF-8 byte order
mark. Values obey the same bounds in both (finite, within ±1e150). The output CSV has one row
per point and series, in input order: ``timestamp,key,metric,value,score,anomaly,centre,lower,
upper``, or the same columns typed in a Parquet file. A :class:`SeriesCapture` passed to
:func:`replay` also keeps one series' points, for a chart (by default the series with the most
alarms).

Two paths give the same rows, reports and counts. A CSV is read into columns by Arrow
(:func:`read_csv_columns`) and each series is scored over its arrays with the detector the
monitor's specs give it (:func:`judge_series`, :func:`score_series`: the seam where
:data:`SERIES_KERNELS` plug compiled scorers in), whenever series cannot act on one another;
otherwise, and for JSONL, the monitor observes one point at a time. Both write columns
(:class:`JudgedRows`), formatted to Python's exact text by :mod:`.replay_columns`.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, Protocol, TextIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from vigil.detectors import PointResult, build_detector
from vigil.detectors.adaptive_kernel import score_series as adaptive_series
from vigil.detectors.plot import (
    ChartPoint,
    PlotUnavailable,
    render_control_chart,
    require_matplotlib,
)
from vigil.stream.config import VigilConfig
from vigil.stream.engine.events import (
    LARGEST,
    LATEST_TIMESTAMP,
    MILLISECONDS_ABOVE,
    decode_event,
    parse_timestamp,
)
from vigil.stream.engine.monitor import Monitor, Observation
from vigil.stream.engine.processor import build_engine
from vigil.stream.errors import EventError, VigilError
from vigil.stream.replay_columns import csv_fields, csv_lines, general, shortest
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


@dataclass(frozen=True)
class ParquetOutput:
    """Write the replay's rows to a Parquet file (typed columns) instead of CSV text."""

    path: Path


PARQUET_SUFFIXES = (".parquet", ".pq")
"""Output file suffixes that mean Parquet to ``vigil replay -o``."""


def replay(
    input_path: str | Path,
    output: TextIO | ParquetOutput,
    config: VigilConfig,
    *,
    errors: TextIO = sys.stderr,
    capture: SeriesCapture | None = None,
) -> ReplaySummary:
    """Replay ``input_path`` through a fresh engine of ``config`` and write per-point rows;
    ``capture``, when given, also keeps the points of its series. VigilError (one line) when
    the input cannot be read.

    A CSV file is read into columns and each series is scored over arrays
    (:func:`score_series`); JSONL input, a capture, and a CSV the columns cannot replay exactly
    as the per-point path would (quoted fields, series beyond ``state.max_series``, a series
    whose time goes back under a TTL) take the per-point path."""
    path = Path(input_path)
    monitor = build_engine(config).monitor
    summary = ReplaySummary()
    sink: RowSink = ParquetRows(output.path) if isinstance(output, ParquetOutput) \
        else CsvRows(output)
    try:
        with _opened(path) as handle:
            jsonl = _is_jsonl(path, handle)
            judged = None if jsonl or capture is not None else _judged_columns(path, monitor)
            if judged is not None:
                _report(judged.malformed, path, summary, errors)
                summary.rows += len(judged.rows)
                summary.points = len(judged.rows)
                summary.anomalies = int(np.count_nonzero(judged.rows.anomaly))
                summary.series = judged.series
                for start in range(0, len(judged.rows), WRITE_ROWS):
                    sink.write(judged.rows.slice(start, WRITE_ROWS))
            else:
                points = _jsonl_points(handle, monitor) if jsonl else _csv_points(handle, monitor)
                _replay_points(points, path, sink, summary, errors, capture)
                summary.series = monitor.series_count
    finally:
        sink.close()
    if capture is not None and capture.wanted is None:
        capture.wanted = capture.busiest()
        if capture.wanted is not None:  # the same replay again, keeping that series' points
            with open(os.devnull, "w", encoding="utf-8") as discard:
                replay(path, discard, config, errors=io.StringIO(), capture=capture)
    return summary


WRITE_ROWS = 1_000_000
"""Rows formatted and written at once: bounds the memory the output text takes."""


def _opened(path: Path) -> IO[str]:
    try:
        return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise VigilError(f"input file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise VigilError(f"input {str(path)!r} is a directory; give a CSV or JSONL file") \
            from None
    except OSError as exc:
        raise VigilError(f"cannot read {str(path)!r}: {exc.strerror}") from None


def _report(malformed: list[tuple[int, str]], path: Path, summary: ReplaySummary,
            errors: TextIO) -> None:
    for line_number, reason in malformed:
        summary.rows += 1
        summary.skipped += 1
        print(printable(f"{path}:{line_number}: skipped: {reason}"), file=errors)


def _replay_points(points: Iterator[Replayed], path: Path, sink: RowSink,
                   summary: ReplaySummary, errors: TextIO,
                   capture: SeriesCapture | None) -> None:
    """The per-point path: every observation as the monitor makes it, written in batches."""
    batch = PointBatch()
    for line_number, item in points:
        if isinstance(item, MalformedRow):
            _report([(line_number, str(item))], path, summary, errors)
            continue
        summary.rows += 1
        timestamp, observations = item
        for obs in observations:
            summary.points += 1
            summary.anomalies += obs.result.anomaly
            batch.add(timestamp, obs)
            if capture is not None:
                capture.offer(timestamp, obs)
        if len(batch) >= POINT_BATCH:
            sink.write(batch.rows())
            batch = PointBatch()
    if len(batch):
        sink.write(batch.rows())


POINT_BATCH = 65_536
"""Observations of the per-point path formatted and written at once."""


Replayed = tuple[int, "tuple[float, list[Observation]] | MalformedRow"]


def _is_jsonl(path: Path, handle: IO[str]) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    if path.suffix.lower() == ".csv":
        return False
    first = handle.read(1)
    handle.seek(0)
    return first == "{"


@dataclass(frozen=True)
class CsvLayout:
    """Where a CSV's columns are, from its header."""

    width: int
    timestamp: int
    value: int
    key: int | None

    @classmethod
    def of(cls, header: list[str]) -> CsvLayout:
        """The layout of a header (names already stripped and lower-cased)."""
        for column in ("timestamp", "value"):
            if column not in header:
                raise VigilError(f"CSV header {header} lacks a {column!r} column; "
                                 "expected timestamp,value[,key]")
        return cls(len(header), header.index("timestamp"), header.index("value"),
                   header.index("key") if "key" in header else None)

    def point(self, row: list[str]) -> tuple[float, float, str] | None:
        """(timestamp, value, key) of a data row, None for a blank one; MalformedRow when it
        cannot be replayed."""
        if not row or all(not cell.strip() for cell in row):
            return None
        if len(row) != self.width:
            raise MalformedRow(f"expected {self.width} columns, got {len(row)}")
        timestamp = _csv_timestamp(row[self.timestamp])
        value = _csv_value(row[self.value])
        key = row[self.key].strip() if self.key is not None else CSV_DEFAULT_KEY
        if not key:
            raise MalformedRow("empty key")
        return timestamp, value, key


def _header(reader: Iterator[list[str]]) -> CsvLayout | None:
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return None
    except csv.Error as exc:
        raise VigilError(f"the CSV header is unreadable: {exc}") from None
    return CsvLayout.of(header)


def _csv_points(handle: IO[str], monitor: Monitor) -> Iterator[Replayed]:
    reader = csv.reader(handle)
    layout = _header(reader)
    if layout is None:
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field beyond the csv module's 128 KiB limit
            yield reader.line_num, MalformedRow(str(exc))
            continue
        try:
            point = layout.point(row)
        except MalformedRow as exc:
            yield reader.line_num, exc
            continue
        if point is not None:
            timestamp, value, key = point
            yield reader.line_num, (timestamp, [monitor.observe_point(
                "series", key, CSV_METRIC, value, timestamp)])


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


Floats = npt.NDArray[np.float64]
Codes = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]


class SeriesScores(NamedTuple):
    """How each point of one series looked against its detector, as arrays in point order."""

    score: Floats
    anomaly: Flags
    centre: Floats
    lower: Floats
    upper: Floats


SeriesKernel = Callable[[Mapping[str, Any], Floats, Floats],
                        "tuple[Floats, Flags, Floats, Floats, Floats] | None"]
"""Scores a fresh series of a detector with ``params`` over (values, timestamps) at once:
(score, anomaly, centre, lower, upper) arrays, or None for params it does not cover."""

SERIES_KERNELS: dict[str, SeriesKernel] = {"adaptive": adaptive_series}
"""Array scorers of plain scalar series by detector name, each giving exactly what the
detector's ``update`` gives point by point (a compiled loop, say); a detector without one, or
whose kernel declines the params, is scored point by point."""


def score_series(spec: tuple[str, Mapping[str, Any]], values: Floats,
                 timestamps: Floats) -> SeriesScores:
    """Score one fresh series of the detector ``spec`` = (name, params) over its points in
    order, as the monitor would one point at a time (each point scored, then learned)."""
    name, params = spec
    kernel = SERIES_KERNELS.get(name)
    scored = None if kernel is None else kernel(params, values, timestamps)
    if scored is not None:
        return SeriesScores(*scored)
    results = list(map(build_detector(name, dict(params)).update, values.tolist(),
                       timestamps.tolist()))
    count = len(results)
    return SeriesScores(
        np.fromiter((r.score for r in results), np.float64, count),
        np.fromiter((r.anomaly for r in results), np.bool_, count),
        np.fromiter((r.centre for r in results), np.float64, count),
        np.fromiter((r.lower for r in results), np.float64, count),
        np.fromiter((r.upper for r in results), np.float64, count))


@dataclass(frozen=True)
class JudgedRows:
    """Output rows as columns, keys and metrics as codes into their names. ``*_text``, where
    given, hold the input text of a timestamp or value (null where it is not the number's own
    text), written as it stands when it already is Python's ``repr`` of the number."""

    timestamp: Floats
    key_code: Codes
    keys: list[str]
    metric_code: Codes
    metrics: list[str]
    value: Floats
    score: Floats
    anomaly: Flags
    centre: Floats
    lower: Floats
    upper: Floats
    timestamp_text: pa.StringArray | None = None
    value_text: pa.StringArray | None = None

    def __len__(self) -> int:
        return len(self.timestamp)

    def slice(self, start: int, count: int) -> JudgedRows:
        """Rows ``start`` to ``start + count``."""
        end = start + count
        return JudgedRows(
            self.timestamp[start:end], self.key_code[start:end], self.keys,
            self.metric_code[start:end], self.metrics, self.value[start:end],
            self.score[start:end], self.anomaly[start:end], self.centre[start:end],
            self.lower[start:end], self.upper[start:end],
            None if self.timestamp_text is None else self.timestamp_text[start:end],
            None if self.value_text is None else self.value_text[start:end])

    def csv_bytes(self) -> pa.Buffer:
        """The rows as the csv module writes them (Python's float formatting, quoted names),
        in UTF-8 (a name read with surrogate escapes keeps its bytes)."""
        columns = [
            shortest(self.timestamp, self.timestamp_text),
            _quoted(self.keys).take(pa.array(self.key_code)),
            _quoted(self.metrics).take(pa.array(self.metric_code)),
            shortest(self.value, self.value_text),
            general(self.score, 6),
            pc.if_else(pa.array(self.anomaly), "1", "0"),
            general(self.centre, 10), general(self.lower, 10), general(self.upper, 10),
        ]
        return csv_lines(columns)

    def table(self) -> pa.Table:
        """The rows as a typed Arrow table (the Parquet output)."""
        return pa.table({
            "timestamp": self.timestamp,
            "key": pa.array(self.keys, pa.string()).take(pa.array(self.key_code)),
            "metric": pa.array(self.metrics, pa.string()).take(pa.array(self.metric_code)),
            "value": self.value, "score": self.score, "anomaly": self.anomaly,
            "centre": self.centre, "lower": self.lower, "upper": self.upper,
        }, schema=PARQUET_SCHEMA)


PARQUET_SCHEMA = pa.schema([
    ("timestamp", pa.float64()), ("key", pa.string()), ("metric", pa.string()),
    ("value", pa.float64()), ("score", pa.float64()), ("anomaly", pa.bool_()),
    ("centre", pa.float64()), ("lower", pa.float64()), ("upper", pa.float64()),
])
"""The Parquet output's columns: the CSV's, typed (epoch seconds, full float precision)."""


def _escaped(name: str) -> bool:
    """True for a name holding a surrogate escape (undecodable input bytes)."""
    return not name.isascii() and any("\udc80" <= char <= "\udcff" for char in name)


def _quoted(names: list[str]) -> pa.BinaryArray:
    """Names as CSV fields, in bytes (a name read with surrogate escapes keeps its bytes)."""
    return pa.array([field.encode("utf-8", "surrogateescape") for field in csv_fields(names)],
                    pa.binary())


class RowSink(Protocol):
    """Where the replay's rows go."""

    def write(self, rows: JudgedRows) -> None:
        """Write a batch of rows."""

    def close(self) -> None:
        """Finish the output (the caller closes a stream it gave)."""


class CsvRows:
    """CSV text on a stream: the header, then each batch's lines."""

    def __init__(self, output: TextIO) -> None:
        self.output = output
        output.write(",".join(OUTPUT_HEADER) + "\n")
        binary = getattr(output, "buffer", None)
        utf8 = codecs.lookup(getattr(output, "encoding", None) or "ascii").name == "utf-8"
        self._bytes: IO[bytes] | None = binary if utf8 and getattr(
            output, "errors", None) == "strict" else None
        """The stream's byte buffer when text would be encoded to the same bytes."""

    def write(self, rows: JudgedRows) -> None:
        """Write a batch of rows as CSV lines."""
        lines = rows.csv_bytes()
        if self._bytes is not None and not any(map(_escaped, rows.keys)):
            self.output.flush()
            self._bytes.write(memoryview(lines))
        else:  # through the stream, which refuses surrogates as it always did
            self.output.write(bytes(lines).decode("utf-8", "surrogateescape"))

    def close(self) -> None:
        """Nothing to finish: the lines are written as they come."""


class ParquetRows:
    """A Parquet file, one row group per batch (an empty file with the columns if none)."""

    def __init__(self, path: Path) -> None:
        try:
            self._file = path.open("wb")
        except OSError as exc:
            raise VigilError(f"cannot write {str(path)!r}: {exc.strerror}") from None
        self._writer = pq.ParquetWriter(self._file, PARQUET_SCHEMA)

    def write(self, rows: JudgedRows) -> None:
        """Write a batch of rows as one row group."""
        self._writer.write_table(rows.table())

    def close(self) -> None:
        """Write the file's footer and close it."""
        try:
            self._writer.close()
        finally:
            self._file.close()


class PointBatch:
    """Observations of the per-point path gathered into columns."""

    def __init__(self) -> None:
        self.timestamps: list[float] = []
        self.values: list[float] = []
        self.results: list[PointResult] = []
        self.key_codes: list[int] = []
        self.metric_codes: list[int] = []
        self.keys: dict[str, int] = {}
        self.metrics: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.timestamps)

    def add(self, timestamp: float, obs: Observation) -> None:
        """Keep one observation."""
        self.timestamps.append(timestamp)
        self.values.append(obs.value)
        self.results.append(obs.result)
        self.key_codes.append(self.keys.setdefault(obs.key, len(self.keys)))
        self.metric_codes.append(self.metrics.setdefault(obs.metric, len(self.metrics)))

    def rows(self) -> JudgedRows:
        """The observations kept, as rows."""
        results = self.results
        return JudgedRows(
            np.array(self.timestamps, np.float64), np.array(self.key_codes, np.int64),
            list(self.keys), np.array(self.metric_codes, np.int64), list(self.metrics),
            np.array(self.values, np.float64),
            np.array([r.score for r in results], np.float64),
            np.array([r.anomaly for r in results], np.bool_),
            np.array([r.centre for r in results], np.float64),
            np.array([r.lower for r in results], np.float64),
            np.array([r.upper for r in results], np.float64))


@dataclass(frozen=True)
class CsvColumns:
    """A CSV's valid points as columns, in input order, and its malformed rows."""

    timestamp: Floats
    value: Floats
    key_code: Codes
    keys: list[str]
    timestamp_text: pa.StringArray
    value_text: pa.StringArray
    malformed: list[tuple[int, str]]
    """(line number, reason) of each malformed row, in input order."""


@dataclass(frozen=True)
class Judged:
    """A CSV judged over columns: its rows, malformed rows and number of series."""

    rows: JudgedRows
    malformed: list[tuple[int, str]]
    series: int


def _judged_columns(path: Path, monitor: Monitor) -> Judged | None:
    """The CSV judged series by series over arrays; None when only the per-point path can
    replay it exactly."""
    columns = read_csv_columns(path)
    if columns is None:
        return None
    scores = judge_series(columns, monitor)
    if scores is None:
        return None
    score, anomaly, centre, lower, upper, series = scores
    count = len(columns.timestamp)
    rows = JudgedRows(columns.timestamp, columns.key_code, columns.keys,
                      np.zeros(count, np.int64), [CSV_METRIC], columns.value, score, anomaly,
                      centre, lower, upper, columns.timestamp_text, columns.value_text)
    return Judged(rows, columns.malformed, series)


def judge_series(columns: CsvColumns, monitor: Monitor
                 ) -> tuple[Floats, Flags, Floats, Floats, Floats, int] | None:
    """Score, anomaly, centre, lower, upper of every point (input order) and the number of
    series, scoring each series over arrays as the monitor would point by point; None when
    the monitor's limits would act across series (more series than ``max_series``, a group's
    pool) or a series' time goes back under a TTL (its restarts then depend on the order)."""
    table = monitor.table
    codes = columns.key_code
    present = np.flatnonzero(np.bincount(codes, minlength=len(columns.keys)))
    if len(present) > table.max_series or any(
            monitor.specs.group_of("series", columns.keys[code]) is not None
            for code in present.tolist()):
        return None
    order = np.argsort(codes, kind="stable")
    grouped = codes[order]
    starts = np.zeros(len(order), np.bool_)
    starts[:1] = True
    starts[1:] = grouped[1:] != grouped[:-1]
    if table.series_ttl_s:
        # a point restarts its series when the series' last point is older than the
        # watermark (the latest time so far, this point included) less the TTL
        times = columns.timestamp[order]
        if np.any(~starts[1:] & (times[1:] < times[:-1])):
            return None
        watermark = np.maximum.accumulate(columns.timestamp)[order]
        starts[1:] |= times[:-1] < watermark[1:] - table.series_ttl_s
    count = len(order)
    score, centre, lower, upper = (np.empty(count) for _ in range(4))
    anomaly = np.empty(count, np.bool_)
    bounds = [*np.flatnonzero(starts).tolist(), count]
    for first, end in zip(bounds[:-1], bounds[1:], strict=True):
        at = order[first:end]
        key = columns.keys[int(grouped[first])]
        scored = score_series(monitor.spec_for(("series", key, CSV_METRIC)),
                              columns.value[at], columns.timestamp[at])
        score[at], anomaly[at], centre[at] = scored.score, scored.anomaly, scored.centre
        lower[at], upper[at] = scored.lower, scored.upper
    return score, anomaly, centre, lower, upper, len(present)


_PLAIN_NUMBER: Final = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
"""Numbers Arrow and Python read alike; any other text is left to Python's float()."""


def read_csv_columns(path: Path) -> CsvColumns | None:
    """The CSV's points as columns, read by Arrow's C parser and checked a column at a time,
    with the per-point path's verdict on every row; None for a CSV whose rows only the csv
    module reads as the per-point path does (quotes, NUL or lone carriage returns, invalid
    UTF-8, a field beyond the csv module's limit, an empty file or first line)."""
    data = path.read_bytes()
    return _read_bytes(data) if data else None


def _read_bytes(data: bytes) -> CsvColumns | None:
    begin = 3 if data[:3] == codecs.BOM_UTF8 else 0
    if data.find(b'"') >= 0 or data.find(b"\0") >= 0:
        return None
    raw = np.frombuffer(data, np.uint8)
    if data.find(b"\r") >= 0:
        returns = np.flatnonzero(raw == ord("\r"))
        if returns[-1] + 1 >= len(raw) or np.any(raw[returns + 1] != ord("\n")):
            return None
    newline = data.find(b"\n", begin)
    header_end = len(data) if newline < 0 else newline
    try:
        header_line = data[begin:header_end].decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return None
    if not header_line:
        return None
    layout = _header(csv.reader([header_line]))
    if layout is None:
        return None
    body = pa.py_buffer(data)[min(header_end + 1, len(data)):]
    try:
        table, invalid = _arrow_rows(body, layout.width, threads=True)
        if invalid:  # their row numbers are known only to a single-threaded read
            table, invalid = _arrow_rows(body, layout.width, threads=False)
    except (pa.ArrowException, ValueError):
        return None
    limit = csv.field_size_limit()
    cells = [column.combine_chunks() for column in table.columns]
    if any((pc.max(pc.utf8_length(cell)).as_py() or 0) > limit for cell in cells) or any(
            len(text) > limit for _, text in invalid):
        return None
    return _columns(layout, cells, invalid, lambda: _line_numbers(raw, header_end))


def _arrow_rows(body: pa.Buffer, width: int, *, threads: bool
                ) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Arrow's rows of ``width`` string columns, and (row number, text) of the rows of another
    width, which it sets aside."""
    invalid: list[tuple[int, str]] = []

    def set_aside(row: pcsv.InvalidRow) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    names = [f"c{i}" for i in range(width)]
    table = pcsv.read_csv(
        pa.BufferReader(body),
        read_options=pcsv.ReadOptions(column_names=names, use_threads=threads),
        parse_options=pcsv.ParseOptions(invalid_row_handler=set_aside),
        convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                            strings_can_be_null=False))
    return table, invalid


def _line_numbers(raw: npt.NDArray[np.uint8], header_end: int) -> Codes:
    """Line number (1-based, the header being line 1) of each non-empty line after the header:
    the rows Arrow reads, in order."""
    ends = np.flatnonzero(raw[header_end + 1:] == ord("\n")) + header_end + 1
    if len(raw) > header_end + 1 and raw[-1] != ord("\n"):
        ends = np.append(ends, len(raw))
    starts = np.concatenate(([header_end + 1], ends[:-1] + 1))
    length = ends - starts
    length -= (length > 0) & (raw[np.maximum(ends - 1, 0)] == ord("\r"))
    numbers: Codes = np.flatnonzero(length > 0) + 2
    return numbers


def _columns(layout: CsvLayout, cells: list[pa.StringArray], invalid: list[tuple[int, str]],
             line_numbers: Callable[[], Codes]) -> CsvColumns:
    """Columns of the rows Arrow read (the others given as ``invalid``), every row the
    vectorised checks doubt judged by :meth:`CsvLayout.point` itself."""
    count = len(cells[0])
    stamp_text, value_text = cells[layout.timestamp], cells[layout.value]
    stamps, doubtful = _numbers(stamp_text)
    values, doubtful_values = _numbers(value_text)
    seconds = np.where(np.abs(stamps) > MILLISECONDS_ABOVE, stamps / 1000.0, stamps)
    doubtful |= doubtful_values | ~((seconds > 0.0) & (seconds < LATEST_TIMESTAMP))
    doubtful |= ~((values >= -LARGEST) & (values <= LARGEST))
    if layout.key is None:
        keys, key_code = [CSV_DEFAULT_KEY], np.zeros(count, np.int64)
        position = {CSV_DEFAULT_KEY: 0}
    else:
        encoded = pc.dictionary_encode(cells[layout.key])
        stripped = [key.strip() for key in encoded.dictionary.to_pylist()]
        keys = list(dict.fromkeys(stripped))
        position = {key: code for code, key in enumerate(keys)}
        recode = np.array([position[key] for key in stripped], np.int64)
        key_code = recode[encoded.indices.to_numpy(zero_copy_only=False)]
        doubtful |= np.array([not key for key in stripped], np.bool_)[
            encoded.indices.to_numpy(zero_copy_only=False)]
    keep = np.ones(count, np.bool_)
    as_text = ~doubtful & (np.abs(stamps) <= MILLISECONDS_ABOVE)
    flagged: list[tuple[int, str]] = []  # (row index among Arrow's rows, reason)
    doubted = np.flatnonzero(doubtful)
    if len(doubted):
        rows = zip(*(cell.take(pa.array(doubted)).to_pylist() for cell in cells), strict=True)
        for index, row in zip(doubted.tolist(), rows, strict=True):
            try:
                point = layout.point(list(row))
            except MalformedRow as exc:
                flagged.append((index, str(exc)))
                keep[index] = False
                continue
            if point is None:
                keep[index] = False
                continue
            seconds[index], values[index], key = point
            key_code[index] = position.setdefault(key, len(keys))
            if len(position) > len(keys):
                keys.append(key)
    malformed = _malformed(layout, flagged, invalid, line_numbers) if flagged or invalid \
        else []
    return CsvColumns(
        _kept(seconds, keep), _kept(values, keep), _kept(key_code, keep), keys,
        _text_kept(stamp_text, as_text, keep), _text_kept(value_text, ~doubtful, keep),
        malformed)


def _kept(column: npt.NDArray[Any], keep: Flags) -> npt.NDArray[Any]:
    return column if keep.all() else column[keep]


def _text_kept(text: pa.StringArray, usable: Flags, keep: Flags) -> pa.StringArray:
    """The input text of the kept rows, null where it is not the number's own text."""
    if not usable.all():
        text = pc.if_else(pa.array(usable), text, None)
    return text if keep.all() else text.filter(pa.array(keep))


def _malformed(layout: CsvLayout, flagged: list[tuple[int, str]],
               invalid: list[tuple[int, str]], line_numbers: Callable[[], Codes]
               ) -> list[tuple[int, str]]:
    """(line number, reason) of the malformed rows, in input order: rows of another width
    than the header's (unless blank) and rows the checks refused."""
    lines = line_numbers()
    reported: list[tuple[int, str]] = []
    for number, text in invalid:  # number: 1-based among the non-empty lines Arrow met
        row = text.rstrip("\r").split(",")
        if all(not cell.strip() for cell in row):
            continue
        reported.append((int(lines[number - 1]),
                         f"expected {layout.width} columns, got {len(row)}"))
    # Arrow's rows are the non-empty lines it did not set aside, in order
    aside = np.zeros(len(lines), np.bool_)
    aside[[number - 1 for number, _ in invalid]] = True
    read_lines = lines[~aside]
    reported += [(int(read_lines[index]), reason) for index, reason in flagged]
    reported.sort(key=_first_item)
    return reported


def _first_item(item: tuple[int, str]) -> int:
    return item[0]


def _numbers(text: pa.StringArray) -> tuple[Floats, Flags]:
    """The numbers in ``text`` read by Arrow, and where Python's float() must judge instead."""
    try:
        numbers: Floats = pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False,
                                                                    writable=True)
        return numbers, np.zeros(len(text), np.bool_)
    except pa.ArrowInvalid:
        plain = pc.match_substring_regex(text, _PLAIN_NUMBER)
        numbers = np.full(len(text), np.nan)
        read = plain.to_numpy(zero_copy_only=False)
        numbers[read] = pc.cast(text.filter(plain), pa.float64()).to_numpy(zero_copy_only=False)
        return numbers, ~read
