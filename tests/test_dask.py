"""The Dask backend: masters, cluster lifecycle, faults, data placement and user modules.

The stateless, window and state suites run on ``dask-local[2]`` as well (``tests/masters``);
here is what is particular to a cluster. Clusters are real: ``dask scheduler`` and
``dask worker`` processes on loopback (the session's ``dask_cluster``, or one of a test's
own), or the LocalCluster a ``dask-local[N]`` master starts; all are stopped by PID.
"""

from __future__ import annotations

import contextlib
import importlib
import operator
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from aiostream_engine import (
    ConfigurationError,
    JobFailedError,
    ManualClock,
    State,
    StateSpec,
    StreamingContext,
)
from aiostream_engine.errors import ClusterUnavailableError, WorkerImportError
from aiostream_engine.executor.dask import DaskBackend
from aiostream_engine.executor.master import backend_for
from aiostream_engine.testing import advance_batches, collect_batches
from tests.brokers import free_port
from tests.dask_cluster import DaskCluster
from tests.test_worker_decoding import decoded_stream, feed

pytestmark = pytest.mark.anyio


# ---- masters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("master", "address", "workers"),
    [
        ("dask://127.0.0.1:8786", "tcp://127.0.0.1:8786", None),
        ("dask://scheduler.example:9000/", "tcp://scheduler.example:9000", None),
        ("dask://[::1]:8786", "tcp://[::1]:8786", None),
        ("dask-local[3]", None, 3),
        ("dask-local[*]", None, os.cpu_count()),
    ],
)
def test_dask_masters(master: str, address: str | None, workers: int | None) -> None:
    backend: Any = backend_for(master)
    assert backend._address == address
    assert backend._local_workers == workers
    assert backend.cores == (workers or 2)  # a dask:// cluster's cores are known once connected


@pytest.mark.parametrize(
    "master", ["dask://host", "dask://:8786", "dask-local[0]", "dask-local", "dask:/x:1"]
)
def test_bad_dask_masters_are_refused(master: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown Dask master"):
        StreamingContext(1.0, master=master)


def test_a_missing_dask_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "distributed"] + [
        "aiostream_engine.executor.dask",
        "aiostream_engine.executor.dask.backend",
    ]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(ConfigurationError, match=r"pip install 'aiostream-engine\[dask\]'"):
        StreamingContext(1.0, master="dask-local[2]")


# ---- lifecycle ------------------------------------------------------------------------------


def word_count(lines: Any) -> Any:
    return lines.flat_map(str.split).map(lambda w: (w, 1)).reduce_by_key(operator.add)


def running_total(values: list[int], state: int | None) -> int:
    return sum(values) + (state or 0)


LINES = [["a b a"], ["b c"], [], ["a"]]


async def run_counts(master: str, directory: Path, **conf: Any) -> list[list[Any]]:
    """Per batch: word counts and running totals (update_state_by_key), sorted."""
    async with StreamingContext(1.0, master=master, clock=ManualClock(0.0), conf=conf) as ssc:
        ssc.checkpoint(str(directory))
        counts = word_count(ssc.queue_stream(LINES))
        totals = counts.update_state_by_key(running_total)
        out = collect_batches(counts), collect_batches(totals)
        await ssc.start()
        await advance_batches(ssc, len(LINES))
        await ssc.stop()
    assert not ssc.errors
    return [sorted(records) for output in out for _, records in output]


EXPECTED_COUNTS = [
    [("a", 2), ("b", 1)], [("b", 1), ("c", 1)], [], [("a", 1)],
    [("a", 2), ("b", 1)], [("a", 2), ("b", 2), ("c", 1)], [("a", 2), ("b", 2), ("c", 1)],
    [("a", 3), ("b", 2), ("c", 1)],
]


async def test_dask_local_starts_its_cluster_and_closes_it(tmp_path: Path) -> None:
    async with StreamingContext(1.0, master="dask-local[2]", clock=ManualClock(0.0)) as ssc:
        ssc.checkpoint(str(tmp_path))
        counts = word_count(ssc.queue_stream(LINES))
        out = collect_batches(counts.update_state_by_key(running_total))
        await ssc.start()
        backend: Any = ssc.spark_context.backend
        assert backend.cores == 2
        workers = list((await _worker_pids(ssc)).values())
        nannies = [w.pid for w in backend._cluster.workers.values()]
        assert len(set(workers + nannies)) == 4  # two `dask worker` processes, each a nanny
        await advance_batches(ssc, len(LINES))
        await ssc.stop()
    assert [sorted(r) for _, r in out] == EXPECTED_COUNTS[4:]
    assert not ssc.errors
    assert [pid for pid in workers + nannies if _alive(pid)] == []


async def test_same_outputs_on_the_session_cluster(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    """A cluster started the way a user starts one on several machines (`dask scheduler`,
    two `dask worker` processes), reached through dask://127.0.0.1:PORT."""
    assert dask_cluster.master.startswith("dask://127.0.0.1:")
    assert await run_counts(dask_cluster.master, tmp_path / "a") == EXPECTED_COUNTS
    assert await run_counts("local", tmp_path / "b") == EXPECTED_COUNTS


async def test_an_unreachable_scheduler_fails_the_start_in_bounded_time() -> None:
    port = free_port()  # nothing listens there
    ssc = StreamingContext(1.0, master=f"dask://127.0.0.1:{port}", clock=ManualClock(0.0),
                           conf={"dask_connect_timeout": 1.0})
    ssc.queue_stream([[1]]).pprint()
    began = time.monotonic()
    expected = f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 1 s"
    with pytest.raises(ClusterUnavailableError, match=expected):
        async with ssc:
            await ssc.start()
    assert time.monotonic() - began < 10


async def test_a_scheduler_lost_mid_stream_fails_the_job_loudly(tmp_path: Path) -> None:
    cluster = DaskCluster(tmp_path / "cluster", workers=1).start()
    failures: list[Any] = []

    class Listener:
        def on_output_operation_completed(self, event: Any) -> None:
            if event.output_operation_info.failure_reason:
                failures.append(event.output_operation_info.failure_reason)

    try:
        async with StreamingContext(1.0, master=cluster.master, clock=ManualClock(0.0)) as ssc:
            counts = word_count(ssc.queue_stream(LINES * 3))
            out = collect_batches(counts)
            ssc.add_streaming_listener(Listener())
            await ssc.start()
            await advance_batches(ssc, 1)
            cluster.kill_scheduler()
            with anyio.fail_after(60):  # never hangs
                with pytest.raises(JobFailedError, match="lost the Dask scheduler"):
                    await advance_batches(ssc, 1)  # the failed batch stops the context
                with pytest.raises(Exception) as caught:
                    await ssc.await_termination()
            await ssc.stop()
    finally:
        cluster.stop()
    assert len(out) == 1
    assert "lost the Dask scheduler" in str(caught.value)
    assert isinstance(caught.value.cause, ClusterUnavailableError)  # type: ignore[attr-defined]
    assert caught.value.cause is not None  # type: ignore[attr-defined]
    assert failures and "lost the Dask scheduler" in failures[0]


async def _worker_pids(ssc: StreamingContext) -> dict[str, int]:
    backend: Any = ssc.spark_context.backend
    return dict(await backend.client.run(os.getpid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().split(") ")[1][0] != "Z"


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


# ---- worker loss ----------------------------------------------------------------------------

KEYS = [f"k{i}" for i in range(40)]


def fault_batches() -> list[list[tuple[str, int, bool]]]:
    """Eight batches of (key, value, gate) records; batch 3 carries the gate record and is
    large enough (over EMBED_BYTES pickled) to be scattered rather than sent in its plan."""
    batches = []
    for b in range(8):
        size = 9_000 if b == 2 else 300 + 50 * b
        batches.append([(KEYS[(i * 7 + b) % len(KEYS)], i % 5 + 1, False) for i in range(size)])
    batches[2][4321] = ("k3", 2, True)
    return batches


def gate(address: tuple[str, int] | None) -> Callable[[tuple[str, int, bool]], tuple[str, int]]:
    """A map function that, on the gate record, reports its worker's pid to the test and
    waits for a go (the test SIGKILLs that worker instead of answering the first time)."""

    def through(record: tuple[str, int, bool]) -> tuple[str, int]:
        key, value, is_gate = record
        if is_gate and address is not None:
            with socket.create_connection(address) as sock:
                sock.sendall(f"{os.getpid()}\n".encode())
                if sock.recv(1) != b"g":
                    raise RuntimeError("the test did not let the task through")
        return key, value

    return through


def remembering(key: str, value: int | None, state: State) -> tuple[str, int]:
    seen = (state.get() if state.exists() else 0) + (value or 0)
    state.update(seen)
    return key, seen


def nonzero(pair: tuple[Any, Any]) -> bool:
    return pair[1] != 0


Hook = Callable[[StreamingContext], Awaitable[None]]


async def run_faulty_job(
    master: str, directory: Path, gate_address: tuple[str, int] | None = None,
    between: Hook | None = None, before_stop: Hook | None = None,
) -> list[list[Any]]:
    """update_state_by_key, an inverse window and map_with_state over eight batches, with
    ``between`` run after batch 5. Every output's records per batch, sorted."""
    async with StreamingContext(1.0, master=master, clock=ManualClock(0.0)) as ssc:
        ssc.checkpoint(str(directory))
        pairs = ssc.queue_stream(fault_batches()).map(gate(gate_address))
        totals = pairs.update_state_by_key(running_total)
        window = pairs.reduce_by_key_and_window(
            operator.add, operator.sub, 3, 1, filter_func=nonzero
        )
        seen = pairs.map_with_state(StateSpec(remembering, timeout=3))
        outputs = [collect_batches(s) for s in (totals, window, seen, seen.state_snapshots())]
        with anyio.fail_after(180):  # a fault must never leave the job waiting
            await ssc.start()
            await advance_batches(ssc, 5)
            if between is not None:
                await between(ssc)
            await advance_batches(ssc, 3)
            if before_stop is not None:
                await before_stop(ssc)
            await ssc.stop()
    assert not ssc.errors, ssc.errors
    assert all(len(output) == 8 for output in outputs)
    return [sorted(records, key=repr) for output in outputs for _, records in output]


@pytest.fixture
async def gate_server() -> AsyncIterator[tuple[tuple[str, int], list[int]]]:
    """A loopback server for ``gate``: the first caller's worker process is SIGKILLed
    while it runs its task; every later caller is let through. Yields its address and
    the pids it killed."""
    killed: list[int] = []

    async def handle(client: SocketStream) -> None:
        async with client:
            pid = int((await client.receive(64)).decode().strip())
            if not killed:
                killed.append(pid)
                _kill(pid)
            else:
                await client.send(b"g")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield ("127.0.0.1", listener.extra(SocketAttribute.local_port)), killed
        tg.cancel_scope.cancel()


async def test_workers_killed_mid_batch_and_between_batches_lose_nothing(
    tmp_path: Path, dask_cluster: DaskCluster, gate_server: tuple[tuple[str, int], list[int]]
) -> None:
    """One worker is SIGKILLed while it runs a task of batch 3, the one holding the most
    blocks after batch 5; their nannies restart them. The blocks a dead worker held come
    back from their disk copies (Dask runs a block's task again elsewhere, and that task
    reads the copy); batch 3's scattered input is scattered again. Every output equals a
    fault-free run's, batch for batch."""
    expected = await run_faulty_job(dask_cluster.master, tmp_path / "reference")
    address, killed = gate_server
    between: list[int] = []
    lost: list[str] = []

    async def kill_the_fullest(ssc: StreamingContext) -> None:
        client = ssc.spark_context.backend.client  # type: ignore[attr-defined]
        holdings = await client.has_what()
        fullest = max(holdings, key=lambda w: len(holdings[w]))
        pid = (await _worker_pids(ssc))[fullest]
        between.append(pid)
        _kill(pid)

    async def losses(ssc: StreamingContext) -> None:
        client = ssc.spark_context.backend.client  # type: ignore[attr-defined]
        for _, event in await client.get_events("all"):
            if isinstance(event, dict) and event.get("action") == "remove-worker":
                lost.extend(event["lost-computed-tasks"])

    got = await run_faulty_job(
        "dask-local[2]", tmp_path / "faulty", address, kill_the_fullest, losses
    )
    assert len(killed) == 1 and len(between) == 1 and killed != between
    assert got == expected
    assert lost  # blocks were lost with a worker, and came back


# ---- user code on the cluster ------------------------------------------------------------


async def test_a_module_missing_on_the_workers_is_named_and_add_py_file_ships_it(
    tmp_path: Path, dask_cluster: DaskCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver imports a module of its own; cloudpickle sends its function by reference,
    and the session cluster's workers (started before the module existed) cannot import it."""
    name = f"aiostream_probe_{uuid.uuid4().hex[:12]}"
    module = tmp_path / f"{name}.py"
    module.write_text("def shout(word):\n    return word.upper() + '!'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    shout = importlib.import_module(name).shout

    async def run(ship: bool) -> tuple[list[Any], list[BaseException]]:
        async with StreamingContext(
            1.0, master=dask_cluster.master, clock=ManualClock(0.0), conf={"task_max_failures": 2}
        ) as ssc:
            if ship:
                ssc.add_py_file(str(module))
            out = collect_batches(ssc.queue_stream([["a", "b"]]).map(shout))
            await ssc.start()
            if ship:
                await advance_batches(ssc, 1)
            else:
                with pytest.raises(JobFailedError):  # the failed batch stops the context
                    await advance_batches(ssc, 1)
            with contextlib.suppress(Exception):  # stop() raises the job's failure
                await ssc.stop()
        return out, ssc.errors

    out, errors = await run(ship=False)
    assert out == [] and len(errors) == 1
    cause = errors[0].cause.cause  # type: ignore[attr-defined]  # job -> task -> this
    assert isinstance(cause, WorkerImportError) and cause.module == name
    assert f"module '{name}' cannot be imported on worker tcp://127.0.0.1:" in str(errors[0])
    assert "ssc.add_py_file(path)" in str(errors[0])

    out, errors = await run(ship=True)
    assert errors == [] and out == [(1.0, ["A!", "B!"])]


def test_add_py_file_takes_existing_modules_before_start(tmp_path: Path) -> None:
    ssc = StreamingContext(1.0, master="local")
    with pytest.raises(FileNotFoundError, match="no such file"):
        ssc.add_py_file(str(tmp_path / "absent.py"))
    (tmp_path / "data.txt").write_text("")
    with pytest.raises(ValueError, match=r"a \.py, \.zip or \.egg"):
        ssc.add_py_file(str(tmp_path / "data.txt"))


def fail_once(marker: str) -> Callable[[int], int]:
    """Raises the first time any worker runs it (a file every worker sees remembers)."""

    def check(x: int) -> int:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return x
        raise RuntimeError("first attempt fails")

    return check


async def test_the_engine_retries_a_failed_task(tmp_path: Path, dask_cluster: DaskCluster) -> None:
    async with StreamingContext(1.0, master=dask_cluster.master, clock=ManualClock(0.0)) as ssc:
        check = fail_once(str(tmp_path / "failed-once"))
        out = collect_batches(ssc.queue_stream([[1, 2, 3]]).map(check))
        await ssc.start()
        await advance_batches(ssc, 1)
        await ssc.stop()
    assert out == [(1.0, [1, 2, 3])]
    assert ssc.spark_context.counts.failed_attempts == 1
    assert ssc.spark_context.counts.succeeded >= 1


# ---- data placement ----------------------------------------------------------------------


async def test_partition_i_runs_where_its_state_lives(
    tmp_path: Path, dask_cluster: DaskCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each state partition is stored by the worker that ran its task, batch after batch:
    the task for partition i runs where partition i's previous state is."""
    published: list[tuple[str, int, str]] = []
    original = DaskBackend._publish

    def publish(self: DaskBackend, ref: Any, worker: str) -> None:
        published.append((ref.id, ref.partition, worker))
        original(self, ref, worker)

    monkeypatch.setattr(DaskBackend, "_publish", publish)
    async with StreamingContext(1.0, master=dask_cluster.master, clock=ManualClock(0.0)) as ssc:
        ssc.checkpoint(str(tmp_path))
        totals = word_count(ssc.queue_stream(LINES * 2)).update_state_by_key(running_total, 4)
        out = collect_batches(totals)
        await ssc.start()
        await advance_batches(ssc, 8)
        await ssc.stop()
    assert [sorted(r) for _, r in out][-1] == [("a", 6), ("b", 4), ("c", 2)]
    homes: dict[int, set[str]] = {}
    for _, partition, worker in published:
        homes.setdefault(partition, set()).add(worker)
    assert sorted(homes) == [0, 1, 2, 3]
    assert all(len(workers) == 1 for workers in homes.values())  # never moved
    assert len({w for workers in homes.values() for w in workers}) == 2  # spread over both


def keyed(i: int) -> tuple[int, str]:
    return i % 50, "x" * 40


async def driver_bytes_per_batch(master: str, records: int) -> float:
    """Bytes through the driver per batch of a job that shuffles every record (its input
    is one parallelized RDD, placed on the workers before the first batch)."""
    async with StreamingContext(1.0, master=master, clock=ManualClock(0.0)) as ssc:
        rdd = ssc.spark_context.parallelize(range(records), 2).map(keyed)
        grouped = ssc.queue_stream([rdd] * 4).group_by_key().map_values(len)
        out = collect_batches(grouped)
        await ssc.start()
        await advance_batches(ssc, 1)  # the input is scattered by the first batch
        traffic = ssc.spark_context.backend.traffic  # type: ignore[attr-defined]
        before = traffic.sent + traffic.received
        await advance_batches(ssc, 3)
        moved = traffic.sent + traffic.received - before
        await ssc.stop()
    assert sorted(out[-1][1]) == [(k, len(range(k, records, 50))) for k in range(50)]
    return moved / 3


async def test_bytes_through_the_driver_do_not_grow_with_the_shuffle(
    dask_cluster: DaskCluster,
) -> None:
    """20x more records shuffled per batch: on Dask the driver sends plans and receives
    results, the same bytes either way; local[2] returns every map output to the driver."""
    small = await driver_bytes_per_batch(dask_cluster.master, 5_000)
    large = await driver_bytes_per_batch(dask_cluster.master, 100_000)
    assert large < 1.1 * small
    assert small < 10_000
    pool_small = await driver_bytes_per_batch("local[2]", 5_000)
    pool_large = await driver_bytes_per_batch("local[2]", 100_000)
    assert pool_large > 10 * pool_small


def test_buckets_and_blocks_cross_the_wire_in_one_piece() -> None:
    """What moves worker to worker (a shuffle bucket, a cached block) is serialized as one
    pickle by Dask's comms, not as one frame per record (a bare list of 5,000 pairs was
    5,000 frames, 120-140 ms between two workers here), and Dask counts its real size."""
    from dask.sizeof import sizeof
    from distributed.protocol import dumps, loads, to_serialize

    from aiostream_engine.executor.dask import on_worker

    pairs = [(f"device-{i:05d}", (float(i), i)) for i in range(5_000)]
    assert len(dumps({"data": to_serialize(pairs)})) > 5_000  # why it is wrapped
    for data in (on_worker.bucket([[], pairs], 1), on_worker.Records(pairs)):
        frames = dumps({"data": to_serialize(data)})
        assert len(frames) <= 4
        assert loads(frames)["data"].records == pairs
        assert sizeof(data) == sizeof(pairs)


async def test_side_outputs_of_a_decode_stage_before_a_shuffle(dask_cluster: DaskCluster) -> None:
    """Worker-side decoding (dead letters as side outputs) with a shuffle right after it:
    the map tasks' side outputs reach the driver though their buckets stay on the workers."""
    async with StreamingContext(1.0, master=dask_cluster.master, clock=ManualClock(0.0)) as ssc:
        receiver, stream = decoded_stream(ssc)
        dead = collect_batches(stream.dead_letters())
        kinds = collect_batches(stream.map(lambda v: (type(v).__name__, 1)).reduce_by_key(operator.add))
        await ssc.start()
        await feed(receiver, [b"1", b"{", b"[2]"], [b"nope", b"3"])
        infos = await advance_batches(ssc, 1)
        await ssc.stop()
    assert sorted(kinds[0][1]) == [("int", 2), ("list", 1)]
    assert dead[0][1] == [("dead", b"{", "JSONDecodeError"), ("dead", b"nope", "JSONDecodeError")]
    assert infos[0].stream_id_to_num_records[stream.id] == 3


async def test_state_survives_losing_every_worker_at_once(tmp_path: Path) -> None:
    """The only worker dies between batches and a new one joins: the tasks placed on the
    dead worker (they may run elsewhere) wait for the new one instead of for ever, and the
    state comes back from its disk copies."""
    cluster = DaskCluster(tmp_path / "cluster", workers=1).start()
    try:
        async with StreamingContext(1.0, master=cluster.master, clock=ManualClock(0.0)) as ssc:
            ssc.checkpoint(str(tmp_path / "checkpoint"))
            out = collect_batches(word_count(ssc.queue_stream(LINES)).update_state_by_key(running_total))
            await ssc.start()
            await advance_batches(ssc, 2)
            cluster.worker_processes[0].kill()
            cluster.worker_processes[0].wait()
            cluster.start_worker(0)
            with anyio.fail_after(60):
                await advance_batches(ssc, 2)
            await ssc.stop()
    finally:
        cluster.stop()
    assert [sorted(r) for _, r in out] == EXPECTED_COUNTS[4:]
