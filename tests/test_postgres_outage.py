"""PostgreSQL refusing connections for a while, against a real mosquitto and a real
PostgreSQL server of the test's own (stopped and started again by PID; the machine's
shared server is never touched).

The issue's finding: two batches failed after the sink's retries, were logged as failed,
yet were marked completed and their write-ahead log blocks released; neither a restart nor
kill -9 + ``get_or_create`` brought them back. Now, with either output_failure_policy,
PostgreSQL ends up holding every published reading exactly once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import asyncpg
import pytest
from anyio.abc import Process

from tests.brokers import Mosquitto, create_persistent_session, publish_json
from tests.outage_job import CLIENT_ID, TOPICS
from tests.postgres import PgSchema
from tests.private_postgres import PrivatePostgres

pytestmark = pytest.mark.anyio
JOB = Path(__file__).with_name("outage_job.py")
TOTAL = 2000
DEVICES = 10


async def create_session(broker: Mosquitto) -> None:
    await create_persistent_session(broker, CLIENT_ID, TOPICS)


async def publish(broker: Mosquitto, seqs: range) -> None:
    await publish_json(broker, (
        (f"readings/dev-{seq % DEVICES:03d}", {"device_id": f"dev-{seq % DEVICES:03d}", "seq": seq})
        for seq in seqs
    ))


async def start_job(broker: Mosquitto, pg: PgSchema, checkpoint: Path, policy: str) -> Process:
    return await anyio.open_process(
        [sys.executable, str(JOB), str(broker.port), pg.dsn, pg.name, str(checkpoint), policy],
        stderr=None,
    )


async def lines(process: Process):  # type: ignore[no-untyped-def]
    assert process.stdout is not None
    buffered = b""
    async for chunk in process.stdout:
        buffered += chunk
        *complete, buffered = buffered.split(b"\n")
        for line in complete:
            yield line.decode()


async def stored(pg: PgSchema) -> tuple[int, int]:
    """(rows, distinct readings) in ``readings``, on a fresh connection (the server may
    have restarted since the fixture connected)."""
    conn = await asyncpg.connect(pg.dsn)
    try:
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, count(DISTINCT seq) AS d FROM {pg.table('readings')}"
        )
    finally:
        await conn.close()
    return int(row["n"]), int(row["d"])


async def run_until_stored(process: Process, pg: PgSchema, total: int) -> None:
    """Read the job's reports until PostgreSQL holds ``total`` readings; then stop it."""
    with anyio.fail_after(120):
        async for line in lines(process):
            if line.startswith("completed") and (await stored(pg))[0] >= total:
                break
        assert process.stdin is not None
        await process.stdin.aclose()
        assert await process.wait() == 0


async def outage_while_running(
    broker: Mosquitto, pg: PgSchema, postgres: PrivatePostgres, job: Process
) -> None:
    """Half the readings are stored; then PostgreSQL goes down and the rest is published."""
    await publish(broker, range(TOTAL // 2))
    with anyio.fail_after(120):
        async for line in lines(job):
            if line.startswith("completed") and (await stored(pg))[0] >= TOTAL // 4:
                break
    postgres.stop()  # connections refused from now on
    await publish(broker, range(TOTAL // 2, TOTAL))


async def test_stop_policy_stops_with_the_error_and_get_or_create_writes_the_rest_once(
    mosquitto: Mosquitto, private_postgres: PrivatePostgres, private_pg_schema: PgSchema,
    tmp_path: Path,
) -> None:
    pg = private_pg_schema
    await pg.conn.execute(f"CREATE TABLE {pg.table('readings')} (device_id text, seq int)")
    await create_session(mosquitto)
    job = await start_job(mosquitto, pg, tmp_path / "checkpoint", "stop")
    await outage_while_running(mosquitto, pg, private_postgres, job)
    failure = ""
    with anyio.fail_after(60):
        async for line in lines(job):
            if line.startswith("failed"):
                failure = line
        assert await job.wait() == 3  # the context stopped with the error, and said so
    assert failure.startswith("failed JobFailedError: batch ")
    assert "output operation write_to(postgres:" in failure and "failed 2 attempt(s)" in failure
    private_postgres.start()
    restarted = await start_job(mosquitto, pg, tmp_path / "checkpoint", "stop")
    await run_until_stored(restarted, pg, TOTAL)
    assert await stored(pg) == (TOTAL, TOTAL)


async def test_retry_policy_waits_out_the_outage_and_writes_everything_once(
    mosquitto: Mosquitto, private_postgres: PrivatePostgres, private_pg_schema: PgSchema,
    tmp_path: Path,
) -> None:
    pg = private_pg_schema
    await pg.conn.execute(f"CREATE TABLE {pg.table('readings')} (device_id text, seq int)")
    await create_session(mosquitto)
    job = await start_job(mosquitto, pg, tmp_path / "checkpoint", "retry")
    await outage_while_running(mosquitto, pg, private_postgres, job)
    retried: set[str] = set()
    with anyio.fail_after(60):
        async for line in lines(job):
            if line.startswith("retrying"):
                retried.add(line)
                if len(retried) >= 3:  # the same batch, tried again and again while down
                    break
    assert len({line.split()[1] for line in retried}) == 1
    private_postgres.start()
    await run_until_stored(job, pg, TOTAL)
    assert await stored(pg) == (TOTAL, TOTAL)
