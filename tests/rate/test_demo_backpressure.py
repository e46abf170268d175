"""`aiostream-engine demo --backpressure`: the statistics show the bound and the readings
waiting at the devices."""

from __future__ import annotations

import io

import pytest

from aiostream_engine.demo import format_stats, run_demo
from aiostream_engine.scheduler.batch_info import BatchInfo, StreamInputInfo

pytestmark = pytest.mark.anyio


def test_statistics_show_the_bound_and_what_waits() -> None:
    info = BatchInfo(12.0, {0: StreamInputInfo(0, 450, {"rate_bound": 901.4})}, 12.0, 12.0, 12.25)
    assert format_stats(info, waiting=1234).endswith(
        ", rate bound 901 records/s, waiting at the devices 1234"
    )
    first = BatchInfo(1.0, {0: StreamInputInfo(0, 10, {"rate_bound": None})}, 1.0, 1.0, 1.1)
    assert format_stats(first).endswith(", rate bound none yet")
    plain = BatchInfo(1.0, {0: StreamInputInfo(0, 10)}, 1.0, 1.0, 1.1)
    assert "rate bound" not in format_stats(plain)


async def test_demo_with_backpressure_bounds_an_overloaded_job() -> None:
    """2 ms of CPU per reading on one in-process executor: about 500 readings/s, offered
    5000/s. The bound appears after the first batch and stays far below the offer; what
    the job does not take waits at the devices."""
    out = io.StringIO()
    totals = await run_demo(
        duration=3.0, rate=5000, devices=5, batch_interval=0.5, master="local", window=0,
        backpressure=True, work=2000, out=out, handle_signals=False, ui_port=0,
        initial_rate=200,
    )
    stats = [line for line in out.getvalue().splitlines() if line.startswith("   stats")]
    assert "backpressure on" in out.getvalue()
    assert stats and all("rate bound" in line for line in stats)
    bounds = [float(line.split("rate bound ")[1].split(" ")[0]) for line in stats]
    assert bounds[0] == 200 and max(bounds) < 2500
    waiting = [int(line.rsplit(" ", 1)[1]) for line in stats]
    assert waiting[-1] > 3000  # most of the 5000/s offered is still on the devices
    assert totals.readings + totals.malformed < 0.5 * 5000 * 3.0
