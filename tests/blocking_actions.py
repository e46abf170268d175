"""Running blocking RDD actions (PySpark style) on a started context's executor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.executor.runner import TaskRunner


def on_master(
    master: str, body: Callable[[TaskRunner], Any], conf: dict[str, Any] | None = None
) -> Any:
    """Start a context on ``master``, run ``body(sc)`` on a thread (where blocking actions
    such as ``rdd.collect()`` work), stop, and return what ``body`` returned."""
    result: list[Any] = []

    async def main() -> None:
        async with StreamingContext(1.0, master=master, clock=ManualClock(), conf=conf) as ssc:
            ssc.queue_stream([[0]]).pprint()
            await ssc.start()
            result.append(await anyio.to_thread.run_sync(body, ssc.spark_context))
            await ssc.stop()

    anyio.run(main)
    return result[0]
