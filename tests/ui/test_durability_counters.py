"""The write-ahead log's bytes written and the checkpoint writer's time, as the page, its
JSON and /metrics show them, checked against what is on disk and the run's own counters."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.receiver.wal import MAGIC
from aiostream_engine.testing import advance_batches
from tests.wal_receiver import ReliableReceiver, feed, wal_conf

from .browser import browser_page
from .test_metrics import samples, value

pytestmark = pytest.mark.anyio


async def test_wal_bytes_and_checkpoint_write_time_reach_the_page_api_and_metrics(
    tmp_path: Path,
) -> None:
    clock = ManualClock(0.0)
    # One segment for the whole run (no roll, so none is deleted): its size on disk is
    # every byte the log wrote.
    conf = {"ui_enabled": True, "ui_port": 0, **wal_conf(receiver_wal_roll_interval=3600.0)}
    started = time.perf_counter()
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        ssc.checkpoint(str(tmp_path / "checkpoint"))
        receiver = ReliableReceiver()
        stream = ssc.receiver_stream(receiver)
        stream.count().foreach_rdd(lambda rdd: None)
        await ssc.start()
        for records in (["a" * 100, "b"], ["c" * 5000], [], ["d"] * 300):
            await feed(receiver, records)
            (info,) = await advance_batches(ssc, 1)
        assert ssc._ui is not None
        await ssc._ui.status.wait_for_batch(info.batch_time)
        stream_id = stream.id
        segments = list((tmp_path / "checkpoint" / "receivedData" / str(stream_id)).iterdir())
        async with httpx.AsyncClient(base_url=ssc.ui_url) as client:
            found = samples((await client.get("metrics")).text)
            engine = (await client.get("api/ui/summary")).json()["engine"]
        statistics = ssc.checkpoint_statistics
        assert statistics is not None
        elapsed = time.perf_counter() - started

        async with browser_page() as (page, problems):
            await page.goto(ssc.ui_url)
            await page.wait_for_selector("#live.on")
            table = page.locator("#engine")
            await table.get_by_text(f"Write-ahead log, stream {stream_id}").wait_for()
            shown = await table.inner_text()
        assert problems == []

    (segment,) = segments
    on_disk = segment.stat().st_size - len(MAGIC)
    assert on_disk > 5000 + 300
    wal = next(w for w in engine["wal"] if w["stream_id"] == stream_id)
    assert wal["bytes_written"] == on_disk
    assert wal["appends"] == 4  # a block per feed
    assert value(found, "aiostream_wal_bytes_total", stream_id=str(stream_id)) == on_disk

    # Checkpoint writes: counted, timed (within the run's wall time), the same everywhere.
    # (A batch's checkpoint writes end before it counts as completed, and the clock stands
    # still after the last one: nothing is written while the counters are read.)
    assert statistics.writes >= 2 * 4  # metadata as each batch is generated and completed
    assert 0 < statistics.write_seconds < elapsed
    assert engine["checkpointWrites"] == statistics.writes
    assert value(found, "aiostream_checkpoint_writes_total") == statistics.writes
    assert engine["checkpointWriteSeconds"] == statistics.write_seconds
    assert value(found, "aiostream_checkpoint_write_seconds_total") == statistics.write_seconds

    # The page: the log's bytes and the time spent writing checkpoints, as numbers.
    assert f"{on_disk:,} bytes" in shown  # en-US grouping, as the page formats numbers
    assert f"{statistics.writes:,}, {page_duration(statistics.write_seconds)} writing" in shown


def page_duration(seconds: float) -> str:
    """A duration under a minute as the page's fmtDuration writes it."""
    assert seconds < 60
    if seconds < 1:
        return f"{int(seconds * 1000 + 0.5)} ms"  # Math.round
    return f"{seconds:.{2 if seconds < 10 else 1}f} s"
