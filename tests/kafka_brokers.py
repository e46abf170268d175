"""Kafka-protocol brokers for tests (see ../shared/notes/kafka-test-brokers.md).

* ``NoidaKafka``: noida-db (PyPI, pinned) serving only Kafka, on a free loopback port with a
  fresh data directory; the default broker of the suite (topics, idempotent and
  transactional producers, read_committed, group commits, DeleteRecords, restart with data
  kept). Started from its binary directly (the ``noida-db`` script is a Python wrapper that
  would leave the server as its child), stopped by PID; ``restart()`` = SIGTERM (it saves
  its state) and start again on the same port and directory.
* ``MockKafkaCluster``: librdkafka's mock cluster (``tests.kafka_mock``) in a child process,
  for several brokers and injected faults; commands go to its stdin.
* ``--kafka-bootstrap`` / ``KAFKA_BOOTSTRAP``: a real Apache Kafka cluster for the tests that
  ask for ``real_kafka``; without one they are skipped, saying so.

Readiness is checked by connecting, with a deadline, never by sleeping a guessed time.
noida-db keeps its whole state in one JSON file: tests use small topics of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import noida_db
import pytest

from tests.brokers import HOST, free_port

START_TIMEOUT = 15.0
NOIDA_BINARY = Path(noida_db.__file__).with_name("noida-db")


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _wait_listening(host: str, port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {host}:{port}") from None
            time.sleep(0.02)  # between connection attempts, not a guess at readiness


class NoidaKafka:
    """One noida-db server speaking Kafka on ``bootstrap``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.host = HOST
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("noida-db is already running")
        log = open(self.directory / "noida.log", "ab")  # noqa: SIM115 - owned by the process
        self._process = subprocess.Popen(
            [str(NOIDA_BINARY), "start", "--only", "kafka", "--host", self.host,
             "--kafka-port", str(self.port), "--data-dir", str(self.directory / "data")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            _wait_listening(self.host, self.port, self._process, "noida-db")
        except RuntimeError:
            self._signal(signal.SIGKILL)
            raise

    def _signal(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        process.wait(timeout=START_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM: noida-db saves its state and exits."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung broker)."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()


class MockKafkaCluster:
    """librdkafka's mock cluster of ``brokers`` brokers (ids 1..brokers)."""

    def __init__(self, brokers: int = 3, topics: dict[str, int] | None = None) -> None:
        specs = [f"{name}:{count}" for name, count in (topics or {}).items()]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.kafka_mock", str(brokers), *specs],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self._lock = threading.Lock()
        first = self._read_line()
        if not first.startswith("bootstrap "):
            self.close()
            raise RuntimeError(f"the mock cluster did not start: {first!r}")
        self.bootstrap = first.split()[1]

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read_line(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the mock cluster exited ({self._process.poll()})")
        return line.strip()

    def command(self, *words: object) -> None:
        """Send one command; raises if the cluster refused it."""
        with self._lock:
            assert self._process.stdin is not None
            self._process.stdin.write(" ".join(str(w) for w in words) + "\n")
            self._process.stdin.flush()
            answer = self._read_line()
        if answer != "ok":
            raise RuntimeError(f"mock cluster: {' '.join(map(str, words))}: {answer}")

    def create_topic(self, name: str, partitions: int) -> None:
        self.command("topic", name, partitions)

    def broker_down(self, broker: int) -> None:
        self.command("down", broker)

    def broker_up(self, broker: int) -> None:
        self.command("up", broker)

    def set_rtt(self, broker: int, ms: int) -> None:
        self.command("rtt", broker, ms)

    def move_leader(self, topic: str, partition: int, broker: int) -> None:
        self.command("leader", topic, partition, broker)

    def push_request_errors(self, api_key: int, *codes: int) -> None:
        self.command("errors", api_key, *codes)

    def clear_request_errors(self, api_key: int) -> None:
        self.command("clear", api_key)

    def close(self) -> None:
        process = self._process
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=START_TIMEOUT)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NoidaKafka]:
    """The session's noida-db; each test makes topics of its own (``unique_topic``)."""
    broker = NoidaKafka(tmp_path_factory.mktemp("noida"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def private_kafka_broker(tmp_path: Path) -> Iterator[NoidaKafka]:
    """A noida-db of the test's own, which it may stop, kill and restart."""
    broker = NoidaKafka(tmp_path / "noida")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture(scope="session")
def kafka_mock_cluster() -> Iterator[MockKafkaCluster]:
    """A 3-broker mock cluster shared by the session; fault tests create their own topics
    and undo what they inject."""
    cluster = MockKafkaCluster(3)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def real_kafka(request: pytest.FixtureRequest) -> str:
    """The bootstrap address of a real Apache Kafka cluster, from ``--kafka-bootstrap`` or
    ``KAFKA_BOOTSTRAP``; the test is skipped, saying so, without one."""
    address = request.config.getoption("--kafka-bootstrap") or os.environ.get("KAFKA_BOOTSTRAP")
    if not address:
        pytest.skip(
            "not run: no real Apache Kafka here; give one with --kafka-bootstrap HOST:PORT "
            "or KAFKA_BOOTSTRAP=HOST:PORT (noida-db and the mock cluster ran the other tests)"
        )
    return str(address)


def add_kafka_option(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kafka-bootstrap", default=None,
        help="bootstrap servers of a real Apache Kafka cluster for the tests that need one",
    )


# ---- small client helpers for tests ------------------------------------------------------


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def add_partitions(bootstrap: str, name: str, total: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({name: NewPartitions(total)})
    finally:
        await admin.close()


async def produce(
    bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes]]
) -> None:
    """Send ``(partition, key, value)`` records, idempotently, and wait for every ack."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, partition=p) for p, key, value in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in found.items()}


async def read_topic(
    bootstrap: str, topic: str, *, isolation_level: str = "read_committed"
) -> list[tuple[int, bytes | None, bytes]]:
    """Every record of ``topic`` up to its end now, as ``(partition, key, value)``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        out: list[tuple[int, bytes | None, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, messages in batch.items():
                out.extend((tp.partition, m.key, m.value) for m in messages if m.offset < ends[tp])
        return out
    finally:
        await consumer.stop()
