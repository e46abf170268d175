"""The receivers' token bucket under a rate that changes while a store waits."""

from __future__ import annotations

import anyio
import pytest

from aiostream_engine import ManualClock
from aiostream_engine.receiver.rate_limiter import RateLimiter
from tests.rate.sim import settle

pytestmark = pytest.mark.anyio


async def _acquire_at(limiter: RateLimiter, clock: ManualClock, records: int, done: list[float]) -> None:
    await limiter.acquire(records)
    done.append(clock.now())


async def test_a_waiting_store_follows_a_rate_raised_meanwhile() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock, 10.0)
    done: list[float] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_acquire_at, limiter, clock, 100, done)  # 10 s of debt at 10/s
        await settle()
        clock.set_time(1.0)  # 10 paid, 90 owed
        await settle()
        limiter.set_rate(1000.0)  # 90 at 1000/s: 0.09 s more
        await settle()
        clock.set_time(1.08)
        await settle()
        assert done == []
        clock.set_time(1.09)
    assert done == [pytest.approx(1.09)]


async def test_a_waiting_store_follows_a_rate_lowered_meanwhile() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock, 100.0)
    done: list[float] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_acquire_at, limiter, clock, 100, done)  # 1 s at 100/s
        await settle()
        clock.set_time(0.5)  # 50 owed
        limiter.set_rate(10.0)  # 5 s more
        await settle()
        clock.set_time(5.4)
        await settle()
        assert done == []
        clock.set_time(5.5)
    assert done == [pytest.approx(5.5)]


async def test_a_bound_set_after_no_bound_starts_with_an_empty_bucket() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock, 0.0)
    await limiter.acquire(10_000)  # unlimited: no wait, no debt
    clock.set_time(50.0)
    limiter.set_rate(100.0)
    done: list[float] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_acquire_at, limiter, clock, 100, done)
        await settle()
        clock.set_time(50.99)
        await settle()
        assert done == []
        clock.set_time(51.0)
    assert done == [pytest.approx(51.0)]


async def test_an_idle_limiter_bursts_at_most_one_second() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock, 20.0)
    clock.set_time(100.0)
    done: list[float] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_acquire_at, limiter, clock, 30, done)  # 20 saved up, 10 owed
        await settle()
        clock.set_time(100.49)
        await settle()
        assert done == []
        clock.set_time(100.5)
    assert done == [pytest.approx(100.5)]


async def test_wait_clear_waits_for_the_debt_and_takes_nothing() -> None:
    clock = ManualClock()
    limiter = RateLimiter(clock, 100.0)
    done: list[float] = []

    async def gate() -> None:
        await limiter.wait_clear()
        done.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(_acquire_at, limiter, clock, 50, [])  # owes 0.5 s
        await settle()
        tg.start_soon(gate)
        await settle()
        clock.set_time(0.49)
        await settle()
        assert done == []
        clock.set_time(0.5)
    assert done == [pytest.approx(0.5)]
    await limiter.wait_clear()  # nothing owed: returns at once, and took nothing
    clock.set_time(0.6)
    await limiter.acquire(10)  # 10 tokens saved since 0.5
    assert clock.now() == 0.6
