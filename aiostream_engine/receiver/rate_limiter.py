"""A token bucket on the engine's clock: at most ``rate`` records per second."""

from __future__ import annotations

import anyio

from ..clock import Clock

#: Debt below this many records is rounding, not a reason to wait again.
_TOLERANCE = 1e-9


class RateLimiter:
    """``rate <= 0`` means unlimited. The rate may change at any time (backpressure): a
    caller waiting for tokens then waits for what it owes at the new rate, not the old one.

    The bucket holds at most one second of tokens (``rate`` records), so an idle receiver
    may burst that much; taking more than there is leaves a debt the caller waits out.
    """

    def __init__(self, clock: Clock, rate: float = 0.0) -> None:
        self._clock = clock
        self._rate = float(rate)
        self._allowance = 0.0
        self._last = clock.now()
        self._waiting: set[anyio.CancelScope] = set()

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        self._refill()
        if self._rate <= 0:
            self._allowance = 0.0  # no tokens were counted while unlimited
        self._rate = float(rate)
        for scope in self._waiting:
            scope.cancel()  # they recompute their wait at the new rate

    def _refill(self) -> None:
        now = self._clock.now()
        if self._rate > 0:
            # At most one second of burst, like a bucket of size `rate`.
            self._allowance = min(self._rate, self._allowance + (now - self._last) * self._rate)
        self._last = now

    async def acquire(self, records: int = 1) -> None:
        """Take ``records`` tokens, waiting until the debt they leave is paid."""
        if self._rate <= 0:
            return
        self._refill()
        self._allowance -= records
        await self.wait_clear()

    async def wait_clear(self) -> None:
        """Wait until nothing is owed (tokens taken earlier are paid for), taking none: a
        receiver that reads in bursts calls it before reading the next one."""
        if self._rate <= 0:
            return
        self._refill()
        while self._allowance < -_TOLERANCE and self._rate > 0:
            with anyio.CancelScope() as scope:
                self._waiting.add(scope)
                try:
                    wait = -self._allowance / self._rate
                    await self._clock.sleep_until(self._clock.now() + wait)
                finally:
                    self._waiting.discard(scope)
            self._refill()
