"""What master=local's output snapshots cost: the local backend hands back a pickled copy of
what a task returns (issue 10: a collected update_state_by_key result shared the live state).

W2-like keyed state on master=local: update_state_by_key over 100,000 keys, 10,000 new
records a batch, with the output a count (only a number comes back) or a collect of the
whole state (100,000 pairs come back), and a stateless map over 200,000 records collected.
Each is run three ways, interleaved in rounds: copying what every task hands back (as
first shipped), copying only what tasks reading kept partitions hand back (now), and no
copy at all; the median processing time per batch of each.

    python -m bench.local_snapshot [--quick]

Writes bench/results/local_snapshot.json and bench/results/local_snapshot.md.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aiostream_engine.executor.local as local_backend
from aiostream_engine import StreamingContext
from aiostream_engine.dstream.base import DStream
from aiostream_engine.rdd.tasks import TaskPlan, execute_task
from aiostream_engine.testing import advance_batches

from .cost_cli import cost_report, run_cost_benchmark
from .window_cost import WallOffsetClock

KEYS = 100_000
RECORDS_PER_BATCH = 10_000
STATELESS_RECORDS = 200_000


def _add(new: list[float], old: float | None) -> float:
    return (old or 0.0) + sum(new)


def _keyed_batches(count: int) -> list[list[tuple[str, float]]]:
    step = 7919
    return [
        [(f"key-{(b * RECORDS_PER_BATCH + i) * step % KEYS:07d}", 1.0) for i in range(RECORDS_PER_BATCH)]
        for b in range(count)
    ]


def _state(ssc: StreamingContext, batches: int) -> DStream:
    initial = [(f"key-{i:07d}", 0.0) for i in range(KEYS)]
    return ssc.queue_stream(_keyed_batches(batches)).update_state_by_key(_add, initial_rdd=initial)


def _stateless(ssc: StreamingContext, batches: int) -> DStream:
    data = [list(range(STATELESS_RECORDS)) for _ in range(batches)]
    return ssc.queue_stream(data).map(lambda x: (x, x * 0.5))


async def _count(rdd: Any) -> None:
    await rdd.acount()


async def _collect(rdd: Any) -> None:
    await rdd.acollect()


CASES: dict[str, tuple[Callable[[StreamingContext, int], DStream], Callable[[Any], Any]]] = {
    "update_state_by_key, count": (_state, _count),
    "update_state_by_key, collect": (_state, _collect),
    "map over 200k records, collect": (_stateless, _collect),
}


def _copy_every_output(plan: TaskPlan, index: int) -> list[Any]:
    """The first shipped rule: every task's records but shuffle buckets were copied."""
    result = execute_task(plan, index)
    if plan.shuffle_write is not None or not result:
        return result
    return local_backend.snapshot(result)


async def run(case: str, mode: str, measured: int) -> float:
    build, output = CASES[case]
    warmup = 2
    local_backend.execute_detached = MODES[mode]  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory(prefix="local-snapshot-") as directory:
            async with StreamingContext(1.0, master="local", clock=WallOffsetClock()) as ssc:
                ssc.checkpoint(directory)
                build(ssc, warmup + measured).foreach_rdd(output)
                await ssc.start()
                await advance_batches(ssc, warmup + measured)
                history = ssc.batch_history[warmup:]
                await ssc.stop()
    finally:
        local_backend.execute_detached = SHIPPED  # type: ignore[assignment]
    if ssc.errors:
        raise ssc.errors[0]
    return statistics.median(d for info in history if (d := info.processing_delay) is not None)


SHIPPED = local_backend.execute_detached
MODES = {"copy_all": _copy_every_output, "copy_kept": SHIPPED, "no_copy": execute_task}


async def main(quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    rounds = 1 if quick else 3
    measured = 3 if quick else 5
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for case in CASES:
            for mode in MODES:
                samples.setdefault((case, mode), []).append(await run(case, mode, measured))
    rows = []
    for case in CASES:
        row: dict[str, Any] = {"case": case}
        for mode in MODES:
            row[f"{mode}_ms"] = round(statistics.median(samples[(case, mode)]) * 1000, 1)
        print(row, flush=True)
        rows.append(row)
    return cost_report(__doc__, started, rows, rounds=rounds, measured_batches=measured)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# master=local: what the output snapshots cost",
        "",
        f"Median processing time per batch over {report['measured_batches']} batches (after 2 "
        f"warm-up batches), median of {report['rounds']} interleaved rounds. A copy is a "
        "pickled snapshot of what a task hands back: of every task's records (as first "
        "shipped), only of tasks that read kept partitions (now), or none. "
        "Generated by `python -m bench.local_snapshot`.",
        "",
        "| case | copy all (ms) | copy kept (ms) | no copy (ms) | all / none | kept / none |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        every, kept, none = row["copy_all_ms"], row["copy_kept_ms"], row["no_copy_ms"]
        lines.append(
            f"| {row['case']} | {every:.1f} | {kept:.1f} | {none:.1f} "
            f"| {every / none:.2f} | {kept / none:.2f} |"
        )
    machine = f"Python {report['python']}, {report['machine']}"
    lines += ["", f"Run time: {report['runtime_s']:g} s ({machine}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    run_cost_benchmark("local_snapshot", __doc__.split("\n\n")[0], "one round, fewer batches", main, markdown)
