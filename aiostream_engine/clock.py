"""Injectable clocks: the batch clock and block timers read time only from here.

``SystemClock`` is wall time. ``ManualClock`` is moved by the caller (tests), optionally
jumping by itself to the next deadline whenever the event loop has nothing else to run
(``autojump``), the way trio's MockClock does.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def now(self) -> float:
        """Current time in seconds."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class SystemClock:
    """Wall-clock time (``time.time``), the default."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until wall time ``deadline``."""
        delay = deadline - time.time()
        if delay > 0:
            await anyio.sleep(delay)


class ManualClock:
    """A clock that moves only when told to: ``advance(dt)`` / ``set_time(t)``.

    With ``autojump=True`` a helper task (``await clock.run_autojump()`` in a task group,
    done for you by the testing harness) moves time to the earliest deadline whenever the
    event loop has no ready callbacks, so programs that only wait on the clock run at full
    speed and deterministically.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = False) -> None:
        self._now = float(start)
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.autojump = autojump

    def now(self) -> float:
        """The manual time, in seconds."""
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        """Wait until the clock has been moved to ``deadline`` or past it."""
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (deadline, next(self._seq), future))
        try:
            await future
        finally:
            if not future.done():
                future.cancel()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``, waking what waits until then."""
        if seconds < 0:
            raise ValueError("a ManualClock cannot go back in time")
        self.set_time(self._now + seconds)

    def set_time(self, t: float) -> None:
        """Move the clock to ``seconds`` (never backwards), waking what waits until then."""
        if t < self._now:
            raise ValueError(f"a ManualClock cannot go back in time ({t} < {self._now})")
        self._now = t
        while self._waiters and self._waiters[0][0] <= t:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)

    def next_deadline(self) -> float | None:
        """The earliest time something waits for, or None."""
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        return self._waiters[0][0] if self._waiters else None

    async def run_autojump(self, idle_rounds: int = 3) -> None:
        """Jump to the next deadline whenever the loop is idle; runs until cancelled.

        Idle means: after ``idle_rounds`` passes through the loop nothing else was ready.
        That needs asyncio's ready queue; on loops that do not expose it (uvloop) a pass
        counts as idle, which still only moves time forward to a registered deadline.
        """
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        while True:
            quiet = 0
            while quiet < idle_rounds:
                await asyncio.sleep(0)
                quiet = quiet + 1 if not ready else 0
            deadline = self.next_deadline()
            if deadline is None:
                await asyncio.sleep(0.001)
            else:
                self.set_time(deadline)
