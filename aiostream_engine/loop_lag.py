"""The event-loop lag probe: how late the engine's event loop wakes a sleeping task.

Everything in the engine (receivers, the batch clock, the scheduler, the UI) shares one
event loop, so a callback that holds it (a blocking call, a long pure-Python loop) delays
all of them. The probe sleeps ``interval`` seconds over and over and records how much
later than asked it woke. It measures the real loop, so it uses the real monotonic clock
(``time.perf_counter``) and ``anyio.sleep``, never the context's (possibly manual) clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio


class LoopLagProbe:
    """Runs as one of the engine's tasks while something (the UI, metrics) wants the lag."""

    def __init__(self, interval: float = 0.1) -> None:
        if interval <= 0:
            raise ValueError(f"the lag probe interval must be > 0, got {interval}")
        self.interval = interval
        #: Lag of the newest wake-up and the largest seen, in seconds.
        self.last = 0.0
        self.max = 0.0
        self.samples = 0
        self._observers: list[Callable[[float], None]] = []

    def observe(self, observer: Callable[[float], None]) -> None:
        """Call ``observer(lag_seconds)`` at every wake-up (a histogram's ``observe``)."""
        self._observers.append(observer)

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            before = time.perf_counter()
            await anyio.sleep(self.interval)
            self.record(max(0.0, time.perf_counter() - before - self.interval))

    def record(self, lag: float) -> None:
        """Take in one wake-up's lag (seconds)."""
        self.last = lag
        self.max = max(self.max, lag)
        self.samples += 1
        for observer in self._observers:
            observer(lag)
