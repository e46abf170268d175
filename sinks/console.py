"""ConsoleSink: prints each partition, for development and debugging."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import anyio.to_thread

from aiostream_engine.dstream.output import format_batch_time

from .base import Sink


class ConsoleSink(Sink):
    """Prints a header naming the batch and partition, then one line per record.

    Each partition is written with one ``write`` call, so concurrent partitions never
    interleave their lines; the write goes through a thread because a slow terminal or a
    full pipe would otherwise stall the event loop.
    """

    def __init__(self, stream: TextIO | None = None, *, skip_empty: bool = True) -> None:
        self._stream = stream
        self.skip_empty = skip_empty

    @property
    def name(self) -> str:
        return "console"

    async def write_partition(
        self, batch_time: float, partition_index: int, records: Sequence[Any]
    ) -> None:
        if not records and self.skip_empty:
            return
        text = "".join(
            [f"--- Time: {format_batch_time(batch_time)} partition {partition_index} ---\n"]
            + [f"{record}\n" for record in records]
        )
        await anyio.to_thread.run_sync(self._write, text)

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stdout  # looked up late: pytest and users swap stdout
        stream.write(text)
        stream.flush()
