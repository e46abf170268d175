"""PostgresSink(store_offsets=True): each Kafka partition's results and the offset after
them commit in one transaction, so a job restarted from stored_offsets (no checkpoint)
writes every record exactly once."""

from __future__ import annotations

import operator
from typing import Any

import pytest

from aiostream_engine import JobFailedError, ManualClock, StreamingContext
from aiostream_engine.sinks import PostgresSink
from aiostream_engine.sources.kafka import TopicAndPartition
from aiostream_engine.testing import advance_batches
from tests.kafka_brokers import NoidaKafka, create_topic, produce, unique_topic
from tests.postgres import PgSchema

pytestmark = pytest.mark.anyio


async def _run(
    bootstrap: str, topic: str, pg: PgSchema, from_offsets: Any, batches: int, start: float
) -> None:
    # A restart without a checkpoint has new batch times (the wall clock moved on).
    async with StreamingContext(1.0, master="local", clock=ManualClock(start)) as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest"},
            from_offsets=from_offsets,
        )
        stream.map(lambda kv: (kv[0], int(kv[1]))).write_to(PostgresSink(
            pg.dsn, schema=pg.name, table="readings", columns=["device", "n"],
            name="job-1", store_offsets=True,
        ))
        await ssc.start()
        await advance_batches(ssc, batches)


async def test_restart_from_stored_offsets_writes_each_record_once(
    kafka_broker: NoidaKafka, pg_schema: PgSchema
) -> None:
    topic = unique_topic()
    bootstrap = kafka_broker.bootstrap
    await create_topic(bootstrap, topic, 3)
    await pg_schema.conn.execute(f"CREATE TABLE {pg_schema.table('readings')} (device text, n int)")
    assert await PostgresSink.stored_offsets(pg_schema.dsn, "job-1", schema=pg_schema.name) == {}
    await produce(bootstrap, topic, [(i % 3, f"d{i % 3}".encode(), str(i).encode()) for i in range(30)])
    await _run(bootstrap, topic, pg_schema, None, 1, 0.0)
    stored = await PostgresSink.stored_offsets(pg_schema.dsn, "job-1", schema=pg_schema.name)
    assert stored == {TopicAndPartition(topic, p): 10 for p in range(3)}
    await produce(bootstrap, topic, [(i % 3, f"d{i % 3}".encode(), str(i).encode()) for i in range(30, 45)])
    await _run(bootstrap, topic, pg_schema, stored, 2, 100.0)
    rows = await pg_schema.conn.fetch(f"SELECT n FROM {pg_schema.table('readings')}")
    assert sorted(r["n"] for r in rows) == list(range(45))
    stored = await PostgresSink.stored_offsets(pg_schema.dsn, "job-1", schema=pg_schema.name)
    assert stored == {TopicAndPartition(topic, p): 15 for p in range(3)}


async def test_an_aggregated_output_cannot_store_offsets(
    kafka_broker: NoidaKafka, pg_schema: PgSchema
) -> None:
    topic = unique_topic()
    await create_topic(kafka_broker.bootstrap, topic, 2)
    await produce(kafka_broker.bootstrap, topic, [(0, b"a", b"1")])
    await pg_schema.conn.execute(f"CREATE TABLE {pg_schema.table('counts')} (device text, n int)")
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        stream = ssc.kafka_direct_stream(
            topic, {"bootstrap.servers": kafka_broker.bootstrap, "auto.offset.reset": "earliest"}
        )
        stream.map(lambda kv: (kv[0], 1)).reduce_by_key(operator.add).write_to(PostgresSink(
            pg_schema.dsn, schema=pg_schema.name, table="counts", columns=["device", "n"],
            store_offsets=True,
        ))
        await ssc.start()
        with pytest.raises(JobFailedError, match="lineage has ShuffledRDD"):
            await advance_batches(ssc, 1)  # the failed batch stops the context (issue 11)
        assert "lineage has ShuffledRDD" in str(ssc.errors[0])
        with pytest.raises(JobFailedError, match="lineage has ShuffledRDD"):
            await ssc.stop()  # raises the failure no lifecycle call has raised yet
