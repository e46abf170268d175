"""The Dask backend against local[2], and what a cluster would need (issue 16).

``python -m bench.dask_scaling [--quick]`` measures, on this machine, in one run:

- W2 at N=800,000 (quick: 400,000) on ``local[2]`` and ``dask-local[2]``: median processing
  time per batch (target: Dask within 1.5x), the per-batch floor at 1,000 events (target
  under 50 ms), start to first completed batch, and bytes between the driver and the
  workers per batch; each peer in its own runner process, as in the suite;
- W2S (every pair through the shuffle) at two sizes on both: whether the driver's bytes per
  batch grow with the shuffle;
- per-task overhead: the latency of a one-task job, and the tasks per second, driver CPU
  and scheduler CPU per task of a 400-task job, on ``local[2]``, ``dask-local[2]`` (its
  scheduler in the driver) and ``dask://`` (a ``dask scheduler`` process of its own);

and from those figures, on paper, the cluster W2 needs at 1, 10 and 100 million events
per second and what limits it first. Results: ``bench/results/dask_scaling.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import psutil

from .method import FLOOR_SIZE, Job, Plan, SizeResult
from .procmem import run_child

RESULTS = Path(__file__).resolve().parent / "results"
MASTERS = ["local[2]", "dask-local[2]"]
PLAN = Plan(warmup=3, measured=10)
QUICK_PLAN = Plan(warmup=2, measured=5)
PROBE_TASKS = 400
PROBE_LATENCY_RUNS = 40
EVENT_BYTES = 125  # a W2 reading (bench.workloads)
NIC_BYTES_S = 1.25e9  # a 10 GbE link
MACHINE_CORES = 16  # worker cores per machine, for the paper cluster


# ---- W2 and W2S through the engine runner ---------------------------------------------------


def _runner(workload: str, master: str, sizes: list[int], plan: Plan, floor: bool,
            log_dir: Path) -> dict[str, Any]:
    job = Job(workload, "aiostream", master, sizes, 0, floor=floor, plan=plan)
    timeout = (len(sizes) + 1) * (plan.batches_for(workload) * plan.interval * 3 + 90)
    run = run_child("bench.engine_runner", job.to_json(), timeout, log_dir)
    result = run.result or {"available": False, "reason": f"runner failed, see {run.log}"}
    result["peak_rss_mb"] = run.peak_mb()
    return result


def _size(result: dict[str, Any], size: int) -> SizeResult | None:
    for entry in result.get("sizes", []):
        if entry["size"] == size:
            return SizeResult.from_json(entry)
    return None


def _floor(result: dict[str, Any]) -> SizeResult | None:
    return SizeResult.from_json(result["floor"]) if result.get("floor") else None


# ---- per-task overhead ------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def _probe(master: str, scheduler_pid: int | None) -> dict[str, Any]:
    from aiostream_engine.conf import StreamingConf
    from aiostream_engine.executor.master import backend_for
    from aiostream_engine.executor.runner import TaskRunner
    from aiostream_engine.rdd.tasks import RecordsInput, TaskPlan

    conf = StreamingConf(worker_nice=0)
    runner = TaskRunner(backend_for(master, conf), conf)
    await runner.start()
    try:
        empty = TaskPlan(RecordsInput([]))
        await runner.run_tasks([empty] * 8, "warm-up")
        latencies = []
        for _ in range(PROBE_LATENCY_RUNS):
            began = time.perf_counter()
            await runner.run_tasks([empty], "one task")
            latencies.append(time.perf_counter() - began)
        scheduler_before = _cpu_s(scheduler_pid) if scheduler_pid else 0.0
        cpu_before, began = time.process_time(), time.perf_counter()
        await runner.run_tasks([empty] * PROBE_TASKS, "many tasks")
        wall = time.perf_counter() - began
        driver_cpu = time.process_time() - cpu_before
        scheduler_cpu = _cpu_s(scheduler_pid) - scheduler_before if scheduler_pid else None
    finally:
        await runner.stop()
    return {
        "master": master,
        "one_task_latency_ms": 1e3 * statistics.median(latencies),
        "tasks_per_s": PROBE_TASKS / wall,
        "driver_cpu_per_task_us": 1e6 * driver_cpu / PROBE_TASKS,
        "scheduler_cpu_per_task_us": None if scheduler_cpu is None else 1e6 * scheduler_cpu / PROBE_TASKS,
    }


def measure_overhead() -> list[dict[str, Any]]:
    from tests.dask_cluster import DaskCluster  # the test suite's `dask scheduler` + workers

    rows = [anyio.run(_probe, master, None) for master in MASTERS]
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as directory:
        cluster = DaskCluster(Path(directory), workers=2)
        try:
            cluster.start()
            assert cluster.scheduler is not None
            row = anyio.run(_probe, cluster.master, cluster.scheduler.pid)
        finally:
            cluster.stop()
    row["master"] = "dask:// (2 workers)"
    return [*rows, row]


# ---- the run ------------------------------------------------------------------------------------


def run(quick: bool, say: Any) -> dict[str, Any]:
    began = time.time()
    plan = QUICK_PLAN if quick else PLAN
    size = 400_000 if quick else 800_000
    shuffle_sizes = [100_000, 400_000] if quick else [100_000, 800_000]
    log_dir = Path(tempfile.mkdtemp(prefix="aiostream-bench-dask-"))
    say(f"runner logs in {log_dir}")
    w2, w2s = {}, {}
    for master in MASTERS:
        say(f"W2 at N={size:,} on {master} ...")
        w2[master] = _runner("W2", master, [size], plan, True, log_dir)
        say(f"W2S at N={shuffle_sizes} on {master} ...")
        w2s[master] = _runner("W2S", master, shuffle_sizes, plan, False, log_dir)
    say("per-task overhead ...")
    overhead = measure_overhead()
    return {
        "quick": quick, "plan": asdict(plan), "size": size, "shuffle_sizes": shuffle_sizes,
        "w2": w2, "w2s": w2s, "overhead": overhead, "elapsed_s": time.time() - began,
        "cpu_count": os.cpu_count(),
    }


# ---- the report -------------------------------------------------------------------------------


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:.0f} ms" if x >= 0.01 else f"{x * 1e3:.1f} ms"


def _kb(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 1024:,.1f} KiB"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def comparison(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    size = data["size"]
    local, dask = (_size(data["w2"][m], size) for m in MASTERS)
    floors = [_floor(data["w2"][m]) for m in MASTERS]
    ratio = dask.median / local.median if local and dask else None
    floor = floors[1].median if floors[1] else None
    rows = [
        [f"W2 median processing per batch, N={size:,}", _ms(local.median if local else None),
         _ms(dask.median if dask else None), "Dask <= 1.5x local[2]",
         "n/a" if ratio is None else f"{ratio:.2f}x {'met' if ratio <= 1.5 else 'MISSED'}"],
        [f"W2 throughput at N={size:,}", _rate(local.throughput) if local else "n/a",
         _rate(dask.throughput) if dask else "n/a", "-", "-"],
        [f"per-batch floor (W2, {FLOOR_SIZE:,} events)", *(_ms(f.median if f else None) for f in floors),
         "< 50 ms", "n/a" if floor is None else ("met" if floor < 0.05 else "MISSED")],
        ["start to first completed batch (floor run)",
         *(_ms(f.startup_s if f else None) for f in floors), "-",
         "dask-local starts its cluster (2 worker processes)"],
        [f"bytes driver <-> workers per batch, W2 N={size:,}",
         *(_kb((s.extra or {}).get("driver_bytes_per_batch") if s else None) for s in (local, dask)),
         "-", "local[2]: pipes; Dask: plans, results"],
    ]
    table = _table(["figure", MASTERS[0], MASTERS[1], "target", "verdict"], rows)
    per_core = dask.throughput / 2 if dask else None
    return table, {"ratio": ratio, "floor": floor, "per_core": per_core}


def shuffle_table(data: dict[str, Any]) -> str:
    rows = []
    for n in data["shuffle_sizes"]:
        cells = []
        for master in MASTERS:
            s = _size(data["w2s"][master], n)
            cells += [_ms(s.median if s else None),
                      _kb((s.extra or {}).get("driver_bytes_per_batch") if s else None)]
        rows.append([f"{n:,}", f"{n * 0.03:,.0f} KiB", *cells])
    return _table(["N", "shuffle data (~30 B per pair)", f"{MASTERS[0]} processing",
                   f"{MASTERS[0]} driver bytes/batch", f"{MASTERS[1]} processing",
                   f"{MASTERS[1]} driver bytes/batch"], rows)


def overhead_table(data: dict[str, Any]) -> str:
    rows = [[
        r["master"], f"{r['one_task_latency_ms']:.1f} ms", f"{r['tasks_per_s']:,.0f}",
        f"{r['driver_cpu_per_task_us']:,.0f} us",
        "-" if r["scheduler_cpu_per_task_us"] is None else f"{r['scheduler_cpu_per_task_us']:,.0f} us",
    ] for r in data["overhead"]]
    return _table(["master", "one-task job latency", f"tasks/s ({PROBE_TASKS}-task job)",
                   "driver CPU per task", "scheduler CPU per task"], rows)


def _tasks_per_batch(cores: int) -> int:
    """One partition per core: P map tasks, P x P bucket tasks, P reduce tasks."""
    return 2 * cores + cores * cores


def _cores_for_tasks(tasks: float) -> float:
    """The P at which a batch is ``tasks`` tasks (P^2 + 2P = tasks)."""
    return (1 + tasks) ** 0.5 - 1


def _costs(data: dict[str, Any]) -> tuple[float, float] | None:
    """Tasks per second one scheduler core sustains, and the driver's CPU per task (s),
    both measured on dask://."""
    remote = next(r for r in data["overhead"] if r["master"].startswith("dask://"))
    if remote["scheduler_cpu_per_task_us"] is None:
        return None
    return 1e6 / max(remote["scheduler_cpu_per_task_us"], 1.0), remote["driver_cpu_per_task_us"] / 1e6


def paper(data: dict[str, Any], per_core: float | None) -> str:
    """The cluster W2 needs at 1, 10 and 100 million events/s, from this run's figures."""
    costs = _costs(data)
    if not per_core or costs is None:
        return "not computed: a measurement is missing"
    scheduler_rate, driver_s_per_task = costs
    rows = []
    for target in (1e6, 10e6, 100e6):
        cores = max(2, int(-(-target // per_core)))
        machines = -(-cores // MACHINE_CORES)
        tasks = _tasks_per_batch(cores)  # one batch per second
        driver_s = tasks * driver_s_per_task
        ingest = target * EVENT_BYTES
        limits = []
        if ingest >= 0.8 * NIC_BYTES_S:
            limits.append(f"receivers on the driver: {ingest / 1e9:.2f} GB/s, "
                          f"{ingest / NIC_BYTES_S:.0%} of a 10 GbE link")
        if tasks > scheduler_rate:
            limits.append(f"scheduler: {tasks:,} tasks/s > {scheduler_rate:,.0f}")
        if driver_s > 1:
            limits.append(f"driver planning: {driver_s:.1f} s of CPU per 1 s batch")
        rows.append([
            f"{target / 1e6:g}M", f"{cores:,} ({machines} x {MACHINE_CORES}-core)", f"{tasks:,}",
            f"{tasks / scheduler_rate:.2f}", f"{driver_s:.2f} s", f"{ingest / 1e9:.2f} GB/s",
            "; ".join(limits) or "none of the three",
        ])
    return _table(["W2 events/s", "worker cores (machines)", "tasks/s (1 s batches)",
                   "scheduler load", "driver CPU per batch", "input through the driver",
                   "what limits"], rows)


def limits(data: dict[str, Any], per_core: float | None) -> str:
    """The W2 rate at which each limit is reached, lowest first: what limits first."""
    costs = _costs(data)
    if not per_core or costs is None:
        return "not computed: a measurement is missing"
    scheduler_rate, driver_s_per_task = costs
    found = [
        ("receivers on the driver (input through one 10 GbE link)", NIC_BYTES_S / EVENT_BYTES,
         f"{EVENT_BYTES} B per event"),
        ("the scheduler's task rate (one core)", _cores_for_tasks(scheduler_rate) * per_core,
         f"{scheduler_rate:,.0f} tasks/s"),
        ("the driver's batch planning (one core)", _cores_for_tasks(1 / driver_s_per_task) * per_core,
         f"{1 / driver_s_per_task:,.0f} tasks/s"),
    ]
    found.sort(key=lambda row: row[1])
    rows = [[name, f"{rate / 1e6:.1f}M events/s", f"{rate / per_core:.0f}", basis]
            for name, rate, basis in found]
    return _table(["limit", "W2 rate where it is reached", "worker cores then", "from"], rows)


PAPER_NOTE = (
    "How the cluster table is worked out. Worker cores = events/s over W2's measured rate per "
    "dask-local worker core (the work is per record and parallel). A batch of P partitions "
    "(one per core) is P map tasks, P x P bucket tasks (each picks one reduce partition's "
    "bucket out of a map output, on the map task's worker) and P reduce tasks: the bucket "
    "tasks grow with the square of the cluster. Scheduler load = those tasks per second over "
    "the rate one scheduler core sustains (its CPU per task, measured on dask://); driver CPU "
    "per batch = tasks x the driver's CPU per task (plans pickled, futures awaited). Input "
    "through the driver: W2's ~125 B per event when receivers run on the driver; a direct "
    "Kafka stream fetches on the workers and takes that off the driver. Remedies once a "
    "limit is reached: direct Kafka ingest; fewer reduce partitions than map partitions "
    "(bucket tasks = map x reduce partitions); longer batches (tasks per second fall with "
    "the interval: 10 s batches, a tenth); and for the largest clusters a shuffle outside "
    "the task graph (Dask's peer-to-peer shuffle) instead of a bucket task per map and "
    "reduce partition. Per-core rates on a 2-core machine shared with other jobs are "
    "conservative."
)


def write(data: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    table, figures = comparison(data)
    mode = "quick (smoke test)" if data["quick"] else "full"
    plan = data["plan"]
    body = (
        f"# dask_scaling\n\nMode: {mode}. {plan['warmup']} warm-up + {plan['measured']} measured "
        f"1 s batches per size; each peer in its own runner process, one after the other, on a "
        f"shared, noisy {data['cpu_count']}-core machine (quote same-run ratios). Took "
        f"{data['elapsed_s'] / 60:.1f} min.\n\n"
        f"## dask-local[2] against local[2]\n\n{table}\n\n"
        "## Bytes through the driver against shuffle size (W2S: every pair shuffled)\n\n"
        f"{shuffle_table(data)}\n\n"
        f"## Per-task overhead\n\n{overhead_table(data)}\n\n"
        "## On paper: the cluster W2 needs\n\n"
        f"Measured W2 rate per dask-local worker core: "
        f"{_rate(figures['per_core']) if figures['per_core'] else 'n/a'} events/s.\n\n"
        f"{paper(data, figures['per_core'])}\n\n"
        "What limits first (1 s batches; each limit's rate from this run's costs):\n\n"
        f"{limits(data, figures['per_core'])}\n\n{PAPER_NOTE}\n"
    )
    md, js = out / "dask_scaling.md", out / "dask_scaling.json"
    md.write_text(body)
    js.write_text(json.dumps(data, indent=1, default=float))
    return [md, js]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dask_scaling", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer batches")
    parser.add_argument("--report", action="store_true", help="re-render from the saved JSON")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    if args.report:
        data = json.loads((out / "dask_scaling.json").read_text())
    else:
        data = run(args.quick, say)
    for path in write(data, out):
        say(f"wrote {path}")
    print((out / "dask_scaling.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

