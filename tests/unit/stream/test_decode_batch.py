"""decode_batch gives every record exactly what decode_event gives it: the same event (floats
by repr) or the same dead-letter reason and detail, for a corpus of malformed events and for
arbitrary input."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.stream.test_events import T0, event_like, prediction, telemetry, valid_predictions
from tests.unit.stream.test_events import valid_telemetry as valid_telemetries
from vigil.stream.engine import events
from vigil.stream.engine.events import (
    DEFAULT_LIMITS,
    EventKind,
    EventLimits,
    decode_batch,
    decode_event,
)
from vigil.stream.errors import EventError

KINDS: list[EventKind | None] = ["telemetry", "prediction", "label", None]
TIGHT = EventLimits(max_names=2, max_name_length=5, latest_timestamp=T0 + 60)


def old_verdict(raw: bytes, kind: EventKind | None, limits: EventLimits) -> str:
    """What decode_event says: the event's repr or the error's reason and detail."""
    try:
        return repr(decode_event(raw, kind, limits))
    except EventError as error:
        return f"{error.reason}: {error.detail}"


def new_verdict(raw: bytes, kind: EventKind | None, limits: EventLimits) -> str:
    (outcome,) = decode_batch([raw], [kind], limits)
    if isinstance(outcome, EventError):
        return f"{outcome.reason}: {outcome.detail}"
    return repr(outcome)


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def label(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prediction_id": "req-1", "label": 1, "timestamp": T0}
    body.update(changes)
    return body


BODIES: list[Any] = [
    telemetry(), prediction(), label(), label(model="fraud"),
    prediction(model_version="2.3.0", prediction_id="req-1", label=1, features={"n": 3}),
    prediction(features=None), prediction(features={}), prediction(model_version=None),
    telemetry(timestamp=int(T0)), telemetry(timestamp=T0 * 1000), telemetry(timestamp=1e11),
    telemetry(timestamp=1e11 + 1), telemetry(timestamp="2026-01-01T00:00:00Z"),
    telemetry(timestamp="2026-01-01"), telemetry(timestamp=T0 + 3600),
    telemetry(source=None), telemetry(source=""), telemetry(source=7), telemetry(source="x" * 6),
    telemetry(metrics=None), telemetry(metrics={}), telemetry(metrics=[1.0]),
    telemetry(metrics={"cpu": "41"}), telemetry(metrics={"cpu": None}),
    telemetry(metrics={"cpu": True}), telemetry(metrics={"cpu": {}}),
    telemetry(metrics={"a": 1, "b": 2, "c": 3}), telemetry(metrics={"longname": 1}),
    telemetry(metrics={"": 1}), telemetry(metrics={"a": 1e151}), telemetry(metrics={"a": -1e151}),
    telemetry(metrics={"a": 1e150}), telemetry(metrics={"a": 10**200}),
    telemetry(metrics={"a": 10**150}), telemetry(metrics={"a": -(10**150)}),
    telemetry(metrics={"a": -1e150}), telemetry(metrics={"a": int(1e150)}),
    telemetry(metrics={"a": int(1e150) + 1}), prediction(prediction=10**150),
    prediction(label=-(10**150)), label(label=10**150),
    telemetry(timestamp=None), telemetry(timestamp=0), telemetry(timestamp=-5.0),
    telemetry(timestamp=True), telemetry(timestamp=[T0]), telemetry(timestamp=""),
    telemetry(timestamp="yesterday"), telemetry(timestamp="1767225600"),
    telemetry(timestamp=7_258_118_400), telemetry(timestamp=5e10), telemetry(timestamp=1e17),
    telemetry(timestamp=10**30), {"source": "w", "metrics": {"a": 1}},
    {"source": "w", "timestamp": T0}, telemetry(extra=[1, 2]), telemetry(extra="\ud800"),
    prediction(model=""), prediction(model=["m"]), prediction(model="x" * 6),
    prediction(features="a=1"), prediction(features={"a": "1"}), prediction(prediction="0.9"),
    prediction(prediction=None), prediction(prediction=True), prediction(prediction=1e151),
    prediction(label="yes"), prediction(label=1e151), prediction(label=False),
    prediction(model_version=2), prediction(model_version=""), prediction(model_version="x" * 6),
    prediction(prediction_id=17), prediction(prediction_id="x" * 6),
    {"model": "m", "timestamp": T0}, prediction(injected="spike"),
    label(prediction_id=None), label(prediction_id=""), label(prediction_id=3),
    label(label=None), label(label="1"), label(label=True), label(model=""), label(model=5),
    label(model="x" * 6), label(timestamp="never"),
    [1, 2], "web-1", None, 3.5, {}, {"other": 1},
]
RAWS: list[bytes] = [
    b"", b"  \n", b"\xff{}", '{"source": "é"}'.encode("latin-1"), b"\xef\xbb\xbf{}",
    b'{"source": ', b"{'source': 'x'}", b"[" * 200, b"1" * 5000,
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": NaN}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": Infinity}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1e400}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": ' + b"9" * 5000 + b"}}",
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 123456789012345678901234567}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 18446744073709551617}}',
    b'{"source": "w", "timestamp": 1767225600250123456789, "metrics": {"a": 1}}',
    b'{"source": "w", "timestamp": NaN, "metrics": {"a": 1}}',
    b'{"source": "\\ud800", "timestamp": 1e9, "metrics": {"a": 1}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"\\udc80": 1}}',
    b'{"source": "\\ud83d\\ude00", "timestamp": 1e9, "metrics": {"\\u00e9": 1}}',
    b'{"source": "w\x01", "timestamp": 1e9, "metrics": {"a": 1}}',
    b'{"source": "a", "source": "b", "timestamp": 1e9, "metrics": {"a": 1}}',
    b'{"source": 5, "source": "b", "timestamp": 1e9, "metrics": {"a": 1}}',
    b'{"source": "b", "source": 5, "timestamp": 1e9, "metrics": {"a": 1}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1, "b": 2, "a": 3}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": "x", "a": 3}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}, "metrics": {}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": -0}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": -0.0, "b": 1E+2, "c": 5e-324}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 01}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1},}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}} x',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}}\x00',
    b' {"source": "w", "timestamp": 1e9, "metrics": {"a": 1}} \n',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}, "x": ' + b"[" * 70 + b"]" * 70
    + b"}",
    b'{"model": "m", "timestamp": 1e9, "prediction": 0.5, "features": {"a": 1}, "label": null,'
    b' "model_version": null, "prediction_id": null}',
    *(json.dumps(body, ensure_ascii=False).encode() for body in (  # names counted in characters
        telemetry(source="hôteé"), telemetry(source="hôteéx"), telemetry(metrics={"ééééé": 1}),
        telemetry(metrics={"éééééé": 1}), prediction(model="😀😀😀😀😀", model_version="😀" * 6),
        label(prediction_id="😀" * 5, model="é" * 6))),
]
CORPUS = [encode(body) for body in BODIES] + RAWS


@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, TIGHT], ids=["default", "tight"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_corpus_of_malformed_events_gets_the_same_verdicts(kind: EventKind | None,
                                                             limits: EventLimits) -> None:
    for raw in CORPUS:
        assert new_verdict(raw, kind, limits) == old_verdict(raw, kind, limits), raw[:200]


def test_a_batch_keeps_record_order_and_counts_the_same_reasons() -> None:
    kinds: list[EventKind | None] = [KINDS[i % len(KINDS)] for i in range(len(CORPUS))]
    outcomes = decode_batch(CORPUS, kinds, TIGHT)
    assert len(outcomes) == len(CORPUS)
    reasons_new: dict[str, int] = {}
    reasons_old: dict[str, int] = {}
    for raw, kind, outcome in zip(CORPUS, kinds, outcomes, strict=True):
        old = old_verdict(raw, kind, TIGHT)
        if isinstance(outcome, EventError):
            reasons_new[outcome.reason] = reasons_new.get(outcome.reason, 0) + 1
            reasons_old[old.split(":")[0]] = reasons_old.get(old.split(":")[0], 0) + 1
        else:
            assert repr(outcome) == old
    assert reasons_new == reasons_old
    assert len(reasons_new) >= 9  # the corpus reaches most reasons, not just one


@settings(max_examples=400)
@given(body=event_like, kind=st.sampled_from(KINDS))
def test_arbitrary_json_values_get_the_same_verdicts(body: Any, kind: EventKind | None) -> None:
    raw = json.dumps(body).encode()
    for limits in (DEFAULT_LIMITS, TIGHT):
        assert new_verdict(raw, kind, limits) == old_verdict(raw, kind, limits)


@settings(max_examples=300)
@given(body=valid_predictions | valid_telemetries, kind=st.sampled_from(KINDS))
def test_valid_events_get_the_same_values(body: dict[str, Any], kind: EventKind | None) -> None:
    raw = json.dumps(body).encode()
    assert new_verdict(raw, kind, DEFAULT_LIMITS) == old_verdict(raw, kind, DEFAULT_LIMITS)


@settings(max_examples=300)
@given(raw=st.binary(max_size=120), kind=st.sampled_from(KINDS))
def test_arbitrary_bytes_get_the_same_verdicts(raw: bytes, kind: EventKind | None) -> None:
    assert new_verdict(raw, kind, DEFAULT_LIMITS) == old_verdict(raw, kind, DEFAULT_LIMITS)


number_literals = (st.floats(allow_nan=False, allow_infinity=False).map(repr)
                   | st.integers(-(10**25), 10**25).map(str)
                   | st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?",
                                   fullmatch=True))


@settings(max_examples=500)
@given(literal=number_literals)
def test_every_number_literal_reads_as_the_same_float(literal: str) -> None:
    raw = b'{"source": "w", "timestamp": 1e9, "metrics": {"a": ' + literal.encode() + b"}}"
    assert new_verdict(raw, "telemetry", DEFAULT_LIMITS) == old_verdict(raw, "telemetry",
                                                                        DEFAULT_LIMITS)


def test_plain_events_take_the_fast_path_without_decode_event() -> None:
    raws = [encode(telemetry()), encode(prediction(label=1, prediction_id="r")), encode(label())]
    with mock.patch.object(events, "decode_event", side_effect=AssertionError("slow path")):
        outcomes = decode_batch(raws, ["telemetry", "prediction", "label"])
    assert [type(outcome).__name__ for outcome in outcomes] == [
        "TelemetryEvent", "PredictionEvent", "LabelEvent"]
