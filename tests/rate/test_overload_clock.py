"""Overload on a ManualClock: a source offering 3x what the job sustains, for 60 batches,
with and without backpressure. Deterministic: processing takes clock time in proportion
to the records (tests/rate/sim.py); the real-time proof on local[2] and MQTT is in
test_overload.py."""

from __future__ import annotations

import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.scheduler.batch_info import BatchInfo
from tests.rate.sim import Endless, SlowOutput, run_until, stop_gracefully

pytestmark = pytest.mark.anyio

BATCH = 0.5
PER_RECORD = 0.0002  # the job: 0.2 ms per record plus 50 ms per batch
OVERHEAD = 0.05
SUSTAINED = (BATCH - OVERHEAD) / PER_RECORD / BATCH  # 4500 records/s fill a batch interval
OFFERED = 3 * SUSTAINED
BATCHES = 60


async def _run(
    backpressure: bool, initial_rate: float = 0.0
) -> tuple[list[BatchInfo], Endless, list[int]]:
    clock = ManualClock()
    conf = {
        "spark.streaming.backpressure.enabled": str(backpressure).lower(),
        "spark.streaming.backpressure.initialRate": str(initial_rate),
        "spark.streaming.receiver.maxRate": str(OFFERED),  # the source offers this much
        "block_interval": "0.1",
    }
    source = Endless(chunk=25)
    async with StreamingContext(BATCH, master="local", clock=clock, conf=conf) as ssc:
        out = SlowOutput(ssc.receiver_stream(source), clock, PER_RECORD, OVERHEAD)
        await ssc.start()
        # Without backpressure 25 completed batches already span over 60 batch intervals.
        count = BATCHES if backpressure else 25
        await run_until(ssc, count, out)
        history = ssc.batch_history[:count]
        if backpressure:
            await stop_gracefully(ssc, out)
    return history, source, out.seen


def _settled_from(history: list[BatchInfo]) -> int:
    """The first batch from which every scheduling delay is below one batch interval."""
    delays = [i.scheduling_delay for i in history]
    over = [k for k, d in enumerate(delays) if d >= BATCH]  # type: ignore[operator]
    return over[-1] + 1 if over else 0


def _check_settled(history: list[BatchInfo], source: Endless, seen: list[int]) -> None:
    # Settled: what is taken per second is what is processed per second (within 20%), and
    # that is the job's capacity, not the offered rate.
    settled = history[25:]
    accepted = sum(i.num_records for i in settled) / (len(settled) * BATCH)
    processed = sum(i.num_records for i in settled) / sum(i.processing_delay for i in settled)  # type: ignore[misc]
    assert abs(accepted - processed) <= 0.2 * processed
    assert abs(accepted - SUSTAINED) <= 0.2 * SUSTAINED
    # The excess waited at the source; everything it handed over was processed exactly once.
    assert seen == list(range(source.next))


async def test_with_backpressure_a_cautious_start_never_falls_behind() -> None:
    """Starting at the minimum rate, the bound climbs to what the job processes and the
    scheduling delay stays under one batch interval from the first batch on."""
    history, source, seen = await _run(backpressure=True, initial_rate=100.0)
    assert _settled_from(history) == 0
    _check_settled(history, source, seen)


async def test_with_backpressure_an_unbounded_start_comes_back() -> None:
    """No initial rate: the first batches take all 3x the source offers before any batch
    has completed (about 11 batch intervals of work by the 4th batch: even instant control
    could not be back before batch 13); the first batch's processing rate then bounds the
    stream, the PID drains the backlog and the delay comes back under one interval and
    stays there."""
    history, source, seen = await _run(backpressure=True)
    assert history[0].num_records >= 0.9 * OFFERED * BATCH
    assert max(i.scheduling_delay for i in history) > 4 * BATCH  # type: ignore[type-var]
    assert _settled_from(history) <= 20
    _check_settled(history, source, seen)


async def test_without_backpressure_the_scheduling_delay_grows_batch_after_batch() -> None:
    history, _, _ = await _run(backpressure=False)
    delays = [i.scheduling_delay for i in history]
    assert all(later > earlier for earlier, later in zip(delays[2:], delays[3:], strict=False))  # type: ignore[operator]
    assert delays[-1] > 20 * BATCH  # type: ignore[operator]
    assert min(i.num_records for i in history[1:]) >= 0.9 * OFFERED * BATCH
