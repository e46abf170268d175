"""Raw blocks: received data kept undecoded in one buffer until a worker decodes it."""

from .block import RawBlock, has_buffer, is_raw, with_buffer, without_buffer
from .lines import LineCutter, LineDecoder, RawLines, UndecodableLine
from .shared import Buffer, SharedBuffer

__all__ = [
    "Buffer", "LineCutter", "LineDecoder", "RawBlock", "RawLines", "SharedBuffer", "UndecodableLine",
    "has_buffer", "is_raw", "with_buffer", "without_buffer",
]
