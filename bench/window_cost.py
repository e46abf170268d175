"""Window cost per slide: reduce_by_key_and_window with and without an inverse function.

For window/slide ratios 1, 10, 30, 120 (slide = batch), every batch carries the same data
(20,000 readings keyed by 1,000 device ids). The figure is the median processing time of a
batch (``BatchInfo.processing_delay``) once the window has filled; the plain per-batch
``reduce_by_key`` of the same data is the reference. With an inverse function a slide
costs the batch entering and the batch leaving, so it stays flat as the window grows;
without one the whole window is reduced again, so it grows with the window.

Batches are driven by a manual clock that also runs at wall speed between ticks, so no
batch waits for real time and the processing delays are real.

    python -m bench.window_cost [--quick]

Writes bench/results/window_cost.json and bench/results/window_cost.md.
"""

from __future__ import annotations

import operator
import statistics
import tempfile
import time
from typing import Any

from aiostream_engine.clock import ManualClock
from aiostream_engine.context import StreamingContext
from aiostream_engine.testing import advance_batches

from .cost_cli import cost_report, run_cost_benchmark

RATIOS = (1, 10, 30, 120)
RECORDS_PER_BATCH = 20_000
KEYS = 1_000
MASTER = "local[2]"


class WallOffsetClock(ManualClock):
    """Batch ticks are set by hand; between two ticks time runs at wall speed."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self._mark = time.perf_counter()

    def now(self) -> float:
        return self._now + (time.perf_counter() - self._mark)

    def set_time(self, t: float) -> None:
        self._mark = time.perf_counter()
        super().set_time(max(t, self._now))


def batch_data() -> list[tuple[str, float]]:
    """Readings keyed by device id, e.g. ("device-0421", 23.5)."""
    return [
        (f"device-{(i * 7919) % KEYS:04d}", float(i % 50) / 2) for i in range(RECORDS_PER_BATCH)
    ]


async def run(case: str, ratio: int, measured: int) -> list[float]:
    """Processing times (s) of the ``measured`` batches after the window filled."""
    warmup = max(ratio, 3)  # the plain reference runs as many batches before it is measured
    total = warmup + measured
    data = batch_data()
    clock = WallOffsetClock()
    with tempfile.TemporaryDirectory(prefix="window-cost-") as directory:
        return await _run(case, ratio, warmup, total, data, clock, directory)


async def _run(
    case: str,
    ratio: int,
    warmup: int,
    total: int,
    data: list[tuple[str, float]],
    clock: WallOffsetClock,
    directory: str,
) -> list[float]:
    async with StreamingContext(1.0, master=MASTER, clock=clock) as ssc:
        # Inverse windows require checkpointing; every case runs with it, so the figures
        # compare the windows' work, not the per-batch metadata write only one case does.
        ssc.checkpoint(directory)
        stream = ssc.queue_stream([list(data) for _ in range(total)])
        if case == "plain":
            out = stream.reduce_by_key(operator.add)
        elif case == "inverse":
            out = stream.reduce_by_key_and_window(operator.add, operator.sub, float(ratio), 1.0)
        else:
            out = stream.reduce_by_key_and_window(operator.add, None, float(ratio), 1.0)
        counts: list[int] = []

        async def count(rdd: Any) -> None:
            counts.append(await rdd.acount())

        out.foreach_rdd(count)
        await ssc.start()
        await advance_batches(ssc, total)
        history = ssc.batch_history
        await ssc.stop()
    if ssc.errors:
        raise ssc.errors[0]
    assert counts[-1] == KEYS, counts[-1]
    return [d for info in history[warmup:] if (d := info.processing_delay) is not None]


def summary(delays: list[float], rounds: list[float]) -> dict[str, Any]:
    """``median_ms`` is the best round's median: other load on the machine only ever adds
    time, so the least disturbed round is the closest to the cost itself."""
    ordered = sorted(delays)
    return {
        "slides": len(delays),
        "median_ms": round(min(rounds) * 1000, 2),
        "pooled_median_ms": round(statistics.median(delays) * 1000, 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
        "round_medians_ms": [round(m * 1000, 2) for m in rounds],
    }


async def main(quick: bool) -> dict[str, Any]:
    """Rounds interleave every configuration, so load from elsewhere on the machine hits
    them alike; each time is a configuration's best round median, each "x plain" the
    median over rounds of its round median over the plain reference's in that round."""
    measured = 8 if quick else 20
    rounds = 1 if quick else 7
    ratios = (1, 10) if quick else RATIOS
    started = time.perf_counter()
    configs = [(case, r) for r in ratios for case in ("plain", "inverse", "naive")]
    delays: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    medians: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    for round_index in range(rounds):
        for case, ratio in configs:
            got = await run(case, ratio, measured)
            delays[(case, ratio)] += got
            medians[(case, ratio)].append(statistics.median(got))
            print(f"round {round_index + 1} {case:>7} ratio {ratio:>3}: "
                  f"{statistics.median(got) * 1000:.1f} ms", flush=True)
    rows: list[dict[str, Any]] = [
        {
            "ratio": r,
            **{
                case: summary(delays[(case, r)], medians[(case, r)])
                for case in ("plain", "inverse", "naive")
            },
        }
        for r in ratios
    ]
    for row in rows:
        plain_rounds = row["plain"]["round_medians_ms"]
        for case in ("inverse", "naive"):
            paired = [c / p for c, p in zip(row[case]["round_medians_ms"], plain_rounds, strict=True)]
            row[case]["x_plain"] = round(statistics.median(paired), 2)
            row[case]["x_plain_rounds"] = [round(x, 2) for x in paired]
    top = rows[-1]
    return cost_report(
        __doc__, started, rows,
        master=MASTER, records_per_batch=RECORDS_PER_BATCH, keys=KEYS, slide_s=1.0,
        measured_slides=measured, rounds=rounds,
        inverse_vs_plain_at_largest_ratio=top["inverse"]["x_plain"],
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Window cost per slide",
        "",
        f"{report['records_per_batch']:,} keyed records over {report['keys']:,} keys per batch, "
        f"slide = batch = {report['slide_s']:g} s, master {report['master']}; median "
        f"processing time per slide over {report['measured_slides']} slides after the window "
        f"filled (`BatchInfo.processing_delay`), in {report['rounds']} interleaved rounds. "
        "The plain per-batch `reduce_by_key` of the same data is the reference, run for as "
        "many batches; every configuration runs with checkpointing on (inverse windows "
        "require it). Times are each configuration's best round (load from elsewhere only "
        "adds time); \"x plain\" is the median over rounds of the ratio to the plain "
        "reference of the same round (every round's figures are in the JSON). Generated by "
        "`python -m bench.window_cost`.",
        "",
        "| window / slide | plain reduce_by_key (ms) | with inverse (ms) | x plain "
        "| without inverse (ms) | x plain |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        plain = row["plain"]["median_ms"]
        inv, naive = row["inverse"], row["naive"]
        lines.append(
            f"| {row['ratio']} | {plain:.1f} | {inv['median_ms']:.1f} | {inv['x_plain']:.2f} "
            f"| {naive['median_ms']:.1f} | {naive['x_plain']:.2f} |"
        )
    lines += [
        "",
        f"With inverse at the largest ratio: {report['inverse_vs_plain_at_largest_ratio']:.2f}x "
        "the plain reduce_by_key.",
        f"Run time: {report['runtime_s']:g} s (Python {report['python']}, {report['machine']}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_cost_benchmark(
        "window_cost", __doc__.split("\n\n")[0], "ratios 1 and 10 only, fewer slides", main, markdown
    )
