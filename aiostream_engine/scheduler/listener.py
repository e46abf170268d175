"""Streaming listener events and the bus that delivers them.

A listener subclasses ``StreamingListener`` and overrides the ``on_*`` methods it cares
about (plain or ``async def``). PySpark-style camelCase methods (``onBatchCompleted``) are
called too, so ported listeners work. Events are delivered in order by one task; a slow
listener delays only other listeners, never the data path; past the queue's bound events
are dropped and counted (as Spark's listener bus does).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .batch_info import BatchInfo, OutputOperationInfo

log = logging.getLogger("aiostream_engine.listener")


@dataclass(frozen=True)
class ReceiverInfo:
    stream_id: int
    name: str
    active: bool
    last_error: str = ""
    restarts: int = 0


@dataclass(frozen=True)
class StreamingStarted:
    time: float


@dataclass(frozen=True)
class ReceiverStarted:
    receiver_info: ReceiverInfo


@dataclass(frozen=True)
class ReceiverError:
    receiver_info: ReceiverInfo


@dataclass(frozen=True)
class ReceiverStopped:
    receiver_info: ReceiverInfo


@dataclass(frozen=True)
class BatchSubmitted:
    batch_info: BatchInfo


@dataclass(frozen=True)
class BatchStarted:
    batch_info: BatchInfo


@dataclass(frozen=True)
class BatchCompleted:
    batch_info: BatchInfo


@dataclass(frozen=True)
class OutputOperationStarted:
    output_operation_info: OutputOperationInfo


@dataclass(frozen=True)
class OutputOperationCompleted:
    output_operation_info: OutputOperationInfo


@dataclass(frozen=True)
class StreamRateUpdated:
    """Backpressure set a new ingestion bound for a stream (no Spark event: Spark only tells
    its receivers). ``stream_ids``: the input streams sharing the bound (one, or the N of
    a stream with N receivers); ``rate``: records/s for all of them together; ``batch_time``:
    the batch whose completion led to it; ``time``: when it was set (context's clock)."""

    stream_ids: tuple[int, ...]
    name: str
    rate: float
    batch_time: float
    time: float


@dataclass(frozen=True)
class OutputOperationFailed:
    """An attempt of an output operation raised. ``retry_in``: seconds until it is tried
    again (``output_failure_policy="retry"``); None: the batch has failed and the context
    stops with ``error`` (the default policy)."""

    output_operation_info: OutputOperationInfo
    error: str
    attempt: int
    retry_in: float | None


@dataclass(frozen=True)
class CheckpointWriteFailed:
    """Writing a checkpoint file failed (a full disk, an I/O error). ``retry_in``: seconds
    until the next attempt; None: out of retries, the context stops with the error."""

    kind: str
    batch_time: float
    attempt: int
    error: str
    retry_in: float | None


# event type -> (snake_case method, PySpark method)
_HANDLERS: dict[type, tuple[str, str]] = {
    StreamingStarted: ("on_streaming_started", "onStreamingStarted"),
    ReceiverStarted: ("on_receiver_started", "onReceiverStarted"),
    ReceiverError: ("on_receiver_error", "onReceiverError"),
    ReceiverStopped: ("on_receiver_stopped", "onReceiverStopped"),
    BatchSubmitted: ("on_batch_submitted", "onBatchSubmitted"),
    BatchStarted: ("on_batch_started", "onBatchStarted"),
    BatchCompleted: ("on_batch_completed", "onBatchCompleted"),
    OutputOperationStarted: ("on_output_operation_started", "onOutputOperationStarted"),
    OutputOperationCompleted: ("on_output_operation_completed", "onOutputOperationCompleted"),
    StreamRateUpdated: ("on_stream_rate_updated", "onStreamRateUpdated"),
    OutputOperationFailed: ("on_output_operation_failed", "onOutputOperationFailed"),
    CheckpointWriteFailed: ("on_checkpoint_write_failed", "onCheckpointWriteFailed"),
}


class StreamingListener:
    """Override any of these; each may be ``async def``."""

    def on_streaming_started(self, event: StreamingStarted) -> Any:
        """The context has started."""

    def on_receiver_started(self, event: ReceiverStarted) -> Any:
        """A receiver has started."""

    def on_receiver_error(self, event: ReceiverError) -> Any:
        """A receiver reported an error."""

    def on_receiver_stopped(self, event: ReceiverStopped) -> Any:
        """A receiver has stopped."""

    def on_batch_submitted(self, event: BatchSubmitted) -> Any:
        """A batch's jobs were submitted to the scheduler."""

    def on_batch_started(self, event: BatchStarted) -> Any:
        """A batch's first job started."""

    def on_batch_completed(self, event: BatchCompleted) -> Any:
        """Every job of a batch has ended (``event.batch_info`` has its delays)."""

    def on_output_operation_started(self, event: OutputOperationStarted) -> Any:
        """An output operation of a batch started."""

    def on_output_operation_completed(self, event: OutputOperationCompleted) -> Any:
        """An output operation of a batch ended (``failure_reason`` says if it failed)."""

    def on_stream_rate_updated(self, event: StreamRateUpdated) -> Any:
        """Backpressure set a new rate bound for a stream (``event.rate``, records/s)."""

    def on_output_operation_failed(self, event: OutputOperationFailed) -> Any:
        """An attempt of an output operation raised (``retry_in`` None: the batch failed)."""

    def on_checkpoint_write_failed(self, event: CheckpointWriteFailed) -> Any:
        """Writing a checkpoint file failed (``retry_in`` None: the context stops)."""


class ListenerBus:
    def __init__(self, capacity: int) -> None:
        self._listeners: list[Any] = []
        send, receive = anyio.create_memory_object_stream[Any](max_buffer_size=capacity)
        self._send: MemoryObjectSendStream[Any] = send
        self._receive: MemoryObjectReceiveStream[Any] = receive
        self.dropped = 0
        self.listener_errors = 0
        self.drained = anyio.Event()

    def add(self, listener: Any) -> None:
        self._listeners.append(listener)

    def remove(self, listener: Any) -> None:
        self._listeners.remove(listener)

    def post(self, event: Any) -> None:
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.dropped += 1
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def run(self) -> None:
        """Deliver events until ``close()``; then deliver what is left and return."""
        try:
            async with self._receive:
                async for event in self._receive:
                    await self._deliver(event)
        finally:
            self.drained.set()

    def close(self) -> None:
        self._send.close()

    async def _deliver(self, event: Any) -> None:
        snake, camel = _HANDLERS[type(event)]
        for listener in list(self._listeners):
            handler = _own_method(listener, snake) or _own_method(listener, camel)
            if handler is None:
                continue
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a broken listener must not stop the bus or the stream
                self.listener_errors += 1
                log.exception("listener %r failed on %s", listener, type(event).__name__)


def _own_method(listener: Any, name: str) -> Any:
    """The listener's method, unless it is StreamingListener's empty default."""
    method = getattr(listener, name, None)
    if method is None:
        return None
    default = getattr(StreamingListener, name, None)
    if default is not None and getattr(method, "__func__", None) is default:
        return None
    return method


