"""The delayed-label join: matching, TTL, bounds, counters and state."""

from __future__ import annotations

import json

import pytest

from vigil.updaters.labels import LabelJoinBuffer


def test_label_joins_its_prediction_once() -> None:
    buffer = LabelJoinBuffer(max_entries=10, ttl_seconds=60.0)
    assert buffer.add_prediction("a", {"y_hat": 1.0}, 100.0) is None
    joined = buffer.add_label("a", 2.0, 130.0)
    assert joined is not None
    assert (joined.payload, joined.label, joined.delay) == ({"y_hat": 1.0}, 2.0, 30.0)
    assert len(buffer) == 0 and buffer.joined == 1
    assert buffer.add_label("a", 2.0, 131.0) is None  # a second label waits, then expires
    assert buffer.pending_labels == 1
    buffer.expire(now=200.0)
    assert buffer.unmatched == 1 and buffer.pending_labels == 0


def test_early_label_waits_for_its_prediction_under_the_same_ttl() -> None:
    buffer = LabelJoinBuffer(max_entries=10, ttl_seconds=60.0, max_pending_labels=2)
    assert buffer.add_label("x", 1, 10.0) is None
    joined = buffer.add_prediction("x", "payload", 15.0)
    assert joined is not None and joined.label == 1 and joined.delay == -5.0
    buffer.add_label("y", 0, 20.0)
    assert buffer.expire(now=79.0) == [] and buffer.pending_labels == 1
    buffer.expire(now=81.0)
    assert buffer.pending_labels == 0 and buffer.unmatched == 1
    assert buffer.add_prediction("y", "late", 82.0) is None  # its label has gone


def test_ttl_expires_predictions_in_arrival_order() -> None:
    buffer = LabelJoinBuffer(max_entries=10, ttl_seconds=10.0)
    for i in range(5):
        buffer.add_prediction(f"p{i}", i, float(i))
    expired = buffer.expire(now=12.5)
    assert [(e.prediction_id, e.payload, e.timestamp) for e in expired] == [
        ("p0", 0, 0.0), ("p1", 1, 1.0), ("p2", 2, 2.0),
    ]
    assert buffer.expired == 3 and len(buffer) == 2
    assert buffer.add_label("p0", 1.0, 13.0) is None  # too late: counted once it expires
    assert buffer.add_label("p3", 1.0, 13.0) is not None


def test_bounds_evict_the_oldest() -> None:
    buffer = LabelJoinBuffer(max_entries=3, ttl_seconds=1e9, max_pending_labels=1)
    for i in range(5):
        buffer.add_prediction(i, None, float(i))
    assert len(buffer) == 3 and buffer.evicted == 2
    assert buffer.add_label(0, 1.0, 5.0) is None  # evicted: the label waits
    assert buffer.add_label(4, 1.0, 5.0) is not None
    buffer.add_label(98, 1.0, 6.0)  # the pending map holds one: label 0 is evicted
    assert buffer.pending_labels == 1 and buffer.unmatched == 1
    none = LabelJoinBuffer(max_entries=3, max_pending_labels=0)
    assert none.add_label("early", 1.0, 0.0) is None
    assert none.pending_labels == 0 and none.unmatched == 1


def test_duplicate_prediction_replaces_and_moves_to_the_back() -> None:
    buffer = LabelJoinBuffer(max_entries=2, ttl_seconds=100.0)
    buffer.add_prediction("a", "first", 0.0)
    buffer.add_prediction("b", "b", 1.0)
    buffer.add_prediction("a", "second", 2.0)
    assert buffer.duplicates == 1 and buffer.evicted == 0
    buffer.add_prediction("c", "c", 3.0)  # full: "b" is now the oldest
    assert buffer.evicted == 1
    joined = buffer.add_label("a", 0, 4.0)
    assert joined is not None and joined.payload == "second"


def test_prediction_carrying_its_label_joins_at_once() -> None:
    buffer = LabelJoinBuffer()
    joined = buffer.add_labelled("p", {"f": 1.0}, 3.0, 50.0)
    assert (joined.label, joined.delay, buffer.joined, len(buffer)) == (3.0, 0.0, 1, 0)


def test_state_round_trip_continues_exactly() -> None:
    buffer = LabelJoinBuffer(max_entries=4, ttl_seconds=30.0)
    for i in range(6):
        buffer.add_prediction(f"p{i}", {"i": i}, float(i))
    buffer.add_label("early", "yes", 3.0)
    buffer.add_label("p5", 1.0, 6.0)
    restored = LabelJoinBuffer.from_state(json.loads(json.dumps(buffer.state_dict())),
                                          max_entries=4, ttl_seconds=30.0)
    assert restored.counters() == buffer.counters()
    for b in (buffer, restored):
        b.add_prediction("early", {"i": 99}, 7.0)
        b.add_prediction("p9", {}, 8.0)
    assert [e.prediction_id for e in restored.expire(40.0)] == [
        e.prediction_id for e in buffer.expire(40.0)
    ]
    assert restored.state_dict() == buffer.state_dict()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_entries": 0}, "max_entries"),
        ({"ttl_seconds": 0.0}, "ttl_seconds"),
        ({"max_pending_labels": -1}, "max_pending_labels"),
    ],
)
def test_bad_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LabelJoinBuffer(**kwargs)  # type: ignore[arg-type]


def test_bad_ids_and_times() -> None:
    buffer = LabelJoinBuffer()
    with pytest.raises(ValueError, match="prediction_id"):
        buffer.add_prediction(1.5, None, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timestamp"):
        buffer.add_label("a", 1.0, float("nan"))


def test_limits_come_from_the_caller_not_from_the_state() -> None:
    """A saved state that claims huge limits cannot raise them; the newest entries stay."""
    buffer = LabelJoinBuffer(max_entries=1_000, ttl_seconds=1e9)
    for i in range(100):
        buffer.add_prediction(f"p{i}", {"i": i}, float(i))
    state = {**buffer.state_dict(), "max_entries": 10**12, "ttl_seconds": 1e300}
    restored = LabelJoinBuffer.from_state(state, max_entries=10, ttl_seconds=60.0)
    assert (restored.max_entries, restored.ttl_seconds, len(restored)) == (10, 60.0, 10)
    assert restored.evicted == 90
    assert restored.add_label("p99", 1.0, 100.0) is not None
    assert restored.add_label("p0", 1.0, 100.0) is None


@pytest.mark.parametrize("state", [
    "not a state",
    {"predictions": "x", "labels": [], "counters": {}},
    {"predictions": [["p", 1.0]], "labels": [], "counters": {}},
    {"predictions": [[1.5, 1.0, None]], "labels": [], "counters": {}},
    {"predictions": [["p", float("inf"), None]], "labels": [], "counters": {}},
    {"predictions": [], "labels": [], "counters": {"joined": "x"}},
    {"predictions": [], "labels": [], "counters": {"joined": -1}},
])
def test_a_malformed_state_is_refused(state: object) -> None:
    counters = dict.fromkeys(("joined", "expired", "evicted", "unmatched", "duplicates"), 0)
    if isinstance(state, dict):
        state = {**state, "counters": {**counters, **state["counters"]}}
    with pytest.raises(ValueError):
        LabelJoinBuffer.from_state(state, max_entries=10, ttl_seconds=60.0)  # type: ignore[arg-type]


def test_payloads_are_checked_and_times_held_to_the_latest() -> None:
    buffer = LabelJoinBuffer()
    buffer.add_prediction("p", "a string payload", 7e9)

    def must_be_a_list(payload: object) -> None:
        if not isinstance(payload, list):
            raise ValueError("payload must be a list")

    with pytest.raises(ValueError, match="list"):
        LabelJoinBuffer.from_state(buffer.state_dict(), max_entries=10, ttl_seconds=60.0,
                                   check_payload=must_be_a_list)
    restored = LabelJoinBuffer.from_state(buffer.state_dict(), max_entries=10,
                                          ttl_seconds=60.0, latest=1000.0)
    assert [e.prediction_id for e in restored.expire(1061.0)] == ["p"]


def test_the_byte_budget_evicts_the_oldest() -> None:
    """20,000 features in one waiting prediction held 2.2 MiB; a budget bounds the buffer."""
    buffer = LabelJoinBuffer(max_entries=1_000, ttl_seconds=1e9, max_bytes=200_000)
    wide = {f"feature_{i}": float(i) for i in range(1_000)}
    for i in range(10):
        buffer.add_prediction(f"p{i}", wide, float(i))
    assert buffer.waiting_bytes <= 200_000 and len(buffer) < 10 and buffer.evicted > 0
    assert buffer.add_label("p9", 1.0, 10.0) is not None
    evicted = buffer.evicted
    huge = {f"feature_{i}": float(i) for i in range(20_000)}
    assert buffer.add_prediction("huge", huge, 11.0) is None
    assert buffer.evicted == evicted + 1  # beyond the whole budget: never held
    assert buffer.add_label("huge", 1.0, 12.0) is None  # nothing to join: the label waits
    buffer.expire(1e12)
    assert len(buffer) == 0 and buffer.waiting_bytes == 0
