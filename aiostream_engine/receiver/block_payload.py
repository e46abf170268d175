"""What a block's bytes are in the write-ahead log: its records, encoded.

The log's framing (``receiver.wal``, ``storage.framing``) treats a block as opaque bytes
(written as one or more parts) plus a one-byte kind saying how they are encoded; this
module is the one place that turns a block's content into those parts and back. A new
encoding adds a kind here.

* ``PICKLED_RECORDS``: a list of records (``store(record)``), pickled.
* ``RAW_BUFFER``: a raw block whose buffer is its ``data`` (``raw.has_buffer``): the
  length of its shell, the shell (the block without its buffer, pickled: a few hundred
  bytes) and then the buffer as it is, written from the block's own bytes, never copied
  into a pickle nor touched per record.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from ..raw import has_buffer, with_buffer, without_buffer

#: The block's content (a list of records, or a raw block of another shape), pickled.
PICKLED_RECORDS = 0
#: A raw block: shell length, pickled shell, buffer as it is.
RAW_BUFFER = 1

_SHELL_LENGTH = struct.Struct(">I")


def encode_block(content: Any) -> tuple[int, tuple[bytes, ...]]:
    """(kind, payload parts) of a block holding ``content`` (``block_generator.BlockData``)."""
    if has_buffer(content):
        shell = pickle.dumps(without_buffer(content), protocol=pickle.HIGHEST_PROTOCOL)
        return RAW_BUFFER, (_SHELL_LENGTH.pack(len(shell)) + shell, content.data)
    return PICKLED_RECORDS, (pickle.dumps(content, protocol=pickle.HIGHEST_PROTOCOL),)


def decode_block(kind: int, payload: bytes) -> Any:
    """The content of a block read back from the log (its MAC already verified)."""
    if kind == PICKLED_RECORDS:
        return pickle.loads(payload)
    if kind == RAW_BUFFER:
        (length,) = _SHELL_LENGTH.unpack_from(payload)
        start = _SHELL_LENGTH.size + length
        return with_buffer(pickle.loads(payload[_SHELL_LENGTH.size:start]), payload[start:])
    raise ValueError(f"unknown block payload kind {kind} (written by a newer version?)")
