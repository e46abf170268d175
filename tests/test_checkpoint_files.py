"""Checkpoint files: round trip, atomic rotation, torn and corrupt files fall back."""

from __future__ import annotations

import os

from aiostream_engine.checkpoint import CheckpointStore, decode, encode


def test_round_trip_and_latest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CheckpointStore(str(tmp_path), keep=3)
    for t in (1000, 2000, 3000):
        store.write("state", t, {"t": t})
    latest = store.latest("state")
    assert latest is not None and latest.time_ms == 3000 and latest.data == {"t": 3000}
    earlier = store.latest("state", at_or_before=2500)
    assert earlier is not None and earlier.data == {"t": 2000}


def test_only_the_newest_are_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CheckpointStore(str(tmp_path), keep=2)
    for t in range(1, 6):
        store.write("metadata", t * 1000, {"t": t})
    assert sorted(os.listdir(tmp_path)) == ["metadata-4000.ckpt", "metadata-5000.ckpt"]


def test_torn_newest_file_falls_back_to_previous(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    store = CheckpointStore(str(tmp_path))
    store.write("state", 1000, {"t": 1})
    path = store.write("state", 2000, {"t": 2, "blob": b"x" * 1000})
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)  # a crash mid-write of a non-atomic writer
    latest = store.latest("state")
    assert latest is not None and latest.data == {"t": 1}
    assert "skipping unusable checkpoint" in caplog.text and "payload bytes" in caplog.text


def test_flipped_byte_is_detected(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    store = CheckpointStore(str(tmp_path))
    store.write("state", 1000, {"t": 1})
    path = store.write("state", 2000, {"t": 2})
    blob = bytearray(open(path, "rb").read())
    blob[-1] ^= 0xFF
    open(path, "wb").write(bytes(blob))
    latest = store.latest("state")
    assert latest is not None and latest.time_ms == 1000
    assert "checksum mismatch" in caplog.text


def test_no_checkpoint_and_garbage_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = CheckpointStore(str(tmp_path / "missing"))
    assert store.latest("state") is None and not store.exists()
    (tmp_path / "state-5.ckpt").write_bytes(b"garbage")
    assert CheckpointStore(str(tmp_path)).latest("state") is None


def test_encode_decode() -> None:
    assert decode(encode({"a": [1, 2]})) == {"a": [1, 2]}
