"""The receiver write-ahead log: format, torn records, rolling, deletion, recovery."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiostream_engine import ConfigurationError, ManualClock, StreamingContext
from aiostream_engine.errors import CheckpointFormatError
from aiostream_engine.raw import RawLines
from aiostream_engine.receiver.block_payload import RAW_BUFFER, decode_block, encode_block
from aiostream_engine.receiver.wal import MAGIC, WalEntry, WalRef, WriteAheadLog, read_segment
from aiostream_engine.sources.mqtt_block import PublishBlockBuilder
from aiostream_engine.sources.mqtt_protocol import encode_publish
from aiostream_engine.sources.mqtt_reader import PublishFramer
from aiostream_engine.sources.mqtt_redelivery import RedeliveryFilter
from aiostream_engine.storage.keys import CheckpointKey
from aiostream_engine.testing import advance_batches
from tests.wal_receiver import ReliableReceiver, feed, wal_conf

pytestmark = pytest.mark.anyio


KEY = CheckpointKey(b"w" * 32, "a test key")


def wal_at(directory: Path, clock: ManualClock | None = None, **options: Any) -> WriteAheadLog:
    return WriteAheadLog(str(directory), clock or ManualClock(0.0), KEY, **options)


async def append(wal: WriteAheadLog, stream_id: int, block_id: int, records: list[Any]) -> WalRef:
    kind, payload = encode_block(records)
    return await wal.append(stream_id, block_id, payload, kind)


def records(entry: WalEntry) -> list[Any]:
    return decode_block(entry.kind, entry.payload)


async def test_blocks_are_written_and_read_back(tmp_path: Path) -> None:
    wal = wal_at(tmp_path / "log")
    refs = [await append(wal, 7, i, [{"n": i}, "x" * i]) for i in range(3)]
    await wal.close()
    assert [r[0] for r in refs] == ["segment-0000000000.wal"] * 3
    assert refs[0][1] == len(MAGIC) and refs[1][1] > refs[0][1]
    assert wal.fsyncs == 3  # fsync="block": one per block
    contents = await wal_at(tmp_path / "log").recover()
    assert [(e.ref, e.stream_id, e.block_id, records(e)) for e in contents.entries] == [
        (refs[i], 7, i, [{"n": i}, "x" * i]) for i in range(3)
    ]
    assert contents.damage == []
    # The payloads are private: directories 0700, segments 0600.
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "log" / refs[0][0]).stat().st_mode) == 0o600


async def test_a_raw_block_is_written_as_its_buffer(tmp_path: Path) -> None:
    """Raw blocks (lines, MQTT's PUBLISH packets) go to the log as a small pickled shell and
    their buffer as it is: the same bytes object is written (never pickled, never joined),
    and the block read back is equal to the one stored."""
    lines = RawLines.of([b"a", "caf\u00e9".encode(), b"\xff not utf-8", b""])
    builder = PublishBlockBuilder(True)
    packets = b"".join(encode_publish("t/1", b'{"i": %d}' % i, qos=1, packet_id=i + 1) for i in range(50))
    PublishFramer(True, RedeliveryFilter(1), lambda *_: None).frame(packets, 0, builder, 2.5)
    publish = builder.build()
    wal = wal_at(tmp_path)
    refs = []
    for block_id, block in enumerate([lines, publish]):
        kind, parts = encode_block(block)
        assert kind == RAW_BUFFER and parts[-1] is block.data
        refs.append(await wal.append(3, block_id, parts, kind))
    await wal.close()
    segment = (tmp_path / refs[0][0]).read_bytes()
    for block, (_, offset), end in zip([lines, publish], refs, [refs[1][1], len(segment)], strict=True):
        record = segment[offset:end]
        assert block.data in record
        assert len(record) - len(block.data) < 400  # framing, MAC and the shell
    contents = await wal_at(tmp_path).recover()
    assert [e.kind for e in contents.entries] == [RAW_BUFFER, RAW_BUFFER]
    assert [records(e) for e in contents.entries] == [lines, publish]


@pytest.mark.parametrize("damage", ["truncated", "half a header"])
async def test_a_torn_last_record_is_skipped_and_the_rest_kept(tmp_path: Path, damage: str) -> None:
    wal = wal_at(tmp_path)
    refs = [await append(wal, 0, i, [i] * 10) for i in range(3)]
    await wal.close()
    path = tmp_path / refs[0][0]
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 5 if damage == "truncated" else refs[2][1] + 3)
    cut = path.stat().st_size
    recovering = wal_at(tmp_path)
    contents = await recovering.recover()
    assert [records(e) for e in contents.entries] == [[0] * 10, [1] * 10]
    [torn] = contents.damage
    assert (torn.segment, torn.start, torn.end, torn.torn) == (refs[0][0], refs[2][1], cut, True)
    assert path.stat().st_size == cut  # reading never changes the file
    # New blocks go to a new segment; the old one stays readable.
    ref = await append(recovering, 0, 3, [3])
    await recovering.close()
    assert ref == ("segment-0000000001.wal", len(MAGIC))
    assert [r.sequence for r in read_segment(str(path), KEY)[0]] == [0, 1]


async def test_sixteen_flipped_bytes_in_the_middle_cost_only_that_block(tmp_path: Path) -> None:
    """The issue's finding: recovery truncated the segment at the damage, deleting the
    valid blocks after it. Now only the damaged block is missing, and it is named."""
    wal = wal_at(tmp_path)
    refs = [await append(wal, 0, i, [f"reading {i}"] * 50) for i in range(6)]
    await wal.close()
    path = tmp_path / refs[0][0]
    blob = bytearray(path.read_bytes())
    middle = (refs[2][1] + refs[3][1]) // 2
    blob[middle : middle + 16] = bytes(b ^ 0xA5 for b in blob[middle : middle + 16])
    path.write_bytes(bytes(blob))
    contents = await wal_at(tmp_path).recover()
    assert [e.block_id for e in contents.entries] == [0, 1, 3, 4, 5]
    assert [records(e) for e in contents.entries][2] == ["reading 3"] * 50
    [damage] = contents.damage
    assert (damage.block_id, damage.start, damage.end, damage.torn) == (2, refs[2][1], refs[3][1], False)
    assert damage.describe() == f"block 2 ({refs[0][0]} bytes {refs[2][1]}-{refs[3][1]})"
    assert path.stat().st_size == len(blob)


async def test_a_segment_of_the_old_unauthenticated_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "segment-0000000000.wal").write_bytes(b"ASEWAL01" + b"\0" * 30)
    with pytest.raises(CheckpointFormatError, match="older, unauthenticated format"):
        await wal_at(tmp_path).recover()


async def test_segments_roll_by_size_and_by_time(tmp_path: Path) -> None:
    clock = ManualClock(0.0)
    wal = wal_at(tmp_path, clock, max_segment_bytes=340, roll_interval=5.0)
    sizes = [await append(wal, 0, i, [b"x" * 150]) for i in range(3)]
    assert [r[0] for r in sizes] == [f"segment-{n:010d}.wal" for n in range(3)]
    clock.set_time(4.9)
    await wal.tick()
    assert (await append(wal, 0, 3, [1]))[0] == "segment-0000000002.wal"
    clock.set_time(5.0)
    await wal.tick()  # an idle segment is closed when its time is up
    assert (await append(wal, 0, 4, [1]))[0] == "segment-0000000003.wal"
    await wal.close()


async def test_interval_fsync_syncs_on_the_clock(tmp_path: Path) -> None:
    clock = ManualClock(0.0)
    wal = wal_at(tmp_path, clock, fsync="interval", fsync_interval=1.0)
    await append(wal, 0, 0, [1])
    await append(wal, 0, 1, [2])
    assert wal.fsyncs == 0
    clock.set_time(1.0)
    await wal.tick()
    assert wal.fsyncs == 1
    await wal.close()


async def test_closed_segments_are_deleted_once_their_blocks_are_released(tmp_path: Path) -> None:
    wal = wal_at(tmp_path, max_segment_bytes=100)
    refs = [await append(wal, 0, i, [b"y" * 80]) for i in range(3)]  # one segment each
    await wal.release(refs[:2])
    assert wal.segments() == ["segment-0000000002.wal"]  # the active one stays
    await wal.release(refs[2:])
    assert wal.segments() == ["segment-0000000002.wal"]
    await append(wal, 0, 3, [b"y" * 80])  # rolls: the released segment goes
    assert wal.segments() == ["segment-0000000003.wal"]
    await wal.close()


async def test_writes_and_fsyncs_happen_off_the_event_loop(tmp_path: Path) -> None:
    """An fsync that blocks until the event loop releases it: if it ran on the loop, the
    loop could never release it. Meanwhile the loop keeps running other tasks."""
    wal = wal_at(tmp_path)
    entered, release = threading.Event(), threading.Event()
    threads: list[int] = []

    def slow_fsync(fd: int) -> None:
        threads.append(threading.get_ident())
        entered.set()
        assert release.wait(10), "the event loop was blocked"
        os.fsync(fd)

    wal.fsync = slow_fsync
    ticks = 0
    refs: list[Any] = []

    async def write() -> None:
        refs.append(await append(wal, 0, 0, list(range(1000))))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            while not entered.is_set() or ticks < 100:
                ticks += 1  # the loop runs while the write waits in its thread
                await anyio.lowlevel.checkpoint()
            assert not refs
            release.set()
    assert refs and ticks >= 100
    assert threads and threading.get_ident() not in threads
    await wal.close()


# ---- through a running context ------------------------------------------------------------


async def test_wal_needs_a_checkpoint_directory() -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock(), conf=wal_conf()) as ssc:
        ssc.receiver_stream(ReliableReceiver()).foreach_rdd(lambda rdd: None)
        with pytest.raises(ConfigurationError, match="ssc.checkpoint"):
            await ssc.start()


async def test_segments_are_deleted_once_the_history_horizon_passes_their_batches(
    tmp_path: Path,
) -> None:
    """A state checkpoint every batch (3 kept); one block per batch, one segment per block.
    A batch's blocks are released once the oldest kept state checkpoint (the fallback if
    the newer ones are damaged) covers it: batch 1 after batch 2, batch 2 after batch 4."""
    clock = ManualClock(0.0)
    receiver = ReliableReceiver()
    conf = wal_conf(checkpoint_interval=1.0, receiver_wal_max_segment_bytes=64)
    out: list[list[int]] = []
    segments: list[list[str]] = []
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        ssc.checkpoint(str(tmp_path))
        stream = ssc.receiver_stream(receiver)

        async def keep(rdd: Any) -> None:
            out.append(sorted(await rdd.acollect()))

        stream.foreach_rdd(keep)
        await ssc.start()
        wal = ssc._receiver_tracker.generators[stream.id].wal
        assert wal is not None
        for k in range(1, 6):
            await feed(receiver, [k])
            await advance_batches(ssc, 1)
            segments.append([name[-6:-4] for name in wal.segments()])
    assert out == [[1], [2], [3], [4], [5]]
    assert segments == [["00"], ["01"], ["01", "02"], ["02", "03"], ["03", "04"]]
    assert wal.deleted_segments == 3


async def test_pending_and_unallocated_blocks_are_recovered_after_a_crash(tmp_path: Path) -> None:
    """Batch 2 is generated (its blocks allocated and recorded) but never completes;
    another block is stored after it was generated. After the crash get_or_create runs
    batch 2 again with exactly its blocks, and the unallocated block lands in batch 3."""
    directory = str(tmp_path)
    outputs: list[tuple[float, list[int]]] = []
    hold = anyio.Event()

    def setup(clock: ManualClock, receiver: ReliableReceiver, block_batch: float | None):
        def build() -> StreamingContext:
            ssc = StreamingContext(1.0, master="local", clock=clock, conf=wal_conf())
            ssc.checkpoint(directory)

            async def keep(time: float, rdd: Any) -> None:
                if time == block_batch:
                    await hold.wait()  # the process "dies" while batch 2 runs
                outputs.append((time, sorted(await rdd.acollect())))

            ssc.receiver_stream(receiver).foreach_rdd(keep)
            return ssc

        return build

    clock, receiver = ManualClock(0.0), ReliableReceiver()
    async with StreamingContext.get_or_create(directory, setup(clock, receiver, 2.0)) as ssc:
        await ssc.start()
        await feed(receiver, [1, 2])
        await advance_batches(ssc, 1)
        await feed(receiver, [3, 4])
        clock.set_time(2.0)  # batch 2 is generated and starts; its output waits forever
        await anyio.wait_all_tasks_blocked()
        await feed(receiver, [5, 6])  # acknowledged after batch 2 took its blocks
        await anyio.wait_all_tasks_blocked()
        # The crash: leave without stopping gracefully; batch 2 never completes.
    assert outputs == [(1.0, [1, 2])]
    assert [b for b in receiver.acked] == [[1, 2], [3, 4], [5, 6]]

    clock2, receiver2 = ManualClock(2.5), ReliableReceiver()
    async with StreamingContext.get_or_create(directory, setup(clock2, receiver2, None)) as ssc2:
        await ssc2.start()
        await ssc2._job_scheduler.wait_for_batch(2000)  # batch 2 again, from the log
        await advance_batches(ssc2, 1)  # the unallocated block
        await feed(receiver2, [7])
        await advance_batches(ssc2, 1)
    assert outputs == [(1.0, [1, 2]), (2.0, [3, 4]), (3.0, [5, 6]), (4.0, [7])]
