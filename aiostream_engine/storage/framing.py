"""Authenticated, self-synchronising records for append-only log files.

Each record is::

    sync (8 bytes) | kind (1) | zero (3) | stream (4) | sequence (8) | length (4)
    | header CRC-32 (4) | payload (length bytes) | MAC (32)

* ``sync`` is a fixed marker: after a damaged stretch, reading resumes at the next marker
  that starts a record whose header checksum and MAC hold, so damage costs only the records
  it touched, never the ones after it.
* The header CRC says whether ``length`` can be believed before the payload is read; a
  record whose header holds but whose MAC fails is named exactly (its stream and sequence).
* The MAC (HMAC-SHA256 under the engine's key, ``storage.keys``) covers the header and
  the payload, with a label per kind of file: a record the engine did not write is refused
  before its payload is looked at, let alone unpickled.

The payload is opaque bytes; ``kind``, ``stream`` and ``sequence`` are the caller's (the
receiver log uses them for the payload's encoding, the block stream and the block id).

Reading classifies what does not verify as ``Damage``. Damage reaching the end of the
file is *torn* when it is what a crash in the middle of an append leaves (the start of a
record cut short, or zero bytes): such a record never finished, so nothing that was
acknowledged is lost with it. Any other damage lost records that had been written whole.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from .keys import MAC_SIZE, CheckpointKey

SYNC = b"\x89ASErec\n"
_FIELDS = struct.Struct(">8sB3xIQI")
_CRC = struct.Struct(">I")
HEADER_SIZE = _FIELDS.size + _CRC.size
#: Largest payload a record may carry (a sanity bound on a header that passed its CRC).
MAX_PAYLOAD = 1 << 31


@dataclass(frozen=True, slots=True)
class RecordHeader:
    kind: int
    stream: int
    sequence: int
    length: int


@dataclass(frozen=True, slots=True)
class Record:
    """A record that verified: ``offset`` is where it starts, ``end`` where it ends."""

    offset: int
    end: int
    kind: int
    stream: int
    sequence: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes ``start`` to ``end`` hold no record that verifies. ``header`` is the first
    record's header if that much held (then it names the record lost). ``torn``: the
    unfinished last append of a crashed writer (see the module docstring)."""

    start: int
    end: int
    header: RecordHeader | None
    torn: bool


def frame(
    key: CheckpointKey, label: bytes, kind: int, stream: int, sequence: int,
    *payload: bytes | memoryview,
) -> tuple[bytes | memoryview, ...]:
    """The parts of one record, to be written one after the other; the payload may come
    in parts (written as they are, never joined)."""
    length = sum(len(part) for part in payload)
    if length >= MAX_PAYLOAD:
        raise ValueError(f"a record payload is limited to {MAX_PAYLOAD} bytes, got {length}")
    fields = _FIELDS.pack(SYNC, kind, stream, sequence, length)
    header = fields + _CRC.pack(zlib.crc32(fields))
    return header, *payload, key.mac(label, header, *payload)


def record_size(payload_length: int) -> int:
    return HEADER_SIZE + payload_length + MAC_SIZE


def _header_at(data: bytes | memoryview, offset: int) -> RecordHeader | None:
    """The header at ``offset`` if it is complete and its checksum holds."""
    if len(data) - offset < HEADER_SIZE:
        return None
    fields = data[offset : offset + _FIELDS.size]
    sync, kind, stream, sequence, length = _FIELDS.unpack(fields)
    if sync != SYNC or length >= MAX_PAYLOAD:
        return None
    (crc,) = _CRC.unpack_from(data, offset + _FIELDS.size)
    if zlib.crc32(fields) != crc:
        return None
    return RecordHeader(kind, stream, sequence, length)


def _verified(
    data: memoryview, offset: int, header: RecordHeader, key: CheckpointKey, label: bytes
) -> bool:
    payload_end = offset + HEADER_SIZE + header.length
    if payload_end + MAC_SIZE > len(data):
        return False
    return key.verify(
        data[payload_end : payload_end + MAC_SIZE],
        label,
        data[offset : offset + HEADER_SIZE],
        data[offset + HEADER_SIZE : payload_end],
    )


def _next_record(
    data: memoryview, raw: bytes, start: int, key: CheckpointKey, label: bytes
) -> int | None:
    """Offset of the first record at or after ``start`` that verifies."""
    position = start
    while True:
        found = raw.find(SYNC, position)
        if found < 0:
            return None
        header = _header_at(data, found)
        if header is not None and _verified(data, found, header, key, label):
            return found
        position = found + 1


def _is_torn(data: memoryview, start: int, header: RecordHeader | None) -> bool:
    """Whether the damage from ``start`` to the end of the file is an unfinished append."""
    rest = bytes(data[start:])
    if header is not None:  # a sound header whose record runs past the end of the file
        return start + record_size(header.length) > len(data)
    if len(rest) < HEADER_SIZE and SYNC.startswith(rest[: len(SYNC)]):
        return True  # the header itself was cut short
    return not rest.strip(b"\0")  # space the file system gave but the write never filled


def scan(
    raw: bytes, key: CheckpointKey, label: bytes, start: int = 0
) -> Iterator[Record | Damage]:
    """Every record from ``start`` on, in order, with the damaged stretches between them."""
    data = memoryview(raw)
    position = start
    size = len(data)
    while position < size:
        header = _header_at(data, position)
        if header is not None and _verified(data, position, header, key, label):
            end = position + record_size(header.length)
            payload = bytes(data[position + HEADER_SIZE : end - MAC_SIZE])
            yield Record(position, end, header.kind, header.stream, header.sequence, payload)
            position = end
            continue
        resume = _next_record(data, raw, position + 1, key, label)
        if resume is None:
            yield Damage(position, size, header, _is_torn(data, position, header))
            return
        yield Damage(position, resume, header, False)
        position = resume
