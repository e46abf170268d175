"""Checkpoint files: atomic, checksummed, rotated.

A checkpoint is one file ``<kind>-<batch ms>.ckpt`` holding a pickled dict. It is written to
a temporary file, fsynced, renamed into place and the directory fsynced, so a crash leaves
either the old file or the new one, never half of one. The header carries a magic, the
payload length and its CRC-32; a file that fails the check (torn, truncated, corrupted) is
skipped with a warning and the previous one is used. The newest ``keep`` files of each kind
are kept.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("aiostream_engine.checkpoint")

MAGIC = b"ASECKPT1"
_HEADER = struct.Struct(">8sQI")  # magic, payload length, crc32
_NAME = re.compile(r"^(?P<kind>[a-z]+)-(?P<time>\d+)\.ckpt$")


class CorruptCheckpointError(Exception):
    """A checkpoint file failed its checksum or is truncated."""


@dataclass(frozen=True)
class Checkpoint:
    kind: str
    time_ms: int
    path: str
    data: dict[str, Any]


def encode(data: dict[str, Any]) -> bytes:
    payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode(blob: bytes, path: str = "<bytes>") -> dict[str, Any]:
    if len(blob) < _HEADER.size:
        raise CorruptCheckpointError(f"{path}: truncated header")
    magic, length, crc = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size:]
    if magic != MAGIC:
        raise CorruptCheckpointError(f"{path}: not a checkpoint file")
    if len(payload) != length:
        raise CorruptCheckpointError(f"{path}: {len(payload)} of {length} payload bytes")
    if zlib.crc32(payload) != crc:
        raise CorruptCheckpointError(f"{path}: checksum mismatch")
    data: dict[str, Any] = pickle.loads(payload)
    return data


def fsync_directory(directory: str) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """Reads and writes the checkpoints of one directory. Blocking: call from a thread."""

    def __init__(self, directory: str, keep: int = 3) -> None:
        self.directory = directory
        self.keep = keep

    def write(self, kind: str, time_ms: int, data: dict[str, Any]) -> str:
        os.makedirs(self.directory, exist_ok=True)
        final = os.path.join(self.directory, f"{kind}-{time_ms}.ckpt")
        temporary = os.path.join(self.directory, f".{kind}-{time_ms}.ckpt.tmp")
        with open(temporary, "wb") as out:
            out.write(encode(data))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, final)
        fsync_directory(self.directory)
        self._rotate(kind)
        return final

    def _listing(self, kind: str) -> list[tuple[int, str]]:
        """(time, path) of every file of ``kind``, newest first."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            if match and match["kind"] == kind:
                found.append((int(match["time"]), os.path.join(self.directory, name)))
        return sorted(found, reverse=True)

    def _rotate(self, kind: str) -> None:
        for _, path in self._listing(kind)[self.keep:]:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    def latest(self, kind: str, at_or_before: int | None = None) -> Checkpoint | None:
        """The newest valid checkpoint of ``kind`` (optionally not after a time)."""
        for time_ms, path in self._listing(kind):
            if at_or_before is not None and time_ms > at_or_before:
                continue
            try:
                with open(path, "rb") as source:
                    data = decode(source.read(), path)
            except (CorruptCheckpointError, OSError, pickle.UnpicklingError, EOFError) as exc:
                log.warning("skipping unusable checkpoint: %s", exc)
                continue
            return Checkpoint(kind, time_ms, path, data)
        return None

    def exists(self) -> bool:
        return any(self._listing(kind) for kind in ("metadata", "state"))
