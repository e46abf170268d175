"""What a block's bytes are in the write-ahead log: its records, encoded.

The log's framing (``receiver.wal``, ``storage.framing``) treats a block as opaque bytes
plus a one-byte kind saying how they are encoded; this module is the one place that turns
records into those bytes and back. A new encoding adds a kind here.
"""

from __future__ import annotations

import pickle
from typing import Any

#: The block's content (a list of records, or one raw block), pickled.
PICKLED_RECORDS = 0


def encode_block(content: Any) -> tuple[int, bytes]:
    """(kind, payload) of a block holding ``content`` (``block_generator.BlockData``)."""
    return PICKLED_RECORDS, pickle.dumps(content, protocol=pickle.HIGHEST_PROTOCOL)


def decode_block(kind: int, payload: bytes) -> Any:
    """The content of a block read back from the log (its MAC already verified)."""
    if kind == PICKLED_RECORDS:
        return pickle.loads(payload)
    raise ValueError(f"unknown block payload kind {kind} (written by a newer version?)")
