"""Loss charts and the performance monitor."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vigil.updaters.performance import LossChart, PerformanceMonitor, loss_function


def test_losses() -> None:
    assert loss_function("absolute")(1.0, 3.0) == 2.0
    assert loss_function("log")(0.8, 1.0) == pytest.approx(-math.log(0.8))
    assert loss_function("log")(0.8, 0.0) == pytest.approx(-math.log(0.2))
    assert math.isfinite(loss_function("log")(1.0, 0.0))  # clipped, not infinite
    assert loss_function("zero_one")(0.2, 1.0) == 1.0
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        loss_function("hinge")


def test_loss_chart_flags_a_rise_not_a_fall() -> None:
    rng = np.random.default_rng(1)
    rise = LossChart(block=20, chart="cusum", params={"warmup": 20})
    fall = LossChart(block=20, chart="cusum", params={"warmup": 20})
    rose, fell, low_alarms = [], [], 0
    for i, loss in enumerate(rng.chisquare(1, size=4000)):
        shifted = float(loss) * (3.0 if i >= 2000 else 1.0)
        lowered = float(loss) * (0.3 if i >= 2000 else 1.0)
        rose.append(LossChart.rose(rise.observe(shifted, float(i))))
        point = fall.observe(lowered, float(i))
        fell.append(LossChart.rose(point))
        low_alarms += point is not None and point.anomaly
    assert not any(rose[:2000]) and any(rose[2000:2200])
    assert not any(fell)
    assert low_alarms > 0  # the chart saw the fall: it is not a rise
    with pytest.raises(ValueError, match="loss must be a finite number >= 0"):
        rise.observe(-1.0, 0.0)


def test_monitor_carries_both_losses_and_survives_a_restart() -> None:
    rng = np.random.default_rng(2)
    monitor = PerformanceMonitor("squared", block=25, chart_params={"warmup": 10}, span=50)
    labels = rng.normal(size=3000)
    served = labels + rng.normal(scale=0.5, size=3000)
    maintained = labels + rng.normal(scale=0.4, size=3000)
    served[2000:] += 2.0  # the served model degrades
    results = []
    for i in range(3000):
        if i == 1000:
            monitor = PerformanceMonitor.from_state(json.loads(json.dumps(monitor.state_dict())))
        results.append(monitor.observe(served[i], maintained[i], labels[i], float(i)))
    alarms = [i for i, r in enumerate(results) if r.alarm]
    assert alarms and alarms[0] >= 2000 and alarms[0] < 2100
    alarm = results[alarms[0]]
    assert alarm.served_loss is not None and alarm.maintained_loss is not None
    assert alarm.served_loss > 1.0 > 0.5 > alarm.maintained_loss
    assert not any(r.maintained_alarm for r in results)
    only_maintained = monitor.observe(None, 0.1, 0.0, 3001.0)
    assert only_maintained.served_event_loss is None and not only_maintained.alarm


def test_monitor_state_round_trip_is_exact() -> None:
    a = PerformanceMonitor("absolute", block=3, chart="shewhart", chart_params={"warmup": 3})
    for i in range(20):
        a.observe(float(i % 4), 1.0, 0.0, float(i))
    b = PerformanceMonitor.from_state(json.loads(json.dumps(a.state_dict())))
    for i in range(20, 60):
        ra = a.observe(float(i % 5), 2.0, 0.0, float(i))
        rb = b.observe(float(i % 5), 2.0, 0.0, float(i))
        assert ra == rb
