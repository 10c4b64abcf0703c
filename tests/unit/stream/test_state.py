"""Snapshot encoding: chunks, alternating slots, versions, and unreadable snapshots skipped."""

from __future__ import annotations

import json
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.stream import state
from vigil.stream.errors import StateError
from vigil.stream.state import (
    Rejected,
    Snapshot,
    SnapshotPolicy,
    StateMessage,
    decode_snapshot,
    encode_snapshot,
    latest_snapshots,
    state_partition,
)

BODY = {"detector": {"name": "shewhart", "params": {}}, "watermark": 1.0, "series": []}


def _snapshot(sequence: int, offset: int, body: dict[str, object] = BODY) -> Snapshot:
    return Snapshot("telemetry", 3, offset, sequence, body, created_at=1767225600.0)


def test_round_trip_and_slot_alternation() -> None:
    first = encode_snapshot("g", _snapshot(0, 10), 6)
    second = encode_snapshot("g", _snapshot(1, 20), 6)
    assert first[0].key == b"g/telemetry/3/0/0" and second[0].key == b"g/telemetry/3/1/0"
    assert {m.partition for m in first + second} == {state_partition("g", "telemetry", 3, 6)}
    found = latest_snapshots("g", "telemetry", 3, first + second)
    assert [(s.sequence, s.offset) for s in found] == [(1, 20), (0, 10)]
    assert found[0].body == BODY


def test_large_state_is_chunked_and_reassembled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "CHUNK_BYTES", 64)
    body = {**BODY, "series": [{"key": f"host-{i}", "noise": i * 7919 % 1013} for i in range(300)]}
    messages = encode_snapshot("g", _snapshot(4, 99, body), 1)
    assert len(messages) > 3
    (snapshot,) = latest_snapshots("g", "telemetry", 3, reversed(messages))
    assert snapshot.body == body and snapshot.offset == 99


def test_a_slot_caught_half_rewritten_falls_back_to_the_other_slot() -> None:
    complete = encode_snapshot("g", _snapshot(2, 50), 1)
    rewriting = encode_snapshot("g", _snapshot(3, 60, {**BODY, "series": ["x"] * 50000}), 1)
    # The crash hit between the chunks of the rewrite: chunk 0 of 2 is there, chunk 1 is not.
    torn = [StateMessage(m.key, m.value, tuple(
        (k, b"2") if k == state.HEADER_CHUNKS else (k, v) for k, v in m.headers), m.partition)
        for m in rewriting]
    found = latest_snapshots("g", "telemetry", 3, complete + torn)
    assert [s.sequence for s in found] == [2]


def test_corrupt_snapshot_is_skipped_for_an_older_one(caplog: pytest.LogCaptureFixture) -> None:
    older = encode_snapshot("g", _snapshot(6, 70), 1)
    newer = encode_snapshot("g", _snapshot(7, 80), 1)
    broken = [StateMessage(m.key, b"\x00garbage", m.headers, m.partition) for m in newer]
    rejected, snapshot = latest_snapshots("g", "telemetry", 3, older + broken)
    assert isinstance(rejected, Rejected) and rejected.sequence == 7
    assert isinstance(snapshot, Snapshot) and snapshot.offset == 70
    assert "unusable" in caplog.text


def test_other_groups_and_partitions_are_not_mixed_in() -> None:
    mine = encode_snapshot("g", _snapshot(0, 5), 1)
    other_group = encode_snapshot("g2", _snapshot(9, 500), 1)
    other_partition = encode_snapshot("g", Snapshot("telemetry", 30, 7, 9, BODY), 1)
    found = latest_snapshots("g", "telemetry", 3, mine + other_group + other_partition)
    assert [s.offset for s in found] == [5]


def test_versions_newer_than_this_vigil_are_refused_not_misread() -> None:
    document = {"format": "vigil.snapshot", "version": 99, "topic": "t", "partition": 0,
                "offset": 1, "sequence": 0, "created_at": 0.0, "body": {}}
    with pytest.raises(StateError, match="newer"):
        decode_snapshot([zlib.compress(json.dumps(document).encode())])


@pytest.mark.parametrize("payload", [b"", b"not zlib", zlib.compress(b"[1, 2]"),
                                     zlib.compress(b'{"format": "vigil.snapshot", "version": 1}')])
def test_unreadable_payloads_raise_state_error(payload: bytes) -> None:
    with pytest.raises(StateError):
        decode_snapshot([payload])


# --- snapshots from a hostile writer ---------------------------------------------------------

def _document(**changes: object) -> dict[str, object]:
    document: dict[str, object] = {"format": "vigil.snapshot", "version": 1, "topic": "telemetry",
                                   "partition": 3, "offset": 10, "sequence": 0,
                                   "created_at": 0.0, "body": {}}
    document.update(changes)
    return document


def _messages(group: str, payload: bytes, *, sequence: int = 0, count: int = 1,
              key: bytes | None = None) -> list[StateMessage]:
    return [StateMessage(key or f"{group}/telemetry/3/{sequence % 2}/0".encode(), payload, (
        (state.HEADER_SEQUENCE, str(sequence).encode()), (state.HEADER_CHUNK, b"0"),
        (state.HEADER_CHUNKS, str(count).encode())), 0)]


def test_a_zlib_bomb_is_refused_while_decompressing_not_after() -> None:
    """2.9 MB of zlib used to inflate until MemoryError; now decompression stops at the cap."""
    bomb = zlib.compressobj(9)
    payload = bomb.compress(b'{"format": "vigil.snapshot", "body": "') \
        + bomb.compress(b" " * 200_000_000) + bomb.flush()
    assert len(payload) < 300_000
    tracemalloc.start()
    try:
        with pytest.raises(StateError, match="more than"):
            decode_snapshot([payload], SnapshotPolicy(max_bytes=10_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 30_000_000


def test_a_chunk_count_of_a_trillion_is_ignored_at_once() -> None:
    payload = zlib.compress(json.dumps(_document()).encode())
    assert latest_snapshots("g", "telemetry", 3, _messages("g", payload, count=10**12)) == []
    assert latest_snapshots("g", "telemetry", 3, _messages("g", payload, count=1)) != []


@pytest.mark.parametrize("changes", [
    {"offset": -1}, {"offset": "10"}, {"offset": True}, {"offset": 2**63}, {"partition": -3},
    {"sequence": 1.5}, {"created_at": float("nan")}, {"body": []}, {"topic": 7},
])
def test_snapshot_fields_out_of_range_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(StateError):
        decode_snapshot([zlib.compress(json.dumps(_document(**changes)).encode())])


@pytest.mark.parametrize("key", [b"g/telemetry/3/7/0", b"g/telemetry/3/1/0", b"g/telemetry/3/0/00"])
def test_chunks_under_a_key_vigil_would_not_use_are_ignored(key: bytes) -> None:
    payload = zlib.compress(json.dumps(_document()).encode())
    assert latest_snapshots("g", "telemetry", 3, _messages("g", payload, key=key)) == []


def test_a_snapshot_naming_another_sequence_than_its_header_is_rejected() -> None:
    payload = zlib.compress(json.dumps(_document(sequence=4)).encode())
    (rejected,) = latest_snapshots("g", "telemetry", 3, _messages("g", payload, sequence=2))
    assert isinstance(rejected, Rejected) and rejected.sequence == 2


KEY = b"0123456789abcdef0123456789abcdef"


def test_with_a_key_only_snapshots_signed_with_it_are_used() -> None:
    signed = SnapshotPolicy(keys=(KEY,))
    mine = encode_snapshot("g", _snapshot(0, 10), 1, signed)
    assert [s.offset for s in latest_snapshots("g", "telemetry", 3, mine, signed)] == [10]
    assert [s.offset for s in latest_snapshots("g", "telemetry", 3, mine)] == [10]  # no key

    foreign = encode_snapshot("g", _snapshot(1, 999), 1)  # unsigned, newer
    forged = encode_snapshot("g", _snapshot(1, 999), 1, SnapshotPolicy(keys=(b"x" * 32,)))
    for messages in (foreign, forged):
        found = latest_snapshots("g", "telemetry", 3, mine + messages, signed)
        assert [type(s).__name__ for s in found] == ["Rejected", "Snapshot"]
        assert isinstance(found[1], Snapshot) and found[1].offset == 10

    tampered = [StateMessage(m.key, m.value, tuple(
        (k, str(int(v) + 2).encode()) if k == state.HEADER_SEQUENCE else (k, v)
        for k, v in m.headers), m.partition) for m in mine]  # a replay under a newer number
    assert isinstance(latest_snapshots("g", "telemetry", 3, tampered, signed)[0], Rejected)

    rotated = SnapshotPolicy(keys=(b"n" * 32, KEY))  # a new key signs, the old still verifies
    assert [s.offset for s in latest_snapshots("g", "telemetry", 3, mine, rotated)] == [10]


def test_a_bomb_from_a_foreign_writer_is_refused_before_it_is_decompressed() -> None:
    signed = SnapshotPolicy(keys=(KEY,))
    bomb = zlib.compress(b" " * 50_000_000, 9)
    (rejected,) = latest_snapshots("g", "telemetry", 3, _messages("g", bomb), signed)
    assert isinstance(rejected, Rejected) and "not signed" in rejected.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["format", "version", "topic", "partition", "offset",
                                        "sequence", "created_at", "body", "x"]),
                       json_values, max_size=9), st.booleans())
def test_any_document_decodes_or_raises_state_error(document: dict[str, object],
                                                    genuine: bool) -> None:
    if genuine:
        document = {**_document(), **document, "format": "vigil.snapshot", "version": 1}
    try:
        snapshot = decode_snapshot([zlib.compress(json.dumps(document).encode())])
    except StateError:
        return
    assert snapshot.offset >= 0 and isinstance(snapshot.body, dict)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from([b"g/telemetry/3/0/0", b"g/telemetry/3/1/0", b"g/telemetry/3/0/1",
                     b"g/telemetry/3/x", b"other"]),
    st.binary(max_size=64) | st.just(zlib.compress(json.dumps(_document()).encode())),
    st.lists(st.tuples(st.sampled_from([state.HEADER_SEQUENCE, state.HEADER_CHUNK,
                                        state.HEADER_CHUNKS, state.HEADER_HMAC]),
                       st.sampled_from([b"0", b"1", b"2", b"-1", b"10000000000000", b"x"])),
             max_size=5)), max_size=8))
def test_any_state_messages_give_snapshots_or_rejections_never_an_error(
        raw: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    messages = [StateMessage(key, value, tuple(headers), 0) for key, value, headers in raw]
    for policy in (state.DEFAULT_POLICY, SnapshotPolicy(keys=(KEY,))):
        for found in latest_snapshots("g", "telemetry", 3, messages, policy):
            assert isinstance(found, Snapshot | Rejected)
