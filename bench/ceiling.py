"""The hand-written ceiling: the same work as a tight loop in one process, no engine.

Per core: events / median seconds of a batch over a few repeats; the two-core ceiling is
twice that (perfect scaling, no data movement), as issue 5 defines it.
W3 adds the incremental window step to W2's batch: merge the batch's totals into the
window and subtract the totals of the batch that left it (30 batches ago).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .workloads import Dataset, device_totals, merge_into, word_count

CORES = 2


def _w3_step(window_batches: int) -> Callable[[list[str]], Any]:
    window: dict[str, tuple[float, int]] = {}
    history: deque[dict[str, tuple[float, int]]] = deque()

    def step(lines: list[str]) -> Any:
        batch = device_totals(lines)
        merge_into(window, batch, +1)
        history.append(batch)
        if len(history) > window_batches:
            merge_into(window, history.popleft(), -1)
        return window

    return step


def measure(workload: str, size: int, repeats: int, window_batches: int) -> dict[str, Any]:
    lines = Dataset.empty("W1" if workload == "W1" else "W2").lines(size)
    step: Callable[[list[str]], Any]
    if workload == "W1":
        step = word_count
    elif workload == "W2":
        step = device_totals
    else:
        step = _w3_step(window_batches)
        for _ in range(window_batches):  # fill the window first, like the engines
            step(lines)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(lines)
        times.append(time.perf_counter() - start)
    per_core = size / statistics.median(times)
    return {
        "workload": workload,
        "size": size,
        "times": times,
        "per_core": per_core,
        "two_core": per_core * CORES,
    }
