"""MQTT under overload (issue 11, part 1), against a real mosquitto and PostgreSQL.

A QoS 1 source (write-ahead log on, PostgreSQL sink, a window, local[2]) is offered far
more than the job sustains, with backpressure off: received data must stay within the
receivers' byte budget (the excess waiting in the broker), the connection must stay up
the whole time (no "no PINGRESP", no reconnection), and once the publisher has stopped every
message must be in PostgreSQL exactly once. Then the same with a kill -9 of the job in the
middle of the overload: the restarted job resumes its session while the broker resends a
backlog, completes its handshake, and still writes every message exactly once.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import orjson
import pytest
from anyio.abc import Process

from tests.brokers import Mosquitto
from tests.mqtt_publisher import publish_qos1
from tests.overload_job import CLIENT_ID, TOPICS
from tests.postgres import PgSchema

pytestmark = pytest.mark.anyio
JOB = Path(__file__).parent.parent / "overload_job.py"
DEVICES = 20
TOTAL = 24_000  # about 3.5 MB; the job takes about 6 s for them, the broker under 2 s
BUDGET = 1 << 20  # 1 MiB: about 7,000 readings; the backlog is 3.5 times that


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """mosquitto keeping its state in memory (the job's kill is the fault here, not the
    broker's), so it takes QoS 1 messages at full speed."""
    mosquitto = Mosquitto(tmp_path / "mosquitto", persistent=False)
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


def readings(seqs: range) -> list[tuple[str, bytes]]:
    out = []
    for seq in seqs:
        device = f"dev-{seq % DEVICES:04d}"
        payload = {"device_id": device, "seq": seq, "temp": 20.0 + seq % 7, "site": "plant-7"}
        out.append((f"readings/{device}", orjson.dumps(payload)))
    return out


async def publish(broker: Mosquitto, seqs: range) -> None:
    await anyio.to_thread.run_sync(publish_qos1, broker.host, broker.port, readings(seqs))


async def create_session(broker: Mosquitto) -> None:
    """Subscribe once as the job's client, so the broker queues for it from now on."""
    from aiostream_engine import ManualClock, StreamingContext

    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        stream = ssc.mqtt_stream(broker.host, broker.port, TOPICS, qos=1, client_id=CLIENT_ID,
                                 clean_start=False)
        stream.foreach_rdd(lambda rdd: None)
        await ssc.start()
        with anyio.fail_after(10):
            while stream.receiver.connections == 0:  # type: ignore[union-attr]
                await anyio.sleep(0.01)


async def start_job(broker: Mosquitto, pg: PgSchema, checkpoint: Path) -> Process:
    process = await anyio.open_process(
        [sys.executable, str(JOB), str(broker.port), pg.dsn, pg.name, str(checkpoint), str(BUDGET)],
        stderr=None,
    )
    async for line in lines(process):
        if line == "started":
            return process
    raise AssertionError("the job did not start")


async def lines(process: Process) -> AsyncIterator[str]:
    assert process.stdout is not None
    buffered = b""
    async for chunk in process.stdout:
        buffered += chunk
        *complete, buffered = buffered.split(b"\n")
        for line in complete:
            yield line.decode()


async def stored(pg: PgSchema) -> int:
    return int(await pg.conn.fetchval(f"SELECT count(*) FROM {pg.table('readings')}"))


async def run_until_stored(process: Process, pg: PgSchema, total: int) -> dict[str, object]:
    """Read the job's batch reports until PostgreSQL holds ``total`` readings; then stop it
    gracefully and return its stats."""
    stats: dict[str, object] = {}
    with anyio.fail_after(120):
        reports = lines(process)
        async for line in reports:
            if line.startswith("completed") and await stored(pg) >= total:
                break
        assert process.stdin is not None
        await process.stdin.aclose()
        async for line in reports:
            if line.startswith("stats "):
                stats = json.loads(line[len("stats "):])
        assert await process.wait() == 0
    return stats


async def tables(pg: PgSchema) -> None:
    await pg.conn.execute(f"CREATE TABLE {pg.table('readings')} (device_id text, seq int)")
    await pg.conn.execute(f"CREATE TABLE {pg.table('counts')} (device_id text, n int)")


async def totals(pg: PgSchema) -> tuple[int, int, int]:
    row = await pg.conn.fetchrow(
        f"SELECT count(*) AS n, count(DISTINCT seq) AS d FROM {pg.table('readings')}"
    )
    counted = await pg.conn.fetchval(f"SELECT coalesce(sum(n), 0) FROM {pg.table('counts')}")
    return int(row["n"]), int(row["d"]), int(counted)


def assert_healthy_under_budget(stats: dict[str, object]) -> None:
    """Received data stayed within the budget. A restarted job also holds what it read
    back from the write-ahead log (the batches to run again): new data then waits until
    that much is processed, so the peak is the larger of the two."""
    assert stats["budget_limit"] == BUDGET
    assert 0 < stats["budget_peak"] <= max(BUDGET, stats["recovered_bytes"])  # type: ignore[operator,type-var]
    assert stats["budget_waits"] > 0  # type: ignore[operator]  (the overload reached the budget)
    assert stats["connections"] == 1  # never dropped, never reconnected
    assert stats["errors"] == []  # no "no PINGRESP", no lost connection
    assert stats["max_rss_mb"] < 400  # type: ignore[operator]


async def test_overload_stays_within_the_budget_on_one_connection_and_loses_nothing(
    broker: Mosquitto, pg_schema: PgSchema, tmp_path: Path
) -> None:
    await tables(pg_schema)
    await create_session(broker)
    job = await start_job(broker, pg_schema, tmp_path / "checkpoint")
    await publish(broker, range(TOTAL))  # returns once the broker holds them all
    stats = await run_until_stored(job, pg_schema, TOTAL)
    print(f"stats: {stats}")
    assert await totals(pg_schema) == (TOTAL, TOTAL, TOTAL)
    assert_healthy_under_budget(stats)


async def test_overload_with_a_kill_9_in_the_middle_still_writes_everything_once(
    broker: Mosquitto, pg_schema: PgSchema, tmp_path: Path
) -> None:
    await tables(pg_schema)
    await create_session(broker)
    job = await start_job(broker, pg_schema, tmp_path / "checkpoint")
    await publish(broker, range(TOTAL))
    with anyio.fail_after(120):
        async for line in lines(job):  # once part of the backlog is written, kill it
            if line.startswith("completed") and await stored(pg_schema) >= TOTAL // 4:
                job.send_signal(signal.SIGKILL)
                break
    assert await job.wait() == -signal.SIGKILL
    at_crash = await stored(pg_schema)
    restarted = await start_job(broker, pg_schema, tmp_path / "checkpoint")
    stats = await run_until_stored(restarted, pg_schema, TOTAL)
    print(f"stored {at_crash} before the kill; restarted job: {stats}")
    assert TOTAL // 4 <= at_crash < TOTAL
    assert await totals(pg_schema) == (TOTAL, TOTAL, TOTAL)
    assert_healthy_under_budget(stats)
