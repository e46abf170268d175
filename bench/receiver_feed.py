"""W1 and W2 fed with new data every batch: from a receiver, against the pre-placed figure
and a hand-written asyncio + ProcessPoolExecutor(2) loop, in one run (issue 14).

The machine is shared, so the peers are measured interleaved: in each round every peer
runs every size once (its own subprocess, ``bench.receiver_runner``: warm-up batches, then
measured ones at the 1 s interval), in a shuffled order, and a peer's figure at a size is
the median processing time over all its measured batches of all rounds. Throughput at a
size is N over that median; a peer's sustainable throughput is that of the largest size
whose median stays under the interval (and, from a receiver, whose batches each held N).
The W2 runs at N = 800,000 also give each peer's CPU per batch: the driver process and its
workers, separately.

In the same rounds, right after the pool's run of each size, the bare work: the per-record
work alone (the pool's chunk functions over the same chunks, one process, no loop, pool or
engine), median CPU seconds per batch. No engine on two cores can run a batch in less than
half of it, so N over half the bare work is the 2-core ceiling, and a target above it
cannot be reached. Then the same work on two processes at once (its chunks already in
place), median wall time per batch: what two cores of this machine make of it.

    python -m bench.receiver_feed [--quick] [--rounds R] [--add] [--workload W1|W2]

Writes bench/results/receiver_feed.json and bench/results/receiver_feed.md; ``--add``
appends its rounds to the saved JSON's (each run under the bench lock stays short).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from .cost_cli import RESULTS, run_benchmark
from .method import Job, Plan
from .procmem import run_child

MODULE = "bench.receiver_runner"
PEERS = {
    "aiostream-receiver": "aiostream local[2], from a receiver (raw lines)",
    "aiostream-preplaced": "aiostream local[2], pre-placed (parallelize)",
    "asyncio-pool": "asyncio + ProcessPoolExecutor(2)",
}
BARE = "bare-work"
BARE_2 = "bare-work-2"
SIZES = {"W1": [400_000, 560_000, 800_000, 1_120_000], "W2": [560_000, 800_000, 1_120_000, 1_600_000]}
CPU_SIZE = 800_000
CORES = 2
TARGET_OVER_POOL = 1.5


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, help="rounds to run (default 3, 1 with --quick)")
    parser.add_argument("--add", action="store_true",
                        help="append the rounds to those of the saved receiver_feed.json")
    parser.add_argument("--workload", choices=sorted(SIZES), action="append",
                        help="run only this workload (repeatable; default both)")


def run(quick: bool, rounds: int | None = None, add: bool = False,
        workload: list[str] | None = None, say: Any = print) -> dict[str, Any]:
    plan = Plan(warmup=2, measured=3) if quick else Plan(warmup=3, measured=5)
    runs: list[dict[str, Any]] = []
    if add:
        saved = json.loads((RESULTS / "receiver_feed.json").read_text())
        if Plan(**saved["plan"]) != plan:
            raise SystemExit(f"--add: the saved rounds ran {saved['plan']}, not {plan}")
        runs = saved["runs"]
    log_dir = Path(tempfile.mkdtemp(prefix="aiostream-receiver-feed-"))
    say(f"runner logs in {log_dir}")
    chosen = workload or list(SIZES)
    order = [(w, n, e) for w in chosen for n in SIZES[w] for e in PEERS]
    first = max((r["round"] for r in runs if r["workload"] in chosen), default=-1) + 1
    rng = random.Random(14 + first)
    for round_index in range(first, first + (rounds or (1 if quick else 3))):
        rng.shuffle(order)
        for workload, size, engine in _with_bare_work(order):
            job = Job(workload, engine, "local[2]", [size], 0, floor=False, plan=plan)
            before, started = _cpu_seconds(), time.monotonic()
            child = run_child(MODULE, job.to_json(), 600, log_dir)
            after, wall = _cpu_seconds(), time.monotonic() - started
            sizes = (child.result or {}).get("sizes") or []
            result = sizes[0] if sizes else {"times": [], "warmup": plan.warmup, "aborted": True,
                                             "extra": {"error": f"failed, see {child.log}"}}
            others = (after[0] - before[0] - (after[1] - before[1])) / wall
            runs.append({"round": round_index, "workload": workload, "size": size,
                         "engine": engine, "other_cores": others, **result})
            measured = result["times"][result["warmup"]:]
            say(f"round {round_index} {workload} N={size:,} {engine}: median "
                f"{statistics.median(measured) if measured else float('nan'):.3f} s "
                f"(other processes {others:.2f} cores)")
    return {"plan": plan.__dict__, "runs": runs,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average": os.getloadavg(), "finished": time.time()}


def _with_bare_work(order: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """The order with the bare work of each size (one process, then two) right after the
    pool's run of it: this
    machine's speed drifts by tens of percent over minutes, and the ceiling is judged
    against the pool, so the two are measured side by side."""
    out = []
    for job in order:
        out.append(job)
        if job[2] == "asyncio-pool":
            out += [(job[0], job[1], BARE), (job[0], job[1], BARE_2)]
    return out


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds the machine spent busy (stolen by its host included), and those of this
    process and its children that ended: the difference over a run is what other
    processes took from it."""
    m = psutil.cpu_times()
    mine = os.times()
    return (m.user + m.nice + m.system + m.irq + m.softirq + m.steal,
            mine.user + mine.system + mine.children_user + mine.children_system)


def figures(results: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Per (workload, size, engine): median over every measured batch of every round,
    whether all its runs passed (no aborted run), and the mean CPU per batch."""
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    for run in results["runs"]:
        key = (run["workload"], run["size"], run["engine"])
        entry = out.setdefault(key, {"times": [], "ok": True, "driver": [], "workers": []})
        entry["times"] += run["times"][run["warmup"]:]
        entry["ok"] = entry["ok"] and not run.get("aborted") and bool(run["times"])
        extra = run.get("extra", {})
        if "driver_cpu_per_batch_s" in extra:
            entry["driver"].append(extra["driver_cpu_per_batch_s"])
            entry["workers"].append(extra["workers_cpu_per_batch_s"])
    for entry in out.values():
        entry["median"] = statistics.median(entry["times"]) if entry["times"] else None
    return out


def sustainable(by_key: dict[tuple[str, int, str], dict[str, Any]], workload: str,
                engine: str) -> tuple[int, float] | None:
    """(N, N / median) of the largest size that kept up."""
    passing = [(n, n / e["median"]) for (w, n, p), e in by_key.items()
               if w == workload and p == engine and e["ok"] and e["median"] and e["median"] < 1.0]
    return max(passing) if passing else None


def ceiling(by_key: dict[tuple[str, int, str], dict[str, Any]], workload: str,
            size: int) -> tuple[float, float] | None:
    """(bare work CPU per batch, N / (that / CORES)): the most any engine could do."""
    bare = (by_key.get((workload, size, BARE)) or {}).get("median")
    return (bare, size / (bare / CORES)) if bare else None


def measured_ceiling(by_key: dict[tuple[str, int, str], dict[str, Any]], workload: str,
                     size: int) -> float | None:
    """N over the median wall time of the bare work on two processes at once."""
    wall = (by_key.get((workload, size, BARE_2)) or {}).get("median")
    return size / wall if wall else None


def table(results: dict[str, Any]) -> str:
    plan = Plan(**results["plan"])
    by_key = figures(results)
    lines = [
        "# W1 and W2 with new data every batch (bench/receiver_feed.py)",
        "",
        f"{results['machine']}; load average at the end {results['load_average'][0]:.1f}; "
        f"{_others(results['runs'])} (the machine is shared: the peers ran interleaved, "
        f"{_rounds(results['runs'])}, each "
        f"size run {plan.warmup} warm-up + {plan.measured} measured 1 s batches). Medians over "
        "every measured batch of every round; throughput = N / median.",
        "",
        "| workload | N | " + " | ".join(PEERS.values())
        + " | receiver / pre-placed | receiver / asyncio pool | bare work, CPU / batch "
        f"| {CORES}-core ceiling | bare work on {CORES} processes | {TARGET_OVER_POOL}x the pool "
        "| that / ceiling | that / bare work on 2 processes |",
        "| --- | ---: " + "| ---: " * (len(PEERS) + 8) + "|",
    ]
    for workload, sizes in SIZES.items():
        for size in sizes:
            found = [by_key.get((workload, size, e)) for e in PEERS]
            cells = [_cell(size, f) for f in found]
            rec, pre, pool = (size / f["median"] if f and f["median"] else None for f in found)
            bare, limit = ceiling(by_key, workload, size) or (None, None)
            wanted = TARGET_OVER_POOL * pool if pool else None
            two = measured_ceiling(by_key, workload, size)
            lines.append(f"| {workload} | {size // 1000}k | {' | '.join(cells)} | "
                         f"{_ratio(rec, pre)} | {_ratio(rec, pool)} | {_seconds(bare)} | "
                         f"{_rate(limit)} | {_rate(two)} | {_rate(wanted)} | "
                         f"{_ratio(wanted, limit)} | {_ratio(wanted, two)} |")
    lines += ["", "Sustainable (largest N above whose median stays under 1 s):", ""]
    for workload in SIZES:
        best = {e: sustainable(by_key, workload, e) for e in PEERS}
        parts = [f"{PEERS[e]} {b[1]:,.0f}/s (N={b[0] // 1000}k)" if b else f"{PEERS[e]} -"
                 for e, b in best.items()]
        lines.append(f"- {workload}: " + "; ".join(parts))
    lines += ["", "Targets (sustainable figures): from a receiver >= 0.95x pre-placed and >= 1.5x "
              "the asyncio pool.", ""]
    for workload in SIZES:
        rec, pre, pool = (sustainable(by_key, workload, e) for e in PEERS)
        lines.append(f"- {workload}: {_target(rec, pre, 0.95)} of pre-placed; "
                     f"{_target(rec, pool, TARGET_OVER_POOL)} of the asyncio pool")
    lines += ["", f"The bare work and its {CORES}-core ceiling: the per-record work alone (the "
              "pool's chunk functions over the same chunks in one process, no loop, no pool, "
              "no engine, measured right after the pool's run of the size), median CPU "
              f"seconds per batch. No engine on {CORES} cores runs a batch in less than "
              f"1/{CORES} of it, so N over that is the most any engine could sustain at N, with "
              "no driver, no scheduling and perfect parallelism. The bare work on "
              f"{CORES} processes (the same chunks split over {CORES} forked processes that "
              "hold them, started at once) is N over its median wall time: what "
              f"{CORES} cores of this machine do with that work alone. The columns above set "
              f"{TARGET_OVER_POOL}x the pool's throughput at each N against it. The target, "
              f"{TARGET_OVER_POOL}x the pool's sustainable figure, against the highest ceiling "
              "of any size (where half the bare work fits the interval):", ""]
    for workload, sizes in SIZES.items():
        pool = sustainable(by_key, workload, "asyncio-pool")
        bounds = [(b[1], n) for n in sizes if (b := ceiling(by_key, workload, n)) and b[0] / CORES < 1.0]
        if not pool or not bounds:
            lines.append(f"- {workload}: not measured")
            continue
        wanted, (limit, at) = TARGET_OVER_POOL * pool[1], max(bounds)
        verdict = "above it: unreachable" if wanted > limit else "within it: reachable in principle"
        two = max(filter(None, (measured_ceiling(by_key, workload, n) for n in sizes)), default=None)
        lines.append(f"- {workload}: {TARGET_OVER_POOL}x the pool's {_rate(pool[1])} (N="
                     f"{pool[0] // 1000}k) = {_rate(wanted)}; highest ceiling {_rate(limit)} (N="
                     f"{at // 1000}k); {TARGET_OVER_POOL}x the pool is {wanted / limit:.2f}x it, "
                     f"{verdict}; the bare work on {CORES} processes did {_rate(two)} at most, "
                     f"{TARGET_OVER_POOL}x the pool is {_ratio(wanted, two)} that")
    lines += [
        "",
        f"CPU per batch, W2 at N = {CPU_SIZE:,} (seconds of CPU per 1 s batch, mean over the "
        "measured batches and rounds; median processing time beside; the total against "
        "the bare work's median CPU per batch):",
        "",
        "| peer | driver CPU / batch | workers' CPU / batch | total / bare work | median processing |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    bare, _ = ceiling(by_key, "W2", CPU_SIZE) or (None, None)
    for engine, name in PEERS.items():
        entry = by_key.get(("W2", CPU_SIZE, engine), {})
        driver = statistics.mean(entry["driver"]) if entry.get("driver") else None
        workers = statistics.mean(entry["workers"]) if entry.get("workers") else None
        total = driver + workers if driver is not None and workers is not None else None
        lines.append(f"| {name} | {_seconds(driver)} | {_seconds(workers)} | "
                     f"{_ratio(total, bare)} | {_seconds(entry.get('median'))} |")
    lines.append(f"| the bare work (one process) | - | {_seconds(bare)} | 1.00x | - |")
    lines += ["", "The asyncio pool does the same work per record (decode, parse, reduce per key) in "
              "its two workers and merges four dicts on the loop: the CPU a batch costs, driver "
              "and workers together, is what bounds both on two cores, and the engine's share "
              "beyond that work (tasks, the shuffle of reduce_by_key) is the difference between "
              "those totals above."]
    return "\n".join(lines) + "\n"


def _cell(size: int, entry: dict[str, Any] | None) -> str:
    if not entry or not entry["median"]:
        return "-"
    note = "" if entry["ok"] and entry["median"] < 1.0 else " (behind)"
    return f"{size / entry['median']:,.0f}/s, {entry['median']:.2f} s{note}"


def _target(ours: tuple[int, float] | None, peer: tuple[int, float] | None, target: float) -> str:
    if not ours or not peer:
        return "not measured"
    ratio = ours[1] / peer[1]
    return f"{ratio:.2f}x ({'met' if ratio >= target else 'missed'})"


def _rounds(runs: list[dict[str, Any]]) -> str:
    rounds = {w: len({r["round"] for r in runs if r["workload"] == w}) for w in SIZES}
    return "rounds: " + ", ".join(f"{w} {n}" for w, n in rounds.items())


def _others(runs: list[dict[str, Any]]) -> str:
    """What other processes took of the machine during the runs."""
    cores = [r["other_cores"] for r in runs if "other_cores" in r]
    if not cores:
        return "CPU of other processes not measured"
    return ("the rest of the machine (other processes, kernel threads) took "
            f"{statistics.mean(cores):.2f} cores on average during the "
            f"runs ({max(cores):.2f} at most)")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def main() -> None:
    run_benchmark("receiver_feed", __doc__.split("\n")[0], "short runs", run, table, options)


if __name__ == "__main__":
    main()
