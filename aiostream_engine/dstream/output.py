"""Output operations: the streams that turn each batch into a job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread

from ..rdd.core import RDD
from ..rdd.save import asave, object_part_writer, text_part_writer
from ..timeutil import to_seconds
from .base import DStream
from .functions import is_async_callable, takes_time


@dataclass
class Job:
    """One output operation of one batch."""

    time_ms: int
    output_id: int
    name: str
    run: Callable[[], Awaitable[None]]


class ForEachDStream(DStream):
    """Calls a function with each batch's RDD of its parent.

    The function runs on the driver (the loop, or a thread for a plain function) and never
    travels to a worker; recovery rebuilds the graph from user code. So, unlike operator
    functions, it need not pickle: it may hold a connection pool, a client or a lock.
    """

    def __init__(
        self, parent: DStream, func: Callable[..., Any], name: str, user_function: bool = False
    ) -> None:
        super().__init__(parent.context, [parent], name)
        self._func = func
        #: A user's function gets the batch time as the context hands it out (a datetime in
        #: the PySpark layer); the engine's own outputs (pprint, save) get seconds.
        self._user_function = user_function
        self._with_time = takes_time(func, 1)
        self._is_async = is_async_callable(func)
        self.output_id = parent.context._register_output(self)

    def compute(self, time_ms: int) -> RDD | None:
        return self.dependencies[0].get_or_compute(time_ms)

    async def stop(self) -> None:
        """Release what the output holds (a sink's pool); called once the context stops."""
        return None

    def generate_job(self, time_ms: int) -> Job | None:
        rdd = self.get_or_compute(time_ms)
        if rdd is None:
            return None
        time = self.context._batch_time(time_ms) if self._user_function else to_seconds(time_ms)
        args: tuple[Any, ...] = (time, rdd) if self._with_time else (rdd,)

        async def run() -> None:
            if self._is_async:
                await self._func(*args)
            else:  # blocking PySpark-style code: off the loop, actions bridge back to it
                await anyio.to_thread.run_sync(self._func, *args)

        return Job(time_ms, self.output_id, f"{self.name} on {self.dependencies[0].name}", run)


def format_batch_time(seconds: float) -> str:
    """As PySpark prints it: ``str(datetime.fromtimestamp(ms / 1000.0))``, local time,
    fractional seconds only when the batch time has them."""
    return str(datetime.fromtimestamp(seconds))


def pprint_batch(num: int) -> Callable[[float, RDD], Awaitable[None]]:
    """PySpark's pprint layout: a time header, the first ``num`` records, '...' if more."""

    async def pprint(time: float, rdd: RDD) -> None:
        taken = await rdd.atake(num + 1)
        lines = ["-------------------------------------------",
                 f"Time: {format_batch_time(time)}",
                 "-------------------------------------------"]
        lines += [str(record) for record in taken[:num]]
        if len(taken) > num:
            lines.append("...")
        print("\n".join(lines) + "\n", flush=True)

    return pprint


def batch_directory(prefix: str, suffix: str | None, time: float) -> str:
    name = f"{prefix}-{round(time * 1000)}"
    return f"{name}.{suffix}" if suffix else name


def save_batch(prefix: str, suffix: str | None, *, text: bool) -> Callable[[float, RDD], Awaitable[None]]:
    """Write each partition to ``<prefix>-<batch ms>[.suffix]/part-NNNNN`` atomically."""

    async def save(time: float, rdd: RDD) -> None:
        target = batch_directory(prefix, suffix, time)
        writer = text_part_writer if text else object_part_writer
        await asave(rdd, target, writer, replace=True)  # a re-run batch replaces, never appends

    return save
