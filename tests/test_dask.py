"""The Dask backend: masters, cluster lifecycle, faults, data placement and user modules.

The stateless, window and state suites run on ``dask-local[2]`` as well (``tests/masters``);
here is what is particular to a cluster. Clusters are real: ``dask scheduler`` and
``dask worker`` processes on loopback (the session's ``dask_cluster``, or one of a test's
own), or the LocalCluster a ``dask-local[N]`` master starts; all are stopped by PID.
"""

from __future__ import annotations

import operator
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiostream_engine import (
    ConfigurationError,
    ManualClock,
    StreamingContext,
)
from aiostream_engine.errors import ClusterUnavailableError
from aiostream_engine.executor.master import backend_for
from aiostream_engine.testing import advance_batches, collect_batches
from tests.brokers import free_port
from tests.dask_cluster import DaskCluster

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
                await advance_batches(ssc, 1)
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
