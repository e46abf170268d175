"""Backpressure under a 3x overload, with and without it: the picture of Spark's
backpressure talk, measured here.

    flock /work/locks/bench.lock python -m bench.backpressure [--batches 60] [--batch 0.2]

A publisher process (``bench.publisher``) offers 3x what a CPU-heavy map on local[2]
processes (measured first, in the same run) through a socket stream, for ``--batches``
batch intervals, then stops; the engine runs once with backpressure (until every published
line is processed) and once without (as long as the first run's overload). Per batch:
offered rate (what the publisher had published per second), accepted rate (records the
batch took per second), processing rate (records / processing time) and scheduling delay.
Writes ``bench/results/backpressure.{png,md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

from aiostream_engine import StreamingContext

from .overload import Run, calibrate, collect_into, heavy, publisher, run_overload

RESULTS = Path(__file__).resolve().parent / "results"
SETTLE = 15  # batches left out of the settled medians


def engine_conf(backpressure: bool) -> dict[str, Any]:
    return {"backpressure_enabled": backpressure, "block_interval": 0.05, "worker_nice": 0}


async def socket_run(
    capacity: float, backpressure: bool, *, batch: float, batches: int, overload: float,
    drain: bool, stop_after: int | None = None, conf: dict[str, Any] | None = None,
) -> Run:
    """One run: a publisher offering ``overload`` x ``capacity`` for ``batches`` batch
    intervals into a socket stream whose lines go through the heavy map on local[2];
    it ends once ``stop_after`` (default ``batches``) batches completed and, with
    ``drain``, every published line was processed."""
    offered = overload * capacity
    seconds = batches * batch + 1.0
    run = Run(batch, offered)
    async with publisher("socket", offered, seconds) as (process, messages):
        port = (await messages.__anext__())["ready"]
        settings = {**engine_conf(backpressure), **(conf or {})}
        async with StreamingContext(batch, master="local[2]", conf=settings) as ssc:
            collect_into(ssc.socket_text_stream("127.0.0.1", port).map(heavy), run)
            await ssc.start()
            run.start = time.monotonic()
            await run_overload(
                ssc, run, messages,
                min_batches=stop_after or batches, drain=drain,
                exclude_pids={process.pid},
            )
            await ssc.stop(graceful=False)
    return run


def series(run: Run) -> dict[str, list[float]]:
    """Per batch, on the run's clock: time, offered, accepted and processing rates,
    scheduling delay."""
    t0 = run.batches[0].batch_time - run.batch_interval
    published = run.published
    out: dict[str, list[float]] = {k: [] for k in ("t", "offered", "accepted", "processing", "delay")}
    for info in run.batches:
        t = info.batch_time - t0
        out["t"].append(t)
        out["offered"].append(_offered_near(published, t, run.batch_interval))
        out["accepted"].append(info.num_records / run.batch_interval)
        out["processing"].append(
            info.num_records / info.processing_delay if info.processing_delay else 0.0
        )
        out["delay"].append(info.scheduling_delay or 0.0)
    return out


def _offered_near(published: list[tuple[float, int]], t: float, span: float) -> float:
    """What the publisher published per second around ``t`` (its own reports)."""
    before = [(s, n) for s, n in published if s <= t]
    after = [(s, n) for s, n in published if s <= t - span]
    if not before or not after or before[-1][0] == after[-1][0]:
        return 0.0
    return (before[-1][1] - after[-1][1]) / (before[-1][0] - after[-1][0])


def summary(run: Run, batches: int) -> dict[str, float]:
    settled = run.batches[SETTLE:batches]
    delays = [i.scheduling_delay or 0.0 for i in run.batches[:batches]]
    rss = [s.rss_mb for s in run.samples if s.batches >= SETTLE]
    return {
        "batches": len(run.batches),
        "offered_per_s": run.offered_rate,
        "accepted_per_s": run.accepted_rate(SETTLE, batches),
        "processing_per_s": run.processing_rate(SETTLE, batches),
        "median_delay_s": statistics.median(i.scheduling_delay or 0.0 for i in settled),
        "max_delay_s": max(delays),
        "last_delay_s": delays[-1],
        "rss_growth_mb": (max(rss) - min(rss)) if rss else 0.0,
        "processed_once": float(
            run.total_published is not None
            and sorted(run.seen) == list(range(run.total_published))
        ),
    }


def plot(runs: dict[str, Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(runs), figsize=(6 * len(runs), 6.5), sharex="col",
                             squeeze=False)
    for col, (name, run) in enumerate(runs.items()):
        s = series(run)
        top, bottom = axes[0][col], axes[1][col]
        top.plot(s["t"], s["offered"], label="offered (publisher)", color="tab:red")
        top.plot(s["t"], s["accepted"], label="accepted (records taken)", color="tab:blue")
        top.plot(s["t"], s["processing"], label="processing rate", color="tab:green",
                 alpha=0.6, linewidth=0.8)
        top.set_ylabel("records / s")
        top.set_title(name)
        top.legend(fontsize=8)
        bottom.plot(s["t"], s["delay"], color="tab:purple")
        bottom.axhline(run.batch_interval, color="grey", linestyle="--", linewidth=1,
                       label="one batch interval")
        bottom.set_ylabel("scheduling delay (s)")
        bottom.set_xlabel("seconds")
        bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(capacity: float, summaries: dict[str, dict[str, float]], batch: float) -> str:
    lines = [
        f"Backpressure under a 3x overload (socket stream, CPU-heavy map on local[2], batch "
        f"{batch:g} s). Job capacity measured first: {capacity:.0f} records/s. Rates are "
        f"over batches {SETTLE}.. of the overload; delays in seconds.",
        "",
        "| run | offered/s | accepted/s | processing/s | accepted / processing | median delay "
        "| max delay | delay at the end | RSS growth (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in summaries.items():
        lines.append(
            f"| {name} | {s['offered_per_s']:.0f} | {s['accepted_per_s']:.0f} | "
            f"{s['processing_per_s']:.0f} | {s['accepted_per_s'] / s['processing_per_s']:.2f} | "
            f"{s['median_delay_s']:.3f} | {s['max_delay_s']:.3f} | {s['last_delay_s']:.3f} | "
            f"{s['rss_growth_mb']:.1f} |"
        )
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> None:
    capacity = await calibrate()
    common = {"batch": args.batch, "batches": args.batches, "overload": args.overload}
    with_bp = await socket_run(capacity, True, drain=True, **common)
    without = await socket_run(capacity, False, drain=False, **common)
    runs = {"with backpressure": with_bp, "without backpressure": without}
    summaries = {name: summary(run, args.batches) for name, run in runs.items()}
    RESULTS.mkdir(exist_ok=True)
    plot(runs, RESULTS / "backpressure.png")
    (RESULTS / "backpressure.md").write_text(table(capacity, summaries, args.batch))
    (RESULTS / "backpressure.json").write_text(json.dumps({
        "capacity_per_s": capacity, "settings": vars(args), "summary": summaries,
        "series": {name: series(run) for name, run in runs.items()},
        "rss": {name: [asdict(s) for s in run.samples] for name, run in runs.items()},
    }, indent=1))
    print((RESULTS / "backpressure.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=float, default=0.5)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--overload", type=float, default=3.0)
    anyio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
