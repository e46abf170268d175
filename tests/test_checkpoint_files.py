"""Checkpoint files: round trip, atomic rotation, copies, torn, corrupt and foreign files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aiostream_engine.checkpoint import (
    CheckpointStore,
    UntrustedCheckpointError,
    decode,
    encode,
)
from aiostream_engine.errors import CheckpointFormatError
from aiostream_engine.storage.keys import CheckpointKey

KEY = CheckpointKey(b"k" * 32, "a test key")
OTHER_KEY = CheckpointKey(b"o" * 32, "another key")


def store_at(path: Path, keep: int = 3) -> CheckpointStore:
    return CheckpointStore(str(path), KEY, keep=keep)


def test_round_trip_and_latest(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    for t in (1000, 2000, 3000):
        store.write("state", t, {"t": t})
    latest = store.latest("state")
    assert latest is not None and latest.time_ms == 3000 and latest.data == {"t": 3000}
    earlier = store.latest("state", at_or_before=2500)
    assert earlier is not None and earlier.data == {"t": 2000}


def test_only_the_newest_are_kept_with_their_copies(tmp_path: Path) -> None:
    store = store_at(tmp_path, keep=2)
    for t in range(1, 6):
        store.write("metadata", t * 1000, {"t": t}, copies=2)
    assert sorted(os.listdir(tmp_path)) == [
        "metadata-4000.1.ckpt", "metadata-4000.ckpt", "metadata-5000.1.ckpt", "metadata-5000.ckpt",
    ]


def test_files_are_private_and_the_directory_is_created_0700(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "checkpoint"
    path = store_at(directory).write("state", 1000, {"t": 1})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_torn_newest_file_falls_back_to_previous(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = store_at(tmp_path)
    store.write("state", 1000, {"t": 1})
    path = store.write("state", 2000, {"t": 2, "blob": b"x" * 1000})
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 10)  # a crash mid-write of a non-atomic writer
    latest = store.latest("state")
    assert latest is not None and latest.data == {"t": 1}
    assert "skipping unusable checkpoint" in caplog.text and "payload bytes" in caplog.text
    assert len(store.rejected) == 1 and "payload bytes" in store.rejected[0]


def test_flipped_byte_is_detected(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = store_at(tmp_path)
    store.write("state", 1000, {"t": 1})
    path = store.write("state", 2000, {"t": 2})
    blob = bytearray(open(path, "rb").read())
    blob[-1] ^= 0xFF
    open(path, "wb").write(bytes(blob))
    latest = store.latest("state")
    assert latest is not None and latest.time_ms == 1000
    assert "checksum mismatch" in caplog.text


def test_a_damaged_file_is_read_from_its_copy(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    path = store.write("metadata", 7, {"t": 7}, copies=2)
    blob = bytearray(open(path, "rb").read())
    blob[len(blob) // 2] ^= 0x10
    open(path, "wb").write(bytes(blob))
    latest = store.latest("metadata")
    assert latest is not None and latest.time_ms == 7 and latest.data == {"t": 7}
    assert latest.path.endswith("metadata-7.1.ckpt")


def test_a_file_written_with_another_key_is_refused_unread(tmp_path: Path) -> None:
    CheckpointStore(str(tmp_path), OTHER_KEY).write("state", 1000, {"t": 1})
    store = store_at(tmp_path)
    assert store.latest("state") is None
    assert "not written with this engine's key (a test key)" in store.rejected[0]


def test_a_file_renamed_to_another_time_is_refused(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    os.rename(store.write("state", 1000, {"t": 1}), tmp_path / "state-9000.ckpt")
    assert store.latest("state") is None


def test_the_old_unauthenticated_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state-5.ckpt").write_bytes(b"ASECKPT1" + b"\0" * 40)
    store = store_at(tmp_path)
    assert store.latest("state") is None
    assert "older, unauthenticated format" in store.rejected[0]
    with pytest.raises(CheckpointFormatError):
        decode(b"ASECKPT1" + b"\0" * 40, KEY, "state-5.ckpt")


def test_no_checkpoint_and_garbage_file(tmp_path: Path) -> None:
    store = store_at(tmp_path / "missing")
    assert store.latest("state") is None and not store.exists()
    (tmp_path / "state-5.ckpt").write_bytes(b"garbage")
    assert store_at(tmp_path).latest("state") is None
    assert CheckpointStore.files_exist(str(tmp_path), "state")


def test_encode_decode() -> None:
    blob = encode({"a": [1, 2]}, KEY, "state-1.ckpt")
    assert decode(blob, KEY, "state-1.ckpt") == {"a": [1, 2]}
    with pytest.raises(UntrustedCheckpointError):
        decode(blob, OTHER_KEY, "state-1.ckpt")
