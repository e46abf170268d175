"""FileSink: one file per batch and partition, text or JSON lines, replaced atomically.

The file of partition i of batch t is ``<directory>/<prefix>-<t in ms>-part-<i:05d><ext>``.
It is written to a dot-file next to it (``text_file_stream`` and most readers skip
dot-files), fsynced, then moved into place with ``os.replace``: a reader sees the whole
file or none, and a batch written again (a retry, a recovered batch) replaces its files
instead of adding to them. The blocking file work runs in a thread.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

import anyio.to_thread
import orjson

from .base import Sink, batch_ms

FileFormat = Literal["text", "json"]


def _text_line(record: Any) -> bytes:
    return f"{record}\n".encode()


def _json_line(record: Any) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


_ENCODERS: dict[str, tuple[Callable[[Any], bytes], str]] = {
    "text": (_text_line, ".txt"),
    "json": (_json_line, ".jsonl"),
}


class FileSink(Sink):
    """Writes ``str(record)`` lines (``format="text"``) or orjson lines (``"json"``)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        format: FileFormat = "text",  # noqa: A002 - the natural name, as in pandas/polars
        prefix: str = "batch",
        extension: str | None = None,
        fsync: bool = True,
    ) -> None:
        if format not in _ENCODERS:
            raise ValueError(f"format must be 'text' or 'json', got {format!r}")
        self.directory = os.fspath(directory)
        self.format = format
        self.prefix = prefix
        self._encode, default_extension = _ENCODERS[format]
        self.extension = default_extension if extension is None else extension
        self.fsync = fsync

    @property
    def name(self) -> str:
        return f"files:{self.directory}"

    def path_of(self, batch_time: float, partition_index: int) -> str:
        """Where partition ``partition_index`` of the batch at ``batch_time`` lands."""
        file = f"{self.prefix}-{batch_ms(batch_time)}-part-{partition_index:05d}{self.extension}"
        return os.path.join(self.directory, file)

    async def open(self) -> None:
        await anyio.to_thread.run_sync(lambda: os.makedirs(self.directory, exist_ok=True))

    async def write_partition(
        self, batch_time: float, partition_index: int, records: Sequence[Any]
    ) -> None:
        target = self.path_of(batch_time, partition_index)
        await anyio.to_thread.run_sync(self._replace, target, records)

    def _replace(self, target: str, records: Sequence[Any]) -> None:
        """In a thread: encoding is CPU work too, and keeps off the loop with the I/O."""
        data = b"".join(map(self._encode, records))
        directory, file = os.path.split(target)
        temporary = os.path.join(directory, f".{file}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as out:
                out.write(data)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
