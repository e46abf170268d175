"""W4: event-to-output latency of W2 fed by a receiver (not a queue).

``StampedReadings`` stores pre-generated W2 lines at a fixed rate. Every tick it stores the
lines now due in one ``store_many``, led by one float: their send stamp. The lines stay
plain strings (one record per event, as a socket or MQTT receiver stores them), so the
receiver costs a list slice per tick instead of a tuple per event, and partitions move
on the engine's flat path for atoms.

The pipeline is W2's (parse, key by device, reduce) plus, per partition, a count of events
per stamp carried under one extra key; the output function takes its own clock reading
when the batch's result is in hand, so every event's latency = output time - send stamp.

Measured population: every event *sent* in the measured window (after a settling time).
The run goes on until all of them are output (or a drain limit passes: the rest count
with the latency they had reached then, and are reported), so a backlog at the end of the
window cannot hide its latency. Output rate = events output during the window / window.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
SETTLE = 2.0  # seconds of run before the measured window
DRAIN = 5.0  # seconds after the window to wait for its last events' output


def cyclic_slice(items: list[str], start: int, count: int) -> list[str]:
    """``count`` items of ``items`` from ``start``, wrapping around (C-level slices)."""
    out: list[str] = []
    while count > 0:
        part = items[start : start + count]
        out += part
        count -= len(part)
        start = 0
    return out


class StampedReadings(Receiver):
    """Stores ``rate`` W2 lines per second, each tick's chunk as ``[stamp, line, ...]``.

    The stamp is when the chunk's *first* event was due (start + sent / rate), not when
    the tick ran: a late tick then shows as latency instead of hiding it (an event is
    never stamped later than it was due; at most one tick earlier)."""

    name = "stamped-readings"

    def __init__(self, lines: list[str], rate: float) -> None:
        super().__init__()
        self.lines = lines
        self.rate = rate
        self.sent = 0
        self.sent_at: dict[float, int] = {}  # stamp -> events stored under it

    async def on_start(self) -> None:
        start = self.clock.now()
        while True:
            await anyio.sleep(TICK)
            due = int((self.clock.now() - start) * self.rate) - self.sent
            if due <= 0:
                continue
            stamp = start + self.sent / self.rate
            chunk: list[Any] = [stamp]
            chunk += cyclic_slice(self.lines, self.sent % len(self.lines), due)
            self.sent += due
            self.sent_at[stamp] = due
            await self.store_many(chunk)


def parse_stamped(records: Iterable[float | str]) -> Iterator[tuple[str, Any]]:
    """W2's parse of each line, plus (SENT_KEY, (((stamp, events), ...), 0)): add_pair
    concatenates the stamp tuples and adds the zeros, so the reduce merges them like any
    other key. A chunk is stored in one call, so it never straddles two blocks: a
    partition starts with a stamp."""
    counts: list[tuple[float, int]] = []
    stamp: float | None = None
    events = 0
    for record in records:
        if isinstance(record, float):
            if stamp is not None:
                counts.append((stamp, events))
            stamp, events = record, 0
            continue
        if stamp is None:
            raise ValueError("a partition of stamped readings must start with a stamp")
        events += 1
        yield parse_reading(record)
    if stamp is not None:
        counts.append((stamp, events))
    yield SENT_KEY, (tuple(counts), 0)


def weighted_percentiles(pairs: list[tuple[float, int]], qs: Iterable[float]) -> dict[str, float]:
    """Percentiles of values given as (value, how many events had it)."""
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


@dataclass
class OutputLog:
    """What the output function saw: (output time, stamp, events) per stamp per batch."""

    entries: list[tuple[float, float, int]] = field(default_factory=list)

    def add(self, done: float, counts: Iterable[tuple[float, int]]) -> None:
        self.entries.extend((done, stamp, n) for stamp, n in counts)

    def output_between(self, start: float, end: float) -> int:
        return sum(n for done, _, n in self.entries if start <= done < end)

    def output_of(self, stamps: set[float]) -> int:
        return sum(n for _, stamp, n in self.entries if stamp in stamps)


def window_latencies(
    log: OutputLog, sent_at: dict[float, int], start: float, end: float, now: float
) -> tuple[list[tuple[float, int]], int]:
    """(latency, events) of every event sent in [start, end), and how many of them were
    not output by ``now`` (they count with latency ``now - stamp``, a lower bound)."""
    sent = {s: n for s, n in sent_at.items() if start <= s < end}
    output = dict.fromkeys(sent, 0)
    latencies = []
    for done, stamp, n in log.entries:
        if stamp in output:
            latencies.append((done - stamp, n))
            output[stamp] += n
    missing = [(now - s, sent[s] - got) for s, got in output.items() if got < sent[s]]
    return latencies + missing, sum(n for _, n in missing)


async def _drain(log: OutputLog, sent_at: dict[float, int], start: float, end: float) -> None:
    """Wait until every event sent in the window is output, at most DRAIN seconds."""
    window = {s for s in sent_at if start <= s < end}
    expected = sum(sent_at[s] for s in window)
    with anyio.move_on_after(DRAIN):
        while log.output_of(window) < expected:
            await anyio.sleep(0.05)


def _stamp_counts(result: list[tuple[str, Any]]) -> tuple[tuple[float, int], ...]:
    """The (stamp, events) pairs of a batch's result (none for an empty batch)."""
    for key, value in result:
        if key == SENT_KEY:
            return value[0]
    return ()


async def _run(job: Job) -> dict[str, Any]:
    interval = job.plan.interval
    conf = {**bench_conf(), "block_interval": min(0.2, interval / 2)}
    receiver = StampedReadings(iot_lines(POOL), job.rate)
    log = OutputLog()
    lag = LoopLagMonitor()
    async with anyio.create_task_group() as tg:
        async with StreamingContext(interval, master=job.master, conf=conf) as ssc:

            async def output(rdd: Any) -> None:
                result = await rdd.acollect()
                done = ssc.clock.now()
                log.add(done, _stamp_counts(result))

            stream = ssc.receiver_stream(receiver)
            stream.map_partitions(parse_stamped).reduce_by_key(add_pair).foreach_rdd(output)
            tg.start_soon(lag.run)
            await ssc.start()
            await anyio.sleep(SETTLE)
            start = ssc.clock.now()
            await anyio.sleep(job.duration)
            end = ssc.clock.now()
            await _drain(log, receiver.sent_at, start, end)
            drained = ssc.clock.now()
            await ssc.stop(graceful=False)
            history = [b for b in ssc.batch_history if start <= b.batch_time < end]
        tg.cancel_scope.cancel()
    latencies, not_output = window_latencies(log, receiver.sent_at, start, end, drained)
    processing = [b.processing_delay or 0.0 for b in history]
    return {
        "job": job.to_json(),
        "available": True,
        "rate": job.rate,
        "sent": receiver.sent,
        "events_measured": sum(n for _, n in latencies),
        "events_not_output": not_output,
        "output_rate": log.output_between(start, end) / (end - start),
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
