"""Read-ahead (sources.kafka_read_ahead): a worker decodes its partitions' records between
batches, and the batches come out exactly as when every task fetches its own range."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.sources.kafka import KafkaDeadLetter, OffsetRange, utf8_decoder
from aiostream_engine.sources.kafka_fetch import FetchedDecoding, KafkaRangeInput, RecordDecoding
from aiostream_engine.sources.kafka_params import parse_kafka_params
from aiostream_engine.sources.kafka_read_ahead import ReadAhead, _Buffer, _registry
from aiostream_engine.sources.kafka_records import DecodedChunk, FetchedRecords
from aiostream_engine.testing import advance_batches, collect_batches
from tests.kafka_brokers import create_topic, produce, unique_topic

pytestmark = pytest.mark.anyio


def letter(offset: int) -> KafkaDeadLetter:
    return KafkaDeadLetter("t", 0, offset, None, b"bad", "ValueError: bad")


def test_a_chunk_splits_at_an_offset_with_its_dead_letters() -> None:
    chunk = DecodedChunk(10, 16, [10, 11, 13, 15], ["a", "b", "d", "f"], [letter(12), letter(14)])
    head, tail = chunk.split(13)
    assert head == DecodedChunk(10, 13, [10, 11], ["a", "b"], [letter(12)])
    assert tail == DecodedChunk(13, 16, [13, 15], ["d", "f"], [letter(14)])


def test_the_buffer_gives_what_lies_before_the_range_end_and_keeps_the_rest() -> None:
    buffer = _Buffer()
    buffer.restart_at(10)
    buffer.chunks.extend([DecodedChunk(10, 13, [10, 11, 12], ["a", "b", "c"], []),
                          DecodedChunk(13, 16, [13, 14, 15], ["d", "e", "f"], [])])
    buffer.records, buffer.position = 6, 16
    taken = buffer.take_until(14)
    assert [r for c in taken for r in c.records] == ["a", "b", "c", "d"]
    assert (buffer.start, buffer.records) == (14, 2)
    assert [r for c in buffer.take_until(16) for r in c.records] == ["e", "f"]
    assert (buffer.start, buffer.records, list(buffer.chunks)) == (16, 0, [])


def decode_noting_thread(value: bytes) -> tuple[str, str]:
    """The value, and the thread that decoded it; a value starting "bad" is refused."""
    text = value.decode()
    if text.startswith("bad"):
        raise ValueError(f"refused {text}")
    return text, threading.current_thread().name


def values(batch: int, partition: int, count: int) -> list[tuple[int, bytes, bytes]]:
    """``count`` records for ``partition``; every fifth value is one the decoder refuses."""
    return [(partition, b"k", (f"bad-{batch}-{partition}-{i}" if i % 5 == 4 else
                               f"v-{batch}-{partition}-{i}").encode()) for i in range(count)]


async def run(bootstrap: str, topic: str, master: str, **conf: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """Six batches over records produced between them (30 a partition, at most 20 a batch
    from each: ranges end inside what the read-ahead holds); the records, dead letters
    and decoding threads, batch by batch. The dead letters are a second output: its tasks
    read the ranges again, which must leave the read-ahead as it was."""
    clock = ManualClock(0.0)
    async with StreamingContext(1.0, master=master, clock=clock, conf={
        "kafka_max_rate_per_partition": 20, **conf,
    }) as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest"},
            value_decoder=decode_noting_thread,
        )
        out = collect_batches(stream.map(lambda kv: kv[1]))  # the first output: read ahead
        dead = collect_batches(stream.dead_letters().map(lambda d: (d.partition, d.offset, d.value)))
        await ssc.start()
        for batch in range(6):
            if batch < 3:
                await produce(bootstrap, topic, [r for p in range(2) for r in values(batch, p, 30)])
            await advance_batches(ssc, 1)
    return ([sorted(v for v, _ in b) for _, b in out], [sorted(b) for _, b in dead],
            [sorted({t for _, t in b}) for _, b in out])


async def test_batches_read_ahead_equal_batches_fetched_by_their_tasks(kafka_broker: Any) -> None:
    topics = [unique_topic(), unique_topic()]
    for topic in topics:
        await create_topic(kafka_broker.bootstrap, topic, 2)
    ahead = await run(kafka_broker.bootstrap, topics[0], "local[2]")
    fetched = await run(kafka_broker.bootstrap, topics[1], "local[2]", kafka_read_ahead_records=0)
    assert ahead[:2] == fetched[:2]
    produced = [r for b in range(3) for p in range(2) for r in values(b, p, 30)]
    kept = sorted(v.decode() for _, _, v in produced if not v.startswith(b"bad"))
    assert sorted(v for batch in ahead[0] for v in batch) == kept
    assert sum(len(b) for b in ahead[1]) == len(produced) - len(kept)
    # The first batch's tasks fetched for themselves; every later one found its records
    # decoded by its worker's read-ahead thread; with read-ahead off, none did.
    assert ahead[2][0] != ["kafka-read-ahead"]
    assert all(threads == ["kafka-read-ahead"] for threads in ahead[2][1:] if threads)
    assert all("kafka-read-ahead" not in threads for threads in fetched[2])


async def test_a_full_read_ahead_serves_what_it_holds_and_the_task_fetches_the_rest(
    kafka_broker: Any,
) -> None:
    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 1)
    settings = parse_kafka_params({"bootstrap.servers": kafka_broker.bootstrap})
    ahead = ReadAhead(unique_topic("stream"), RecordDecoding(utf8_decoder, utf8_decoder), max_records=5)

    def task(start: int, until: int) -> list[Any]:
        return list(ahead.open(KafkaRangeInput(settings, OffsetRange(topic, 0, start, until), 20.0)))

    def decoded(items: list[Any]) -> list[Any]:
        return [r for chunk in FetchedDecoding(ahead.decoding).decode(iter(items), []) for _, r in [*chunk]]

    def buffered() -> int:
        reader = _registry().reader(ahead, settings, topic, 0)
        with reader.changed:
            return reader.buffer.records

    await produce(kafka_broker.bootstrap, topic, [(0, None, f"v{i}".encode()) for i in range(10)])
    first = await anyio.to_thread.run_sync(task, 0, 10)  # not read ahead: the task fetched it
    assert [type(i) for i in first] == [FetchedRecords] and decoded(first) == [f"v{i}" for i in range(10)]
    await produce(kafka_broker.bootstrap, topic, [(0, None, f"v{i}".encode()) for i in range(10, 20)])
    with anyio.fail_after(20):
        while buffered() < 5:  # the read-ahead thread fetches 10-19, then is full
            await anyio.sleep(0.02)
    await produce(kafka_broker.bootstrap, topic, [(0, None, f"v{i}".encode()) for i in range(20, 40)])
    second = await anyio.to_thread.run_sync(task, 10, 40)
    assert {type(i) for i in second[:-1]} == {DecodedChunk} and type(second[-1]) is FetchedRecords
    assert decoded(second) == [f"v{i}" for i in range(10, 40)]
    assert second[-1].from_offset == 20  # the task fetched from where the buffer ended
