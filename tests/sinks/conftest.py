"""Fixtures of the sink tests: the machine's PostgreSQL and a mosquitto of their own.

``sink_broker`` is deliberately minimal and named apart from the shared broker fixture in
``tests/brokers.py`` (being written at the same time); the two can be merged.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from tests.postgres import pg_schema  # noqa: F401 - a fixture, used by name

MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"


class Broker:
    """A mosquitto of the test's own on a fixed free loopback port; ``stop`` kills it by
    PID and ``start`` brings it back on the same port (for connection-loss tests)."""

    def __init__(self, config: Path) -> None:
        self.host = HOST
        self.port = _free_port()
        self._config = config
        self._process: subprocess.Popen[bytes] | None = None
        config.write_text(f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\n")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def start(self) -> None:
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self._config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await _wait_listening(self._process, self.port)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


async def _wait_listening(process: subprocess.Popen[bytes], port: int) -> None:
    with anyio.fail_after(10):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {process.returncode} before listening")
            try:
                stream = await anyio.connect_tcp(HOST, port)
            except OSError:
                await anyio.lowlevel.checkpoint()
                continue
            await stream.aclose()
            return


@pytest.fixture
async def sink_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A mosquitto on a free loopback port, stopped by PID after the test."""
    broker = Broker(tmp_path / "mosquitto.conf")
    await broker.start()
    try:
        yield broker
    finally:
        broker.stop()
