"""The measurement method of issue 5, shared by every engine runner.

- A *size run* feeds batches of N events (one pre-built RDD, queued warm-up + measured
  times) at a 1 s batch interval and records each batch's processing time.
  ``BatchTracker`` takes the processing times in completion order and says when the run is
  done: all measured batches seen, or clearly too slow (then it is stopped early, so a
  failing size costs a few batches, not forty).
- The *search* runs sizes from a start index, upwards while the median stays under the
  interval, downwards while it does not; sustainable throughput = N / median processing
  time of the largest passing N.
- Each engine implements ``Session.run_size``; ``run_job`` does the rest identically.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .workloads import Dataset

FLOOR_SIZE = 1_000


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Plan:
    """How one size is measured."""

    interval: float = 1.0
    warmup: int = 3
    measured: int = 10
    window_batches: int = 30  # W3 only: its warm-up also fills the window
    abort_factor: float = 2.0  # early stop: median of recent batches above this x interval

    def warmup_for(self, workload: str) -> int:
        return self.warmup + (self.window_batches if workload == "W3" else 0)

    def batches_for(self, workload: str) -> int:
        return self.warmup_for(workload) + self.measured


class BatchTracker:
    """Fed each batch's processing time in order; ``add`` returns True once done."""

    def __init__(self, plan: Plan, workload: str) -> None:
        self.plan = plan
        self.warmup = plan.warmup_for(workload)
        self.times: list[float] = []
        self.aborted = False
        self.done = False

    @property
    def measured(self) -> list[float]:
        return self.times[self.warmup :]

    def add(self, processing: float) -> bool:
        if self.done:
            return True
        self.times.append(processing)
        limit = self.plan.abort_factor * self.plan.interval
        recent = self.times[-5:] if len(self.times) <= self.warmup else self.measured
        if len(recent) >= 3 and statistics.median(recent) > limit:
            self.aborted = True
        self.done = self.aborted or len(self.measured) >= self.plan.measured
        return self.done


@dataclass
class SizeResult:
    size: int
    times: list[float]  # processing time of every batch, warm-up included
    warmup: int
    aborted: bool = False
    timed_out: bool = False
    startup_s: float | None = None  # context construction to first completed batch
    wall: tuple[float, float] = (0.0, 0.0)  # time.time() span, to attribute memory samples
    extra: dict[str, Any] = field(default_factory=dict)  # engine-specific (loop lag ...)
    peak_rss_mb: float | None = None  # filled in by the parent from its samples

    @property
    def measured(self) -> list[float]:
        return self.times[self.warmup :]

    @property
    def median(self) -> float:
        m = self.measured
        return statistics.median(m) if m else math.inf

    def passes(self, interval: float, min_batches: int) -> bool:
        return (
            not self.aborted and len(self.measured) >= min_batches and self.median < interval
        )

    @property
    def throughput(self) -> float:
        return self.size / self.median if self.median > 0 else math.nan

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["median"] = None if math.isinf(self.median) else self.median
        data["throughput"] = None if math.isinf(self.median) else self.throughput
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SizeResult:
        fields = {k: v for k, v in data.items() if k not in ("median", "throughput")}
        fields["wall"] = tuple(fields["wall"])
        return cls(**fields)

    @classmethod
    def from_tracker(cls, size: int, tracker: BatchTracker, **kwargs: Any) -> SizeResult:
        return cls(size, tracker.times, tracker.warmup, tracker.aborted, **kwargs)


@dataclass
class Job:
    """What a runner subprocess is asked to measure."""

    workload: str
    engine: str  # "aiostream" or "pyspark"
    master: str = "local[2]"
    sizes: list[int] = field(default_factory=list)
    start_index: int = 0
    floor: bool = True
    plan: Plan = field(default_factory=Plan)
    rate: float = 0.0  # W4: events per second from the receiver
    duration: float = 0.0  # W4: seconds of measured run

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(**{**data, "plan": Plan(**data["plan"])})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Session(Protocol):
    """One engine, set up once per job (PySpark keeps its JVM across sizes)."""

    def available(self, workload: str) -> str | None:
        """None when the workload can run; otherwise why not."""
        ...

    def run_size(self, job: Job, lines: list[str], size: int) -> SizeResult: ...

    def close(self) -> None: ...


def search(job: Job, run: Any) -> list[SizeResult]:
    """Sizes upward from ``job.start_index`` while they pass, downward while they fail."""
    plan, sizes = job.plan, job.sizes
    results: list[SizeResult] = []
    index = min(max(job.start_index, 0), len(sizes) - 1)
    first = run(sizes[index])
    results.append(first)
    step = 1 if first.passes(plan.interval, plan.measured) else -1
    index += step
    while 0 <= index < len(sizes):
        result = run(sizes[index])
        results.append(result)
        if result.passes(plan.interval, plan.measured) != (step == 1):
            break
        index += step
    return sorted(results, key=lambda r: r.size)


def sustainable(results: Sequence[SizeResult], plan: Plan) -> SizeResult | None:
    passing = [r for r in results if r.passes(plan.interval, plan.measured)]
    return max(passing, key=lambda r: r.size) if passing else None


def run_job(job: Job, session: Session) -> dict[str, Any]:
    """Floor, then the size search, over the workload's seeded data."""
    started = time.time()
    reason = session.available(job.workload)
    if reason is not None:
        return {"job": job.to_json(), "available": False, "reason": reason}
    data = Dataset.empty("W1" if job.workload == "W1" else "W2")

    def run(size: int) -> SizeResult:
        # Generated before the size's timing starts, and only as many lines as it needs:
        # the runner's peak memory at N holds N lines, not the largest size's.
        return session.run_size(job, data.lines(size), size)

    floor = run(FLOOR_SIZE) if job.floor else None
    sizes = search(job, run) if job.sizes else []
    session.close()
    return {
        "job": job.to_json(),
        "available": True,
        "floor": floor.to_json() if floor else None,
        "sizes": [r.to_json() for r in sizes],
        "elapsed_s": time.time() - started,
    }
