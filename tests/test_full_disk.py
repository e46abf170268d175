"""A full disk under the checkpoint directory (a real, small tmpfs): a failed checkpoint
write is retried, and each failure is logged, counted and posted to listeners; if the disk
stays full the context stops with CheckpointWriteError, never a silent stop.

The issue's finding: the metadata write failed, the batch clock died, and the process
stayed alive running nothing, saying so only at shutdown.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import generate_latest

from aiostream_engine import (
    CheckpointWriteError,
    ManualClock,
    StreamingContext,
    StreamingListener,
)
from aiostream_engine.scheduler.listener import CheckpointWriteFailed

pytestmark = pytest.mark.anyio
SIZE = 256 * 1024


class SmallDisk:
    """A tmpfs of ``SIZE`` bytes; ``fill()`` leaves it (nearly) no free space."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        with open(self.filler, "wb", buffering=0) as out:
            try:
                while True:
                    out.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def small_disk() -> Iterator[SmallDisk]:
    path = Path(tempfile.mkdtemp(prefix="aiostream-full-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True)
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", str(path)], check=True)
        os.rmdir(path)


class Recorder(StreamingListener):
    def __init__(self) -> None:
        self.failures: list[CheckpointWriteFailed] = []

    def on_checkpoint_write_failed(self, event: CheckpointWriteFailed) -> None:
        self.failures.append(event)


async def wait_for(condition: Any) -> None:
    with anyio.fail_after(30):
        while not condition():
            await anyio.lowlevel.checkpoint()


async def test_a_disk_that_stays_full_stops_the_context_with_the_error(
    small_disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiostream_engine")
    recorder = Recorder()
    conf = {"checkpoint_write_retries": 2, "checkpoint_write_backoff": 1.0}
    clock = ManualClock(0.0)
    outputs: list[float] = []
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        ssc.checkpoint(str(small_disk.path / "checkpoint"))
        ssc.add_streaming_listener(recorder)
        ssc.queue_stream([[("a", 1)]] * 5).update_state_by_key(
            lambda new, old: sum(new) + (old or 0)
        ).foreach_rdd(lambda time, rdd: outputs.append(time))
        registry = ssc.metrics_registry  # /metrics counts from the start
        await ssc.start()
        clock.set_time(1.0)
        await ssc._job_scheduler.wait_for_batch(1000)
        small_disk.fill()
        clock.set_time(2.0)  # batch 2's metadata cannot be written: retried at 3.0 and 5.0
        for attempt, retry_at in ((1, 3.0), (2, 5.0)):
            await wait_for(lambda: len(recorder.failures) == attempt)  # noqa: B023
            assert ssc.state.value == "active"
            clock.set_time(retry_at)
        with pytest.raises(CheckpointWriteError) as stopped:
            await ssc.await_termination(30)
        assert ssc.state.value == "stopped"
    assert str(stopped.value).startswith(
        "writing the metadata checkpoint of batch 2 s failed 3 time(s): [Errno 28] No space left"
    )
    assert [(f.kind, f.batch_time, f.attempt, f.retry_in) for f in recorder.failures] == [
        ("metadata", 2.0, 1, 1.0), ("metadata", 2.0, 2, 2.0), ("metadata", 2.0, 3, None)
    ]
    assert "No space left on device" in recorder.failures[0].error
    assert ssc.checkpoint_statistics is not None
    assert ssc.checkpoint_statistics.write_failures == 3
    metrics = generate_latest(registry).decode()
    assert 'aiostream_checkpoint_write_failures_total{kind="metadata"} 3.0' in metrics.splitlines()
    assert outputs == [1.0]  # batch 2 never ran: nothing ran past the failed checkpoint
    assert [i.batch_time for i in ssc.batch_history] == [1.0]
    # Logged: each failure with its retry, then the error that stopped the context.
    logged = [(r.levelname, r.getMessage()) for r in caplog.records
              if "metadata checkpoint of batch 2 s" in r.getMessage()]
    assert [level for level, _ in logged] == ["WARNING", "WARNING", "ERROR"]
    assert "failed (attempt 1), retrying in 1 s: [Errno 28]" in logged[0][1]
    assert "failed (attempt 2), retrying in 2 s: [Errno 28]" in logged[1][1]
    assert logged[2][1] == str(stopped.value)


async def test_a_disk_freed_while_retrying_loses_nothing(small_disk: SmallDisk) -> None:
    recorder = Recorder()
    conf = {"checkpoint_write_retries": 3, "checkpoint_write_backoff": 1.0}
    clock = ManualClock(0.0)
    outputs: list[tuple[float, list[Any]]] = []
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        ssc.checkpoint(str(small_disk.path / "checkpoint"))
        ssc.add_streaming_listener(recorder)

        async def keep(time: float, rdd: Any) -> None:
            outputs.append((time, await rdd.acollect()))

        ssc.queue_stream([[("a", 1)]] * 5).update_state_by_key(
            lambda new, old: sum(new) + (old or 0)
        ).foreach_rdd(keep)
        await ssc.start()
        clock.set_time(1.0)
        await ssc._job_scheduler.wait_for_batch(1000)
        small_disk.fill()
        clock.set_time(2.0)
        await wait_for(lambda: len(recorder.failures) == 1)
        small_disk.free()
        clock.set_time(3.0)  # the retry succeeds; batches 2 and 3 go on
        await ssc._job_scheduler.wait_for_batch(3000)
        await ssc.stop()
    assert ssc.errors == []
    assert outputs == [(1.0, [("a", 1)]), (2.0, [("a", 2)]), (3.0, [("a", 3)])]
    assert [(f.attempt, f.retry_in) for f in recorder.failures] == [(1, 1.0)]
    assert ssc.checkpoint_statistics is not None and ssc.checkpoint_statistics.write_failures == 1
