"""Raw blocks under local[N] go to shared memory when they are stored, and the worker that
decodes each maps its file (executor/shared_input.py's RawBlockFiles, raw/shared.py).

Batch by batch the word counts and dead letters are those of a plain Python reference;
the blocks' bytes do not cross the workers' pipes; a file is written over only once its
block is gone, and blocks smaller and bigger than the kept file read back exactly; a full
shared memory falls back to the pipe with one warning; a worker killed in the middle of a
task is replaced and the retry maps the same file; a file cut under a batch fails the job
naming it.
"""

from __future__ import annotations

import gc
import logging
import operator
import os
import pickle
import random
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aiostream_engine import DStream, JobFailedError, ManualClock, StreamingContext
from aiostream_engine.executor import shared_input
from aiostream_engine.executor.shared_input import RAW_SHARE_FROM, RawBlockFiles
from aiostream_engine.raw import LineDecoder, RawLines, SharedBuffer
from aiostream_engine.receiver.base import Receiver
from aiostream_engine.testing import advance_batches, collect_batches
from tests.fed_receivers import feed
from tests.file_limits import file_size_limit
from tests.shared_memory import pool, shared_files

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm (Linux only)"),
]


class LineBlocks(Receiver):
    """Stores each list of lines it is sent as one raw-lines block."""

    decoder = LineDecoder()

    def __init__(self) -> None:
        super().__init__()
        self.send, self._receive = anyio.create_memory_object_stream[list[bytes]](10)
        self.blocks_stored = 0

    async def on_start(self) -> None:
        async for lines in self._receive:
            await self.store_block(RawLines.of(lines))
            self.blocks_stored += 1


def block_lines(seed: int, size: int) -> list[bytes]:
    """Lines of words, about ``size`` bytes in all; one line in 500 is not UTF-8."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    total = 0
    while total < size:
        if rng.randrange(500) == 0:
            line = b"bad \xff" + str(rng.randrange(10)).encode()
        else:
            line = " ".join(f"w{rng.randrange(300)}" for _ in range(rng.randrange(1, 12))).encode()
        lines.append(line)
        total += len(line) + 1
    return lines


def reference(blocks: list[list[bytes]]) -> tuple[dict[str, int], list[bytes]]:
    """The batch's word counts and its dead letters (the lines that are not UTF-8)."""
    counts: Counter[str] = Counter()
    dead: list[bytes] = []
    for lines in blocks:
        for line in lines:
            try:
                counts.update(line.decode().split())
            except UnicodeDecodeError:
                dead.append(line)
    return dict(counts), dead


def word_counts(stream: DStream) -> DStream:
    return stream.flat_map(str.split).map(lambda w: (w, 1)).reduce_by_key(operator.add)


async def run_batches(
    ssc: StreamingContext, batches: list[list[list[bytes]]], before_batch: Callable[[], None] = lambda: None,
    step: Callable[[DStream], DStream] = lambda s: s,
) -> tuple[list[dict[str, int]], list[list[bytes]], list[set[str]]]:
    """Run ``batches`` (each a list of blocks of lines) through a word count; the counts and
    dead letters of each batch, and the shared files there were while each batch ran."""
    receiver = LineBlocks()
    stream = ssc.receiver_stream(receiver)
    dead = collect_batches(stream.dead_letters().map(lambda d: d.line))
    counts = collect_batches(word_counts(step(stream)))
    await ssc.start()
    backend = pool(ssc)
    seen: list[set[str]] = []
    for blocks in batches:
        gc.collect()  # the blocks of finished batches are gone: their files are free
        await feed(receiver, *blocks)
        seen.append(set(shared_files(backend.shared_dir)))
        before_batch()
        await advance_batches(ssc, 1)
    return [dict(c) for _, c in counts], [d for _, d in dead], seen


async def test_raw_blocks_are_read_from_shared_memory_and_their_files_reused() -> None:
    sizes = [[3 << 20, 3 << 20], [RAW_SHARE_FROM + 1000] * 2, [6 << 20],
             [2 << 20, 5 << 20, RAW_SHARE_FROM // 2]]
    batches = [[block_lines(10 * b + i, size) for i, size in enumerate(sizes_)]
               for b, sizes_ in enumerate(sizes)]
    total = sum(len(line) + 1 for blocks in batches for lines in blocks for line in lines)
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(0.0)) as ssc:
        counts, dead, seen = await run_batches(ssc, batches)
        backend = pool(ssc)
        assert backend.traffic.sent < total / 20  # the plans crossed the pipes, not the lines
    expected = [reference(blocks) for blocks in batches]
    assert counts == [c for c, _ in expected]
    assert dead == [d for _, d in expected]
    assert all(d for d in dead)  # every batch had dead letters, in order
    # Seven blocks went to shared memory (the last batch's half MiB one is under the
    # threshold and crossed the pipe) in four files: a batch's blocks live until the next batch is
    # done, so the first two batches needed files of their own, the next two wrote over them.
    assert [len(files) for files in seen] == [2, 4, 4, 4]
    assert seen[0] < seen[1] == seen[2] == seen[3]
    assert len(set().union(*seen)) < sum(map(len, sizes))


def windowed_counts(batches: list[list[list[bytes]]], span: int | None) -> list[dict[str, int]]:
    """Each batch's word counts over the last ``span`` batches (None: all so far)."""
    out = []
    for i in range(len(batches)):
        counts: Counter[str] = Counter()
        for blocks in batches[0 if span is None else max(0, i - span + 1) : i + 1]:
            counts.update(reference(blocks)[0])
        out.append(dict(counts))
    return out


@pytest.mark.parametrize("kind", ["window", "reduce_by_key_and_window", "update_state_by_key"])
async def test_windows_and_state_over_shared_blocks_whose_files_are_written_over(
    kind: str, tmp_path: Path
) -> None:
    """A window keeps its batches' blocks (and so their files) as long as it reads them:
    the files written over are those of batches it no longer holds."""
    sizes = [[3 << 20], [2 << 20, 2 << 20], [3 << 20], [4 << 20], [2 << 20], [3 << 20]]
    batches = [[block_lines(10 * b + i, size) for i, size in enumerate(sizes_)]
               for b, sizes_ in enumerate(sizes)]

    def step(stream: DStream) -> DStream:
        pairs = stream.flat_map(str.split).map(lambda w: (w, 1))
        if kind == "window":
            return pairs.window(3.0, 1.0).reduce_by_key(operator.add)
        if kind == "reduce_by_key_and_window":
            return pairs.reduce_by_key_and_window(operator.add, operator.sub, 3.0, 1.0)
        return pairs.update_state_by_key(lambda values, state: sum(values) + (state or 0))

    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(0.0)) as ssc:
        ssc.checkpoint(str(tmp_path))
        receiver = LineBlocks()
        out = collect_batches(step(ssc.receiver_stream(receiver)))
        await ssc.start()
        seen: list[set[str]] = []
        for blocks in batches:
            gc.collect()
            await feed(receiver, *blocks)
            seen.append(set(shared_files(pool(ssc).shared_dir)))
            await advance_batches(ssc, 1)
    counts = [{word: n for word, n in batch if n} for _, batch in out]
    assert counts == windowed_counts(batches, None if kind == "update_state_by_key" else 3)
    assert len(set().union(*seen)) < sum(map(len, sizes))  # files were written over


class UndecodedBlocks(LineBlocks):
    """Stores raw-lines blocks with no decoder: the blocks are the stream's records."""

    decoder = None


@pytest.mark.parametrize("shape", ["records", "map", "repartition", "cache"])
async def test_raw_blocks_of_a_stream_without_a_decoder_travel_with_their_tasks(shape: str) -> None:
    """Its blocks are records a job may send anywhere (collect them, shuffle them, keep
    them): they keep their bytes, and no file is made for them."""
    lines = block_lines(7, 3 << 20)

    def step(stream: DStream) -> DStream:
        if shape == "map":
            return stream.map(lambda block: block)
        if shape == "repartition":
            return stream.repartition(3)
        if shape == "cache":
            return stream.cache()
        return stream

    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(0.0),
                                conf={"task_max_failures": 1}) as ssc:
        receiver = UndecodedBlocks()
        out = collect_batches(step(ssc.receiver_stream(receiver)))
        await ssc.start()
        await feed(receiver, lines)
        assert shared_files(pool(ssc).shared_dir) == []
        await advance_batches(ssc, 1)
    expected = RawLines.of(lines).data
    assert [[(type(b.data), b.data) for b in batch] for _, batch in out] == [[(bytes, expected)]]


async def test_a_full_shared_memory_sends_raw_blocks_through_the_pipe_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batches = [[block_lines(b, 2 << 20)] for b in range(3)]
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(0.0)) as ssc:
        with caplog.at_level(logging.WARNING), file_size_limit(1 << 20):
            counts, dead, seen = await run_batches(ssc, batches)
        assert pool(ssc).traffic.sent > 3 * (2 << 20)  # every block crossed the pipe
    assert seen == [set()] * 3  # no partial file left
    assert caplog.text.count("crosses the pipe to its worker") == 1
    expected = [reference(blocks) for blocks in batches]
    assert (counts, dead) == ([c for c, _ in expected], [d for _, d in expected])


def _die_once(marker: str) -> Callable[[Iterator[str]], Iterator[str]]:
    """A partition step that kills its worker the first time any task runs it (the block
    already mapped: it is mapped when the task arrives), then lets every line through."""

    def step(lines: Iterator[str]) -> Iterator[str]:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return lines
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    return step


async def test_a_worker_killed_in_a_task_is_replaced_and_the_retry_maps_the_same_file(tmp_path: Path) -> None:
    batches = [[block_lines(b, 2 << 20), block_lines(b + 100, 2 << 20)] for b in range(2)]
    marker = str(tmp_path / "died")
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(0.0)) as ssc:
        counts, dead, _ = await run_batches(ssc, batches, step=lambda s: s.map_partitions(_die_once(marker)))
        assert pool(ssc).replacements == 1
        assert pool(ssc).traffic.sent < 2 << 20  # the retry too read the block where it was
    assert os.path.exists(marker)
    expected = [reference(blocks) for blocks in batches]
    assert (counts, dead) == ([c for c, _ in expected], [d for _, d in expected])


async def test_a_shared_block_cut_under_its_batch_fails_the_job_naming_the_file() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(0.0),
                                conf={"task_max_failures": 1}) as ssc:
        cut: list[str] = []

        def cut_the_file() -> None:
            directory = pool(ssc).shared_dir
            assert directory is not None
            (name,) = shared_files(directory)
            cut.append(os.path.join(directory, name))
            os.truncate(cut[0], 10)

        with pytest.raises(JobFailedError, match="changed or cut"):
            await run_batches(ssc, [[block_lines(1, 2 << 20)]], before_batch=cut_the_file)
        with pytest.raises(JobFailedError):  # stop() raises the failure no one has raised
            await ssc.stop()
    assert len(cut) == 1


# ---- RawBlockFiles on its own --------------------------------------------------------------


def test_a_file_is_reused_only_once_its_block_is_gone_and_reads_back_exactly(tmp_path: Path) -> None:
    files = RawBlockFiles(str(tmp_path), keep_bytes=10 << 20)
    big = RawLines(b"a" * 5000 + b"\n", 1)
    small = RawLines(b"bb\n", 1)
    first = files.share(big)
    second = files.share(small)  # the first block is alive: a new file
    assert isinstance(first.data, SharedBuffer) and isinstance(second.data, SharedBuffer)
    assert first.data.path != second.data.path
    first_path = first.data.path
    del first
    gc.collect()
    assert len(os.listdir(tmp_path)) == 2  # kept for the next block
    third = files.share(small)  # the kept file closest in size: the freed one
    assert third.data.path == first_path
    assert os.path.getsize(first_path) == 3  # the rest of the old block is cut off
    worker_side = pickle.loads(pickle.dumps(third))
    assert worker_side.data[:] == b"bb\n"
    assert bytes(pickle.loads(pickle.dumps(second)).data) == b"bb\n"


def test_kept_files_are_bounded_by_their_bytes(tmp_path: Path) -> None:
    files = RawBlockFiles(str(tmp_path), keep_bytes=100)
    blocks = [files.share(RawLines(b"x" * 59 + b"\n", 1)) for _ in range(3)]
    paths = {os.path.basename(b.data.path) for b in blocks}
    assert set(os.listdir(tmp_path)) == paths
    del blocks
    gc.collect()
    # Filed by the next share: 60 bytes kept (a second file would make 120), and written over.
    again = files.share(RawLines(b"y\n", 1))
    assert os.listdir(tmp_path) == [os.path.basename(again.data.path)]
    assert os.path.basename(again.data.path) in paths


def test_a_raw_block_that_would_nearly_fill_the_file_system_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = 4096
    real = os.statvfs(tmp_path)

    def nearly_full(path: Any) -> os.statvfs_result:  # 100 blocks, 12 free: 10 must stay free
        return os.statvfs_result((block, block, 100, 12, 12, *real[5:]))

    monkeypatch.setattr(shared_input.os, "statvfs", nearly_full)
    files = RawBlockFiles(str(tmp_path))
    with pytest.raises(OSError, match="less than 10%"):
        files.share(RawLines(b"x" * (3 * block - 1) + b"\n", 1))
    assert os.listdir(tmp_path) == []
    kept = files.share(RawLines(b"x" * (block - 1) + b"\n", 1))  # leaves 11 blocks free
    assert pickle.loads(pickle.dumps(kept)).data[:2] == b"xx"


def test_a_block_collected_inside_share_does_not_wait_for_it(tmp_path: Path) -> None:
    """A finalizer may run in the middle of ``share`` (the collector runs where objects are
    made): it must not wait for anything ``share`` holds, or the thread hangs."""
    files = RawBlockFiles(str(tmp_path))
    held = [files.share(RawLines(b"x\n", 1))]
    done = threading.Event()

    def collect_while_busy() -> None:
        with files._lock:  # as a collection that starts inside share() finds it
            held.clear()
            gc.collect()
        done.set()

    threading.Thread(target=collect_while_busy, daemon=True).start()
    assert done.wait(10)
    again = files.share(RawLines(b"y\n", 1))  # the collected block's file, written over
    assert os.listdir(tmp_path) == [os.path.basename(again.data.path)]
