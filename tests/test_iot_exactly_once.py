"""MQTT -> engine -> PostgreSQL end to end, against a real mosquitto and PostgreSQL: exact
counts, and exactly once across a SIGKILL of the engine (receiver WAL + idempotent sink)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from tests.brokers import Mosquitto, create_persistent_session, publish_json
from tests.iot_job import CLIENT_ID, TOPICS
from tests.postgres import PgSchema

pytestmark = pytest.mark.anyio
JOB = Path(__file__).with_name("iot_job.py")
DEVICES = 20


async def _create_session(broker: Mosquitto) -> None:
    await create_persistent_session(broker, CLIENT_ID, TOPICS)


def _reading(seq: int) -> tuple[str, dict[str, object]]:
    device = f"dev-{seq % DEVICES:04d}"
    return f"readings/{device}", {"device_id": device, "seq": seq, "temp": 20.0 + seq % 7}


async def _publish(broker: Mosquitto, seqs: range) -> None:
    await publish_json(broker, map(_reading, seqs))


async def _start_job(broker: Mosquitto, pg: PgSchema, checkpoint: Path) -> Process:
    return await anyio.open_process(
        [sys.executable, str(JOB), str(broker.port), pg.dsn, pg.name, str(checkpoint)],
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


async def _processed(pg: PgSchema) -> int:
    return int(await pg.conn.fetchval(f"SELECT count(*) FROM {pg.table('readings')}"))


async def _run_until_stored(process: Process, pg: PgSchema, total: int) -> None:
    """Read the job's batch reports until PostgreSQL holds ``total`` readings; then stop it."""
    with anyio.fail_after(120):
        async for line in _lines(process):
            if line.startswith("completed") and await _processed(pg) >= total:
                break
        assert process.stdin is not None
        await process.stdin.aclose()
        assert await process.wait() == 0


async def _tables(pg: PgSchema) -> None:
    await pg.conn.execute(f"CREATE TABLE {pg.table('readings')} (device_id text, seq int)")
    await pg.conn.execute(f"CREATE TABLE {pg.table('counts')} (device_id text, n int)")


async def _totals(pg: PgSchema) -> tuple[int, int, int]:
    readings = pg.table("readings")
    row = await pg.conn.fetchrow(
        f"SELECT count(*) AS n, count(DISTINCT seq) AS distinct_seqs FROM {readings}"
    )
    counted = await pg.conn.fetchval(f"SELECT coalesce(sum(n), 0) FROM {pg.table('counts')}")
    return int(row["n"]), int(row["distinct_seqs"]), int(counted)


async def test_published_messages_land_in_postgres_with_exact_counts(
    mosquitto: Mosquitto, pg_schema: PgSchema, tmp_path: Path
) -> None:
    await _tables(pg_schema)
    await _create_session(mosquitto)
    await _publish(mosquitto, range(1000))
    job = await _start_job(mosquitto, pg_schema, tmp_path / "checkpoint")
    await _run_until_stored(job, pg_schema, 1000)
    assert await _totals(pg_schema) == (1000, 1000, 1000)
    per_device = await pg_schema.conn.fetch(
        f"SELECT device_id, sum(n) AS n FROM {pg_schema.table('counts')} GROUP BY device_id"
    )
    assert {r["device_id"]: r["n"] for r in per_device} == {
        f"dev-{d:04d}": 1000 // DEVICES for d in range(DEVICES)
    }


async def test_engine_sigkilled_mid_stream_counts_every_message_exactly_once(
    mosquitto: Mosquitto, pg_schema: PgSchema, tmp_path: Path
) -> None:
    """Readings keep arriving while the engine is SIGKILLed and restarted: the WAL gives
    back what was stored, the sink's (batch, partition) markers skip what was written, and
    the receiver drops what the broker sends again for want of a PUBACK it never read."""
    total = 6000
    await _tables(pg_schema)
    await _create_session(mosquitto)
    async with anyio.create_task_group() as publishing:
        publishing.start_soon(_publish, mosquitto, range(total))
        job = await _start_job(mosquitto, pg_schema, tmp_path / "checkpoint")
        with anyio.fail_after(120):
            async for line in _lines(job):  # kill it once some, not all, readings are stored
                if line.startswith("completed") and await _processed(pg_schema) >= 500:
                    job.send_signal(signal.SIGKILL)
                    break
        assert await job.wait() == -signal.SIGKILL
        stored_at_crash = await _processed(pg_schema)
        restarted = await _start_job(mosquitto, pg_schema, tmp_path / "checkpoint")
        await _run_until_stored(restarted, pg_schema, total)
    readings, distinct, counted = await _totals(pg_schema)
    print(f"published {total}, stored before the crash {stored_at_crash}, "
          f"stored {readings} ({distinct} distinct), counted {counted}")
    assert 500 <= stored_at_crash < total
    assert (readings, distinct, counted) == (total, total, total)
