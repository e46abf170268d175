"""The machine's PostgreSQL for tests: a fresh schema per test, dropped afterwards.

The server is 127.0.0.1:5432, trust auth, database ``test`` (override with
``AIOSTREAM_TEST_POSTGRES``). When nothing answers, the fixture starts the Debian cluster
with ``START_COMMAND`` (``.ci/run`` runs the same command) and waits for it.

Import the fixture into a conftest: ``from tests.postgres import pg_schema  # noqa: F401``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import anyio.to_thread
import asyncpg
import pytest

DSN = os.environ.get("AIOSTREAM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
START_COMMAND = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_TIMEOUT = 60.0


@dataclass
class PgSchema:
    """A schema of its own for one test, with a connection to inspect the database."""

    name: str
    dsn: str
    conn: asyncpg.Connection

    def table(self, table: str) -> str:
        """The schema-qualified, quoted name of ``table``, for SQL text."""
        return f'"{self.name}"."{table}"'


async def _can_connect() -> bool:
    try:
        conn = await asyncpg.connect(DSN, timeout=5)
    except (OSError, asyncpg.CannotConnectNowError):
        return False
    await conn.close()
    return True


async def ensure_postgres() -> None:
    """Start the local cluster if nothing answers; fail clearly if it does not come up."""
    if await _can_connect():
        return
    result = await anyio.to_thread.run_sync(
        lambda: subprocess.run(START_COMMAND, shell=True, capture_output=True, text=True)
    )
    # pg_isready does the bounded waiting for the server's startup (no polling here).
    await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-t", str(int(START_TIMEOUT))],
            capture_output=True, check=False,
        )
    )
    if await _can_connect():
        return
    pytest.fail(
        f"PostgreSQL at {DSN} is down and `{START_COMMAND}` did not bring it up "
        f"(exit {result.returncode}): {result.stderr.strip()}"
    )


@pytest.fixture
async def pg_schema() -> AsyncIterator[PgSchema]:
    await ensure_postgres()
    name = f"test_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(DSN)
    await conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield PgSchema(name, DSN, conn)
    finally:
        await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        await conn.close()
