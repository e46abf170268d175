"""socket_text_stream: newline-delimited UTF-8 text read from a TCP server.

Like Spark's socket receiver, the connection is re-established whenever it drops, whether
the server refuses it, resets it or closes it normally: each case ends the run and the
supervisor reconnects after its backoff. Lines are split on bytes before decoding, so a
multi-byte character split across TCP segments is decoded whole; a line that is not valid
UTF-8, or that is longer than ``max_line_bytes``, is skipped, counted and reported.
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import SocketStream

from aiostream_engine.receiver.base import Receiver

log = logging.getLogger("aiostream_engine.sources.socket")

#: An unterminated line may hold at most this many bytes in memory (1 MiB).
DEFAULT_MAX_LINE_BYTES = 1 << 20


def describe(error: BaseException) -> str:
    """The socket errors under anyio's wrapping, e.g. ``ConnectionRefusedError: [Errno 111] ...``
    instead of anyio's "All connection attempts failed"."""
    cause = error.__cause__
    if isinstance(cause, BaseExceptionGroup):
        causes = list(cause.exceptions)
    else:
        causes = [cause or error]
    return "; ".join(f"{type(c).__name__}: {c}" for c in causes)


class LineSplitter:
    """Splits a byte stream into lines (``\\n`` or ``\\r\\n``) with bounded memory.

    ``feed`` and ``end`` return the finished lines; a line longer than ``max_bytes``
    comes out as ``None`` once it ends, and its bytes are dropped as they arrive.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._pending = bytearray()
        self._overflow = False

    def feed(self, chunk: bytes) -> list[bytes | None]:
        *finished, rest = chunk.split(b"\n")
        lines = [self._finish(part) for part in finished]
        self._append(rest)
        return lines

    def end(self) -> list[bytes | None]:
        """The last line, if the stream ended without a newline."""
        return [self._finish(b"")] if self._pending or self._overflow else []

    def _append(self, part: bytes) -> None:
        if self._overflow:
            return
        self._pending += part
        if len(self._pending) > self._max_bytes:
            self._overflow = True
            self._pending.clear()

    def _finish(self, part: bytes) -> bytes | None:
        self._append(part)
        if self._overflow:
            self._overflow = False
            return None
        line = bytes(self._pending).removesuffix(b"\r")
        self._pending.clear()
        return line


class SocketTextReceiver(Receiver):
    """Stores each line received from ``hostname:port`` as a ``str`` (without its newline)."""

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
        #: Lines skipped because they were not valid UTF-8.
        self.invalid_lines = 0
        #: Lines skipped because they were longer than ``max_line_bytes``.
        self.oversized_lines = 0
        self._stream: SocketStream | None = None

    @property
    def address(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    async def on_start(self) -> None:
        try:
            self._stream = await anyio.connect_tcp(self.hostname, self.port)
        except OSError as exc:
            raise ConnectionError(f"cannot connect to {self.address}: {describe(exc)}") from exc
        splitter = LineSplitter(self.max_line_bytes)
        try:
            async for chunk in self._stream:
                for line in splitter.feed(chunk):
                    await self._store_line(line)
        except (anyio.BrokenResourceError, OSError) as exc:
            raise ConnectionError(f"connection to {self.address} lost: {describe(exc)}") from exc
        for line in splitter.end():
            await self._store_line(line)
        if not self.is_stopped:
            reason = f"{self.address} closed the connection"
            log.warning("%s; reconnecting", reason)
            self.restart(reason)

    async def on_stop(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.aclose()

    async def _store_line(self, line: bytes | None) -> None:
        if line is None:
            self.oversized_lines += 1
            self._skip(f"a line longer than {self.max_line_bytes} bytes")
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.invalid_lines += 1
            self._skip(f"a line that is not valid UTF-8 ({exc.reason} at byte {exc.start})")
            return
        await self.store(text)

    def _skip(self, what: str) -> None:
        message = f"socket {self.address}: skipped {what}"
        log.warning("%s", message)
        self.report_error(message)
