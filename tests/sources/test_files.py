"""text_file_stream on a real directory, on a ManualClock."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

import aiostream_engine.sources.files as files_source
from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.raw import RawLines, UndecodableLine
from aiostream_engine.testing import advance_batches, collect_batches

pytestmark = pytest.mark.anyio


def move_in(directory: Path, name: str, content: bytes) -> None:
    """Write a dot-file, then rename it into place: how producers publish atomically."""
    temporary = directory / f".{name}.tmp"
    temporary.write_bytes(content)
    os.rename(temporary, directory / name)


def context() -> StreamingContext:
    return StreamingContext(1.0, master="local", clock=ManualClock(0.0))


async def test_each_new_file_lands_in_exactly_one_batch_as_one_partition(tmp_path: Path) -> None:
    move_in(tmp_path, "old.txt", b"present before the start\n")
    async with context() as ssc:
        stream = ssc.text_file_stream(str(tmp_path))
        out = collect_batches(stream.glom())
        await ssc.start()
        move_in(tmp_path, "a.txt", b"a1\na2\n")
        (tmp_path / ".in-progress").write_bytes(b"hidden\n")
        (tmp_path / "_SUCCESS").write_bytes(b"marker\n")
        (tmp_path / "subdir").mkdir()
        infos = await advance_batches(ssc, 1)
        move_in(tmp_path, "c.txt", b"c1\r\nc2\rc3")
        move_in(tmp_path, "b.txt", b"")
        infos += await advance_batches(ssc, 2)
    assert out == [
        (1.0, [["a1", "a2"]]),
        (2.0, [[], ["c1", "c2", "c3"]]),
        (3.0, []),
    ]
    assert [i.stream_id_to_num_records for i in infos] == [{0: 2}, {0: 3}, {0: 0}]
    assert stream.skipped_files == 0


async def test_a_name_removed_then_moved_in_again_is_a_new_file(tmp_path: Path) -> None:
    async with context() as ssc:
        out = collect_batches(ssc.text_file_stream(str(tmp_path)))
        await ssc.start()
        move_in(tmp_path, "data.txt", b"first\n")
        await advance_batches(ssc, 1)
        (tmp_path / "data.txt").unlink()
        await advance_batches(ssc, 1)  # the name is forgotten: the seen set stays bounded
        move_in(tmp_path, "data.txt", b"second\n")
        await advance_batches(ssc, 1)
    assert out == [(1.0, ["first"]), (2.0, []), (3.0, ["second"])]


async def test_undecodable_lines_are_dead_letters_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with context() as ssc:
        stream = ssc.text_file_stream(str(tmp_path))
        out = collect_batches(stream)
        dead = collect_batches(stream.dead_letters())  # type: ignore[attr-defined]
        await ssc.start()
        move_in(tmp_path, "good.txt", b"caf\xc3\xa9\n")
        move_in(tmp_path, "latin1.txt", b"caf\xe9\nplain\r\n")
        with caplog.at_level(logging.WARNING, "aiostream_engine.sources.files"):
            infos = await advance_batches(ssc, 1)
        await advance_batches(ssc, 1)  # a file is not read again
    assert out == [(1.0, ["café", "plain"]), (2.0, [])]
    assert dead == [
        (1.0, [UndecodableLine(b"caf\xe9", "that is not valid UTF-8 (unexpected end of data at byte 3)")]),
        (2.0, []),
    ]
    assert infos[0].stream_id_to_num_records == {stream.id: 2, stream.dead_letters().id: 1}  # type: ignore[attr-defined]
    assert (stream.invalid_lines, stream.skipped_files) == (1, 0)
    assert [r.getMessage() for r in caplog.records] == [
        f"text_file_stream({tmp_path}): 1 line(s) of batch 1.000 s are not valid UTF-8 "
        "(first: b'caf\\xe9', a line that is not valid UTF-8 (unexpected end of data at byte 3))"
    ]
    assert ssc.errors == []


async def test_file_vanishing_between_listing_and_reading_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    read_lines = files_source.read_raw_lines

    def delete_first(path: Path) -> RawLines:
        if path.name == "gone.txt":
            path.unlink()  # the fault at the exact moment: listed, then deleted
        return read_lines(path)

    monkeypatch.setattr(files_source, "read_raw_lines", delete_first)
    async with context() as ssc:
        stream = ssc.text_file_stream(str(tmp_path))
        out = collect_batches(stream)
        await ssc.start()
        move_in(tmp_path, "gone.txt", b"never read\n")
        move_in(tmp_path, "kept.txt", b"read\n")
        with caplog.at_level(logging.WARNING, "aiostream_engine.sources.files"):
            await advance_batches(ssc, 1)
        move_in(tmp_path, "later.txt", b"the stream goes on\n")
        await advance_batches(ssc, 1)
    assert out == [(1.0, ["read"]), (2.0, ["the stream goes on"])]
    assert stream.skipped_files == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"text_file_stream({tmp_path}): skipped file {tmp_path / 'gone.txt'}: "
        "it vanished before it could be read"
    ]


async def test_directory_removed_while_running_gives_empty_batches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "incoming"
    directory.mkdir()
    async with context() as ssc:
        stream = ssc.text_file_stream(str(directory))
        out = collect_batches(stream)
        await ssc.start()
        directory.rmdir()
        with caplog.at_level(logging.WARNING, "aiostream_engine.sources.files"):
            await advance_batches(ssc, 1)
        directory.mkdir()
        move_in(directory, "back.txt", b"back\n")
        await advance_batches(ssc, 1)
    assert out == [(1.0, []), (2.0, ["back"])]
    assert stream.failed_listings == 1
    assert [r.getMessage().split(": ")[:2] for r in caplog.records] == [
        [f"text_file_stream({directory})", "cannot list the directory, no files this batch"]
    ]
    assert ssc.errors == []


async def test_missing_directory_is_a_clear_error_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    async with context() as ssc:
        stream = ssc.text_file_stream(str(missing))
        with pytest.raises(FileNotFoundError) as raised:
            await stream.start()
    assert str(raised.value) == (
        f"text_file_stream({missing}): directory '{missing}' does not exist or is not a directory"
    )


async def test_recovery_reads_a_replayed_batchs_files_again_and_files_moved_in_while_down(
    tmp_path: Path,
) -> None:
    """Stopped before its first state checkpoint, the job's batches are recomputed from
    their files' names; a file moved in while it was down is new to the next batch. (Before,
    every file present at the restart was taken as old: the recomputed batches and the file
    moved in while down were lost to the state.)"""
    data, checkpoint = tmp_path / "in", tmp_path / "checkpoint"
    data.mkdir()
    out: list[tuple[float, list[Any]]] = []

    def setup() -> StreamingContext:
        ssc = context()
        ssc.checkpoint(str(checkpoint))
        counts = ssc.text_file_stream(str(data)).map(lambda w: (w, 1)).update_state_by_key(
            lambda new, total: sum(new, total or 0)
        )
        counts.foreach_rdd(lambda t, rdd: out.append((t, sorted(rdd.collect()))))
        return ssc

    async with setup() as ssc:
        await ssc.start()
        move_in(data, "1.txt", b"x\ny\n")
        await advance_batches(ssc, 1)
        move_in(data, "2.txt", b"x\n")
        await advance_batches(ssc, 2)
    move_in(data, "3.txt", b"x\n")
    async with StreamingContext.get_or_create(str(checkpoint), setup) as ssc:
        await ssc.start()
        await advance_batches(ssc, 2)
    assert out == [
        (1.0, [("x", 1), ("y", 1)]),
        (2.0, [("x", 2), ("y", 1)]),
        (3.0, [("x", 2), ("y", 1)]),
        (4.0, [("x", 3), ("y", 1)]),
        (5.0, [("x", 3), ("y", 1)]),
    ]
