"""Worker-side decoding: raw items decoded inside the tasks, dead letters back on the driver.

A receiver stores undecoded items; the stream decodes them as the first stage of its tasks
(in process and on worker processes alike). The dead letters the tasks produce reach
``dead_letters()`` in arrival order, and every batch's info counts the records decoded and
the dead letters exactly, however much of the batch the jobs read.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import anyio
import orjson
import pytest

from aiostream_engine import JobFailedError, ManualClock, OperatorError, StreamingContext
from aiostream_engine.decoding import DecodedReceiverInputDStream, ItemDecoder
from aiostream_engine.rdd.side_output import SideOutput, TaskOutput, emit_side
from aiostream_engine.rdd.tasks import RecordsInput, ShuffleWrite, Stage, TaskPlan, execute_packed
from aiostream_engine.receiver.base import Receiver
from aiostream_engine.testing import advance_batches, collect_batches
from tests.fed_receivers import feed
from tests.masters import MASTERS

pytestmark = pytest.mark.anyio



def dead_letter(item: bytes, error: Exception) -> tuple[str, bytes, str]:
    return ("dead", item, type(error).__name__)


JSON = ItemDecoder(orjson.loads, dead_letter)


class RawItems(Receiver):
    """Stores each list it is sent as one block of undecoded items."""

    decoder = JSON

    def __init__(self, found: Found | None = None) -> None:
        super().__init__()
        self.send, self._receive = anyio.create_memory_object_stream[list[bytes]](10)
        self.blocks_stored = 0
        self.found = found

    async def on_start(self) -> None:
        async for block in self._receive:
            await self.store_block(block)
            self.blocks_stored += 1

    def on_decoded(self, time_ms: int, records: int, dead_letters: list[Any]) -> None:
        if self.found is not None:
            self.found(time_ms, records, dead_letters)


class Found:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int, list[Any]]] = []

    def __call__(self, time_ms: int, records: int, dead: list[Any]) -> None:
        self.batches.append((time_ms, records, dead))


def decoded_stream(
    ssc: StreamingContext, found: Found | None = None
) -> tuple[RawItems, DecodedReceiverInputDStream]:
    receiver = RawItems(found)
    stream = DecodedReceiverInputDStream(ssc, receiver, "raw")
    return receiver, stream


def context(master: str) -> StreamingContext:
    return StreamingContext(1.0, master=master, clock=ManualClock(0.0))


BATCH_1 = ([b"1", b"{", b"2", b"[3]"], [b"nope", b"4"])
BATCH_2 = ([b"5", b"", b"{\"a\": 6}"],)


@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_dead_letters_come_back_in_order_with_exact_counts(master: str) -> None:
    found = Found()
    async with context(master) as ssc:
        receiver, stream = decoded_stream(ssc, found)
        dead = collect_batches(stream.dead_letters())  # registered first: runs first
        good = collect_batches(stream.map(lambda v: v))
        await ssc.start()
        await feed(receiver, *BATCH_1)
        infos = await advance_batches(ssc, 1)
        await feed(receiver, *BATCH_2)
        infos += await advance_batches(ssc, 2)
    assert [records for _, records in good] == [[1, 2, [3], 4], [5, {"a": 6}], []]
    assert [records for _, records in dead] == [
        [("dead", b"{", "JSONDecodeError"), ("dead", b"nope", "JSONDecodeError")],
        [("dead", b"", "JSONDecodeError")],
        [],
    ]
    dead_id = stream.dead_letters().id
    assert [i.stream_id_to_num_records for i in infos] == [
        {stream.id: 4, dead_id: 2}, {stream.id: 2, dead_id: 1}, {stream.id: 0, dead_id: 0}
    ]
    assert [i.stream_id_to_input_info[stream.id].metadata for i in infos[:2]] == [
        {"dead_letters": 2}, {"dead_letters": 1}
    ]
    assert [(records, len(letters)) for _, records, letters in found.batches] == [
        (4, 2), (2, 1), (0, 0)
    ]
    assert stream.decoding.dead_letter_count == 3


@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_a_batch_read_only_in_part_is_still_counted_exactly(master: str) -> None:
    """``take`` stops decoding early: the batch is decoded once more, as it completes,
    only to learn its outcome."""
    found = Found()
    async with context(master) as ssc:
        receiver, stream = decoded_stream(ssc, found)
        firsts: list[list[Any]] = []

        async def first(rdd: Any) -> None:
            firsts.append(await rdd.atake(1))

        stream.foreach_rdd(first)
        await ssc.start()
        await feed(receiver, *BATCH_1)
        infos = await advance_batches(ssc, 1)
    assert firsts == [[1]]
    assert infos[0].stream_id_to_num_records == {stream.id: 4}
    assert infos[0].stream_id_to_input_info[stream.id].metadata == {"dead_letters": 2}
    assert [letters for _, _, letters in found.batches] == [
        [("dead", b"{", "JSONDecodeError"), ("dead", b"nope", "JSONDecodeError")]
    ]


@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_dead_letters_alone_decode_what_they_need(master: str) -> None:
    async with context(master) as ssc:
        receiver, stream = decoded_stream(ssc)
        dead = collect_batches(stream.dead_letters().map(lambda d: d[1]))
        await ssc.start()
        await feed(receiver, *BATCH_1)
        infos = await advance_batches(ssc, 1)
    assert dead[0][1] == [b"{", b"nope"]
    assert infos[0].stream_id_to_num_records == {stream.id: 4, stream.dead_letters().id: 2}


async def test_a_window_reading_batches_later_still_gets_every_dead_letter() -> None:
    """A window sliding every 2 batches reads batch 1 at batch 2: batch 1 is counted when
    it completes, and its dead letters stay available to the window of dead letters."""
    async with context("local") as ssc:
        receiver, stream = decoded_stream(ssc)
        windowed = collect_batches(stream.window(2.0, 2.0))
        dead = collect_batches(stream.dead_letters().window(2.0, 2.0))
        await ssc.start()
        await feed(receiver, *BATCH_1)
        infos = await advance_batches(ssc, 1)
        await feed(receiver, *BATCH_2)
        infos += await advance_batches(ssc, 1)
    assert [sorted(map(str, r)) for _, r in windowed] == [sorted(map(str, [1, 2, [3], 4, 5, {"a": 6}]))]
    assert [[d[1] for d in r] for _, r in dead] == [[b"{", b"nope", b""]]
    assert [i.stream_id_to_num_records[stream.id] for i in infos] == [4, 2]


class Broken:
    """A decoder that fails as a whole (not on one item): the task fails."""

    def decode(self, raw: Iterator[Any], dead: list[Any]) -> Iterator[list[Any]]:
        raise ValueError("corrupt block")
        yield []


async def test_a_broken_decoder_fails_the_job_naming_the_stage() -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0),
                                conf={"task_max_failures": 1}) as ssc:
        receiver = RawItems()
        stream = DecodedReceiverInputDStream(ssc, receiver, "raw", Broken())
        collect_batches(stream)
        await ssc.start()
        await feed(receiver, [b"1"])
        with pytest.raises(JobFailedError):  # the failed batch stops the context (issue 11)
            await advance_batches(ssc, 1)
        with pytest.raises(JobFailedError):  # stop() raises the failure no one has raised
            await ssc.stop()
    cause = ssc.errors[0].cause.cause  # type: ignore[attr-defined]
    assert isinstance(cause, OperatorError)
    assert (cause.operator, str(cause)) == ("decode raw", "decode raw raised ValueError: corrupt block")


def emitting(index: int, records: Iterator[Any]) -> list[Any]:
    emit_side(SideOutput(7, index, "seen"))
    return [(r, 1) for r in records]


def test_side_outputs_ride_with_every_kind_of_task_result() -> None:
    stage = Stage("emit", emitting)
    plain = execute_packed(TaskPlan(RecordsInput(["a", "b"]), (stage,)), 3)
    assert plain == [("a", 1), ("b", 1)]
    assert isinstance(plain, TaskOutput) and plain.side == (SideOutput(7, 3, "seen"),)
    shuffled = execute_packed(TaskPlan(RecordsInput(["a"]), (stage,), ShuffleWrite(2, "shuffle")), 0)
    assert len(shuffled) == 2 and shuffled.side == (SideOutput(7, 0, "seen"),)  # type: ignore[attr-defined]
    back = pickle.loads(pickle.dumps(shuffled))
    assert back == shuffled and back.side == shuffled.side
    without = execute_packed(TaskPlan(RecordsInput(["a"])), 0)
    assert type(without) is list
