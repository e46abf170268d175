"""Event-loop lag: a task sleeps 10 ms over and over and records how late it wakes."""

from __future__ import annotations

import time

import anyio

from .method import percentile


class LoopLagMonitor:
    def __init__(self, period: float = 0.010) -> None:
        self.period = period
        self.samples: list[float] = []  # seconds late, one per wake-up

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await anyio.sleep(self.period)
            self.samples.append(max(0.0, time.perf_counter() - before - self.period))

    def summary(self) -> dict[str, float]:
        return {
            "loop_lag_p50_ms": percentile(self.samples, 50) * 1e3,
            "loop_lag_p99_ms": percentile(self.samples, 99) * 1e3,
            "loop_lag_max_ms": max(self.samples, default=float("nan")) * 1e3,
        }
