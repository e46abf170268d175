"""binary_records_stream: fixed-length binary records of files newly moved into a directory
(Spark's ``binaryRecordsStream``). The directory is watched as ``text_file_stream`` watches
it; each new file is cut into records of ``record_length`` bytes, one partition per file.
A file whose size is not a multiple of the record length is skipped, counted and logged.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from aiostream_engine.sources.files import TextFileInputDStream

if TYPE_CHECKING:
    from aiostream_engine.context import StreamingContext


def read_records(path: Path, record_length: int) -> list[bytes]:
    """The file's records of ``record_length`` bytes; ValueError if it does not divide."""
    data = path.read_bytes()
    if len(data) % record_length:
        raise ValueError(
            f"its size ({len(data)} bytes) is not a multiple of the record length "
            f"({record_length} bytes)"
        )
    return [data[i : i + record_length] for i in range(0, len(data), record_length)]


class BinaryRecordsInputDStream(TextFileInputDStream):
    """Each batch holds the records of the files moved into ``directory`` since the last."""

    def __init__(
        self, ssc: StreamingContext, directory: str | os.PathLike[str], record_length: int
    ) -> None:
        if not isinstance(record_length, int) or isinstance(record_length, bool) or record_length < 1:
            raise ValueError(f"binary_records_stream: record_length must be a positive int, "
                             f"got {record_length!r}")
        super().__init__(ssc, directory)
        self.name = f"binary_records_stream({os.fspath(directory)}, {record_length})"
        self.record_length = record_length
        self._read = functools.partial(read_records, record_length=record_length)
