"""Issue 14's receiver bench: the bare work is the whole per-record work, and the 2-core
ceiling it gives is judged against 1.5x the pool."""

from __future__ import annotations

from typing import Any

import pytest

from bench.method import Job, Plan
from bench.receiver_feed import SIZES, ceiling, figures, table
from bench.receiver_runner import BareWorkSession, chunk_work, chunks_of, merge_counts, merge_pairs
from bench.workloads import device_totals, iot_lines, word_count, word_lines


def test_the_bare_work_over_the_chunks_is_the_whole_workload() -> None:
    for workload, lines, whole, merge in (
        ("W1", word_lines(1_000), word_count, merge_counts),
        ("W2", iot_lines(1_000), device_totals, merge_pairs),
    ):
        totals: dict[str, Any] = {}
        for data, _ in chunks_of(lines):
            merge(totals, chunk_work(workload)(data))
        assert totals == {k: pytest.approx(v) for k, v in whole(lines).items()}


def test_bare_work_session_times_every_batch_on_one_or_two_processes() -> None:
    job = Job("W2", "bare-work", sizes=[2_000], floor=False, plan=Plan(warmup=1, measured=2))
    for processes in (1, 2):
        result = BareWorkSession(processes).run_size(job, iot_lines(2_000), 2_000)
        assert len(result.times) == 3 and not result.aborted
        assert all(t > 0 for t in result.times)
        assert len(result.extra["cpu_per_batch_s"]) == 3


def _results(pool_s: float, bare_s: float) -> dict[str, Any]:
    runs = []
    for workload, sizes in SIZES.items():
        for size in sizes:
            for engine, median in (("aiostream-receiver", 0.5), ("aiostream-preplaced", 0.5),
                                   ("asyncio-pool", pool_s), ("bare-work", bare_s)):
                runs.append({"round": 0, "workload": workload, "size": size, "engine": engine,
                             "times": [median], "warmup": 0, "other_cores": 0.1, "extra": {}})
    return {"plan": Plan(warmup=0, measured=1).__dict__, "rounds": 1, "runs": runs,
            "machine": "test", "load_average": [0.0, 0.0, 0.0]}


def test_ceiling_is_n_over_half_the_bare_work() -> None:
    by_key = figures(_results(pool_s=0.6, bare_s=0.8))
    assert ceiling(by_key, "W2", 800_000) == (0.8, 800_000 / 0.4)


def test_a_target_above_the_ceiling_is_called_unreachable() -> None:
    # 1.5x a pool at 0.5 s is N / 0.333 s; the ceiling N / 0.4 s is below it.
    assert "above it: unreachable" in table(_results(pool_s=0.5, bare_s=0.8))
    # A pool at 0.9 s: 1.5x it is N / 0.6 s, under the ceiling N / 0.4 s.
    assert "within it: reachable in principle" in table(_results(pool_s=0.9, bare_s=0.8))
