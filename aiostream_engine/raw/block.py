"""What every raw block is: undecoded records kept as one buffer, decoded on the workers.

A receiver that stored one Python object per record did per-record work on the event loop
(decoding, building the object, then pickling it again to reach a worker). A raw block
keeps the bytes as they came: one contiguous buffer (plus what the source needs to find
the records in it), counted in bytes by the receivers' budget, written to the
write-ahead log and sent to a worker as that one buffer, and decoded there as the first
stage of the task (``aiostream_engine.decoding``). Kinds: ``RawLines`` (line sources) and
MQTT's ``PublishBlock`` (``sources.mqtt_block``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol


class RawBlock(Protocol):
    """A block of undecoded records kept as one buffer."""

    def __len__(self) -> int:
        """The records it holds."""
        ...

    @property
    def nbytes(self) -> int:
        """The bytes it holds (what it costs of the receivers' byte budget)."""
        ...


def is_raw(data: Any) -> bool:
    """Whether a block's data is a raw block (else records)."""
    return not isinstance(data, list) and hasattr(type(data), "nbytes")


def has_buffer(data: Any) -> bool:
    """Whether ``data`` is a raw block whose buffer is its ``data`` field (``bytes``), so
    it can travel as a small shell plus that buffer, which is never copied into a pickle
    (the write-ahead log, ``receiver.block_payload``; the workers' pipes,
    ``executor.protocol``)."""
    return is_raw(data) and dataclasses.is_dataclass(data) and isinstance(getattr(data, "data", None), bytes)


def without_buffer(block: Any) -> Any:
    """The block with an empty buffer: what is pickled of it (see ``has_buffer``)."""
    return dataclasses.replace(block, data=b"")


def with_buffer(shell: Any, data: Any) -> Any:
    """The block again from its shell (``without_buffer``) and its buffer (``bytes``, or
    where it is kept instead: ``raw.shared``)."""
    return dataclasses.replace(shell, data=data)
