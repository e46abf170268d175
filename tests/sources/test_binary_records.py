"""binary_records_stream (PySpark's binaryRecordsStream) on a real directory."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.testing import advance_batches, collect_batches

pytestmark = pytest.mark.anyio


def move_in(directory: Path, name: str, content: bytes) -> None:
    temporary = directory / f".{name}.tmp"
    temporary.write_bytes(content)
    os.rename(temporary, directory / name)


async def test_each_new_file_is_cut_into_fixed_length_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    readings = struct.Struct(">if")  # 8 bytes: device id, temperature

    def unpack(record: bytes) -> tuple[int, float]:
        return struct.unpack(">if", record)  # a Struct object does not pickle

    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        stream = ssc.binaryRecordsStream(str(tmp_path), recordLength=readings.size)
        out = collect_batches(stream.map(unpack).glom())
        await ssc.start()
        move_in(tmp_path, "a.bin", readings.pack(1, 20.5) + readings.pack(2, 21.0))
        infos = await advance_batches(ssc, 1)
        move_in(tmp_path, "torn.bin", readings.pack(3, 1.0)[:5])
        move_in(tmp_path, "b.bin", readings.pack(3, 22.25))
        with caplog.at_level(logging.WARNING):
            infos += await advance_batches(ssc, 1)
    assert out == [(1.0, [[(1, 20.5), (2, 21.0)]]), (2.0, [[(3, 22.25)]])]
    assert [i.stream_id_to_num_records for i in infos] == [{0: 2}, {0: 1}]
    assert stream.skipped_files == 1
    assert "torn.bin" in caplog.text and "not a multiple of the record length (8" in caplog.text


def test_record_length_must_be_positive(tmp_path: Path) -> None:
    ssc = StreamingContext(1.0, master="local")
    with pytest.raises(ValueError, match="record_length must be a positive int"):
        ssc.binary_records_stream(str(tmp_path), 0)
