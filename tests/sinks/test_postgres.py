"""PostgresSink through write_to against the machine's PostgreSQL, in a schema per test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aiostream_engine import JobFailedError
from aiostream_engine.dstream.sink_output import WritePolicy, write_partitions
from aiostream_engine.sinks import PostgresSink, SinkWriteError
from tests.postgres import PgSchema
from tests.sinks.streams import write_batches

pytestmark = pytest.mark.anyio

# With two partitions per batch (parallelize): batch 1 -> [a1], [b2, c3]; batch 2 -> [a4], [].
BATCHES = [[("a", 1), ("b", 2), ("c", 3)], [("a", 4)]]
ALL_MARKERS = [(1000, 0), (1000, 1), (2000, 0), (2000, 1)]


async def create_readings(pg: PgSchema) -> None:
    await pg.conn.execute(
        f"CREATE TABLE {pg.table('readings')} (device text NOT NULL, value integer NOT NULL "
        "CHECK (value >= 0))"
    )


async def create_latest(pg: PgSchema) -> None:
    await pg.conn.execute(
        f"CREATE TABLE {pg.table('latest')} (device text PRIMARY KEY, value integer NOT NULL)"
    )


def append_sink(pg: PgSchema, **options: Any) -> PostgresSink:
    return PostgresSink(pg.dsn, schema=pg.name, table="readings", columns=["device", "value"], **options)


def upsert_sink(pg: PgSchema, **options: Any) -> PostgresSink:
    return PostgresSink(
        pg.dsn, schema=pg.name, table="latest", columns=["device", "value"], key="device", **options
    )


async def rows(pg: PgSchema, table: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await pg.conn.fetch(f"SELECT * FROM {pg.table(table)} ORDER BY 1, 2")]


async def markers(pg: PgSchema, sink: PostgresSink) -> list[tuple[int, int]]:
    found = await pg.conn.fetch(
        f"SELECT batch_time_ms, partition FROM {pg.table('aiostream_sink_markers')} "
        "WHERE sink = $1 ORDER BY 1, 2",
        sink.name,
    )
    return [tuple(r) for r in found]


async def test_append_writes_exact_rows_and_a_marker_per_partition(pg_schema: PgSchema) -> None:
    await create_readings(pg_schema)
    async with append_sink(pg_schema) as sink:
        await write_batches(sink, BATCHES, master="local[2]")  # records come from workers
    assert await rows(pg_schema, "readings") == [("a", 1), ("a", 4), ("b", 2), ("c", 3)]
    assert await markers(pg_schema, sink) == ALL_MARKERS
    assert sink.statistics.partitions_written == 4
    assert not sink.is_open


async def test_append_with_batched_insert(pg_schema: PgSchema) -> None:
    await create_readings(pg_schema)
    async with append_sink(pg_schema, method="insert") as sink:
        await write_batches(sink, BATCHES)
    assert await rows(pg_schema, "readings") == [("a", 1), ("a", 4), ("b", 2), ("c", 3)]


async def test_upsert_keeps_the_latest_value_per_key(pg_schema: PgSchema) -> None:
    await create_latest(pg_schema)
    records = [[{"device": "a", "value": 1}, {"device": "b", "value": 2}],
               [{"device": "a", "value": 5}, {"device": "c", "value": 7}]]
    async with upsert_sink(pg_schema) as sink:
        await write_batches(sink, records)
    assert await rows(pg_schema, "latest") == [("a", 5), ("b", 2), ("c", 7)]


@pytest.mark.parametrize("mode", ["append", "upsert"])
async def test_a_batch_written_twice_leaves_the_table_as_written_once(
    pg_schema: PgSchema, mode: str
) -> None:
    create, make_sink, table = (
        (create_readings, append_sink, "readings") if mode == "append"
        else (create_latest, upsert_sink, "latest")
    )
    await create(pg_schema)
    async with make_sink(pg_schema) as first:
        await write_batches(first, [[("a", 1), ("b", 2)], [("c", 3)]])
    before = await rows(pg_schema, table)
    assert before == [("a", 1), ("b", 2), ("c", 3)]
    # A restarted job runs the same batches again: a new sink object with the same name.
    # Different values make a write that was not skipped visible.
    async with make_sink(pg_schema) as again:
        await write_batches(again, [[("a", 10), ("b", 20)], [("c", 30)]])
    assert await rows(pg_schema, table) == before
    assert again.statistics.partitions_skipped == 4
    assert again.statistics.partitions_written == 0
    assert await markers(pg_schema, again) == ALL_MARKERS


async def test_write_partitions_twice_directly_is_idempotent(pg_schema: PgSchema) -> None:
    await create_readings(pg_schema)
    policy = WritePolicy(max_concurrency=2, retries=0, backoff=0)
    partitions = [[("a", 1), ("a", 2)], [("b", 3)]]
    async with append_sink(pg_schema) as sink:
        await write_partitions(sink, 5.0, partitions, policy)
        await write_partitions(sink, 5.0, partitions, policy)
        await write_partitions(sink, 6.0, [[("z", 9)]], policy)
    assert await rows(pg_schema, "readings") == [("a", 1), ("a", 2), ("b", 3), ("z", 9)]
    assert await markers(pg_schema, sink) == [(5000, 0), (5000, 1), (6000, 0)]


async def test_a_constraint_violation_mid_partition_writes_nothing_of_it_and_fails_the_batch(
    pg_schema: PgSchema,
) -> None:
    await create_readings(pg_schema)
    # Partition 1 of batch 1 is [c3, bad]: its first row is written before the bad one.
    batches = [[("a", 1), ("b", 2), ("c", 3), ("bad", -1)], [("d", 4)]]
    async with append_sink(pg_schema) as sink:
        with pytest.raises(JobFailedError) as failed:
            await write_batches(sink, batches, retries=2, backoff=0)
    error = failed.value.cause
    assert isinstance(error, SinkWriteError)
    assert (error.sink, error.batch_time, error.partition, error.attempts) == (
        f"postgres:{pg_schema.name}.readings", 1.0, 1, 3
    )
    assert str(error) == (
        f"sink postgres:{pg_schema.name}.readings: partition 1 of batch 1.000 failed 3 "
        'attempt(s); last error: CheckViolationError: new row for relation "readings" '
        'violates check constraint "readings_value_check"\n'
        "DETAIL:  Failing row contains (bad, -1)."
    )
    # Partition 0 of batch 1 was written, partition 1 not at all; the failed batch stopped
    # the context (output_failure_policy="stop"), so batch 2 never ran.
    assert await rows(pg_schema, "readings") == [("a", 1), ("b", 2)]
    assert await markers(pg_schema, sink) == [(1000, 0)]


async def test_a_fault_mid_partition_is_rolled_back_and_the_retry_writes_it_once(
    pg_schema: PgSchema,
) -> None:
    await create_readings(pg_schema)
    failed_once: set[str] = set()

    def row(record: tuple[str, int]) -> tuple[str, int]:
        # The record "c" fails its first conversion: rows before it are already in the COPY.
        if record[0] == "c" and "c" not in failed_once:
            failed_once.add("c")
            raise ConnectionResetError("injected: lost mid-partition")
        return record

    async with append_sink(pg_schema, row=row) as sink:
        await write_batches(sink, [[("a", 1), ("b", 2), ("b", 3), ("c", 4)]], backoff=0)
    assert failed_once == {"c"}
    assert await rows(pg_schema, "readings") == [("a", 1), ("b", 2), ("b", 3), ("c", 4)]
    assert await markers(pg_schema, sink) == [(1000, 0), (1000, 1)]
    assert sink.statistics.partitions_written == 2


class GatedSink(PostgresSink):
    """Counts partition writes in flight; holds each until ``gate`` writes are in flight
    at once (or the rest of the batch is), so the bound is reached, not only respected."""

    def __init__(self, *args: Any, gate: int, partitions: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.remaining = partitions
        self.in_flight = 0
        self.max_in_flight = 0
        self._opened: anyio.Event | None = None

    async def write_partition(self, batch_time: float, index: int, records: Sequence[Any]) -> None:
        if self._opened is None:
            self._opened = anyio.Event()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.in_flight >= min(self.gate, self.remaining):
                self._opened.set()
            with anyio.fail_after(10):
                await self._opened.wait()
            await super().write_partition(batch_time, index, records)
        finally:
            self.in_flight -= 1
            self.remaining -= 1


async def test_partition_writes_in_flight_never_exceed_max_concurrency(pg_schema: PgSchema) -> None:
    await create_readings(pg_schema)
    batch = [(f"d{i}", i) for i in range(8)]
    sink = GatedSink(pg_schema.dsn, schema=pg_schema.name, table="readings",
                     columns=["device", "value"], gate=3, partitions=8, pool_size=3)
    async with sink:
        await write_batches(sink, [batch], num_partitions=8, max_concurrency=3)
    assert sink.max_in_flight == 3
    assert sink.statistics.partitions_written == 8
    assert await rows(pg_schema, "readings") == sorted(batch)


async def test_connections_are_pooled_not_opened_per_record_or_batch(pg_schema: PgSchema) -> None:
    await create_readings(pg_schema)
    application = f"sink-{pg_schema.name}"
    batches = [[(f"d{b}", i) for i in range(50)] for b in range(4)]
    sink = append_sink(pg_schema, pool_size=2, server_settings={"application_name": application})
    await write_batches(sink, batches, num_partitions=4, max_concurrency=4)
    assert not sink.is_open  # the context closed the pool when it stopped
    assert sink.statistics.connections_opened in (1, 2)
    assert sink.statistics.rows_written == 200
    assert sink.statistics.partitions_written == 16
    with anyio.fail_after(5):  # a backend leaves pg_stat_activity just after its client
        while await pg_schema.conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application
        ):
            await anyio.lowlevel.checkpoint()
