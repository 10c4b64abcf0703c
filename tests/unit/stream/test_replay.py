"""Offline replay: CSV and JSONL in, one row per point out, malformed rows skipped and counted."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from vigil.stream.cli import main
from vigil.stream.config import DetectorConfig, VigilConfig
from vigil.stream.generate import generate_events
from vigil.stream.replay import OUTPUT_HEADER, replay

SHEWHART = VigilConfig(detector=DetectorConfig("shewhart"))


def _csv(path: Path, rows: list[str], header: str = "timestamp,value,key") -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_csv_rows_keep_input_order_and_flag_the_spike(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = []
    for i, v in enumerate(rng.normal(10.0, 1.0, 200)):
        rows.append(f"{1767225600 + i},{v},a")
        rows.append(f"{1767225600 + i},{-v},b")
    rows.append("1767226000,25.0,a")
    out = io.StringIO()
    summary = replay(_csv(tmp_path / "in.csv", rows), out, SHEWHART)
    lines = out.getvalue().splitlines()
    assert tuple(lines[0].split(",")) == OUTPUT_HEADER
    body = [line.split(",") for line in lines[1:]]
    assert len(body) == 401 and summary.points == 401 and summary.series == 2
    assert [r[1] for r in body[:4]] == ["a", "b", "a", "b"]
    assert body[-1][5] == "1" and float(body[-1][4]) > 0.5
    assert summary.anomalies == sum(r[5] == "1" for r in body)
    assert float(body[-1][6]) < float(body[-1][8]) < 25.0


def test_malformed_rows_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    rows = ["1767225600,1.0", "1767225601,abc", "not-a-time,2.0", "1767225603,nan",
            "1767225604,1.0,extra", "2026-01-01T00:00:05Z,1.5"]
    errors = io.StringIO()
    out = io.StringIO()
    summary = replay(_csv(tmp_path / "in.csv", rows, header="timestamp,value"), out,
                     SHEWHART, errors=errors)
    assert summary.skipped == 4 and summary.points == 2
    reported = errors.getvalue()
    for line in (3, 4, 5, 6):
        assert f"in.csv:{line}:" in reported
    assert out.getvalue().splitlines()[1].split(",")[1:3] == ["series", "value"]


def test_jsonl_events_are_split_into_series(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = [e.body for e in generate_events(50, seed=2)]
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n{broken\n")
    errors = io.StringIO()
    summary = replay(path, io.StringIO(), SHEWHART, errors=errors)
    expected = sum(len(e["metrics"]) if "source" in e else len(e["features"]) + 1 for e in events)
    assert summary.points == expected
    assert summary.skipped == 1 and "events.jsonl:51: skipped: invalid_json" in errors.getvalue()


def test_cli_replay_with_detector_params(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rows = [f"{1767225600 + i},{v}" for i, v in enumerate([1.0, 2.0, 1.0, 2.0, 1.0, 9.0])]
    source = _csv(tmp_path / "in.csv", rows, header="timestamp,value")
    out = tmp_path / "out.csv"
    code = main(["replay", str(source), "-o", str(out), "--detector", "shewhart",
                 "--param", "warmup=4", "--param", "k=3"])
    assert code == 0
    last = out.read_text().splitlines()[-1].split(",")
    assert last[5] == "1"
    assert "replayed 6 rows" in capsys.readouterr().err
    assert main(["replay", str(source), "--param", "warmup=1"]) == 2
    assert main(["replay", str(tmp_path / "absent.csv")]) == 1


def test_a_huge_field_is_one_malformed_row_not_a_traceback(tmp_path: Path) -> None:
    rows = ["1767225600,1.0", "1767225601," + "9" * 200_000, "1767225602,2.0"]
    errors = io.StringIO()
    summary = replay(_csv(tmp_path / "in.csv", rows, header="timestamp,value"), io.StringIO(),
                     SHEWHART, errors=errors)
    assert (summary.points, summary.skipped) == (2, 1)
    assert "in.csv:3: skipped: field larger than field limit" in errors.getvalue()


def test_csv_values_have_the_bounds_of_jsonl_events(tmp_path: Path) -> None:
    """1e200 in a CSV gave infinite limits; a JSONL event with it was refused."""
    rows = ["1767225600,1e200", "1767225601,-1e151", "1767225602,1e150"]
    summary = replay(_csv(tmp_path / "in.csv", rows, header="timestamp,value"), io.StringIO(),
                     SHEWHART, errors=io.StringIO())
    assert (summary.points, summary.skipped) == (1, 2)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"\xef\xbb\xbftimestamp,value\n1767225600,1.0\n")
    assert replay(path, io.StringIO(), SHEWHART).points == 1
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"source": "s", "timestamp": 1767225600, '
                      b'"metrics": {"m": 1}}\n')
    assert replay(jsonl, io.StringIO(), SHEWHART).points == 1


def test_replay_errors_are_one_line_and_a_non_zero_exit(
        tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = _csv(tmp_path / "in.csv", ["1767225600,1.0"], header="timestamp,value")
    assert main(["replay", str(tmp_path)]) == 1  # a directory
    assert main(["replay", str(source), "-o", str(tmp_path / "missing" / "out.csv")]) == 1
    bad = _csv(tmp_path / "bad.csv", ["x,y", "1767225600,abc"], header="timestamp,value")
    assert main(["replay", str(bad), "-o", str(tmp_path / "out.csv")]) == 1  # nothing valid
    err = capsys.readouterr().err
    assert "is a directory" in err and "cannot write" in err
    assert "nothing valid was read" in err and "Traceback" not in err
    for line in err.splitlines():
        assert line.startswith(("vigil: ", str(bad), "replayed "))
