"""decode_event: valid events of both kinds, every rejection reason, and no escape for any input."""

from __future__ import annotations

import json
import math
import pickle
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.stream.engine.events import (
    DEFAULT_LIMITS,
    REASONS,
    EventKind,
    EventLimits,
    PredictionEvent,
    TelemetryEvent,
    decode_event,
    event_series,
    parse_timestamp,
)
from vigil.stream.errors import BrokerError, ConfigError, EventError, StateError, VigilError

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def telemetry(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"source": "web-1", "timestamp": T0, "metrics": {"cpu": 41.5}}
    body.update(changes)
    return body


def prediction(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "fraud", "timestamp": T0, "features": {"amount": 42.5},
                            "prediction": 0.9}
    body.update(changes)
    return body


def reject(raw: bytes, kind: EventKind | None = None,
           limits: EventLimits = DEFAULT_LIMITS) -> EventError:
    with pytest.raises(EventError) as caught:
        decode_event(raw, kind, limits)
    assert caught.value.reason in REASONS
    return caught.value


# --- valid events ---------------------------------------------------------------------------

def test_full_prediction_event() -> None:
    raw = encode(prediction(model_version="2.3.0", prediction_id="req-1", label=1))
    assert decode_event(raw) == PredictionEvent("fraud", T0, {"amount": 42.5}, 0.9, "2.3.0",
                                                "req-1", 1.0)


def test_telemetry_event() -> None:
    raw = encode(telemetry(metrics={"cpu": 41.5, "latency_ms": 118}))
    assert decode_event(raw) == TelemetryEvent("web-1", T0, {"cpu": 41.5, "latency_ms": 118.0})


def test_integers_become_floats() -> None:
    event = decode_event(encode(prediction(timestamp=int(T0), features={"items": 3},
                                           prediction=1, label=0)))
    assert isinstance(event, PredictionEvent)
    for value in (event.timestamp, event.features["items"], event.prediction, event.label):
        assert type(value) is float


def test_optional_fields_null_or_absent() -> None:
    nulls = decode_event(encode(prediction(model_version=None, prediction_id=None, label=None,
                                           features=None)))
    absent = decode_event(encode({"model": "fraud", "timestamp": T0, "prediction": 0.9}))
    assert nulls == absent == PredictionEvent("fraud", T0, {}, 0.9)


def test_empty_features_allowed() -> None:
    event = decode_event(encode(prediction(features={})))
    assert isinstance(event, PredictionEvent) and event.features == {}


def test_unknown_fields_ignored() -> None:
    raw = encode(telemetry(injected={"type": "spike"}, extra=[1, None, float("nan")]))
    assert decode_event(raw) == decode_event(encode(telemetry()))


@pytest.mark.parametrize(("timestamp", "seconds"), [
    (T0, T0),
    (int(T0), T0),
    (T0 * 1000 + 250, T0 + 0.25),
    (int(T0 * 1000), T0),
    ("2026-01-01T00:00:00Z", T0),
    ("2026-01-01T00:00:00.250Z", T0 + 0.25),
    ("2026-01-01T05:30:00+05:30", T0),
    ("2025-12-31T19:00:00-05:00", T0),
    ("2026-01-01T00:00:00", T0),  # naive means UTC
    ("2026-01-01", T0),
    (1.0, 1.0),
])
def test_timestamp_forms(timestamp: float | str, seconds: float) -> None:
    event = decode_event(encode(telemetry(timestamp=timestamp)))
    assert event.timestamp == pytest.approx(seconds, abs=1e-6)


def test_milliseconds_threshold_is_1e11() -> None:
    with pytest.raises(EventError, match="2200-01-01"):
        parse_timestamp(1e11)  # exactly 1e11 is still seconds: the year 5138
    assert parse_timestamp(1e11 + 1000) == pytest.approx(1e8 + 1)


def test_non_ascii_names_kept() -> None:
    event = decode_event('{"source": "hôte-é", "timestamp": 1e9, "metrics": {"😀": 1}}'.encode())
    assert event == TelemetryEvent("hôte-é", 1e9, {"😀": 1.0})
    escaped = decode_event(b'{"source": "\\ud83d\\ude00", "timestamp": 1e9, "metrics": {"a": 1}}')
    assert isinstance(escaped, TelemetryEvent) and escaped.source == "😀"


# --- kind -----------------------------------------------------------------------------------

def test_kind_inferred_from_model_or_source() -> None:
    assert isinstance(decode_event(encode(prediction())), PredictionEvent)
    assert isinstance(decode_event(encode(telemetry())), TelemetryEvent)
    both = encode(prediction(source="web-1", metrics={"cpu": 1.0}))
    assert isinstance(decode_event(both), PredictionEvent)  # "model" wins


def test_kind_given_overrides_inference() -> None:
    both = encode(prediction(source="web-1", metrics={"cpu": 1.0}))
    assert isinstance(decode_event(both, "telemetry"), TelemetryEvent)
    error = reject(encode(telemetry()), "prediction")
    assert (error.reason, error.detail) == ("missing_field", "field 'model' is missing or null")


def test_unknown_kind() -> None:
    assert reject(encode({"timestamp": T0, "metrics": {"a": 1}})).reason == "unknown_kind"


def test_bad_kind_argument_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        decode_event(encode(telemetry()), "metrics")  # type: ignore[arg-type]


# --- each rejection reason ------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "reason", "detail"), [
    (b"", "empty", "payload is empty"),
    (b"  \n", "empty", "payload is empty"),
    (b"\xff{}", "invalid_utf8", "byte 0"),
    ('{"source": "é"}'.encode("latin-1"), "invalid_utf8", "not valid UTF-8"),
    (b"\xef\xbb\xbf{}", "invalid_json", "BOM"),
    (b'{"source": ', "invalid_json", "not valid JSON"),
    (b"{'source': 'x'}", "invalid_json", "not valid JSON"),
    (b"[" * 100_000, "invalid_json", "nested deeper than 64"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json", "nested deeper than 64"),
    (b"1" * 5000, "invalid_json", "not valid JSON"),
    (b"[1, 2]", "not_an_object", "got an array"),
    (b'"web-1"', "not_an_object", "got 'web-1'"),
    (b"null", "not_an_object", "got null"),
    (b"3.5", "not_an_object", "got 3.5"),
])
def test_undecodable_payloads(raw: bytes, reason: str, detail: str) -> None:
    error = reject(raw)
    assert error.reason == reason
    assert detail in error.detail


@pytest.mark.parametrize(("body", "reason", "detail"), [
    (telemetry(source=None), "missing_field", "field 'source' is missing or null"),
    ({"source": "w", "metrics": {"a": 1}}, "missing_field", "field 'timestamp' is missing"),
    (telemetry(timestamp=None), "missing_field", "field 'timestamp' is missing or null"),
    ({"source": "w", "timestamp": T0}, "missing_field", "field 'metrics' is missing or null"),
    ({"model": "m", "timestamp": T0}, "missing_field", "field 'prediction' is missing or null"),
    (telemetry(source=""), "empty", "field 'source' must be a non-empty string, got ''"),
    (prediction(model=""), "empty", "field 'model' must be a non-empty string"),
    (telemetry(metrics={}), "empty", "field 'metrics' must hold at least one metric"),
    (telemetry(source=7), "wrong_type", "field 'source' must be a non-empty string, got 7"),
    (prediction(model=["m"]), "wrong_type", "field 'model' must be a non-empty string, got an"),
    (telemetry(metrics=[1.0]), "wrong_type", "field 'metrics' must be an object of numbers"),
    (prediction(features="a=1"), "wrong_type", "field 'features' must be an object of numbers"),
    (telemetry(metrics={"cpu": "41"}), "wrong_type", "field 'metrics.cpu' must be a number"),
    (telemetry(metrics={"cpu": None}), "wrong_type", "got null"),
    (telemetry(metrics={"cpu": {}}), "wrong_type", "got an object"),
    (prediction(prediction="0.9"), "wrong_type", "field 'prediction' must be a number"),
    (prediction(label="yes"), "wrong_type", "field 'label' must be a number, got 'yes'"),
    (prediction(model_version=2), "wrong_type", "field 'model_version' must be a string or null"),
    (prediction(prediction_id=17), "wrong_type", "field 'prediction_id' must be a string or null"),
    (telemetry(timestamp=[T0]), "wrong_type", "field 'timestamp' must be epoch seconds"),
    (telemetry(timestamp=0), "bad_timestamp", "between 1970-01-01 and 2200-01-01, got 0"),
    (telemetry(timestamp=-5.0), "bad_timestamp", "got -5.0"),
    (telemetry(timestamp=-T0 * 1000), "bad_timestamp", "between 1970-01-01 and 2200-01-01"),
    (telemetry(timestamp=7_258_118_400), "bad_timestamp", "2200-01-01"),  # exactly 2200
    (telemetry(timestamp=5e10), "bad_timestamp", "2200-01-01"),  # seconds, year 3554
    (telemetry(timestamp=1e17), "bad_timestamp", "2200-01-01"),  # microseconds are not ms
    (telemetry(timestamp=""), "bad_timestamp", "ISO-8601"),
    (telemetry(timestamp="yesterday"), "bad_timestamp", "got 'yesterday'"),
    (telemetry(timestamp="1767225600"), "bad_timestamp", "ISO-8601"),  # numbers are not strings
    (telemetry(timestamp="1969-12-31T23:59:59Z"), "bad_timestamp", "1970-01-01"),
    (telemetry(timestamp="2200-01-01T00:00:00Z"), "bad_timestamp", "2200-01-01"),
    (telemetry(timestamp="0001-01-01T00:00:00+05:00"), "bad_timestamp", "1970-01-01"),
])
def test_invalid_events(body: dict[str, Any], reason: str, detail: str) -> None:
    error = reject(encode(body))
    assert (error.reason, detail in error.detail) == (reason, True), error.detail


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize("field", ["metrics", "features", "prediction", "label"])
def test_non_finite_numbers_rejected(literal: str, field: str) -> None:
    body = {
        "metrics": '{"source": "w", "timestamp": 1e9, "metrics": {"cpu": %s}}',
        "features": '{"model": "m", "timestamp": 1e9, "features": {"x": %s}, "prediction": 1}',
        "prediction": '{"model": "m", "timestamp": 1e9, "prediction": %s}',
        "label": '{"model": "m", "timestamp": 1e9, "prediction": 1, "label": %s}',
    }[field] % literal
    error = reject(body.encode())
    assert error.reason == "not_finite"
    assert "must be a finite number" in error.detail


def test_not_finite_detail_names_field_and_literal() -> None:
    error = reject(b'{"model": "m", "timestamp": 1e9, "features": {"amount": NaN}, '
                   b'"prediction": 1}')
    assert str(error) == ("not_finite: field 'features.amount' must be a finite number "
                          "within ±1e150, got NaN")
    error = reject(b'{"source": "w", "timestamp": 1e9, "metrics": {"a": -Infinity}}')
    assert error.detail.endswith("got -Infinity")


@pytest.mark.parametrize("field", ["metrics", "prediction", "label"])
def test_integer_beyond_float_range_is_not_finite(field: str) -> None:
    big = 10**400
    body = telemetry(metrics={"a": big}) if field == "metrics" else prediction(**{field: big})
    error = reject(encode(body))
    assert error.reason == "not_finite"
    assert "an integer of 1329 bits" in error.detail


@pytest.mark.parametrize("timestamp", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_non_finite_timestamp_is_bad_timestamp(timestamp: str) -> None:
    raw = b'{"source": "w", "timestamp": %s, "metrics": {"a": 1}}' % timestamp.encode()
    assert reject(raw).reason == "bad_timestamp"


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("field", ["metrics", "features", "prediction", "label", "timestamp"])
def test_booleans_are_not_numbers(field: str, value: bool) -> None:
    if field == "metrics":
        body = telemetry(metrics={"up": value})
    elif field == "features":
        body = prediction(features={"flag": value})
    else:
        body = prediction(**{field: value})
    error = reject(encode(body))
    assert error.reason == "wrong_type"
    assert error.detail.endswith(f"got {json.dumps(value)}")


@pytest.mark.parametrize("raw", [
    b'{"source": "\\ud800", "timestamp": 1e9, "metrics": {"a": 1}}',
    b'{"source": "w", "timestamp": 1e9, "metrics": {"\\uDFFF": 1}}',
    b'{"model": "m", "timestamp": 1e9, "prediction": 1, "model_version": "\\ud83d"}',
    b'{"model": "m", "timestamp": 1e9, "prediction": 1, "features": {"x\\ud800": 1}}',
])
def test_lone_surrogate_escapes_rejected(raw: bytes) -> None:
    # they decode to str but cannot be encoded back to UTF-8 for alert keys
    error = reject(raw)
    assert error.reason == "invalid_utf8"
    assert "lone surrogate" in error.detail


def test_overlong_names_are_cut_in_the_detail() -> None:
    error = reject(encode(telemetry(metrics={"x" * 10_000: "1"})), limits=EventLimits(
        max_name_length=100_000))
    assert error.reason == "wrong_type"
    assert len(error.detail) < 200


@pytest.mark.parametrize("body", [
    telemetry(source="s" * 257), telemetry(metrics={"m" * 257: 1.0}),
    prediction(model="m" * 257), prediction(features={"f" * 257: 1.0}),
    prediction(prediction_id="p" * 257), prediction(model_version="v" * 257),
])
def test_a_name_longer_than_the_limit_is_refused(body: dict[str, Any]) -> None:
    error = reject(encode(body))
    assert error.reason == "name_too_long"
    assert len(error.detail) < 200
    assert decode_event(encode(body), limits=EventLimits(max_name_length=257))


def test_one_event_cannot_carry_more_names_than_the_limit() -> None:
    """One 721 KiB event used to make 50,001 series; now it is refused whole."""
    many = {f"m{i}": 1.0 for i in range(50_000)}
    assert reject(encode(telemetry(metrics=many))).reason == "too_many_names"
    assert reject(encode(prediction(features=many))).reason == "too_many_names"
    assert decode_event(encode(telemetry(metrics=dict(list(many.items())[:1000]))))


def test_an_event_later_than_the_clock_allows_is_refused() -> None:
    limits = EventLimits(latest_timestamp=T0 + 60)
    assert decode_event(encode(telemetry(timestamp=T0 + 60)), limits=limits)
    error = reject(encode(telemetry(timestamp=T0 + 61)), limits=limits)
    assert error.reason == "future_timestamp"
    assert reject(encode(telemetry(timestamp=7_258_118_401)), limits=limits).reason == \
        "bad_timestamp"  # past 2200 stays a unit mistake


# --- event_series and the error type --------------------------------------------------------

def test_event_series_prediction_and_telemetry() -> None:
    event = decode_event(encode(prediction(features={"amount": 42.5, "items": 3}, label=1)))
    assert event_series(event) == [("fraud", "prediction", 0.9),
                                   ("fraud", "features.amount", 42.5),
                                   ("fraud", "features.items", 3.0)]
    assert event_series(decode_event(encode(telemetry()))) == [("web-1", "cpu", 41.5)]


def test_event_error_shape() -> None:
    error = EventError("empty", "payload is empty")
    assert (error.reason, error.detail, str(error)) == ("empty", "payload is empty",
                                                        "empty: payload is empty")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.reason, copy.detail, str(copy)) == (error.reason, error.detail, str(error))


def test_error_tree() -> None:
    for error_type in (ConfigError, EventError, StateError, BrokerError):
        assert issubclass(error_type, VigilError)
    assert issubclass(VigilError, Exception)


def test_events_are_frozen() -> None:
    event = decode_event(encode(telemetry()))
    assert isinstance(event, TelemetryEvent)
    with pytest.raises(AttributeError):
        event.source = "other"  # type: ignore[misc]


# --- nothing but an Event or an EventError, for any input ------------------------------------

def assert_event_or_event_error(raw: bytes, kind: EventKind | None = None) -> None:
    try:
        event = decode_event(raw, kind)
    except EventError as error:
        assert error.reason in REASONS
        assert str(error).startswith(error.reason + ": ")
        return
    assert isinstance(event, PredictionEvent | TelemetryEvent)
    assert 0.0 < event.timestamp < 7_258_118_400.0
    for key, metric, value in event_series(event):
        assert key
        assert type(value) is float and math.isfinite(value)
        f"{key}/{metric}".encode()  # alert message keys must encode


kinds = st.sampled_from([None, "prediction", "telemetry"])


@settings(max_examples=500)
@given(raw=st.binary(max_size=200), kind=kinds)
def test_arbitrary_bytes(raw: bytes, kind: EventKind | None) -> None:
    assert_event_or_event_error(raw, kind)


scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.integers(min_value=10**300, max_value=10**400) | st.text(max_size=12)
           | st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "\ud800", "", "x"])
           | st.sampled_from([T0, T0 * 1000, 1e11, 7.3e9, -1.0]))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
fields = st.sampled_from(["model", "source", "timestamp", "features", "metrics", "prediction",
                          "label", "model_version", "prediction_id", "other"])
finite = st.floats(-1e150, 1e150) | st.integers(-(2**60), 2**60)
numbers = finite | st.floats() | st.integers() | st.booleans()
names = st.text(max_size=6) | st.just("\udc80")
timestamps = st.floats(1.0, 7e9) | st.floats() | st.integers() | st.sampled_from(
    ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+05:30", "1960-01-01", "2026-13-01", ""])
near_predictions = st.fixed_dictionaries(
    {"model": names, "timestamp": timestamps, "prediction": numbers},
    optional={"features": st.dictionaries(names, numbers, max_size=3), "label": numbers,
              "model_version": names | st.none(), "prediction_id": names | numbers},
)
near_telemetry = st.fixed_dictionaries(
    {"source": names, "timestamp": timestamps,
     "metrics": st.dictionaries(names, numbers, max_size=3)},
)
event_like = (near_predictions | near_telemetry | json_values
              | st.dictionaries(fields, json_values, max_size=8))


@settings(max_examples=600)
@given(body=event_like, kind=kinds)
def test_arbitrary_json_values(body: Any, kind: EventKind | None) -> None:
    raw = json.dumps(body).encode()  # writes NaN/Infinity literals and \uXXXX escapes
    assert_event_or_event_error(raw, kind)


valid_names = st.text(min_size=1, max_size=8)  # hypothesis text never holds lone surrogates
valid_timestamps = (st.floats(1e-3, 7.2e9) | st.integers(10**11 + 1, 7 * 10**12)
                    | st.datetimes(datetime(1971, 1, 1), datetime(2199, 1, 1)).map(
                        datetime.isoformat))
valid_predictions = st.fixed_dictionaries(
    {"model": valid_names, "timestamp": valid_timestamps, "prediction": finite},
    optional={"features": st.dictionaries(valid_names, finite, max_size=4), "label": finite,
              "model_version": valid_names, "prediction_id": valid_names, "extra": json_values},
)
valid_telemetry = st.fixed_dictionaries(
    {"source": valid_names, "timestamp": valid_timestamps,
     "metrics": st.dictionaries(valid_names, finite, min_size=1, max_size=4)},
    optional={"extra": json_values},
)


@settings(max_examples=300)
@given(body=valid_predictions | valid_telemetry)
def test_valid_events_keep_every_value(body: dict[str, Any]) -> None:
    event = decode_event(encode(body))
    raw_values = body.get("features") or body.get("metrics") or {}
    values = {name: float(value) for name, value in raw_values.items()}
    assert 0.0 < event.timestamp < 7_258_118_400.0
    if isinstance(event, PredictionEvent):
        label = body.get("label")
        assert (event.model, event.prediction) == (body["model"], float(body["prediction"]))
        assert event.label == (None if label is None else float(label))
        assert (event.model_version, event.prediction_id) == (body.get("model_version"),
                                                              body.get("prediction_id"))
        assert event.features == values
    else:
        assert (event.source, event.metrics) == (body["source"], values)


@pytest.mark.parametrize("raw", [b"1e151", b"-1e200", b"10" + b"0" * 160])
def test_values_beyond_any_variance_are_refused(raw: bytes) -> None:
    error = reject(b'{"source": "w", "timestamp": 1e9, "metrics": {"a": ' + raw + b"}}")
    assert error.reason == "not_finite" and "1e150" in error.detail


def test_nesting_beyond_the_limit_is_refused_whatever_the_stack_allows() -> None:
    deep = b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}, "x": ' \
        + b"[" * 70 + b"]" * 70 + b"}"
    assert reject(deep).reason == "invalid_json"
    brackets_in_strings = b'{"source": "w", "timestamp": 1e9, "metrics": {"a": 1}, "x": "' \
        + b"[" * 500 + b'", "y": [[[1]]]}'
    assert decode_event(brackets_in_strings).source == "w"
