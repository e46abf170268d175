"""Backpressure's control loop on a machine whose speed varies from batch to batch, simulated:
the engine's own RateController and PIDRateEstimator, fed the BatchInfos of a modelled job.

    python -m bench.rate_control_sim [--runs 300]

The model: a source offering more than the job can take, so each batch holds what the bound
in force let in during its interval (a new bound applies from the moment the batch that gave
it completed); a batch's processing time is its records over the job's speed then, the speed
being lognormal around the capacity with a given coefficient of variation per batch and
correlation between neighbouring batches (a busy shared machine); batches run one at a time.
A run passes as tests/rate/test_overload.py does: from batch 15 on, every scheduling delay
is below one batch interval. Writes ``bench/results/rate_control_sim.md``.

It compares Spark's bound (the estimate), the estimate less the headroom, and that capped by
the processing rate of the last batches (``backpressure_rate_window``).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from aiostream_engine.scheduler.batch_info import BatchInfo, StreamInputInfo
from aiostream_engine.scheduler.rate import PIDRateEstimator, RateController

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 0.3
BATCHES = 60
SETTLE = 15
CAPACITY = 5000.0  # records/s at the job's mean speed


@dataclass(frozen=True)
class Policy:
    name: str
    headroom: float
    rate_window: int


POLICIES = [
    Policy("Spark (the estimate)", 0.0, 0),
    Policy("headroom 0.1", 0.1, 0),
    Policy("headroom 0.2", 0.2, 0),
    Policy("headroom 0.1, rate window 5 (default)", 0.1, 5),
]
NOISE = [(0.1, 0.0), (0.2, 0.0), (0.2, 0.5), (0.3, 0.0), (0.3, 0.8)]


def simulate(policy: Policy, cv: float, rho: float, seed: int) -> tuple[bool, float]:
    """One run: (settled by batch 15 and stayed so, accepted / processing rate after it)."""
    rng = random.Random(seed)
    sigma = math.sqrt(math.log(1 + cv * cv))
    controller = RateController(
        "sim", [0], PIDRateEstimator(BATCH), initial_rate=CAPACITY / 2,
        headroom=policy.headroom, rate_window=policy.rate_window,
    )
    bounds: list[tuple[float, float]] = [(0.0, CAPACITY / 2)]  # (from time, bound)
    z = 0.0
    previous_end = 0.0
    delays, records, processing = [], [], []
    for k in range(BATCHES):
        start_of_interval, batch_time = k * BATCH, (k + 1) * BATCH
        taken = 0.0
        for i, (since, bound) in enumerate(bounds):
            until = bounds[i + 1][0] if i + 1 < len(bounds) else batch_time
            overlap = min(until, batch_time) - max(since, start_of_interval)
            if overlap > 0:
                taken += bound * overlap
        n = round(taken)
        z = rho * z + math.sqrt(1 - rho * rho) * rng.gauss(0.0, 1.0)
        speed = CAPACITY * math.exp(sigma * z - sigma * sigma / 2)
        start = max(batch_time, previous_end)
        end = start + n / speed
        previous_end = end
        info = BatchInfo(batch_time, {0: StreamInputInfo(0, n)}, batch_time, start, end)
        bound = controller.on_batch_completed(info)
        if bound is not None:
            bounds.append((end, bound))
        delays.append(start - batch_time)
        records.append(n)
        processing.append(end - start)
    over = [k for k, d in enumerate(delays) if d >= BATCH]
    settled = (over[-1] + 1 if over else 0) <= SETTLE
    accepted = sum(records[SETTLE:]) / ((BATCHES - SETTLE) * BATCH)
    processed = sum(records[SETTLE:]) / sum(processing[SETTLE:])
    return settled, accepted / processed


def table(runs: int) -> str:
    lines = [
        f"Backpressure's control loop, simulated ({runs} runs per cell; batch {BATCH} s, "
        f"{BATCHES} batches, offered more than the job takes). Each cell: share of runs whose "
        f"scheduling delay stayed below one batch interval from batch {SETTLE} on / median "
        "accepted / processing rate after it. cv: the job's speed's coefficient of variation "
        "per batch; rho: its correlation between neighbouring batches.",
        "",
        "| policy | " + " | ".join(f"cv {cv}, rho {rho}" for cv, rho in NOISE) + " |",
        "| --- |" + " --- |" * len(NOISE),
    ]
    for policy in POLICIES:
        cells = []
        for cv, rho in NOISE:
            results = [simulate(policy, cv, rho, seed) for seed in range(runs)]
            passed = sum(ok for ok, _ in results) / runs
            ratio = statistics.median(r for _, r in results)
            cells.append(f"{passed:.2f} / {ratio:.2f}")
        lines.append(f"| {policy.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    text = table(args.runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rate_control_sim.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
