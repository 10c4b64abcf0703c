"""Snapshot encoding: chunks, alternating slots, versions, and unreadable snapshots skipped."""

from __future__ import annotations

import json
import zlib

import pytest

from stream import state
from stream.errors import StateError
from stream.state import (
    Snapshot,
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
    found = latest_snapshots("g", "telemetry", 3, older + broken)
    assert [s.offset for s in found] == [70]
    assert "unreadable" in caplog.text


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
