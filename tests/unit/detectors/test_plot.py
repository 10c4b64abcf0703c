"""The control chart: a valid PNG from points, and from `vigil replay --plot`."""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vigil.detectors.coldstart
import vigil.detectors.drift
import vigil.detectors.ensemble
import vigil.detectors.multivariate  # noqa: F401 - registers the detectors the CLI offers
import vigil.detectors.plot as plot_module
from vigil.detectors.base import PointResult
from vigil.detectors.ensemble import EnsembleDetector
from vigil.detectors.plot import ChartPoint, PlotUnavailable, render_control_chart
from vigil.stream.cli import main
from vigil.stream.config import DetectorConfig, VigilConfig
from vigil.stream.replay import SeriesCapture, replay

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START = 1_767_225_600

SHEWHART = VigilConfig(detector=DetectorConfig("shewhart"))


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def chart_points() -> list[ChartPoint]:
    values = np.random.default_rng(1).normal(120.0, 15.0, 600)
    values[200] += 120.0
    values[400:] += 45.0
    detector = EnsembleDetector(warmup=50)
    return [ChartPoint(START + 60.0 * t, float(v), detector.update(float(v), START + 60.0 * t))
            for t, v in enumerate(values)]


def test_renders_a_png_of_plausible_size() -> None:
    points = chart_points()
    assert any(p.result.anomaly for p in points) and any(p.result.rebaselined for p in points)
    data = render_control_chart(points, title="web-1/latency_ms — ensemble")
    width, height = png_size(data)
    assert (width, height) == (1210, 765)  # 11 × (4.8 × 1.45) inches at 110 dpi
    assert 20_000 < len(data) < 1_000_000


def test_plain_timestamps_and_open_limits_are_drawn() -> None:
    result = PointResult(0.0, False, 1.0, float("-inf"), float("inf"), 0.0, 0, provisional=True)
    points = [ChartPoint(float(t), 1.0 + t % 3, result) for t in range(20)]
    assert png_size(render_control_chart(points))[0] > 0


def test_no_points_is_an_error() -> None:
    with pytest.raises(ValueError, match="no points"):
        render_control_chart([])


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(PlotUnavailable, match=r"vigil-kafka\[plot\]"):
        render_control_chart(chart_points()[:5])


def _csv(path: Path) -> Path:
    rng = np.random.default_rng(5)
    rows = ["timestamp,value,key"]
    for t in range(400):
        a, b = rng.normal(50.0, 5.0), rng.normal(10.0, 1.0)
        rows.append(f"{START + 60 * t},{a + (60.0 if t == 300 else 0.0)},web-1")
        rows.append(f"{START + 60 * t},{b},web-2")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_replay_captures_the_wanted_series(tmp_path: Path) -> None:
    capture = SeriesCapture("web-2/value")
    replay(_csv(tmp_path / "in.csv"), io.StringIO(), SHEWHART, capture=capture)
    assert capture.series == "web-2/value" and len(capture.points) == 400
    assert capture.seen == ["web-1/value", "web-2/value"]
    busiest = SeriesCapture(None)  # the series with the most alarms: web-1 has the spike
    replay(tmp_path / "in.csv", io.StringIO(), VigilConfig(detector=DetectorConfig("ensemble")),
           capture=busiest)
    assert busiest.series == "web-1/value" and len(busiest.points) == 400
    assert busiest.alarms["web-1/value"] > busiest.alarms["web-2/value"]
    by_key = SeriesCapture("web-2")
    replay(tmp_path / "in.csv", io.StringIO(), SHEWHART, capture=by_key)
    assert by_key.series == "web-2/value"


def test_vigil_replay_plot_writes_the_chart(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = _csv(tmp_path / "in.csv")
    out = tmp_path / "chart.png"
    code = main(["replay", str(source), "--detector", "ensemble", "--param", "warmup=50",
                 "-o", str(tmp_path / "out.csv"), "--plot", str(out), "--series", "web-1/value"])
    assert code == 0
    width, height = png_size(out.read_bytes())
    assert width > 800 and height > 300
    assert "drew web-1/value (400 points, 1 alarm)" in capsys.readouterr().err
    rows = (tmp_path / "out.csv").read_text().splitlines()
    spike = [r for r in rows[1:] if r.split(",")[1] == "web-1" and r.split(",")[5] == "1"]
    assert spike and spike[0].startswith(f"{float(START + 60 * 300)!r},")


def test_the_chart_has_a_panel_of_what_fires_labelled_at_each_alarm(
        monkeypatch: pytest.MonkeyPatch) -> None:
    labels: list[str] = []
    original = plot_module._draw_tests

    def spy(axes: Any, x: Any, points: Any, dense: bool) -> None:
        original(axes, x, points, dense)
        labels.extend(text.get_text() for text in axes.texts)
        labels.extend(line.get_label() for line in axes.get_lines())

    monkeypatch.setattr(plot_module, "_draw_tests", spy)
    render_control_chart(chart_points())
    fired = [p.result.explanation for p in chart_points() if p.result.anomaly]
    assert fired and all(e is not None and e.describe() in labels for e in fired)
    assert {"shewhart", "cusum", "ewma", "limit"} <= set(labels)


def test_vigil_replay_plot_of_an_unknown_series_lists_the_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _csv(tmp_path / "in.csv")
    code = main(["replay", str(source), "-o", str(tmp_path / "out.csv"),
                 "--plot", str(tmp_path / "chart.png"), "--series", "db-1/value"])
    assert code == 1
    err = capsys.readouterr().err
    assert "'db-1/value' is not in the input" in err and "web-1/value, web-2/value" in err
    assert not (tmp_path / "chart.png").exists()


def test_series_without_plot_is_a_usage_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(_csv(tmp_path / "in.csv")), "--series", "web-1/value"])
    assert code == 2
    assert "--plot" in capsys.readouterr().err


def test_vigil_replay_plot_without_matplotlib_fails_before_replaying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "out.csv"
    code = main(["replay", str(_csv(tmp_path / "in.csv")), "-o", str(out),
                 "--plot", str(tmp_path / "chart.png")])
    assert code == 1
    assert "pip install 'vigil-kafka[plot]'" in capsys.readouterr().err
    assert not out.exists()
