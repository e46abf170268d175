"""Raw blocks: received data kept undecoded in one buffer until a worker decodes it."""

from .block import RawBlock, is_raw
from .lines import LineCutter, LineDecoder, RawLines, UndecodableLine

__all__ = ["LineCutter", "LineDecoder", "RawBlock", "RawLines", "UndecodableLine", "is_raw"]
