"""Checkpoint files: atomic, authenticated, rotated, private.

A checkpoint is one file ``<kind>-<n>.ckpt`` holding a pickled dict (and, when asked for,
copies ``<kind>-<n>.<i>.ckpt``, so that one damaged file loses nothing). It is written to
a temporary file (mode 0600, in a 0700 directory), fsynced, renamed into place and the
directory fsynced, so a crash leaves either the old file or the new one, never half of one.
The header carries a magic, the payload length, its CRC-32 and an HMAC-SHA256 under the
engine's key (``storage.keys``) of the header, the file's name and the payload: a file the
engine did not write, or one renamed to pass for another, is refused before it is
unpickled. A file that fails a check is skipped with a warning, and the reason kept in
``CheckpointStore.rejected``: the recovery decides whether an older one may stand in
(``recovery.load_plan``). The newest ``keep`` files of each kind are kept.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import CheckpointFormatError
from .storage.keys import MAC_SIZE, CheckpointKey
from .storage.private_dir import check_private_dir, ensure_private_dir, open_private

log = logging.getLogger("aiostream_engine.checkpoint")

MAGIC = b"ASECKPT2"
#: The first, unauthenticated format: refused, never unpickled.
OLD_MAGICS = (b"ASECKPT1",)
_HEADER = struct.Struct(">8sQI")  # magic, payload length, crc32; then the MAC
HEADER_SIZE = _HEADER.size + MAC_SIZE
LABEL = b"aiostream-engine checkpoint\0"
_NAME = re.compile(r"^(?P<kind>[a-z]+)-(?P<time>\d+)(?:\.(?P<copy>[1-9]))?\.ckpt$")


class CorruptCheckpointError(Exception):
    """A checkpoint file failed its checksum or is truncated."""


class UntrustedCheckpointError(CorruptCheckpointError):
    """A checkpoint file whose checksum holds but whose MAC does not: written with another
    key, or by someone else."""


@dataclass(frozen=True)
class Checkpoint:
    kind: str
    time_ms: int
    path: str
    data: dict[str, Any]


def file_name(kind: str, time_ms: int, copy: int = 0) -> str:
    return f"{kind}-{time_ms}.{copy}.ckpt" if copy else f"{kind}-{time_ms}.ckpt"


def encode(data: dict[str, Any], key: CheckpointKey, name: str) -> bytes:
    """The bytes of the checkpoint file ``name`` holding ``data``."""
    payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    header = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload))
    return header + key.mac(LABEL, header, name.encode(), payload) + payload


def decode(blob: bytes, key: CheckpointKey, name: str, path: str = "<bytes>") -> dict[str, Any]:
    """The data of checkpoint file ``name``; raises unless every check holds."""
    if blob[: len(MAGIC)] in OLD_MAGICS:
        raise CheckpointFormatError(
            f"{path} is a checkpoint of an older, unauthenticated format; this version does "
            "not read it (start with a new checkpoint directory)"
        )
    if len(blob) < HEADER_SIZE:
        raise CorruptCheckpointError(f"{path}: truncated header")
    magic, length, crc = _HEADER.unpack_from(blob)
    mac = blob[_HEADER.size : HEADER_SIZE]
    payload = blob[HEADER_SIZE:]
    if magic != MAGIC:
        raise CorruptCheckpointError(f"{path}: not a checkpoint file")
    if len(payload) != length:
        raise CorruptCheckpointError(f"{path}: {len(payload)} of {length} payload bytes")
    if zlib.crc32(payload) != crc:
        raise CorruptCheckpointError(f"{path}: checksum mismatch")
    if not key.verify(mac, LABEL, blob[: _HEADER.size], name.encode(), payload):
        raise UntrustedCheckpointError(
            f"{path}: not written with this engine's key ({key.source}): a file another "
            "program or user wrote, or a key that changed since; refused unread"
        )
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
    """Reads and writes the checkpoints of one directory. Blocking: call from a thread.

    ``require_private``: refuse an existing directory another user could write to
    (``storage.private_dir``; the ``checkpoint_dir_check`` setting)."""

    def __init__(
        self, directory: str, key: CheckpointKey, keep: int = 3, *, require_private: bool = True
    ) -> None:
        self.directory = directory
        self.key = key
        self.keep = keep
        self.require_private = require_private
        #: Why each unusable file was skipped, for the error that may follow.
        self.rejected: list[str] = []
        self._checked = False

    def _check_directory(self) -> None:
        if not self._checked:
            ensure_private_dir(self.directory, require_private=self.require_private)
            self._checked = True

    def write(self, kind: str, time_ms: int, data: dict[str, Any], copies: int = 1) -> str:
        """Write ``data`` as checkpoint ``time_ms`` of ``kind`` (in ``copies`` files);
        returns the first file's path."""
        self._check_directory()
        paths = [self._write_file(file_name(kind, time_ms, copy), data) for copy in range(copies)]
        fsync_directory(self.directory)
        self._rotate(kind)
        return paths[0]

    def _write_file(self, name: str, data: dict[str, Any]) -> str:
        final = os.path.join(self.directory, name)
        temporary = os.path.join(self.directory, f".{name}.tmp")
        fd = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(encode(data, self.key, name))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, final)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        return final

    @staticmethod
    def files_exist(directory: str, kind: str) -> bool:
        """Whether ``directory`` holds files of ``kind``, usable or not."""
        return bool(_listing(directory, kind))

    def times(self, kind: str) -> list[int]:
        """The times of every checkpoint of ``kind`` on disk, usable or not, newest first."""
        return [time_ms for time_ms, _ in self._listing(kind)]

    def _listing(self, kind: str) -> list[tuple[int, list[str]]]:
        """(time, paths of its copies) of every checkpoint of ``kind``, newest first."""
        if os.path.lexists(self.directory) and self.require_private and not self._checked:
            check_private_dir(self.directory)
            self._checked = True
        return _listing(self.directory, kind)

    def _rotate(self, kind: str) -> None:
        for _, paths in self._listing(kind)[self.keep:]:
            for path in paths:
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass

    def valid(self, kind: str, at_or_before: int | None = None) -> Iterator[Checkpoint]:
        """The usable checkpoints of ``kind``, newest first (optionally not after a time),
        each from the first of its copies that passes every check; a checkpoint with no
        usable copy is logged and its reasons added to ``rejected``."""
        for time_ms, paths in self._listing(kind):
            if at_or_before is not None and time_ms > at_or_before:
                continue
            for path in paths:
                try:
                    with open(path, "rb") as source:
                        data = decode(source.read(), self.key, os.path.basename(path), path)
                except (CorruptCheckpointError, CheckpointFormatError, OSError,
                        pickle.UnpicklingError, EOFError) as exc:
                    log.warning("skipping unusable checkpoint: %s", exc)
                    self.rejected.append(str(exc))
                    continue
                yield Checkpoint(kind, time_ms, path, data)
                break

    def latest(self, kind: str, at_or_before: int | None = None) -> Checkpoint | None:
        """The newest usable checkpoint of ``kind`` (optionally not after a time)."""
        return next(self.valid(kind, at_or_before), None)

    def exists(self) -> bool:
        return any(self._listing(kind) for kind in ("metadata", "state"))


def _listing(directory: str, kind: str) -> list[tuple[int, list[str]]]:
    if not os.path.isdir(directory):
        return []
    found: dict[int, list[tuple[int, str]]] = {}
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match and match["kind"] == kind:
            copy = int(match["copy"] or 0)
            found.setdefault(int(match["time"]), []).append((copy, os.path.join(directory, name)))
    return [(t, [p for _, p in sorted(found[t])]) for t in sorted(found, reverse=True)]
