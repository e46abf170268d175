"""Real brokers for tests: a private mosquitto per test.

``Mosquitto`` runs Debian's ``/usr/sbin/mosquitto`` on a free loopback port with a generated
config: anonymous access, persistence in the test's own directory (saved after every
change, so a persistent session and its queued messages survive even a SIGKILL), no limit
on the messages it queues for an absent client. It is stopped by PID; ``kill()`` and
``start()`` again (same port, same persistence) simulate a broker crash and restart.

Readiness is read from the broker's own log ("... running"), not guessed with a sleep.
"""

from __future__ import annotations

import getpass
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    def __init__(self, directory: Path, port: int | None = None, *, persistent: bool = True) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.host = HOST
        self.config = directory / "mosquitto.conf"
        self.log: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "\n".join([
                f"listener {self.port} {HOST}",
                "allow_anonymous true",
                # Started as root, mosquitto switches to this user; keep ours so it can
                # write its persistence file in our directory.
                f"user {getpass.getuser()}",
                # Persistent: saved after every change (slow with many QoS 1 messages in
                # flight, about 1,300 msg/s), so a session survives a SIGKILL of the broker.
                *(["persistence true", f"persistence_location {directory / 'data'}/",
                   "autosave_interval 1", "autosave_on_changes true"]
                  if persistent else ["persistence false"]),
                "max_queued_messages 0",
                "max_inflight_messages 0",
                "log_dest stderr",  # unbuffered, unlike stdout into a pipe,
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "",
            ])
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker; returns once it says it is running (bounded)."""
        if self.running:
            raise RuntimeError("mosquitto is already running")
        process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._process = process
        assert process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        pending = b""
        first_line = len(self.log)
        with selectors.DefaultSelector() as selector:
            # Raw reads: a buffered readline could hold the "running" line while select
            # waits on the descriptor.
            selector.register(process.stdout.fileno(), selectors.EVENT_READ)
            while not any(line.endswith(" running") for line in self.log[first_line:]):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self._stop(signal.SIGKILL)
                    raise RuntimeError(f"mosquitto did not start: {self.log}")
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    process.wait(timeout=START_TIMEOUT)
                    raise RuntimeError(f"mosquitto exited with {process.returncode}: {self.log}")
                *lines, pending = (pending + chunk).split(b"\n")
                self.log.extend(line.decode(errors="replace") for line in lines)
        # Keep reading its log so the pipe never fills up and blocks the broker.
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.log.append(raw.decode(errors="replace").rstrip())

    def _stop(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        process.wait(timeout=START_TIMEOUT)

    def kill(self) -> None:
        """Crash the broker (SIGKILL): no clean shutdown, only what it had persisted."""
        self._stop(signal.SIGKILL)

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM)."""
        self._stop(signal.SIGTERM)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def create_persistent_session(broker: Mosquitto, client_id: str, topics: str) -> None:
    """Subscribe once as a job's client (MQTT 5, session kept an hour) so the broker queues
    messages for it from now on, before the job first connects."""
    connect = Properties(PacketTypes.CONNECT)
    connect.SessionExpiryInterval = 3600
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=client_id, clean_start=False,
        protocol=aiomqtt.ProtocolVersion.V5, properties=connect,
    ) as client:
        await client.subscribe(topics, qos=1)


async def publish_json(broker: Mosquitto, messages: Iterable[tuple[str, object]]) -> None:
    """Publish ``(topic, value)`` pairs as JSON with QoS 1, in order, on one connection."""
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for topic, value in messages:
            await client.publish(topic, orjson.dumps(value), qos=1)
