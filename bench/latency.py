"""W4: event-to-output latency of W2 fed by a receiver (not a queue).

``StampedReadings`` stores pre-generated W2 lines at a fixed rate, each as
``(send time, line)``; a chunk stored together shares its stamp. The pipeline is W2's
(parse, key by device, reduce) plus, per partition, a count of events per stamp carried
under one extra key; the output function takes its own clock reading when the batch's
result is in hand, so every event's latency = output time - send time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Iterator
from typing import Any

import anyio

from aiostream_engine import Receiver, StreamingContext

from .child import child_main
from .engine_runner import bench_conf
from .loop_lag import LoopLagMonitor
from .method import Job
from .workloads import add_pair, iot_lines, parse_reading

SENT_KEY = "__sent__"
POOL = 200_000  # distinct lines the receiver cycles through
TICK = 0.005  # the receiver stores a chunk every 5 ms
SETTLE = 2.0  # seconds of batches ignored at the start


class StampedReadings(Receiver):
    name = "stamped-readings"

    def __init__(self, lines: list[str], rate: float) -> None:
        super().__init__()
        self.lines = lines
        self.rate = rate
        self.sent = 0

    async def on_start(self) -> None:
        start = self.clock.now()
        lines, n = self.lines, len(self.lines)
        while True:
            await anyio.sleep(TICK)
            now = self.clock.now()
            due = int((now - start) * self.rate) - self.sent
            if due <= 0:
                continue
            first = self.sent % n
            chunk = [(now, lines[(first + k) % n]) for k in range(due)]
            self.sent += due
            await self.store_many(chunk)


def parse_stamped(records: Iterable[tuple[float, str]]) -> Iterator[tuple[str, Any]]:
    """W2's parse, plus (SENT_KEY, ((stamp, events), ...), 0): add_pair concatenates the
    stamp tuples and adds the zeros, so the reduce merges them like any other key."""
    stamps: dict[float, int] = {}
    for stamp, line in records:
        stamps[stamp] = stamps.get(stamp, 0) + 1
        yield parse_reading(line)
    yield SENT_KEY, (tuple(stamps.items()), 0)


def weighted_percentiles(pairs: list[tuple[float, int]], qs: Iterable[float]) -> dict[str, float]:
    ordered = sorted(pairs)
    total = sum(n for _, n in ordered)
    result: dict[str, float] = {}
    for q in qs:
        target, seen = q / 100 * total, 0
        for value, n in ordered:
            seen += n
            if seen >= target:
                result[f"p{q:g}"] = value
                break
    return result


async def _run(job: Job) -> dict[str, Any]:
    interval = job.plan.interval
    conf = {**bench_conf(), "block_interval": min(0.2, interval / 2)}
    receiver = StampedReadings(iot_lines(POOL), job.rate)
    latencies: list[tuple[float, int]] = []
    lag = LoopLagMonitor()
    async with anyio.create_task_group() as tg:
        async with StreamingContext(interval, master=job.master, conf=conf) as ssc:
            settle_until = time.time() + SETTLE

            async def output(rdd: Any) -> None:
                result = await rdd.acollect()
                done = ssc.clock.now()
                if done < settle_until:
                    return
                for key, value in result:
                    if key == SENT_KEY:
                        latencies.extend((done - stamp, n) for stamp, n in value[0])

            stream = ssc.receiver_stream(receiver)
            stream.map_partitions(parse_stamped).reduce_by_key(add_pair).foreach_rdd(output)
            tg.start_soon(lag.run)
            await ssc.start()
            await anyio.sleep(SETTLE + job.duration)
            sent = receiver.sent
            await ssc.stop(graceful=False)
            history = [b for b in ssc.batch_history if b.batch_time >= settle_until]
        tg.cancel_scope.cancel()
    events = sum(n for _, n in latencies)
    processing = [b.processing_delay or 0.0 for b in history]
    return {
        "job": job.to_json(),
        "available": True,
        "rate": job.rate,
        "sent": sent,
        "events_measured": events,
        "output_rate": events / job.duration if job.duration else None,
        "latency_s": weighted_percentiles(latencies, (50, 90, 99, 99.9)),
        "latency_max_s": max((v for v, _ in latencies), default=None),
        "batches": len(history),
        "processing_median_s": statistics.median(processing) if processing else None,
        "processing_max_s": max(processing, default=None),
        "scheduling_delay_max_s": max((b.scheduling_delay or 0.0 for b in history), default=None),
        "errors": [str(e) for e in ssc.errors][:3],
        **lag.summary(),
    }


def run_latency(job: Job) -> dict[str, Any]:
    return anyio.run(_run, job, backend_options={"use_uvloop": True})


def main() -> None:
    child_main(run_latency)


if __name__ == "__main__":
    main()


