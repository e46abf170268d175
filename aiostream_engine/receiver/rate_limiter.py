"""A token bucket on the engine's clock: at most ``rate`` records per second."""

from __future__ import annotations

from ..clock import Clock


class RateLimiter:
    """``rate <= 0`` means unlimited. The rate may change at any time (backpressure)."""

    def __init__(self, clock: Clock, rate: float = 0.0) -> None:
        self._clock = clock
        self._rate = float(rate)
        self._allowance = 0.0
        self._last = clock.now()

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        self._refill()
        self._rate = float(rate)

    def _refill(self) -> None:
        now = self._clock.now()
        if self._rate > 0:
            # At most one second of burst, like a bucket of size `rate`.
            self._allowance = min(self._rate, self._allowance + (now - self._last) * self._rate)
        self._last = now

    async def acquire(self, records: int = 1) -> None:
        if self._rate <= 0:
            return
        self._refill()
        self._allowance -= records
        if self._allowance < 0:
            await self._clock.sleep_until(self._clock.now() + (-self._allowance) / self._rate)
