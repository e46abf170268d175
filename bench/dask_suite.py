"""W1-W3 on ``dask-local[2]`` in the same run as ``local[2]`` and PySpark (issue 16).

``python -m bench dask [--quick] [--workloads W1 W2 ...]``: the suite's method (``bench.method``)
with the three peers, each in its own runner process, in turn, per workload. Fewer sizes and
measured batches than ``python -m bench all``, so that one run stays within minutes on a
shared machine; a run of some workloads keeps the saved results of the others (W3 starts
its size search from the saved W2). Results: ``bench/results/dask_throughput.{md,json}``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .method import Plan, SizeResult
from .pyspark_runner import pyspark_version
from .report import Summary, _ms, _rate, _ratio, _table, _verdict, sizes_table
from .suite import DASK, OURS, PYSPARK, Settings, run_throughput

PEERS = [OURS, DASK, PYSPARK]
SIZES = [200_000, 400_000, 800_000, 1_120_000, 1_600_000]
TARGET_SIZE = 800_000  # issue 16: dask-local[2] within 1.5x of local[2] at this W2 size
TARGET_RATIO = 1.5
TARGET_FLOOR = 0.050


def settings(quick: bool, workloads: list[str]) -> Settings:
    if quick:
        return Settings(True, [100_000, 400_000], Plan(warmup=1, measured=3, window_batches=4),
                        PEERS, workloads=workloads)
    return Settings(False, SIZES, Plan(warmup=2, measured=7), PEERS, workloads=workloads)


def run(quick: bool, workloads: list[str], saved: dict[str, Any] | None, say: Any) -> dict[str, Any]:
    began = time.time()
    chosen = settings(quick, workloads)
    log_dir = Path(tempfile.mkdtemp(prefix="aiostream-bench-dask-suite-"))
    say(f"runner logs in {log_dir}")
    earlier = dict(saved["throughput"]) if saved else {}
    throughput = run_throughput(chosen, log_dir, say, earlier)
    elapsed = dict(saved.get("elapsed_s_by_workload", {})) if saved else {}
    elapsed[" ".join(workloads)] = time.time() - began
    every = sorted(throughput)
    return {
        "settings": {**asdict(chosen), "workloads": every, "peers": [p.name for p in PEERS]},
        "pyspark_version": pyspark_version(),
        "throughput": throughput,
        "ceiling": {},
        "elapsed_s_by_workload": elapsed,
    }


# ---- the report -------------------------------------------------------------------------------


def _at(s: Summary, workload: str, peer: str, size: int) -> SizeResult | None:
    found = [r for r in s.sizes(workload, peer) if r.size == size and not math.isinf(r.median)]
    return found[0] if found else None


def throughput_table(s: Summary) -> str:
    rows = []
    for w in s.data["settings"]["workloads"]:
        local, dask, spark = (s.throughput(w, p.name) for p in PEERS)
        cells = [_rate(x) if x else s.why(w, p.name) for x, p in zip((local, dask, spark), PEERS,
                                                                        strict=True)]
        vs_local, vs_spark = _ratio(dask, local), _ratio(dask, spark)
        rows.append([w, *cells, "n/a" if vs_local is None else f"{vs_local:.2f}",
                     "n/a" if vs_spark is None else f"{vs_spark:.2f}x"])
    return _table(["workload", *(p.name for p in PEERS), "dask / local[2]", "dask / PySpark"], rows)


def figures_table(s: Summary) -> str:
    def floors(peer: str) -> list[float]:
        return [f.median for w in ("W1", "W2") if (f := s.floor(w, peer))]

    def bytes_at(peer: str) -> str:
        r = _at(s, "W2", peer, TARGET_SIZE)
        value = (r.extra or {}).get("driver_bytes_per_batch") if r else None
        return "n/a" if value is None else f"{value / 1024:,.0f} KiB"

    local, dask = (_at(s, "W2", p.name, TARGET_SIZE) for p in (OURS, DASK))
    spark = _at(s, "W2", PYSPARK.name, TARGET_SIZE)
    ratio = _ratio(dask.median if dask else None, local.median if local else None)
    dask_floor = floors(DASK.name)
    rows = [
        [f"W2 median processing per batch, N={TARGET_SIZE:,}",
         *(_ms(r.median) if r else "not run" for r in (local, dask, spark)),
         f"dask <= {TARGET_RATIO:g}x local[2]",
         "n/a" if ratio is None else f"{ratio:.2f}x {_verdict(ratio <= TARGET_RATIO)}"],
        ["per-batch floor (1,000 events; W1 / W2)",
         *(" / ".join(_ms(x) for x in floors(p.name)) or "n/a" for p in PEERS),
         f"dask < {TARGET_FLOOR * 1e3:.0f} ms",
         _verdict(max(dask_floor) < TARGET_FLOOR if dask_floor else None)],
        ["start to first completed batch (W1 floor run)",
         *(_ms(s.startup(p.name)) for p in PEERS), "-",
         "dask-local starts a scheduler and 2 worker processes"],
        [f"bytes driver <-> workers per batch (W2, N={TARGET_SIZE:,})",
         bytes_at(OURS.name), bytes_at(DASK.name), "-", "-", "local[2]: pipes; dask: plans, results"],
    ]
    return _table(["figure", *(p.name for p in PEERS), "target", "verdict"], rows)


def write(data: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    s = Summary(data)
    plan = s.plan
    took = ", ".join(f"{w}: {t / 60:.1f} min" for w, t in data["elapsed_s_by_workload"].items())
    mode = "quick (smoke test)" if s.quick else "full"
    header = (
        f"Mode: {mode}. PySpark {data.get('pyspark_version') or 'not installed'}. Sizes "
        f"{', '.join(f'{n:,}' for n in s.settings['sizes'])}; batch interval {plan.interval:g} s, "
        f"{plan.warmup} warm-up + {plan.measured} measured batches per size (W3: +"
        f"{plan.window_batches} to fill its window), fewer than `python -m bench all` to keep "
        f"the run short. Each peer in its own runner process, one after the other, per "
        f"workload ({took}), on a shared, noisy 2-core machine: compare within a workload's "
        "run. dask-local[2] = a Dask scheduler in the driver and two `dask worker` processes "
        "of one thread each.\n"
    )
    sections = [
        ("Sustainable throughput (events/s)", throughput_table(s)),
        ("Other figures", figures_table(s)),
        ("Processing time against N", sizes_table(s, [p.name for p in PEERS])),
    ]
    body = "\n\n".join(f"## {title}\n\n{table}" for title, table in sections)
    md, js = out / "dask_throughput.md", out / "dask_throughput.json"
    md.write_text(f"# dask_throughput\n\n{header}\n{body}\n")
    js.write_text(json.dumps(data, indent=1, default=float))
    return [md, js]


def load(out: Path) -> dict[str, Any] | None:
    path = out / "dask_throughput.json"
    return json.loads(path.read_text()) if path.exists() else None
