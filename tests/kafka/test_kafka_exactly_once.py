"""Kafka -> engine -> PostgreSQL and Kafka, exactly once across a SIGKILL of the engine:
the direct stream's checkpointed offset ranges are read again, the PostgreSQL sink's
(batch, partition) markers and the Kafka sink's transactions skip what was written."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import orjson
import pytest
from anyio.abc import Process

from tests.kafka_brokers import NoidaKafka, create_topic, produce, read_topic, unique_topic
from tests.postgres import PgSchema

pytestmark = pytest.mark.anyio
JOB = Path(__file__).parent.parent / "kafka_job.py"
DEVICES = 20


async def _produce(bootstrap: str, topic: str, seqs: range, chunk: int = 500) -> None:
    for start in range(seqs.start, seqs.stop, chunk):
        await produce(bootstrap, topic, [
            (seq % 4, None, orjson.dumps({"device": f"dev-{seq % DEVICES:02d}", "seq": seq}))
            for seq in range(start, min(start + chunk, seqs.stop))
        ])


async def _start_job(
    bootstrap: str, topic: str, pg: PgSchema, checkpoint: Path, out: str, mode: str
) -> Process:
    return await anyio.open_process(
        [sys.executable, str(JOB), bootstrap, topic, pg.dsn, pg.name, str(checkpoint), out, mode],
        stderr=None,
    )


async def _lines(process: Process):  # type: ignore[no-untyped-def]
    assert process.stdout is not None
    buffered = b""
    async for chunk in process.stdout:
        buffered += chunk
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            yield line.decode()


async def _totals(pg: PgSchema) -> tuple[int, int, int]:
    row = await pg.conn.fetchrow(
        f"SELECT count(*) AS n, count(DISTINCT seq) AS d FROM {pg.table('readings')}"
    )
    counted = await pg.conn.fetchval(f"SELECT coalesce(sum(n), 0) FROM {pg.table('counts')}")
    return int(row["n"]), int(row["d"]), int(counted)


@pytest.mark.parametrize("mode", ["direct", "receiver"])
async def test_engine_sigkilled_mid_stream_writes_every_record_exactly_once(
    kafka_broker: NoidaKafka, pg_schema: PgSchema, tmp_path: Path, mode: str
) -> None:
    """direct: the checkpointed offset ranges are read again. receiver: the write-ahead
    log gives back what was stored, Kafka sends again what was not committed, and the
    receiver skips what the log holds."""
    total = 6000
    bootstrap = kafka_broker.bootstrap
    topic, out = unique_topic("in"), unique_topic("out")
    await create_topic(bootstrap, topic, 4)
    await create_topic(bootstrap, out, 2)
    await pg_schema.conn.execute(f"CREATE TABLE {pg_schema.table('readings')} (device_id text, seq int)")
    await pg_schema.conn.execute(f"CREATE TABLE {pg_schema.table('counts')} (device_id text, n int)")
    checkpoint = tmp_path / "checkpoint"
    await _produce(bootstrap, topic, range(0, 2000))
    # Readings keep coming while the engine runs, is killed and is restarted; the last
    # third only after the kill, so the crash is always mid-stream.
    async with anyio.create_task_group() as producing:
        producing.start_soon(_produce, bootstrap, topic, range(2000, 4000))
        job = await _start_job(bootstrap, topic, pg_schema, checkpoint, out, mode)
        with anyio.fail_after(120):
            async for line in _lines(job):  # kill it once some, not all, readings are stored
                if line.startswith("completed") and (await _totals(pg_schema))[0] >= 1000:
                    job.send_signal(signal.SIGKILL)
                    break
        assert await job.wait() == -signal.SIGKILL
    stored_at_crash = (await _totals(pg_schema))[0]
    async with anyio.create_task_group() as producing:
        producing.start_soon(_produce, bootstrap, topic, range(4000, total))
        restarted = await _start_job(bootstrap, topic, pg_schema, checkpoint, out, mode)
        with anyio.fail_after(180):
            async for line in _lines(restarted):
                if line.startswith("completed") and min(await _totals(pg_schema)) >= total:
                    break
            assert restarted.stdin is not None
            await restarted.stdin.aclose()
            assert await restarted.wait() == 0
    readings, distinct, counted = await _totals(pg_schema)
    written = await read_topic(bootstrap, out, isolation_level="read_committed")
    print(f"produced {total}, stored before the crash {stored_at_crash}, stored {readings} "
          f"({distinct} distinct), counted {counted}, in the output topic {len(written)}")
    assert 1000 <= stored_at_crash < total
    assert (readings, distinct, counted) == (total, total, total)
    assert sorted(int(v) for _, _, v in written) == list(range(total))
