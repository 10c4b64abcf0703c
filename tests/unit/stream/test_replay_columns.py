"""The columnar replay writes the bytes, reports the rows and counts of the per-point replay."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from numpy.typing import NDArray

from vigil.detectors import build_detector
from vigil.stream.cli import main
from vigil.stream.config import DetectorConfig, StateConfig, VigilConfig
from vigil.stream.engine.monitor import Observation
from vigil.stream.engine.processor import build_engine
from vigil.stream.replay import (
    OUTPUT_HEADER,
    SERIES_KERNELS,
    MalformedRow,
    ParquetOutput,
    _csv_points,
    read_csv_columns,
    replay,
)
from vigil.stream.replay_columns import general, shortest

SHEWHART = VigilConfig(detector=DetectorConfig("shewhart", {"warmup": 5}))


def _row(timestamp: float, obs: Observation) -> list[str]:
    """A row as the per-point replay formatted it, one point at a time."""
    result = obs.result
    return [repr(timestamp), obs.key, obs.metric, repr(obs.value), f"{result.score:.6g}",
            "1" if result.anomaly else "0", f"{result.centre:.10g}", f"{result.lower:.10g}",
            f"{result.upper:.10g}"]


def per_point(path: Path, config: VigilConfig) -> tuple[str, str, tuple[int, int, int, int]]:
    """(output, errors, (rows, points, anomalies, skipped)) of the per-point replay."""
    monitor = build_engine(config).monitor
    out, errors = io.StringIO(), io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(OUTPUT_HEADER)
    rows = points = anomalies = skipped = 0
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        for line, item in _csv_points(handle, monitor):
            rows += 1
            if isinstance(item, MalformedRow):
                skipped += 1
                print(f"{path}:{line}: skipped: {item}", file=errors)
                continue
            timestamp, observed = item
            for obs in observed:
                points += 1
                anomalies += obs.result.anomaly
                writer.writerow(_row(timestamp, obs))
    return out.getvalue(), errors.getvalue(), (rows, points, anomalies, skipped)


def assert_same_as_per_point(path: Path, config: VigilConfig) -> str:
    out, errors = io.StringIO(), io.StringIO()
    summary = replay(path, out, config, errors=errors)
    expected_out, expected_errors, counts = per_point(path, config)
    assert out.getvalue() == expected_out
    assert errors.getvalue() == expected_errors
    assert (summary.rows, summary.points, summary.anomalies, summary.skipped) == counts
    return out.getvalue()


def varied_rows(count: int = 600, seed: int = 4) -> list[str]:
    """Several keys (some padded with spaces), odd timestamps, large and tiny values, spikes,
    and malformed rows of every kind among them."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        key = ["a", "b", " b ", "web-1", "höst"][i % 5]
        value = float(rng.normal(100.0, 3.0))
        if i % 97 == 50:
            value *= 40
        text = [repr(value), f"{value:.4f}", f"{value:.1f}", str(int(value)), f"{value:e}"][i % 5]
        stamp = [f"{1767225600 + i}", f"{1767225600 + i}.500", f"{(1767225600 + i) * 1000}",
                 f"{1767225600 + i:.1f}", f"{1767225600.25 + i!r}"][i % 5]
        rows.append(f"{stamp},{text},{key}")
    odd = ["1767230000,1e149,big", "1767230001,-1.5e150,big", "1767230002,1e-300,tiny",
           "1767230003,12345678901234567,big", "1767230004,0.00001234,tiny",
           "2026-01-01T00:00:05Z,1.5,iso", " 1767230005 , 2.5 ,a", "1767230006,+3,a",
           "1767230007,.5,a", "1767230008,5.,a", "1767230009,1_000,a", "1767230010,١٢,a",
           "1767230011,abc,a", "1767230012,nan,a", "1767230013,inf,a", "1767230014,1e200,a",
           "not-a-time,1.0,a", "0,1.0,a", "9999999999999999,1.0,a", "1767230015,1.0,",
           "1767230016,1.0,   ", "1767230017,1.0", "1767230018,1.0,a,extra", "", "   ", ",,",
           " , , ", "1767230019,-0.0,a", "1767230020,0,a", "1767230021,1e16,a",
           "1767230022,99999.99999,a"]
    for position, row in enumerate(odd):
        rows.insert(7 + position * 17, row)
    return rows


def write(path: Path, rows: list[str], header: str = "timestamp,value,key",
          ending: str = "\n", bom: bool = False) -> Path:
    text = ending.join([header, *rows]) + ending
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


@pytest.mark.parametrize("config", [SHEWHART, VigilConfig()], ids=["shewhart", "default"])
def test_varied_csv_gives_the_per_point_bytes_and_reports(tmp_path: Path,
                                                          config: VigilConfig) -> None:
    path = write(tmp_path / "in.csv", varied_rows(), bom=True)
    assert read_csv_columns(path) is not None  # the columnar path, not the fallback
    out = assert_same_as_per_point(path, config)
    assert ',"höst",' not in out and ",höst," in out


def test_windows_line_endings_and_no_key_column(tmp_path: Path) -> None:
    rows = [row.rsplit(",", 1)[0] for row in varied_rows(200) if row.count(",") == 2]
    path = write(tmp_path / "in.csv", rows + ["", "1767230000,1.0,x"], header="Value,TIMESTAMP",
                 ending="\r\n")
    assert read_csv_columns(path) is not None
    assert_same_as_per_point(path, SHEWHART)


def test_inputs_only_the_csv_module_reads_alike_take_the_per_point_path(
        tmp_path: Path) -> None:
    quoted = write(tmp_path / "quoted.csv", ['1767225600,1.0,"a,b"', '1767225601,2.0,"x""y"',
                                             '1767225602,3.0,"multi\nline"', "1767225603,x,a"])
    huge = write(tmp_path / "huge.csv", ["1767225600,1.0,a", "1767225601," + "9" * 200_000])
    lone_return = write(tmp_path / "cr.csv", ["1767225600,1.0,a", "1767225601,2.0,b"],
                        ending="\r")
    undecodable = tmp_path / "bytes.csv"
    undecodable.write_bytes(b"timestamp,value,key\n1767225600,1.0,caf\xe9\n1767225601,2.0,b\n")
    for path in (quoted, huge, lone_return, undecodable):
        assert read_csv_columns(path) is None
        assert_same_as_per_point(path, SHEWHART)


def test_state_limits_are_honoured(tmp_path: Path) -> None:
    """A TTL restarts series exactly as the monitor does; beyond max_series (evictions) or with
    time going back under a TTL, the per-point path replays."""
    rows = [f"{1767225600 + i * 10},{100 + (i % 7)},{'ab'[i % 2] if i < 300 else 'a'}"
            for i in range(400)] + [f"{1767229600 + i},{100 + i % 5},b" for i in range(40)]
    path = write(tmp_path / "in.csv", rows)
    for state in (StateConfig(series_ttl_s=500.0), StateConfig(max_series=1),
                  StateConfig(series_ttl_s=0.0)):
        assert_same_as_per_point(path, VigilConfig(detector=SHEWHART.detector, state=state))
    back = write(tmp_path / "back.csv", rows + ["1767225000,1.0,a"])
    assert_same_as_per_point(back, VigilConfig(detector=SHEWHART.detector,
                                               state=StateConfig(series_ttl_s=500.0)))


def test_parquet_output_holds_the_csv_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", varied_rows(300))
    csv_out = io.StringIO()
    replay(path, csv_out, SHEWHART, errors=io.StringIO())
    target = tmp_path / "out.parquet"
    summary = replay(path, ParquetOutput(target), SHEWHART, errors=io.StringIO())
    table = pq.read_table(target)
    assert table.column_names == list(OUTPUT_HEADER)
    assert table.num_rows == summary.points
    expected = list(csv.reader(io.StringIO(csv_out.getvalue())))[1:]
    got = [[repr(r["timestamp"]), r["key"], r["metric"], repr(r["value"]),
            f"{r['score']:.6g}", "1" if r["anomaly"] else "0", f"{r['centre']:.10g}",
            f"{r['lower']:.10g}", f"{r['upper']:.10g}"] for r in table.to_pylist()]
    assert got == expected
    assert sum(row[5] == "1" for row in expected) == summary.anomalies > 0


def test_jsonl_to_parquet_takes_the_per_point_path(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"source": "s", "timestamp": 1767225600, "metrics": {"m": 1, "n": 2}}\n')
    target = tmp_path / "out.parquet"
    assert replay(path, ParquetOutput(target), SHEWHART).points == 2
    assert pq.read_table(target).column("metric").to_pylist() == ["m", "n"]


def test_number_formats_are_pythons() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate([
        rng.normal(100.0, 10.0, 20_000),
        rng.normal(0.0, 1.0, 20_000) * 10.0 ** rng.integers(-30, 30, 20_000),
        np.frombuffer(rng.bytes(8 * 20_000), dtype=np.float64),
        np.round(rng.normal(0.0, 1.0, 20_000), 3),
        [0.0, -0.0, 0.5, 2.5, 1e-4, 9.9999995e-5, 1e10, 9999999999.5, 999999.5, 1e16, 1e22,
         1e23, 5e-324, np.inf, -np.inf, np.nan, 1e150, -1e150, 0.1 + 0.2],
    ])
    plain = values.tolist()
    assert shortest(values).to_pylist() == [repr(x) for x in plain]
    for digits in (6, 10):
        assert general(values, digits).to_pylist() == [f"{x:.{digits}g}" for x in plain]


def test_cli_writes_parquet_for_a_parquet_output(
        tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "in.csv", varied_rows(100))
    target = tmp_path / "out.parquet"
    assert main(["replay", str(path), "-o", str(target), "--detector", "shewhart"]) == 0
    shewhart = VigilConfig(detector=DetectorConfig("shewhart"))
    points = replay(path, io.StringIO(), shewhart, errors=io.StringIO()).points
    assert pq.read_table(target).num_rows == points > 0
    assert f"{points} points" in capsys.readouterr().err
    assert main(["replay", str(path), "-o", str(tmp_path / "missing" / "out.pq")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_cli_csv_file_has_the_per_point_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", varied_rows(300))
    target = tmp_path / "out.csv"
    assert main(["replay", str(path), "-o", str(target), "--detector", "shewhart",
                 "--param", "warmup=5"]) == 0
    assert target.read_bytes() == per_point(path, SHEWHART)[0].encode("utf-8")


def test_a_series_kernel_scores_each_series_over_its_arrays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel registered for a detector gets each series' values and timestamps in input
    order, once per series; one that declines its params leaves the per-point loop."""
    rows = [f"{1767225600 + i},{i % 11},{'xyz'[i % 3]}" for i in range(90)]
    path = write(tmp_path / "in.csv", rows)
    calls: list[tuple[list[float], list[float]]] = []

    def kernel(params: object, values: NDArray[np.float64],
               timestamps: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        calls.append((values.tolist(), timestamps.tolist()))
        detector = build_detector("shewhart", {"warmup": 5})
        results = [detector.update(v, t) for v, t in zip(values.tolist(), timestamps.tolist(),
                                                         strict=True)]
        return tuple(np.array([getattr(r, name) for r in results])
                     for name in ("score", "anomaly", "centre", "lower", "upper"))

    monkeypatch.setitem(SERIES_KERNELS, "shewhart", kernel)
    assert_same_as_per_point(path, SHEWHART)
    assert calls == [([float(i % 11) for i in range(k, 90, 3)],
                      [float(1767225600 + i) for i in range(k, 90, 3)]) for k in range(3)]
    monkeypatch.setitem(SERIES_KERNELS, "shewhart", lambda params, values, timestamps: None)
    assert_same_as_per_point(path, SHEWHART)


def test_arrow_reads_every_number_as_python_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    texts = []
    for _ in range(5_000):
        digits = "".join(map(str, rng.integers(0, 10, int(rng.integers(1, 25)))))
        point = int(rng.integers(0, len(digits) + 1))
        text = f"{'-' if rng.random() < 0.3 else ''}{digits[:point]}.{digits[point:]}"
        if rng.random() < 0.3:
            text += f"e{int(rng.integers(-160, 150))}"
        texts.append(text.replace("-.e", "-0.e").replace("-.", "-0.").lstrip(".") or "0")
    path = write(tmp_path / "in.csv", [f"{1767225600 + i},{t},k" for i, t in enumerate(texts)],
                 header="timestamp,value,key")
    columns = read_csv_columns(path)
    assert columns is not None
    wanted = [float(t) for t in texts if t[0] != "e" and abs(float(t)) <= 1e150]
    assert columns.value.tolist() == wanted


@pytest.mark.parametrize("data", [
    b"timestamp,value\n\n\n1767225600,1\n\n1767225601\n\n\n1767225602,x\n1767225603,1,2\n\r\n"
    b"1767225604,z\n",
    b"timestamp,value\r\n\r\n1767225600,1\r\n\r\n1767225601\r\n1767225602,x\r\n",
], ids=["lf", "crlf"])
def test_blank_lines_before_malformed_rows_keep_their_line_numbers(tmp_path: Path,
                                                                  data: bytes) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    columns = read_csv_columns(path)
    assert columns is not None and columns.malformed
    assert_same_as_per_point(path, SHEWHART)


def test_text_timestamps_beside_clean_values(tmp_path: Path) -> None:
    """Every value a plain number (Arrow's column, read-only when it converts whole) and every
    timestamp a date text, as most exported metrics are: the doubted rows are judged one by
    one and written into the columns."""
    rng = np.random.default_rng(9)
    rows = [f"2014-04-01 {i // 60:02d}:{i % 60:02d}:00,{rng.normal(20.0, 1.0):.3f}"
            for i in range(600)]
    path = write(tmp_path / "in.csv", rows, header="timestamp,value")
    assert read_csv_columns(path) is not None
    assert_same_as_per_point(path, VigilConfig())
