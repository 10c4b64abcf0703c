"""Monitor.observe_many: the same observations, state and bookkeeping as observe per event."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.detectors.bank import BankSeries
from vigil.stream.engine.events import Event, PredictionEvent, TelemetryEvent
from vigil.stream.engine.monitor import Monitor, Observation, SeriesId
from vigil.stream.state import PartitionId

T0 = 1_767_225_600.0
PARTITIONS: list[PartitionId] = [("telemetry", 0), ("telemetry", 1), ("predictions", 0)]
ENSEMBLE = {"warmup": 10, "clear_after": 5, "rebaseline_after": 20, "arl0": 300.0}

CONFIGS: dict[str, dict[str, Any]] = {
    "ensemble": {"detector_name": "ensemble", "params": ENSEMBLE, "max_series": 1000},
    "ensemble-evicting": {"detector_name": "ensemble", "params": ENSEMBLE, "max_series": 50,
                          "series_ttl_s": 300.0},
    "default-ensemble": {"detector_name": "ensemble", "max_series": 1000},
    "shewhart-exclude": {"detector_name": "shewhart",
                         "params": {"warmup": 8, "outliers": "exclude", "k": 2.5},
                         "max_series": 50, "series_ttl_s": 300.0},
    "mixed": {
        "detector_name": "shewhart", "params": {"warmup": 8},
        "overrides": {
            "telemetry/web-1/*": {"name": "cusum", "params": {"warmup": 8, "h": 3.0}},
            "telemetry/*/cpu": {"name": "shewhart", "params": {"rules": ["we1", "we2"]}},
            "telemetry/db-*/*": {"name": "ensemble", "params": ENSEMBLE},
            "prediction/*/features.b": {"name": "ewma", "params": {"warmup": 8,
                                                                   "outliers": "learn"}},
            "prediction/m-2/*": {"name": "robust", "params": {}},
        },
        "groups": {"telemetry": r"(?P<group>web)-\d+"},
        "multivariate": {"name": "hst", "params": {"window_size": 20, "n_trees": 3,
                                                   "height": 4}},
        "max_series": 52, "series_ttl_s": 300.0,
    },
}


def make(config: str) -> Monitor:
    spec = dict(CONFIGS[config])
    name = spec.pop("detector_name")
    return Monitor(name, spec.pop("params", None), **spec)


def events(seed: int, count: int) -> list[tuple[Event, PartitionId]]:
    """Telemetry and prediction events of a few series each, with shifts, spikes, pauses
    (TTL restarts), late events and the odd non-finite value."""
    rng = random.Random(seed)
    sources = ["web-1", "web-2", "web-3", "db-1", "db-2", "cache-1"]
    level = {name: rng.uniform(0, 100) for name in sources + ["m-1", "m-2"]}
    clock = T0
    out: list[tuple[Event, PartitionId]] = []
    for _ in range(count):
        clock += rng.choice([0.0, 1.0, 1.0, 2.0, 5.0]) if rng.random() > 0.01 else 500.0
        timestamp = clock - (rng.uniform(0, 50) if rng.random() < 0.03 else 0.0)
        for name in level:
            if rng.random() < 0.005:
                level[name] += rng.choice([-1, 1]) * rng.uniform(5, 30)

        def value(name: str, scale: float = 1.0) -> float:
            v = rng.gauss(level[name], 2.0 * scale)
            if rng.random() < 0.02:
                v += rng.choice([-1, 1]) * rng.uniform(15, 80)
            return v if rng.random() > 0.003 else rng.choice([math.nan, math.inf])

        if rng.random() < 0.7:
            source = rng.choice(sources)
            metrics = {m: value(source, i + 1.0) for i, m in enumerate(
                rng.sample(["latency", "cpu", "errors", "queue"], rng.randint(1, 4)))}
            out.append((TelemetryEvent(source, timestamp, metrics),
                        PARTITIONS[rng.randint(0, 1)]))
        else:
            model = rng.choice(["m-1", "m-2"])
            features = {f: value(model, 0.5) for f in rng.sample(["a", "b", "c"],
                                                                   rng.randint(0, 3))}
            out.append((PredictionEvent(model, timestamp, features, value(model)),
                        PARTITIONS[2]))
    return out


def outcome(observation: Observation) -> str:
    return repr((observation.event_type, observation.key, observation.metric, observation.value,
                 observation.result))


def notable(observation: Observation) -> bool:
    r = observation.result
    return r.anomaly or r.resolved or r.rebaselined


def act_on(observations: list[Observation]) -> None:
    """What the runtime does with a series' episode when it publishes alerts."""
    for observation in observations:
        if observation.result.resolved:
            observation.series.episode = None
        if observation.result.anomaly:
            observation.series.episode = f"{observation.key}/{observation.metric}"


def per_event(monitor: Monitor, stream: list[tuple[Event, PartitionId]]
              ) -> list[list[Observation] | str]:
    out: list[list[Observation] | str] = []
    for event, partition in stream:
        try:
            observed = list(monitor.observe(event, partition))
        except Exception as exc:
            out.append(repr(exc))
            continue
        act_on(observed)
        out.append(observed)
    return out


def bodies(monitor: Monitor) -> str:
    return json.dumps({f"{p[0]}/{p[1]}": (monitor.is_dirty(p), monitor.export_partition(p))
                       for p in sorted(monitor.partitions())}, sort_keys=True)


def check(config: str, seed: int, count: int, report: str) -> None:
    stream = events(seed, count)
    rng = random.Random(seed + 1)
    reference, batched = make(config), make(config)
    allowed: set[SeriesId] = {("telemetry", "web-2", "latency"), ("prediction", "m-1",
                                                                   "prediction")}
    ask = {"none": None, "all": lambda sid: True, "some": allowed.__contains__}[report]
    start = 0
    while start < len(stream):
        size = rng.choice([1, 2, 3, 10, 40, 200])
        chunk = stream[start:start + size]
        expected = per_event(reference, chunk)
        got = batched.observe_many(chunk, ask)
        assert len(got) == len(chunk)
        for index, (want, have) in enumerate(zip(expected, got, strict=True)):
            if isinstance(want, str):
                assert isinstance(have, Exception) and repr(have) == want, (start + index)
                continue
            assert not isinstance(have, Exception), (start + index, have)
            full = {(o.key, o.metric): outcome(o) for o in want}
            shown = [outcome(o) for o in have]
            # every returned observation is the per-event one, in the event's point order
            assert shown == [full[(o.key, o.metric)] for o in have], start + index
            assert [(o.key, o.metric) for o in have] == [
                (o.key, o.metric) for o in want if (o.key, o.metric) in
                {(h.key, h.metric) for h in have}]
            must = [outcome(o) for o in want if notable(o)
                    or (ask is not None and ask((o.event_type, o.key, o.metric)))]
            assert [s for s in shown if s in must] == must, start + index
            if report == "all":
                assert shown == [outcome(o) for o in want]
        for observed in got:
            if not isinstance(observed, Exception):
                act_on(observed)
        start += len(chunk)
        assert (batched.evicted, batched.expired, batched.series_count) == (
            reference.evicted, reference.expired, reference.series_count)
        if rng.random() < 0.3:
            assert bodies(batched) == bodies(reference), start
    assert bodies(batched) == bodies(reference)
    assert [(s.partition, s.series_id) for s in batched._recency] == [
        (s.partition, s.series_id) for s in reference._recency]


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize(("seed", "report"), [(0, "none"), (1, "some"), (2, "all")])
def test_batches_match_per_event_observation(config: str, seed: int, report: str) -> None:
    check(config, seed, 1500, report)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), config=st.sampled_from(sorted(CONFIGS)),
       report=st.sampled_from(["none", "some", "all"]))
def test_batches_match_on_any_stream(seed: int, config: str, report: str) -> None:
    check(config, seed, 300, report)


def scenario(config: str) -> tuple[Monitor, set[str], int]:
    monitor = make(config)
    stream = events(0, 1500)
    kinds: set[str] = set()
    failures = 0
    for start in range(0, len(stream), 100):
        for observed in monitor.observe_many(stream[start:start + 100], lambda sid: True):
            if isinstance(observed, Exception):
                failures += 1
                continue
            for o in observed:
                kinds |= {k for k in ("anomaly", "resolved", "rebaselined")
                          if getattr(o.result, k)}
    return monitor, kinds, failures


def test_the_scenarios_exercise_what_they_claim() -> None:
    monitor, kinds, failures = scenario("mixed")
    assert failures and monitor.evicted and monitor.expired and "anomaly" in kinds
    detectors = {type(s.detector).__name__ for p in monitor._partitions.values()
                 for s in p.series.values()}
    assert {"BankSeries", "ShewhartChart", "HalfSpaceTreesDetector"} <= detectors
    assert any(s.group for p in monitor._partitions.values() for s in p.series.values())
    monitor, kinds, failures = scenario("ensemble-evicting")
    assert failures and monitor.evicted and monitor.expired
    assert kinds == {"anomaly", "resolved", "rebaselined"}


def test_snapshots_cross_between_the_paths() -> None:
    stream = events(5, 800)
    batched, reference = make("ensemble"), make("ensemble")
    for observed in batched.observe_many(stream[:400]):
        act_on([] if isinstance(observed, Exception) else observed)
    per_event(reference, stream[:400])
    for partition in batched.partitions():
        text = json.dumps(batched.export_partition(partition))
        assert text == json.dumps(reference.export_partition(partition))
        body = json.loads(text)
        restored = make("ensemble")
        restored.import_partition(partition, body)
        part = [(e, p) for e, p in stream[400:] if p == partition]
        assert [outcome(o) for o in restored.observe_many(part, lambda sid: True)[0]] == \
            [outcome(o) for o in per_event(reference, part[:1])[0]]  # type: ignore[union-attr]
    assert any(isinstance(s.detector, BankSeries)
               for p in batched._partitions.values() for s in p.series.values())


def test_observe_after_observe_many_takes_series_out_of_the_bank() -> None:
    stream = events(8, 600)
    mixed, reference = make("ensemble"), make("ensemble")
    for start in range(0, 600, 50):
        chunk = stream[start:start + 50]
        if start % 100:
            per_event(mixed, chunk)
        else:
            for observed in mixed.observe_many(chunk):
                act_on([] if isinstance(observed, Exception) else observed)
        per_event(reference, chunk)
        assert bodies(mixed) == bodies(reference)
