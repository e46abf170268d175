"""Raw lines: the raw block of line sources (socket, files).

``RawLines`` holds every line followed by ``b"\\n"``, so the line ends are its offsets;
``LineCutter`` cuts a byte stream at line ends on the event loop without a step per line,
and ``LineDecoder`` turns a block into ``str`` lines on the worker, a segment at a time
(one UTF-8 decode and one split per 64 KiB). A line that is not UTF-8, or is
longer than the source allows, becomes an ``UndecodableLine`` dead letter.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from .shared import Buffer, SharedBuffer


@dataclass(frozen=True)
class RawLines:
    """Undecoded lines: ``data`` holds every line followed by ``b"\\n"`` (``bytes``; where a
    worker decodes a block shared under ``local[N]``, the file mapped: ``raw.shared``)."""

    data: Buffer | SharedBuffer
    count: int

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @classmethod
    def of(cls, lines: list[bytes]) -> RawLines:
        """A block of these lines (none may hold ``b"\\n"``)."""
        return cls(b"".join(line + b"\n" for line in lines), len(lines))


class LineCutter:
    """Cuts a byte stream into whole lines with bounded memory, without a Python step per
    line: ``feed`` returns the bytes of the lines a chunk completes (each ending with
    ``b"\\n"``) and how many there are.

    A line still unterminated past ``max_bytes`` keeps only its first ``max_bytes + 2``
    bytes and drops the rest as it arrives; once it ends, that prefix comes out as the
    line, so the decoder sees a line over the limit and makes it a dead letter (two bytes
    over, not one: a kept prefix ending in ``"\r"`` loses it to ``strip_cr`` and must
    still be over the limit).
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._pending = bytearray()

    def _keep(self, part: bytes) -> None:
        room = self._max_bytes + 2 - len(self._pending)
        if room > 0:
            self._pending += part[:room]

    def feed(self, chunk: bytes) -> tuple[bytes, int]:
        last = chunk.rfind(b"\n")
        if last < 0:
            self._keep(chunk)
            return b"", 0
        first = chunk.find(b"\n")
        self._keep(chunk[:first])
        head, self._pending = bytes(self._pending) + b"\n", bytearray()
        if first < last:
            head += chunk[first + 1 : last + 1]
        self._keep(chunk[last + 1 :])
        return head, head.count(b"\n")

    def end(self) -> tuple[bytes, int]:
        """The last line, when the stream ended without a newline."""
        if not self._pending:
            return b"", 0
        tail, self._pending = bytes(self._pending) + b"\n", bytearray()
        return tail, 1


class UndecodableLine(NamedTuple):
    """A line that could not be decoded: its bytes (at most the limit plus two) and why."""

    line: bytes
    error: str


#: Bytes decoded at once on the worker: one decode and one split per segment. Small enough
#: for the segment, its text and its lines to stay in the CPU's cache: W2's map task over
#: 200,000 readings took 174 ms with 4 MiB segments, 152 ms with 64 KiB (148 ms from
#: pickled slices of str).
SEGMENT = 64 << 10


@dataclass(frozen=True)
class LineDecoder:
    """Decodes ``RawLines`` into ``str`` lines on the worker. ``strip_cr``: a line ending in
    ``"\\r\\n"`` loses the ``"\\r"`` too; ``max_bytes``: a longer line is a dead letter."""

    strip_cr: bool = True
    max_bytes: int | None = None

    def decode(self, raw: Iterator[Any], dead: list[Any]) -> Iterator[list[Any]]:
        for block in raw:
            data: Buffer = block.data
            view = memoryview(data)
            start, size = 0, len(data)
            while start < size:
                end = data.rfind(b"\n", start, start + SEGMENT) + 1
                if end <= start:  # a line longer than a segment
                    end = data.find(b"\n", start) + 1
                    if end <= start:
                        raise ValueError("a raw-lines block does not end with a line end")
                yield self._segment(view[start:end], dead)
                start = end

    def _segment(self, segment: memoryview, dead: list[Any]) -> list[str]:
        try:
            text = codecs.utf_8_decode(segment, "strict", True)[0]
        except UnicodeDecodeError:
            return self._line_by_line(bytes(segment), dead)
        if self.strip_cr and "\r" in text:
            text = text.replace("\r\n", "\n")
        lines = text.split("\n")
        lines.pop()  # after the last "\n"
        limit = self.max_bytes
        if limit is not None and lines:
            longest = max(map(len, lines))
            if longest * (1 if text.isascii() else 4) > limit:
                return self._line_by_line(bytes(segment), dead)
        return lines

    def _line_by_line(self, segment: bytes, dead: list[Any]) -> list[str]:
        """The slow path of a segment holding a bad line: one line at a time."""
        lines: list[str] = []
        limit = self.max_bytes
        for line in segment.split(b"\n")[:-1]:
            if self.strip_cr:
                line = line.removesuffix(b"\r")
            if limit is not None and len(line) > limit:
                dead.append(UndecodableLine(line, f"longer than {limit} bytes"))
                continue
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                dead.append(UndecodableLine(
                    line, f"that is not valid UTF-8 ({exc.reason} at byte {exc.start})"
                ))
        return lines
