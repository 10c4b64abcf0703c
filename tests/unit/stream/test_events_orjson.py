"""The orjson fast path of decode_event gives exactly the json module's values and verdicts."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vigil.stream.engine.events as events
from tests.unit.stream.test_events import event_like, valid_predictions, valid_telemetry
from vigil.stream.engine.events import EventKind, decode_event, parse_json, parse_json_slowly
from vigil.stream.errors import EventError


def verdict(raw: bytes, kind: EventKind | None = None) -> str:
    """What decode_event says about ``raw``: the event or the error, exactly (floats by repr)."""
    try:
        return repr(decode_event(raw, kind))
    except EventError as error:
        return f"EventError({error.reason!r}, {error.detail!r})"


def slow_verdict(raw: bytes, kind: EventKind | None = None) -> str:
    """The same, with the JSON step done by the json module only (the behaviour before orjson)."""
    with mock.patch.object(events, "parse_json", parse_json_slowly):
        return verdict(raw, kind)


def parsed(parse: Any, raw: bytes) -> str:
    try:
        return repr(parse(raw))  # repr tells 1 from 1.0, -0.0 from 0.0, and shows key order
    except EventError as error:
        return f"EventError({error.reason!r}, {error.detail!r})"


def assert_same(raw: bytes, kind: EventKind | None = None) -> None:
    assert verdict(raw, kind) == slow_verdict(raw, kind), raw
    assert parsed(parse_json, raw) == parsed(parse_json_slowly, raw), raw


# --- mutations of valid events -------------------------------------------------------------

FRAGMENTS = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"0", b"-", b".", b"e", b"E",
             b"+", b" ", b"\t", b"\n", b"\x00", b"\x1f", b"\xff", b"\xed\xa0\x80", b"\xc0\xaf",
             b"\xef\xbb\xbf", b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400",
             b"\\ud800", b"\\udc80", b"\\ud83d\\ude00", b"\\u0000", b"\\/", b"null", b"true",
             b"9" * 19, b"1" * 25, b"18446744073709551616", b"-9223372036854775809",
             b"9223372036854775807", b"0.1" + b"0" * 30 + b"1", b"1" * 400, b"01", b"1.",
             b".5", b'"timestamp": 1e9,', b'"metrics": {"a": 1, "a": 2},', b"[" * 70,
             b"]" * 70, b"{}" * 40]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid event's bytes with a few edits: cut, insert, replace, or an interesting fragment."""
    body = draw(valid_predictions | valid_telemetry)
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    raw = bytearray(text.encode("utf-8", "surrogatepass"))  # a lone surrogate: invalid UTF-8
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        action = draw(st.sampled_from(["cut", "insert", "replace", "fragment", "truncate"]))
        if action == "cut" and raw:
            del raw[min(at, len(raw) - 1)]
        elif action == "insert":
            raw[at:at] = bytes([draw(st.integers(0, 255))])
        elif action == "replace" and raw:
            raw[min(at, len(raw) - 1)] = draw(st.integers(0, 255))
        elif action == "fragment":
            raw[at:at] = draw(st.sampled_from(FRAGMENTS))
        else:
            del raw[at:]
    return bytes(raw)


number_literals = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,4})?\Z"
).map(str.encode)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated(), kind=st.sampled_from([None, "prediction", "telemetry"]))
def test_mutated_events_get_the_same_verdict_and_values(raw: bytes,
                                                        kind: EventKind | None) -> None:
    assert_same(raw, kind)


@settings(max_examples=800)
@given(body=valid_predictions | valid_telemetry, ensure_ascii=st.booleans())
def test_valid_events_decode_to_identical_values(body: dict[str, Any],
                                                 ensure_ascii: bool) -> None:
    try:
        raw = json.dumps(body, ensure_ascii=ensure_ascii).encode()
    except UnicodeEncodeError:  # a lone surrogate in an ignored field: escape it
        raw = json.dumps(body).encode()
    assert not verdict(raw).startswith("EventError")
    assert_same(raw)


@settings(max_examples=800)
@given(body=event_like)
def test_event_like_json_gets_the_same_verdict(body: Any) -> None:
    assert_same(json.dumps(body).encode())  # NaN/Infinity literals, \uXXXX escapes, big ints


@settings(max_examples=1000)
@given(literal=number_literals, where=st.sampled_from(["metric", "timestamp", "name"]))
def test_number_literals_parse_to_the_same_value(literal: bytes, where: str) -> None:
    if where == "metric":
        raw = b'{"source": "w", "timestamp": 1e9, "metrics": {"a": ' + literal + b"}}"
    elif where == "timestamp":
        raw = b'{"source": "w", "timestamp": ' + literal + b', "metrics": {"a": 1}}'
    else:
        raw = b'{"source": ' + literal + b', "timestamp": 1e9, "metrics": {"a": 1}}'
    assert_same(raw)


@settings(max_examples=500)
@given(raw=st.binary(max_size=120))
def test_arbitrary_bytes_get_the_same_verdict(raw: bytes) -> None:
    assert_same(raw)


@pytest.mark.parametrize("raw", [
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1, "b": 2, "a": 3.5}}',
    b'{"source": "w", "source": "v", "timestamp": 1e9, "metrics": {"a": 1}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 18446744073709551616}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": -9223372036854775809}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": ' + b"1" * 200 + b"}}",
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": ' + b"1" * 5000 + b"}}",
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1e400}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": NaN}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"\\ud800": 1}}',
    b'{"source": "\\ud83d\\ude00", "timestamp": 1e9, "metrics": {"a": -0.0}}',
    b'\xef\xbb\xbf{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}, "x": ' + b"[" * 64 + b"]" * 64
    + b"}",
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}, "x": ' + b"[" * 65 + b"]" * 65
    + b"}",
    b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}, "x": "' + b"[" * 100 + b'"}',
    b"", b"   ", b"[]", b'"x"', b"{} {}",
])
def test_known_differences_between_orjson_and_json_are_covered(raw: bytes) -> None:
    assert_same(raw)


def test_the_fast_path_is_taken_for_ordinary_events() -> None:
    raw = b'{"source": "w", "timestamp": 1767225600.25, "metrics": {"a": 1, "b": 2.5}}'
    with mock.patch.object(events, "parse_json_slowly", side_effect=AssertionError("slow")):
        assert decode_event(raw).metrics == {"a": 1.0, "b": 2.5}
