"""What the UI knows about the run, kept from listener events (Spark's
StreamingJobProgressListener): batches waiting, running and completed (the last
``retained_batches``), totals since start, and every input stream's receiver.

It has no web dependency: the REST API, the page and /metrics read it. Its batch records
are the scheduler's own ``BatchInfo`` objects, so an output operation of a running batch
shows its start (and end) as soon as the scheduler records them.
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio

from ..clock import Clock
from ..scheduler.batch_info import BatchInfo
from ..scheduler.listener import (
    BatchCompleted,
    BatchStarted,
    BatchSubmitted,
    OutputOperationCompleted,
    ReceiverError,
    ReceiverInfo,
    ReceiverStarted,
    ReceiverStopped,
    StreamingListener,
    StreamingStarted,
)


def batch_id(info: BatchInfo) -> int:
    """Spark's batch id: the batch time in milliseconds."""
    return round(info.batch_time * 1000)


@dataclass
class ReceiverState:
    """The newest report of one receiver, with the time of its last error."""

    info: ReceiverInfo
    last_error_time: float | None = None


class StreamingStatus(StreamingListener):
    """A listener; the context adds it when the UI or metrics are on."""

    def __init__(self, clock: Clock, batch_interval: float, retained: int) -> None:
        self._clock = clock
        #: Where receivers run: the driver's host (they are tasks on its event loop).
        self.host = socket.gethostname()
        self.batch_interval = batch_interval
        #: Every input stream of the graph (receiver-fed or not), by id; and how many of
        #: them are fed by a receiver (``set_inputs``, as the context starts).
        self.input_names: dict[int, str] = {}
        self.receiver_streams = 0
        self.start_time: float | None = None
        self.waiting: dict[int, BatchInfo] = {}
        self.running: dict[int, BatchInfo] = {}
        self.completed: deque[BatchInfo] = deque(maxlen=retained)
        self.total_completed = 0
        self.total_failed = 0
        self.total_received_records = 0
        self.total_processed_records = 0
        #: Records per input stream, summed over every batch started (a completed batch
        #: with its final counts).
        self.records_by_stream: dict[int, int] = {}
        #: Dead letters per input stream, from batches' ``dead_letters`` metadata (streams
        #: decoded on the workers amend it when the batch completes).
        self.dead_letters_by_stream: dict[int, int] = {}
        self.receivers: dict[int, ReceiverState] = {}
        self._failed: dict[int, None] = {}  # ids of failed batches, oldest first (bounded)
        #: Records per stream counted into the totals for each started, not yet completed
        #: batch: a stream decoded on the workers knows its counts only at completion.
        self._counted: dict[int, dict[int, int]] = {}
        self._changed = anyio.Event()

    def set_inputs(self, names: dict[int, str], receiver_streams: int) -> None:
        """The graph's input streams, ``receiver_streams`` of them fed by a receiver
        (known once the context starts)."""
        self.input_names = dict(names)
        self.receiver_streams = receiver_streams
        for stream_id in names:
            self.records_by_stream.setdefault(stream_id, 0)

    # ---- listener events ----------------------------------------------------------------

    def on_streaming_started(self, event: StreamingStarted) -> None:
        self.start_time = event.time
        self._notify()

    def on_receiver_started(self, event: ReceiverStarted) -> None:
        self._receiver(event.receiver_info)

    def on_receiver_error(self, event: ReceiverError) -> None:
        self._receiver(event.receiver_info, error=True)

    def on_receiver_stopped(self, event: ReceiverStopped) -> None:
        self._receiver(event.receiver_info)

    def on_batch_submitted(self, event: BatchSubmitted) -> None:
        self.waiting[batch_id(event.batch_info)] = event.batch_info
        self._notify()

    def on_batch_started(self, event: BatchStarted) -> None:
        info = event.batch_info
        self.waiting.pop(batch_id(info), None)
        self.running[batch_id(info)] = info
        self._count_received(info)
        self._notify()

    def on_batch_completed(self, event: BatchCompleted) -> None:
        info = event.batch_info
        key = batch_id(info)
        self.waiting.pop(key, None)
        self.running.pop(key, None)
        self._count_received(info)  # a batch without jobs completes without starting
        self._recount_received(key, info)
        self.completed.append(info)
        self.total_completed += 1
        if info.failed:
            self._mark_failed(key)
        self.total_processed_records += info.num_records
        for stream_id, input_info in info.stream_id_to_input_info.items():
            dead = input_info.metadata.get("dead_letters")
            if isinstance(dead, int) and dead:
                self.dead_letters_by_stream[stream_id] = (
                    self.dead_letters_by_stream.get(stream_id, 0) + dead
                )
        self._notify()

    def on_output_operation_completed(self, event: OutputOperationCompleted) -> None:
        op = event.output_operation_info
        if op.failure_reason:
            self._mark_failed(round(op.batch_time * 1000))

    def on_output_operation_failed(self, event: Any) -> None:
        """An output operation's attempt raised (``OutputOperationFailed``); without a retry
        to come its batch has failed, whether or not it ever completes. Either way pages
        are told (a batch waiting for its retry shows the failed attempt)."""
        if getattr(event, "retry_in", None) is None:
            self._mark_failed(round(event.output_operation_info.batch_time * 1000))
        self._notify()

    def _mark_failed(self, key: int) -> None:
        if key in self._failed:
            return
        self._failed[key] = None
        self.total_failed += 1
        while len(self._failed) > (self.completed.maxlen or 1000):
            del self._failed[next(iter(self._failed))]

    def _count_received(self, info: BatchInfo) -> None:
        """Spark counts a batch's records as received when it starts."""
        key = batch_id(info)
        if key in self._counted:
            return
        counted = self._counted[key] = info.stream_id_to_num_records
        self._add_received(counted)

    def _recount_received(self, key: int, info: BatchInfo) -> None:
        """The batch completed: its final counts replace those counted at its start."""
        counted = self._counted.pop(key, {})
        final = info.stream_id_to_num_records
        self._add_received({i: n - counted.get(i, 0) for i, n in final.items()})

    def _add_received(self, records: dict[int, int]) -> None:
        for stream_id, count in records.items():
            self.total_received_records += count
            self.records_by_stream[stream_id] = self.records_by_stream.get(stream_id, 0) + count

    def _receiver(self, info: ReceiverInfo, error: bool = False) -> None:
        state = self.receivers.get(info.stream_id)
        error_time = self._clock.now() if error else state.last_error_time if state else None
        self.receivers[info.stream_id] = ReceiverState(info, error_time)
        self._notify()

    # ---- reading ------------------------------------------------------------------------

    def retained_batches(self) -> list[BatchInfo]:
        """Waiting, running and retained completed batches, oldest first (Spark's
        ``retainedBatches``: what the averages are taken over)."""
        active = sorted([*self.waiting.values(), *self.running.values()], key=batch_id)
        return [*self.completed, *active]

    def batch(self, batch_ms: int) -> BatchInfo | None:
        found = self.waiting.get(batch_ms) or self.running.get(batch_ms)
        if found is not None:
            return found
        return next((b for b in reversed(self.completed) if batch_id(b) == batch_ms), None)

    def status_of(self, info: BatchInfo) -> str:
        """Spark's BatchStatus: QUEUED, PROCESSING or COMPLETED."""
        key = batch_id(info)
        if key in self.waiting:
            return "QUEUED"
        if key in self.running:
            return "PROCESSING"
        return "COMPLETED"

    @property
    def active_receivers(self) -> int:
        return sum(1 for r in self.receivers.values() if r.info.active)

    @property
    def inactive_receivers(self) -> int:
        """Spark's count: the graph's receiver streams less the active receivers (one
        not started yet is inactive)."""
        return max(0, self.receiver_streams - self.active_receivers)

    # ---- waiting for a change (the live page, tests) -------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        """Returns at the next event the status takes in."""
        await self._changed.wait()

    async def wait_for_batch(self, batch_time: float) -> BatchInfo:
        """Wait until the completion of the batch at ``batch_time`` has been seen."""
        key = round(batch_time * 1000)
        while True:
            found = next((b for b in reversed(self.completed) if batch_id(b) == key), None)
            if found is not None:
                return found
            await self.changed()
