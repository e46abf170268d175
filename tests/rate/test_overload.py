"""The proof of backpressure, in real time: a publisher process offers about 3x what a
CPU-heavy map on local[2] sustains (measured first, in the same run), for at least 60
batches. With backpressure the job settles: scheduling delay back under one batch interval
within 15 batches and staying there, RSS of driver and workers flat, the accepted rate
within 20% of the processing rate, and once the publisher stops every message it published
is processed exactly once. Without it, the scheduling delay grows batch after batch.

Thresholds come from this run's own measurements; nothing assumes a machine's speed.
"""

from __future__ import annotations

import functools
import time

import anyio
import pytest

from aiostream_engine import StreamingContext
from bench.backpressure import engine_conf, socket_run
from bench.overload import (
    MQTT_ITERATIONS,
    Run,
    calibrate,
    collect_into,
    heavy,
    heavy_mqtt,
    publisher,
    run_overload,
)
from tests.brokers import Mosquitto

BATCH = 0.3
BATCHES = 60
OVERLOAD = 3.0
SETTLE_WITHIN = 15
# A measured run needs a machine whose speed holds for a minute: each variant runs 60
# batches of overload and then drains twice that; .ci/run runs them (pytest -m slow).
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def initial_rate(capacity: float) -> dict[str, float]:
    """The operator's rough idea of the job (half of what it does): Spark's advice for the
    first batches, which are taken before any batch has completed."""
    return {"backpressure_initial_rate": capacity / 2}


@pytest.fixture
async def capacity() -> float:
    """Records per second the heavy job sustains on local[2] on this machine now (measured
    right before each run: the machine's load moves it)."""
    return await calibrate()


@pytest.fixture
async def mqtt_capacity() -> float:
    """The same for the MQTT variant's heavier job."""
    return await calibrate(functools.partial(heavy, iterations=MQTT_ITERATIONS), records=1250)


def check_settled(run: Run) -> None:
    delays = run.scheduling_delays()[:BATCHES]
    shown = f"{[round(d, 3) for d in delays]}"
    # Settled within SETTLE_WITHIN batches and staying there. This shared 2-core machine
    # now and then stalls the job for a moment (a neighbour's burst: one CI run saw a lone
    # 0.334 s at batch 18 among delays under 0.27 s), so a settled job may see an isolated
    # batch reach one interval; it must recover at once: never two such batches in a row,
    # never two intervals behind, and at most one settled batch in twenty. A job that is
    # not held back falls further behind every batch and fails each of these.
    over = [k for k, d in enumerate(delays[SETTLE_WITHIN:], SETTLE_WITHIN) if d >= BATCH]
    in_a_row = [b for a, b in zip(over, over[1:], strict=False) if b == a + 1]
    assert not in_a_row, f"two in a row at {over}: {shown}"
    assert max(delays[SETTLE_WITHIN:]) < 2 * BATCH, shown
    assert len(over) <= (BATCHES - SETTLE_WITHIN) // 20, f"over one interval at {over}: {shown}"
    # Settled: it takes what it processes.
    accepted = run.accepted_rate(SETTLE_WITHIN, BATCHES)
    processed = run.processing_rate(SETTLE_WITHIN, BATCHES)
    assert abs(accepted - processed) <= 0.2 * processed, (accepted, processed)
    # And it was overloaded all along: the publisher offered well above what was processed.
    assert run.offered_rate >= 1.5 * processed, (run.offered_rate, processed)
    # Memory flat: the second half of the run holds no more than the first half settled.
    middle = (SETTLE_WITHIN + BATCHES) // 2
    early = max(run.rss_between(SETTLE_WITHIN, middle))
    late = max(run.rss_between(middle, BATCHES + 1))
    assert late <= early * 1.05 + 10, (early, late)
    # Every published message processed exactly once.
    assert run.total_published is not None
    assert sorted(run.seen) == list(range(run.total_published))


def check_growing(run: Run) -> None:
    """Batch after batch the delay grows: every batch waits longer than the one three
    batches before it (a single batch may come out a little smaller than its neighbour),
    and it ends more than ten batch intervals behind."""
    delays = run.scheduling_delays()
    assert len(delays) >= 12
    assert all(later > earlier for earlier, later in zip(delays[1:], delays[4:], strict=False)), delays
    assert delays[-1] > 10 * BATCH


async def _socket_run(capacity: float, backpressure: bool) -> Run:
    return await socket_run(
        capacity, backpressure, batch=BATCH, batches=BATCHES, overload=OVERLOAD,
        drain=backpressure, stop_after=None if backpressure else 14,
        conf=initial_rate(capacity),
    )


async def test_socket_overload_with_backpressure_settles(capacity: float) -> None:
    check_settled(await _socket_run(capacity, backpressure=True))


async def test_socket_overload_without_backpressure_falls_behind(capacity: float) -> None:
    check_growing(await _socket_run(capacity, backpressure=False))


async def test_mqtt_qos1_overload_with_backpressure_settles(
    mqtt_capacity: float, quiet_mosquitto: Mosquitto
) -> None:
    capacity = mqtt_capacity
    offered = OVERLOAD * capacity
    seconds = BATCHES * BATCH + 1.0
    run = Run(BATCH, offered)
    broker = quiet_mosquitto
    settings = {**engine_conf(True), **initial_rate(capacity)}
    async with StreamingContext(BATCH, master="local[2]", conf=settings) as ssc:
        source = ssc.mqtt_stream(broker.host, broker.port, "load", qos=1, decoder="text",
                                 clean_start=True)
        collect_into(source.map(heavy_mqtt), run)
        await ssc.start()
        receiver = source.receiver  # type: ignore[union-attr]
        with anyio.fail_after(10):
            while receiver.connections < 1:
                await anyio.sleep(0.02)
        async with publisher("mqtt", offered, seconds, "--port", str(broker.port),
                             "--topic", "load") as (process, messages):
            await messages.__anext__()  # connected
            run.start = time.monotonic()
            await run_overload(
                ssc, run, messages,
                min_batches=BATCHES, drain=True,
                exclude_pids={process.pid, broker.pid or 0},
            )
        await ssc.stop(graceful=False)
    check_settled(run)
