"""socket_text_stream: newline-delimited UTF-8 text read from a TCP server.

Like Spark's socket receiver, the connection is re-established whenever it drops, whether
the server refuses it, resets it or closes it normally: each case ends the run and the
supervisor reconnects after its backoff.

The receiver stores raw lines (``aiostream_engine.raw``): each chunk read is cut at its
last line end and stored as it is, with no step per line on the event loop; the workers
split and decode the lines (``LineDecoder``), so a multi-byte character split across TCP
segments is decoded whole. A line that is not valid UTF-8, or that is longer than
``max_line_bytes`` (of which at most that many bytes are ever held), becomes an
``UndecodableLine`` in the stream's ``dead_letters()``: counted (``invalid_lines``,
``oversized_lines``) and reported once its batch completes.
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import SocketStream

from aiostream_engine.raw import LineCutter, LineDecoder, UndecodableLine
from aiostream_engine.receiver.base import Receiver

log = logging.getLogger("aiostream_engine.sources.socket")

#: An unterminated line may hold at most this many bytes in memory (1 MiB).
DEFAULT_MAX_LINE_BYTES = 1 << 20
#: Bytes per read: at most, and at least under a rate bound.
MAX_READ = 1 << 16
MIN_READ = 1 << 10
#: Under a rate bound, each read takes about this many seconds of the bound's lines.
READ_SLICE = 0.05


def describe(error: BaseException) -> str:
    """The socket errors under anyio's wrapping, e.g. ``ConnectionRefusedError: [Errno 111] ...``
    instead of anyio's "All connection attempts failed"."""
    cause = error.__cause__
    if isinstance(cause, BaseExceptionGroup):
        causes = list(cause.exceptions)
    else:
        causes = [cause or error]
    return "; ".join(f"{type(c).__name__}: {c}" for c in causes)


class SocketTextReceiver(Receiver):
    """Stores the lines received from ``hostname:port``, raw; its stream's records are the
    lines as ``str`` (without their newline)."""

    def __init__(
        self, hostname: str, port: int, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        super().__init__()
        if max_line_bytes <= 0:
            raise ValueError(f"max_line_bytes must be > 0, got {max_line_bytes}")
        self.hostname = hostname
        self.port = port
        self.max_line_bytes = max_line_bytes
        self.name = f"socket_text_stream({self.address})"
        #: Lines that were not valid UTF-8 (dead letters).
        self.invalid_lines = 0
        #: Lines longer than ``max_line_bytes`` (dead letters).
        self.oversized_lines = 0
        self.decoder = LineDecoder(strip_cr=True, max_bytes=max_line_bytes)
        self._stream: SocketStream | None = None
        self._bytes_read = 0
        self._lines_read = 0

    def _read_size(self) -> int:
        """Bytes to read next: 64 KiB, or under a rate bound about what the bound lets in
        per READ_SLICE seconds (at the average line length so far), so a lower bound reads
        less from the socket and TCP flow control holds the rest at the peer."""
        bound = self.rate_limit
        if bound is None:
            return MAX_READ
        line_bytes = self._bytes_read / self._lines_read if self._lines_read else 100.0
        return max(MIN_READ, min(MAX_READ, int(bound * READ_SLICE * line_bytes)))

    @property
    def address(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    async def on_start(self) -> None:
        try:
            self._stream = await anyio.connect_tcp(self.hostname, self.port)
        except OSError as exc:
            raise ConnectionError(f"cannot connect to {self.address}: {describe(exc)}") from exc
        cutter = LineCutter(self.max_line_bytes)
        try:
            while True:
                try:
                    chunk = await self._stream.receive(self._read_size())
                except anyio.EndOfStream:
                    break
                data, count = cutter.feed(chunk)
                self._bytes_read += len(data)
                self._lines_read += count
                await self.store_lines(data, count)
        except (anyio.BrokenResourceError, OSError) as exc:
            raise ConnectionError(f"connection to {self.address} lost: {describe(exc)}") from exc
        await self.store_lines(*cutter.end())
        if not self.is_stopped:
            reason = f"{self.address} closed the connection"
            log.warning("%s; reconnecting", reason)
            self.restart(reason)

    async def on_stop(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.aclose()

    def on_decoded(self, time_ms: int, records: int, dead_letters: list[UndecodableLine]) -> None:
        if not dead_letters:
            return
        oversized = sum(1 for d in dead_letters if d.error.startswith("longer than"))
        self.oversized_lines += oversized
        self.invalid_lines += len(dead_letters) - oversized
        message = (
            f"socket {self.address}: skipped {len(dead_letters)} line(s) "
            f"(first: a line {dead_letters[0].error})"
        )
        log.warning("%s", message)
        self.report_error(message)
