"""State cost per batch: does the driver carry the state?

update_state_by_key and map_with_state over states of 10k to 400k keys, each batch bringing
10,000 records for existing keys, on local[2]. Per batch: the median processing time
(``BatchInfo.processing_delay``), the bytes that crossed the driver's pipes to and from the
workers, and, after the run, the workers' resident memory. State
partitions live as blocks on the workers (``aiostream_engine.executor.block_store``), so
the driver's bytes should not grow with the state; the workers' memory does.

    python -m bench.state_cost [--quick]

Writes bench/results/state_cost.json and bench/results/state_cost.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil

from aiostream_engine import StateSpec, StreamingContext
from aiostream_engine.executor.process_pool import ProcessPoolBackend
from aiostream_engine.testing import advance_batches

from .window_cost import WallOffsetClock

SIZES = (10_000, 100_000, 400_000)
RECORDS_PER_BATCH = 10_000
MASTER = "local[2]"
RESULTS = Path(__file__).resolve().parent / "results"


def _add_to_state(new: list[float], old: float | None) -> float:
    return (old or 0.0) + sum(new)


def _map_add(key: str, value: float, state: Any) -> float:
    total = state.get_option(0.0) + value
    state.update(total)
    return total


def _batches(keys: int, count: int) -> list[list[tuple[str, float]]]:
    step = 7919  # a prime: each batch touches keys spread over the whole state
    return [
        [(f"key-{(b * RECORDS_PER_BATCH + i) * step % keys:07d}", 1.0) for i in range(RECORDS_PER_BATCH)]
        for b in range(count)
    ]


async def _count(rdd: Any) -> None:
    await rdd.acount()


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def run(operation: str, keys: int, measured: int) -> dict[str, Any]:
    warmup = 2
    initial = [(f"key-{i:07d}", 0.0) for i in range(keys)]
    clock = WallOffsetClock()
    with tempfile.TemporaryDirectory(prefix="state-cost-") as directory:
        async with StreamingContext(1.0, master=MASTER, clock=clock) as ssc:
            ssc.checkpoint(directory)
            pairs = ssc.queue_stream(_batches(keys, warmup + measured))
            if operation == "update_state_by_key":
                out = pairs.update_state_by_key(_add_to_state, initial_rdd=initial)
            else:
                out = pairs.map_with_state(StateSpec(_map_add, initial_state=initial))
            out.foreach_rdd(_count)  # computes every batch; only a count comes back
            await ssc.start()
            backend = ssc.spark_context.backend
            assert isinstance(backend, ProcessPoolBackend)
            await advance_batches(ssc, warmup)
            traffic = []
            for _ in range(measured):
                before = backend.traffic.sent + backend.traffic.received
                await advance_batches(ssc, 1)
                traffic.append(backend.traffic.sent + backend.traffic.received - before)
            history = ssc.batch_history[warmup:]
            workers_mb = sum(_rss_mb(pid) for pid in backend.worker_pids())
            await ssc.stop()
    if ssc.errors:
        raise ssc.errors[0]
    delays = [d for info in history if (d := info.processing_delay) is not None]
    return {
        "operation": operation,
        "keys": keys,
        "median_ms": round(statistics.median(delays) * 1000, 1),
        "driver_bytes_per_batch": int(statistics.median(traffic)),
        "workers_rss_mb": round(workers_mb, 1),
    }


async def main(quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    sizes = SIZES[:2] if quick else SIZES
    measured = 4 if quick else 10
    rows = []
    for operation in ("update_state_by_key", "map_with_state"):
        for keys in sizes:
            row = await run(operation, keys, measured)
            print(row, flush=True)
            rows.append(row)
    return {
        "description": __doc__.split("\n\n")[0],
        "master": MASTER,
        "records_per_batch": RECORDS_PER_BATCH,
        "measured_batches": measured,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": rows,
        "runtime_s": round(time.perf_counter() - started, 1),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# State cost per batch",
        "",
        f"{report['records_per_batch']:,} records per batch for existing keys, master "
        f"{report['master']}, median over {report['measured_batches']} batches after 2 "
        "warm-up batches (the first ships the initial state to the workers once). "
        "\"Driver bytes\" crossed the driver's pipes to and from the workers per batch: "
        "the tasks and the batch's new records; state partitions stay on the workers. "
        "Workers RSS: both workers' resident memory at the end of the run. Generated by "
        "`python -m bench.state_cost`.",
        "",
        "| operation | state keys | processing (ms) | driver bytes / batch | workers RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['operation']} | {row['keys']:,} | {row['median_ms']:.1f} "
            f"| {row['driver_bytes_per_batch']:,} | {row['workers_rss_mb']:.0f} |"
        )
    lines += [
        "",
        f"Run time: {report['runtime_s']:g} s (Python {report['python']}, {report['machine']}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, fewer batches; print only")
    args = parser.parse_args()
    result = anyio.run(main, args.quick)
    print(markdown(result))
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "state_cost.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "state_cost.md").write_text(markdown(result))
