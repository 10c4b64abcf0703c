"""The two input event types, decoded from JSON and validated once, at the edge of the system.

A prediction event, one per scored request, from a model server::

    {"model": "fraud", "timestamp": 1767225600.25,
     "features": {"amount": 42.5, "items": 3}, "prediction": 0.91,
     "model_version": "2.3.0", "prediction_id": "req-8f1c", "label": null}

``features`` may be empty or absent; ``model_version``, ``prediction_id`` and ``label`` may be
null or absent (null means absent).

A telemetry event, one per scrape of a source, with at least one metric::

    {"source": "web-1", "timestamp": "2026-01-01T00:00:00.250Z",
     "metrics": {"latency_ms": 118.5, "cpu_percent": 41}}

Rules common to both: numbers are JSON numbers (not booleans, not strings) and finite;
unknown fields are ignored, so producers can add fields before Vigil reads them. The
timestamp is epoch seconds, or epoch milliseconds when its magnitude exceeds 1e11 (1e11 s
is the year 5138, 1e11 ms is 1973), or an ISO-8601 string (naive means UTC); it must fall
after 1970-01-01 and before 2200-01-01, and no later than :attr:`EventLimits.latest_timestamp`
(``vigil run`` sets it to the wall clock plus ``runtime.max_clock_skew_s``: one event from the
far future must not move a partition's event-time clock past every series' TTL). An event
carries at most :attr:`EventLimits.max_names` metrics or features, and every name and id at
most :attr:`EventLimits.max_name_length` characters, so one event cannot make thousands of
series or outputs too large to publish. A bad event raises :class:`~stream.errors.EventError`
whose ``reason`` is one of :data:`REASONS`; a required field that is null counts as missing,
and a name holding a lone surrogate (``"\\ud800"``, which cannot become UTF-8) as invalid_utf8.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from math import inf
from typing import Annotated, Any, Final, Literal

import msgspec
import orjson

from vigil.stream.errors import EventError

INVALID_UTF8: Final = "invalid_utf8"
INVALID_JSON: Final = "invalid_json"
NOT_AN_OBJECT: Final = "not_an_object"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
NOT_FINITE: Final = "not_finite"
BAD_TIMESTAMP: Final = "bad_timestamp"
UNKNOWN_KIND: Final = "unknown_kind"
EMPTY: Final = "empty"
FUTURE_TIMESTAMP: Final = "future_timestamp"
TOO_MANY_NAMES: Final = "too_many_names"
NAME_TOO_LONG: Final = "name_too_long"

REASONS: Final = frozenset({
    INVALID_UTF8, INVALID_JSON, NOT_AN_OBJECT, MISSING_FIELD, WRONG_TYPE, NOT_FINITE,
    BAD_TIMESTAMP, UNKNOWN_KIND, EMPTY, FUTURE_TIMESTAMP, TOO_MANY_NAMES, NAME_TOO_LONG,
})
"""Every ``EventError.reason`` this module raises: a fixed set, so a safe metric label."""

MAX_DEPTH: Final = 64
"""Deepest nesting of arrays and objects accepted, whatever the interpreter's stack allows,
so the same bytes get the same verdict everywhere."""

LARGEST: Final = 1e150
"""Largest magnitude a value may have: beyond about 1e154 its square overflows a float,
which no variance could survive; no real measurement comes near it."""

MILLISECONDS_ABOVE: Final = 1e11
"""A numeric timestamp of greater magnitude is epoch milliseconds, otherwise epoch seconds."""

LATEST_TIMESTAMP: Final = 7_258_118_400.0
"""2200-01-01T00:00:00Z in epoch seconds: anything later is a unit mistake, not the future."""

EventKind = Literal["prediction", "telemetry", "label"]


@dataclass(frozen=True, slots=True)
class EventLimits:
    """Bounds an event must keep (``state.max_names_per_event``, ``state.max_name_length``,
    and the wall clock plus ``runtime.max_clock_skew_s`` in ``vigil run``)."""

    max_names: int = 1_000
    """Metrics of a telemetry event, or features of a prediction."""
    max_name_length: int = 256
    """Characters of a source, model, metric or feature name, prediction id or version."""
    latest_timestamp: float = LATEST_TIMESTAMP
    """Latest event time accepted, in epoch seconds."""


DEFAULT_LIMITS: Final = EventLimits()


# msgspec Structs, not dataclasses: one is built per event, in a tenth of a frozen dataclass's time
class PredictionEvent(msgspec.Struct, frozen=True):
    """One model prediction: its inputs, its output and, once known, the true label."""

    model: str
    timestamp: float
    """Epoch seconds."""
    features: dict[str, float]
    prediction: float
    model_version: str | None = None
    prediction_id: str | None = None
    label: float | None = None


class TelemetryEvent(msgspec.Struct, frozen=True):
    """One sample of a source's metrics (a host, a service, a queue)."""

    source: str
    timestamp: float
    """Epoch seconds."""
    metrics: dict[str, float]


class LabelEvent(msgspec.Struct, frozen=True):
    """The true outcome of an earlier prediction, joined to it by ``prediction_id``."""

    prediction_id: str
    label: float
    timestamp: float
    """Epoch seconds."""
    model: str | None = None


Event = PredictionEvent | TelemetryEvent | LabelEvent


def decode_event(raw: bytes, kind: EventKind | None = None,
                 limits: EventLimits = DEFAULT_LIMITS) -> Event:
    """Decode and validate one UTF-8 JSON event: returns an Event or raises EventError, only.

    ``kind`` None infers it: an object with ``"model"`` is a prediction, else one with
    ``"source"`` is telemetry.

    >>> decode_event(b'{"source": "web-1", "timestamp": 1767225600, "metrics": {"cpu": 41}}')
    TelemetryEvent(source='web-1', timestamp=1767225600.0, metrics={'cpu': 41.0})
    >>> decode_event(b'{"model": "fraud", "timestamp": "2026-01-01T00:00:00Z", "prediction": 0.9}')
    PredictionEvent(model='fraud', timestamp=1767225600.0, features={}, prediction=0.9, \
model_version=None, prediction_id=None, label=None)
    >>> decode_event(b'{"source": "web-1", "timestamp": 1767225600, "metrics": {"cpu": NaN}}')
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    vigil.stream.errors.EventError: not_finite: field 'metrics.cpu' must be a finite ..., got NaN
    """
    obj = parse_json(raw)
    if type(obj) is not dict:
        raise EventError(NOT_AN_OBJECT, f"payload must be a JSON object, got {_show(obj)}")

    if kind is None:
        kind = _kind_of(obj)
    timestamp = obj.get("timestamp")
    if type(timestamp) is not float or not 0.0 < timestamp < LATEST_TIMESTAMP:
        timestamp = parse_timestamp(timestamp)  # the inline test lets through only plain seconds
    if timestamp > limits.latest_timestamp:
        raise EventError(FUTURE_TIMESTAMP, f"field 'timestamp' is {timestamp:.3f}, later than "
                                           f"the clock allows ({limits.latest_timestamp:.3f})")
    try:
        decode = _DECODERS[kind]
    except KeyError:
        raise ValueError(f"kind must be 'prediction', 'telemetry', 'label' or None, "
                         f"got {kind!r}") from None
    event = decode(obj, timestamp, limits)
    # only a \uXXXX escape can smuggle in a lone surrogate; find, not ``in``: ``in`` on bytes
    # first tries its operand as an integer and formats the TypeError that raises
    if raw.find(b"\\u") >= 0 and (raw.find(b"\\ud") >= 0 or raw.find(b"\\uD") >= 0):
        _require_encodable(event)
    return event


def _kind_of(obj: dict[str, Any]) -> EventKind:
    """The kind of an event object: a label, a prediction (``model``) or telemetry (``source``)."""
    if "prediction_id" in obj and "label" in obj and "prediction" not in obj:
        return "label"
    if "model" in obj:
        return "prediction"
    if "source" in obj:
        return "telemetry"
    raise EventError(UNKNOWN_KIND, "object has neither 'model' (a prediction) "
                                   "nor 'source' (telemetry)")


def _telemetry(obj: dict[str, Any], timestamp: float, limits: EventLimits) -> TelemetryEvent:
    longest = limits.max_name_length
    source = obj.get("source")
    if type(source) is not str or not source or len(source) > longest:
        raise _name_error("source", source, longest)
    metrics = _numbers(obj.get("metrics"), "metrics", limits, required=True)
    if not metrics:
        raise EventError(EMPTY, "field 'metrics' must hold at least one metric, got {}")
    return TelemetryEvent(source, timestamp, metrics)


def _prediction(obj: dict[str, Any], timestamp: float, limits: EventLimits) -> PredictionEvent:
    longest = limits.max_name_length
    model = obj.get("model")
    if type(model) is not str or not model or len(model) > longest:
        raise _name_error("model", model, longest)
    features = _numbers(obj.get("features"), "features", limits, required=False)
    prediction = obj.get("prediction")
    if type(prediction) is not float or not -LARGEST <= prediction <= LARGEST:
        prediction = _number(prediction, "prediction")
    model_version = obj.get("model_version")
    if model_version is not None:
        _optional_name("model_version", model_version, longest)
    prediction_id = obj.get("prediction_id")
    if prediction_id is not None:
        _optional_name("prediction_id", prediction_id, longest)
    label = obj.get("label")
    if label is not None:
        label = _number(label, "label")
    return PredictionEvent(model, timestamp, features, prediction, model_version,
                           prediction_id, label)


def _label(obj: dict[str, Any], timestamp: float, limits: EventLimits) -> LabelEvent:
    longest = limits.max_name_length
    prediction_id = obj.get("prediction_id")
    if type(prediction_id) is not str or not prediction_id or len(prediction_id) > longest:
        raise _name_error("prediction_id", prediction_id, longest)
    model = obj.get("model")
    if model is not None and (type(model) is not str or not model or len(model) > longest):
        raise _name_error("model", model, longest)
    return LabelEvent(prediction_id, _number(obj.get("label"), "label"), timestamp, model)


_DECODERS: dict[str, Callable[[dict[str, Any], float, EventLimits], Event]] = {
    "telemetry": _telemetry, "prediction": _prediction, "label": _label}
"""Each kind's decoder of a JSON object whose timestamp is already checked."""


def decode_batch(values: Sequence[bytes], kinds: Sequence[EventKind | None],
                 limits: EventLimits = DEFAULT_LIMITS) -> list[Event | EventError]:
    """Each of a poll's record values decoded and validated, in order: its event, or the
    EventError :func:`decode_event` gives it (the same event or the same reason, always).

    A value of a known kind is decoded by msgspec straight into a typed struct whose types
    carry the limits (names of 1 to ``max_name_length`` characters, at most ``max_names``
    numbers, each strictly within ±1e150), so parsing and validation are one C call; anything that
    does not pass, or that the fast decoder might judge differently (unknown fields, ``\\u``
    escapes, which may hold lone surrogates), is decoded again by :func:`decode_event`, which
    then gives the verdict and the reason.

    >>> decode_batch([b'{"source": "web-1", "timestamp": 1767225600000, "metrics": {"cpu": 41}}',
    ...               b'{"source": "web-1", "metrics": {"cpu": 41}}'], ["telemetry", "telemetry"])
    [TelemetryEvent(source='web-1', timestamp=1767225600.0, metrics={'cpu': 41.0}), \
EventError('missing_field', "field 'timestamp' is missing or null")]
    """
    decoders = _wire_decoders(limits.max_names, limits.max_name_length)
    latest = limits.latest_timestamp
    out: list[Event | EventError] = []
    append = out.append
    for raw, kind in zip(values, kinds, strict=True):
        decoder = decoders.get(kind)
        event: Event | None = None
        if decoder is not None and raw.find(b"\\u") < 0:  # find: see decode_event
            try:
                wire = decoder.decode(raw)
                timestamp = wire.timestamp
                if type(timestamp) is not float or not 0.0 < timestamp < LATEST_TIMESTAMP:
                    timestamp = parse_timestamp(timestamp)
                if timestamp <= latest:
                    event = wire.event(timestamp)
            except (msgspec.DecodeError, EventError):  # ValidationError is a DecodeError
                pass
        if event is None:
            try:
                event = decode_event(raw, kind, limits)
            except EventError as exc:
                append(exc)
                continue
        append(event)
    return out


# The fast path's wire shapes. Unknown fields, nesting and raw JSON values are left to
# decode_event, so only these flat, typed fields (numbers, strings, nulls) are read here;
# :func:`_wire_decoders` narrows their types to the limits.
class _TelemetryWire(msgspec.Struct, forbid_unknown_fields=True):
    source: str
    timestamp: float | str
    metrics: dict[str, float]

    def event(self, timestamp: float) -> TelemetryEvent:
        return TelemetryEvent(self.source, timestamp, self.metrics)


class _PredictionWire(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    timestamp: float | str
    prediction: float
    features: dict[str, float] | None = None
    model_version: str | None = None
    prediction_id: str | None = None
    label: float | None = None

    def event(self, timestamp: float) -> PredictionEvent:
        return PredictionEvent(self.model, timestamp,
                               {} if self.features is None else self.features, self.prediction,
                               self.model_version, self.prediction_id, self.label)


class _LabelWire(msgspec.Struct, forbid_unknown_fields=True):
    prediction_id: str
    label: float
    timestamp: float | str
    model: str | None = None

    def event(self, timestamp: float) -> LabelEvent:
        return LabelEvent(self.prediction_id, self.label, timestamp, self.model)


_Wire = _TelemetryWire | _PredictionWire | _LabelWire


@functools.lru_cache(maxsize=8)
def _wire_decoders(max_names: int, longest: int,
                   ) -> dict[EventKind | None, msgspec.json.Decoder[_Wire]]:
    """Each kind's msgspec decoder, its struct's types narrowed to the limits; a record of no
    known kind (None) has none."""
    name: Any = Annotated[str, msgspec.Meta(min_length=1, max_length=longest)]
    text: Any = Annotated[str, msgspec.Meta(max_length=longest)]
    # strict bounds: an integer rounding to exactly ±1e150 may lie beyond it (10**150 does),
    # so those go to decode_event, which compares the integer itself
    number: Any = Annotated[float, msgspec.Meta(gt=-LARGEST, lt=LARGEST)]
    numbers: Any = Annotated[dict[text, number], msgspec.Meta(max_length=max_names)]
    some_numbers: Any = Annotated[dict[text, number],
                                  msgspec.Meta(min_length=1, max_length=max_names)]

    def narrowed(base: type[_Wire], fields: list[tuple[Any, ...]]) -> Any:
        return msgspec.json.Decoder(msgspec.defstruct(
            base.__name__, fields, bases=(base,), forbid_unknown_fields=True))

    return {
        "telemetry": narrowed(_TelemetryWire, [("source", name), ("metrics", some_numbers)]),
        "prediction": narrowed(_PredictionWire, [
            ("model", name), ("prediction", number), ("features", numbers | None, None),
            ("model_version", text | None, None), ("prediction_id", text | None, None),
            ("label", number | None, None)]),
        "label": narrowed(_LabelWire, [("prediction_id", name), ("label", number),
                                       ("model", name | None, None)]),
    }


def parse_json(raw: bytes) -> object:
    """The JSON value of ``raw``, or EventError: orjson's fast parse, else the json module's.

    orjson refuses what json accepts (NaN, lone surrogates, numbers beyond float range) and
    turns integers beyond 64 bits into floats, so those payloads, and any with more brackets
    than ``MAX_DEPTH``, go to :func:`parse_json_slowly`, which gives today's verdict and reason.
    """
    shape = raw.translate(_SHAPE)
    if shape.count(b"[") <= MAX_DEPTH and shape.find(_LONG_DIGIT_RUN) < 0:  # find: see decode_event
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return parse_json_slowly(raw)


def parse_json_slowly(raw: bytes) -> object:
    """The JSON value of ``raw`` by the json module, or EventError with the reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError(INVALID_UTF8, f"payload is not valid UTF-8: byte {exc.start} "
                                       f"({exc.reason})") from exc
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise EventError(INVALID_JSON, f"payload is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise EventError(INVALID_JSON, "payload is nested too deeply to parse") from exc
    except ValueError as exc:  # JSONDecodeError, and integers beyond the digit limit
        if not text.strip():
            raise EventError(EMPTY, "payload is empty") from exc
        raise EventError(INVALID_JSON, f"payload is not valid JSON: {exc}") from exc


_SHAPE: Final = bytes(48 if 48 <= i <= 57 else 91 if i in (91, 123) else 32 for i in range(256))
"""A ``bytes.translate`` table: digits become ``0``, ``[`` and ``{`` ``[``, the rest spaces."""

_LONG_DIGIT_RUN: Final = b"0" * 19
"""19 digits in a row may be an integer beyond 64 bits, which orjson would make a float."""


def parse_timestamp(value: object, field: str = "timestamp") -> float:
    """Epoch seconds from a JSON timestamp: seconds, milliseconds (magnitude > 1e11) or ISO-8601.

    >>> parse_timestamp(1767225600), parse_timestamp(1767225600250), parse_timestamp("2026-01-01")
    (1767225600.0, 1767225600.25, 1767225600.0)
    """
    if isinstance(value, str):
        seconds = _iso_seconds(value, field)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond float range
            seconds = inf
        if abs(seconds) > MILLISECONDS_ABOVE:
            seconds /= 1000.0
    elif value is None:
        raise EventError(MISSING_FIELD, f"field {field!r} is missing or null")
    else:
        raise _type_error(field, "epoch seconds, epoch milliseconds or an ISO-8601 string", value)
    if not 0.0 < seconds < LATEST_TIMESTAMP:  # also rejects NaN, which fails every comparison
        raise EventError(BAD_TIMESTAMP, f"field {field!r} must lie between 1970-01-01 and "
                                        f"2200-01-01, got {_show(value)}")
    return seconds


def event_series(event: Event) -> list[tuple[str, str, float]]:
    """The (key, metric, value) points an event contributes, one per series it feeds.

    >>> event_series(PredictionEvent("fraud", 1.0, {"amount": 42.5}, 0.9))
    [('fraud', 'prediction', 0.9), ('fraud', 'features.amount', 42.5)]
    >>> event_series(TelemetryEvent("web-1", 1.0, {"latency_ms": 118.5, "cpu_percent": 41.0}))
    [('web-1', 'latency_ms', 118.5), ('web-1', 'cpu_percent', 41.0)]
    """
    if isinstance(event, LabelEvent):
        return []
    if isinstance(event, PredictionEvent):
        model = event.model
        points = [(model, "prediction", event.prediction)]
        points += [(model, "features." + name, value) for name, value in event.features.items()]
        return points
    source = event.source
    return [(source, name, value) for name, value in event.metrics.items()]


def _depth(text: str) -> int:
    """Deepest nesting of arrays and objects in JSON text, brackets inside strings ignored."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _numbers(values: object, field: str, limits: EventLimits, *,
             required: bool) -> dict[str, float]:
    """Check a JSON object of finite numbers within the limits, converting integers to floats
    in place."""
    if type(values) is not dict:
        if values is None and not required:
            return {}
        if values is None:
            raise EventError(MISSING_FIELD, f"field {field!r} is missing or null")
        raise _type_error(field, "an object of numbers", values)
    if len(values) > limits.max_names:
        raise EventError(TOO_MANY_NAMES, f"field {field!r} holds {len(values)} names, more "
                                         f"than the {limits.max_names} allowed")
    longest = limits.max_name_length
    for name, value in values.items():
        if len(name) > longest:
            raise _too_long(_subfield(field, name), longest)
        if type(value) is float:
            if not -LARGEST <= value <= LARGEST:
                raise _not_finite(_subfield(field, name), value)
        elif type(value) is int:
            if not -LARGEST <= value <= LARGEST:
                raise _not_finite(_subfield(field, name), value)
            values[name] = float(value)
        else:
            raise _type_error(_subfield(field, name), "a number", value)
    return values


def _number(value: object, field: str) -> float:
    """Check one required JSON number; slow path only, since finite floats are checked inline."""
    if type(value) is float:
        if -LARGEST <= value <= LARGEST:
            return value
    elif type(value) is int:
        if -LARGEST <= value <= LARGEST:
            return float(value)
    elif value is None:
        raise EventError(MISSING_FIELD, f"field {field!r} is missing or null")
    else:
        raise _type_error(field, "a number", value)
    raise _not_finite(field, value)


def _iso_seconds(text: str, field: str) -> float:
    """Epoch seconds of an ISO-8601 date-time; a naive one is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError) as exc:
        raise EventError(BAD_TIMESTAMP, f"field {field!r} must be epoch seconds or an ISO-8601 "
                                        f"date-time, got {_show(text)}") from exc


def _require_encodable(event: Event) -> None:
    """Reject lone UTF-16 surrogates in the names an event carries: they cannot become UTF-8."""
    if isinstance(event, PredictionEvent):
        texts = [("model", event.model), ("model_version", event.model_version or ""),
                 ("prediction_id", event.prediction_id or "")]
        texts += [(_subfield("features", name), name) for name in event.features]
    elif isinstance(event, LabelEvent):
        texts = [("prediction_id", event.prediction_id), ("model", event.model or "")]
    else:
        texts = [("source", event.source)]
        texts += [(_subfield("metrics", name), name) for name in event.metrics]
    for field, text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EventError(INVALID_UTF8, f"field {field!r} holds a lone surrogate escape, "
                                           "which has no UTF-8 encoding") from exc


def _name_error(field: str, value: object, longest: int) -> EventError:
    if value is None:
        return EventError(MISSING_FIELD, f"field {field!r} is missing or null")
    if type(value) is not str:
        return _type_error(field, "a non-empty string", value)
    if len(value) > longest:
        return _too_long(field, longest)
    return EventError(EMPTY, f"field {field!r} must be a non-empty string, got ''")


def _optional_name(field: str, value: object, longest: int) -> None:
    """Check a string-or-null field (null already handled by the caller)."""
    if type(value) is not str:
        raise _type_error(field, "a string or null", value)
    if len(value) > longest:
        raise _too_long(field, longest)


def _too_long(field: str, longest: int) -> EventError:
    return EventError(NAME_TOO_LONG, f"field {field!r} is longer than {longest} characters")


def _type_error(field: str, expected: str, value: object) -> EventError:
    return EventError(WRONG_TYPE, f"field {field!r} must be {expected}, got {_show(value)}")


def _not_finite(field: str, value: object) -> EventError:
    return EventError(NOT_FINITE, f"field {field!r} must be a finite number within ±1e150, "
                                  f"got {_show(value)}")


def _subfield(field: str, name: str) -> str:
    """``field.name`` for messages, with an overlong name cut short."""
    return f"{field}.{name[:60]}..." if len(name) > 60 else f"{field}.{name}"


def _show(value: object) -> str:
    """A short JSON-flavoured description of a bad value, safe for any input."""
    if value is None or value is True or value is False:
        return json.dumps(value)
    if type(value) is float:
        if value != value:
            return "NaN"
        if value in (inf, -inf):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if type(value) is int:
        if value.bit_length() > 200:
            return f"an integer of {value.bit_length()} bits"
        return str(value)
    if type(value) is str:
        return repr(value) if len(value) <= 60 else f"{value[:60]!r}..."
    if type(value) is list:
        return "an array"  # never repr a container: it may be nested too deeply to print
    if type(value) is dict:
        return "an object"
    return type(value).__name__
