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
