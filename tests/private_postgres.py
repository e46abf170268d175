"""A PostgreSQL server of a test's own, for faults the machine's shared server must never
suffer (an outage: stopping it would break every other suite using 127.0.0.1:5432).

``PrivatePostgres`` runs Debian's binaries (``/usr/lib/postgresql/<version>/bin``): initdb
into a temporary directory, then ``postgres`` on a free loopback port, as the ``postgres``
OS user (the server refuses to run as root), stopped by PID. ``stop()`` then ``start()``
again (same port, same data) is a real outage: connections are refused meanwhile.

Readiness is read from the server's own log ("... ready to accept connections", bounded),
not guessed with a sleep. Use the session fixture
``private_postgres`` (one initdb per session) and, per test, a schema of its own
(``private_pg_schema``), as with the shared server.
"""

from __future__ import annotations

import glob
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.brokers import HOST, free_port
from tests.postgres import PgSchema

START_TIMEOUT = 60
READY = "database system is ready to accept connections"


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found[-1]


class PrivatePostgres:
    def __init__(self, user: str = "postgres") -> None:
        self.user = user
        account = pwd.getpwnam(user)
        self._uid, self._gid = account.pw_uid, account.pw_gid
        self.directory = Path(tempfile.mkdtemp(prefix="aiostream-pg-"))
        os.chown(self.directory, self._uid, self._gid)
        self.data = self.directory / "data"
        self.port = free_port()
        self.host = HOST
        self.dsn = f"postgresql://{user}@{HOST}:{self.port}/postgres"
        self._process: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []
        try:
            self._run([_binary("initdb"), "-D", str(self.data), "-U", user, "--auth=trust",
                       "-E", "UTF8", "--no-instructions"])
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(command, user=self._uid, group=self._gid, capture_output=True,
                              check=True, cwd=self.directory, timeout=START_TIMEOUT)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server; returns once it says it accepts connections (bounded)."""
        if self.running:
            raise RuntimeError("the private PostgreSQL is already running")
        process = subprocess.Popen(
            [_binary("postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.directory}",
             "-c", "fsync=off", "-c", "max_connections=50"],
            user=self._uid, group=self._gid, cwd=self.directory,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._process = process
        assert process.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT
        pending = b""
        with selectors.DefaultSelector() as selector:
            # Raw reads: a buffered readline could hold the line while select waits.
            selector.register(process.stderr.fileno(), selectors.EVENT_READ)
            while not any(READY in line for line in self.log):
                remaining = deadline - time.monotonic()
                chunk = b""
                if remaining > 0 and selector.select(remaining):
                    chunk = os.read(process.stderr.fileno(), 65536)
                if not chunk:
                    self.stop()
                    raise RuntimeError(f"the private PostgreSQL did not start: {self.log[-20:]}")
                *lines, pending = (pending + chunk).split(b"\n")
                self.log.extend(line.decode(errors="replace") for line in lines)
        # Keep reading its log so the pipe never fills up and blocks the server.
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            self.log.append(raw.decode(errors="replace").rstrip())

    def stop(self) -> None:
        """Stop the server by PID (fast shutdown: clients are disconnected, new ones
        refused until ``start``)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGINT)
        process.wait(timeout=START_TIMEOUT)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
async def private_pg_schema(private_postgres: PrivatePostgres) -> AsyncIterator[PgSchema]:
    """A schema of its own on the private server, which is running when the test starts
    and ends (a test that stops it need not restart it)."""
    if not private_postgres.running:
        private_postgres.start()
    name = f"test_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(private_postgres.dsn)
    await conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield PgSchema(name, private_postgres.dsn, conn)
    finally:
        if not private_postgres.running:
            private_postgres.start()
        if conn.is_closed():
            conn = await asyncpg.connect(private_postgres.dsn)
        await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        await conn.close()
