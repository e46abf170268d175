"""A small job on a ManualClock whose batches end completed, running, queued and failed at
known times, for the UI's API, metrics and page tests.

Batch interval 1 s, the clock starts at 0, so the batches are at 1.0, 2.0, 3.0:

* 1.0: records [1, 2, 3]; both outputs finish at once (delays 0);
* 2.0: records [4, 5]; the first output waits on ``gate`` (the batch is PROCESSING, and
  batch 3.0 QUEUED behind it, while the test looks); released at clock 3.5, so its
  processing time is 1.5 s;
* 3.0: records [6]; starts at 3.5 (scheduling delay 0.5 s) and its first output raises
  ``ERROR``. A batch whose output failed never completes (issue 11); the scenario runs with
  ``output_failure_policy="retry"`` and a retry an hour away, so the context stays up with
  batch 3.0 failed and waiting for its retry (the default policy would stop the context,
  and the UI with it).

A receiver whose name is HTML (``RECEIVER_NAME``) stores ``RECEIVED`` records before the
first batch and reports ``RECEIVER_ERROR``, so escaping is tested on user text too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from aiostream_engine import (
    BatchInfo,
    JobFailedError,
    ManualClock,
    Receiver,
    StreamingContext,
    StreamingListener,
)
from aiostream_engine.scheduler.listener import BatchSubmitted
from aiostream_engine.ui.status import StreamingStatus

ERROR = "bad record <img src=x onerror=\"window.__pwned='error'\"> in <script>window.__pwned='err'</script>"
RECEIVER_NAME = "<script>window.__pwned='name'</script>sensors"
RECEIVER_ERROR = "lost <b onmouseover=\"window.__pwned='rx'\">link</b>"
RECEIVED = ["a", "b"]
BATCHES = [[1, 2, 3], [4, 5], [6]]


class HtmlNamedReceiver(Receiver):
    name = RECEIVER_NAME

    async def on_start(self) -> None:
        for record in RECEIVED:
            await self.store(record)
        self.report_error(RECEIVER_ERROR)
        await anyio.sleep_forever()


class Recorder(StreamingListener):
    """The scheduler's own BatchInfo objects, by batch time."""

    def __init__(self) -> None:
        self.infos: dict[float, BatchInfo] = {}

    def on_batch_submitted(self, event: BatchSubmitted) -> None:
        self.infos[event.batch_info.batch_time] = event.batch_info


class Scenario:
    def __init__(self, conf: dict[str, Any] | None = None, with_receiver: bool = False) -> None:
        self.clock = ManualClock(0.0)
        self.gate = anyio.Event()
        self.recorder = Recorder()
        self.ssc = StreamingContext(
            1.0, master="local", clock=self.clock,
            conf={"ui_enabled": True, "ui_port": 0, "output_failure_policy": "retry",
                  "output_retry_backoff": 3600.0, **(conf or {})},
        )
        self.with_receiver = with_receiver

    def build(self) -> None:
        ssc = self.ssc
        numbers = ssc.queue_stream([list(b) for b in BATCHES])

        async def first(time: float, rdd: Any) -> None:
            await rdd.acollect()
            if time == 2.0:
                await self.gate.wait()
            if time == 3.0:
                raise ValueError(ERROR)

        async def second(rdd: Any) -> None:
            await rdd.acount()

        numbers.foreach_rdd(first)
        numbers.map(lambda x: x * 2).foreach_rdd(second)
        if self.with_receiver:
            ssc.receiver_stream(HtmlNamedReceiver()).foreach_rdd(second)
        ssc.add_streaming_listener(self.recorder)

    @property
    def status(self) -> StreamingStatus:
        assert self.ssc._ui is not None
        return self.ssc._ui.status

    async def until(self, condition: Callable[[], bool]) -> None:
        with anyio.fail_after(10):
            while not condition():
                await self.status.changed()

    async def first_batch_done(self) -> None:
        self.clock.set_time(1.0)
        await self.status.wait_for_batch(1.0)

    async def running_and_queued(self) -> None:
        """Batch 2.0 processing (held by the gate), 3.0 queued behind it."""
        self.clock.set_time(2.0)
        await self.until(lambda: 2000 in self.status.running)
        self.clock.set_time(3.0)
        await self.until(lambda: 3000 in self.status.waiting)

    async def all_done(self) -> None:
        """Batch 2.0 completed, batch 3.0's first output failed (its retry is an hour away)."""
        self.clock.set_time(3.5)
        self.gate.set()
        await self.status.wait_for_batch(2.0)
        with anyio.fail_after(10):  # a failure with a retry to come notifies no page
            while self.status.total_failed != 1:
                await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> Scenario:
        await self.ssc.__aenter__()
        self.build()
        await self.ssc.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.gate.set()
        try:
            await self.ssc.__aexit__(*exc)
        except JobFailedError as failure:  # stop() raises a failure no one has raised yet
            if ERROR not in str(failure):  # only batch 3.0's deliberate one is expected
                raise
