"""PySpark's ``StreamingListener`` and the event objects its methods receive.

PySpark hands a listener Java objects through py4j: ``batchCompleted.batchInfo()`` is
Spark's Java-friendly BatchInfo, whose accessors return milliseconds (``-1`` for a time or
delay not known yet) and ``batchTime()`` a ``Time`` with ``milliseconds()``. The classes
here give the same accessors over the engine's own events (``scheduler.listener``).

One convention follows Spark on purpose: a queue stream reports no input, so its records
count 0 in ``numRecords()`` and it has no entry in ``streamIdToInputInfo()`` (Spark's
``QueueInputDStream`` never reports to its input tracker). The engine's own
``BatchInfo.num_records`` counts them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ...dstream.functions import is_async_callable
from ...scheduler import listener as events
from ...scheduler.batch_info import BatchInfo, OutputOperationInfo, StreamInputInfo

if TYPE_CHECKING:
    from .context import StreamingContext


def _ms(seconds: float | None) -> int:
    """Seconds on the context's clock as Spark's milliseconds; -1 when unknown."""
    return -1 if seconds is None else round(seconds * 1000)


class Time:
    """Spark's ``Time``: a batch time in milliseconds."""

    __slots__ = ("_ms",)

    def __init__(self, millis: int) -> None:
        self._ms = int(millis)

    def milliseconds(self) -> int:
        """The time in milliseconds since the epoch."""
        return self._ms

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Time) and other._ms == self._ms

    def __lt__(self, other: Time) -> bool:
        return self._ms < other._ms

    def __hash__(self) -> int:
        return hash(self._ms)

    def __repr__(self) -> str:
        return f"{self._ms} ms"


class JavaStreamInputInfo:
    """What one input stream contributed to a batch (Spark's StreamInputInfo)."""

    def __init__(self, info: StreamInputInfo) -> None:
        self._info = info

    def inputStreamId(self) -> int:
        """The input stream's id."""
        return self._info.input_stream_id

    def numRecords(self) -> int:
        """Records the stream put into the batch."""
        return self._info.num_records

    def metadata(self) -> dict[str, Any]:
        """What the source reports about its input (Kafka offset ranges, a rate bound)."""
        return dict(self._info.metadata)

    def metadataDescription(self) -> str | None:
        """The human-readable summary (``metadata()["Description"]``; a source that files
        it under ``"description"`` is read too), if any."""
        metadata = self._info.metadata
        description = metadata.get("Description", metadata.get("description"))
        return None if description is None else str(description)


class JavaOutputOperationInfo:
    """One output operation of one batch (Spark's OutputOperationInfo)."""

    def __init__(self, info: OutputOperationInfo) -> None:
        self._info = info

    def batchTime(self) -> Time:
        """The batch's time."""
        return Time(_ms(self._info.batch_time))

    def id(self) -> int:
        """The output operation's id (the order it was registered in)."""
        return self._info.id

    def name(self) -> str:
        """The operation (``foreachRDD``, ``pprint``, ...) and its stream."""
        return self._info.name

    def description(self) -> str:
        """Spark shows a call site here; the engine shows the name."""
        return self._info.name

    def startTime(self) -> int:
        """When it started, in ms; -1 if it has not."""
        return _ms(self._info.start_time)

    def endTime(self) -> int:
        """When it ended, in ms; -1 if it has not."""
        return _ms(self._info.end_time)

    def duration(self) -> int:
        """How long it ran, in ms; -1 if it has not finished."""
        return _ms(self._info.duration)

    def failureReason(self) -> str | None:
        """Why it failed, or None."""
        return self._info.failure_reason


class JavaBatchInfo:
    """One batch, as PySpark's listeners see it (Spark's Java-friendly BatchInfo)."""

    def __init__(self, info: BatchInfo, unreported: frozenset[int] = frozenset()) -> None:
        self._info = info
        self._unreported = unreported

    def batchTime(self) -> Time:
        """The batch's time."""
        return Time(_ms(self._info.batch_time))

    def submissionTime(self) -> int:
        """When the batch was submitted to the scheduler, in ms."""
        return _ms(self._info.submission_time)

    def processingStartTime(self) -> int:
        """When its first job started, in ms; -1 if none has."""
        return _ms(self._info.processing_start_time)

    def processingEndTime(self) -> int:
        """When its last job ended, in ms; -1 if it has not."""
        return _ms(self._info.processing_end_time)

    def schedulingDelay(self) -> int:
        """Processing start minus submission, in ms; -1 until it starts."""
        start = self.processingStartTime()
        return -1 if start < 0 else start - self.submissionTime()

    def processingDelay(self) -> int:
        """Processing end minus start, in ms; -1 until it ends."""
        start, end = self.processingStartTime(), self.processingEndTime()
        return -1 if start < 0 or end < 0 else end - start

    def totalDelay(self) -> int:
        """Scheduling plus processing delay, in ms; -1 until it ends."""
        processing = self.processingDelay()
        return -1 if processing < 0 else self.schedulingDelay() + processing

    def streamIdToInputInfo(self) -> dict[int, JavaStreamInputInfo]:
        """Each reporting input stream's contribution, by stream id (queue streams do not
        report, as in Spark)."""
        return {
            stream_id: JavaStreamInputInfo(info)
            for stream_id, info in self._info.stream_id_to_input_info.items()
            if stream_id not in self._unreported
        }

    def numRecords(self) -> int:
        """Records of the batch from every reporting input stream."""
        return sum(info.numRecords() for info in self.streamIdToInputInfo().values())

    def outputOperationInfos(self) -> dict[int, JavaOutputOperationInfo]:
        """Each output operation of the batch, by id."""
        return {i: JavaOutputOperationInfo(o) for i, o in self._info.output_operation_infos.items()}


class JavaReceiverInfo:
    """A receiver's state (Spark's ReceiverInfo)."""

    def __init__(self, info: events.ReceiverInfo) -> None:
        self._info = info

    def streamId(self) -> int:
        """The id of the receiver's input stream."""
        return self._info.stream_id

    def name(self) -> str:
        """The receiver's name."""
        return self._info.name

    def active(self) -> bool:
        """Whether it is receiving."""
        return self._info.active

    def location(self) -> str:
        """Where it runs: receivers run on the driver's event loop."""
        return "driver"

    def executorId(self) -> str:
        """Receivers run on the driver."""
        return "driver"

    def lastErrorMessage(self) -> str:
        """The last error it reported ("" if none)."""
        return self._info.last_error

    def lastError(self) -> str:
        """The last error it reported ("" if none)."""
        return self._info.last_error

    def lastErrorTime(self) -> int:
        """Not tracked: -1."""
        return -1


class _Event:
    """A listener event with Spark's accessor for its payload."""

    def __init__(self, payload: Any) -> None:
        self._payload = payload


class StreamingListenerStreamingStarted(_Event):
    def time(self) -> int:
        """When the context started, in ms."""
        return int(self._payload)


class _ReceiverEvent(_Event):
    def receiverInfo(self) -> JavaReceiverInfo:
        """The receiver concerned."""
        return JavaReceiverInfo(self._payload)


class StreamingListenerReceiverStarted(_ReceiverEvent):
    pass


class StreamingListenerReceiverError(_ReceiverEvent):
    pass


class StreamingListenerReceiverStopped(_ReceiverEvent):
    pass


class _BatchEvent(_Event):
    def batchInfo(self) -> JavaBatchInfo:
        """The batch concerned."""
        return self._payload  # type: ignore[no-any-return]


class StreamingListenerBatchSubmitted(_BatchEvent):
    pass


class StreamingListenerBatchStarted(_BatchEvent):
    pass


class StreamingListenerBatchCompleted(_BatchEvent):
    pass


class _OutputEvent(_Event):
    def outputOperationInfo(self) -> JavaOutputOperationInfo:
        """The output operation concerned."""
        return self._payload  # type: ignore[no-any-return]


class StreamingListenerOutputOperationStarted(_OutputEvent):
    pass


class StreamingListenerOutputOperationCompleted(_OutputEvent):
    pass


class StreamingListener:
    """Subclass it and override the methods you need (PySpark's names and arguments)."""

    def onStreamingStarted(self, streamingStarted: StreamingListenerStreamingStarted) -> None:
        """Called when the context has started."""

    def onReceiverStarted(self, receiverStarted: StreamingListenerReceiverStarted) -> None:
        """Called when a receiver has started."""

    def onReceiverError(self, receiverError: StreamingListenerReceiverError) -> None:
        """Called when a receiver reports an error."""

    def onReceiverStopped(self, receiverStopped: StreamingListenerReceiverStopped) -> None:
        """Called when a receiver has stopped."""

    def onBatchSubmitted(self, batchSubmitted: StreamingListenerBatchSubmitted) -> None:
        """Called when a batch's jobs are submitted."""

    def onBatchStarted(self, batchStarted: StreamingListenerBatchStarted) -> None:
        """Called when a batch's first job starts."""

    def onBatchCompleted(self, batchCompleted: StreamingListenerBatchCompleted) -> None:
        """Called when every job of a batch has ended."""

    def onOutputOperationStarted(
        self, outputOperationStarted: StreamingListenerOutputOperationStarted
    ) -> None:
        """Called when an output operation of a batch starts."""

    def onOutputOperationCompleted(
        self, outputOperationCompleted: StreamingListenerOutputOperationCompleted
    ) -> None:
        """Called when an output operation of a batch ends."""


def _operation_as_posted(info: OutputOperationInfo, started: bool, ended: bool) -> OutputOperationInfo:
    """A copy of ``info`` as an event posted at that point describes it (see
    ``_batch_as_posted``)."""
    return dataclasses.replace(
        info,
        start_time=info.start_time if started else None,
        end_time=info.end_time if ended else None,
        failure_reason=info.failure_reason if ended else None,
    )


def _batch_as_posted(info: BatchInfo, started: bool, ended: bool) -> BatchInfo:
    """A copy of ``info`` as Spark's event describes the batch. The engine goes on updating
    its BatchInfo while an event waits for a listener; Spark's events carry the batch as it
    was when they were posted: nothing has started at submission, nothing has ended when
    the batch starts."""
    return dataclasses.replace(
        info,
        stream_id_to_input_info={
            stream_id: dataclasses.replace(input_info, metadata=dict(input_info.metadata))
            for stream_id, input_info in info.stream_id_to_input_info.items()
        },
        processing_start_time=info.processing_start_time if started else None,
        processing_end_time=info.processing_end_time if ended else None,
        output_operation_infos={
            op_id: _operation_as_posted(op, started, ended)
            for op_id, op in info.output_operation_infos.items()
        },
    )


class ListenerBridge:
    """What the context's listener bus holds for a PySpark-style listener: it turns the
    engine's events into PySpark's event objects and calls the listener's method.

    PySpark calls listeners on a thread of their own, and a ported listener is blocking
    code (it may print, write a file, post to a dashboard): a plain method runs on a worker
    thread, so the engine's event loop (receivers, the batch clock) never waits for it.
    The bus still delivers one event at a time, in order. An ``async def`` method runs on
    the loop. Methods the listener leaves as ``StreamingListener``'s no-ops are skipped.
    """

    def __init__(self, listener: Any, ssc: StreamingContext) -> None:
        self.listener = listener
        self._ssc = ssc

    def _call(self, method: str, event: Any) -> Awaitable[Any] | None:
        handler = getattr(self.listener, method, None)
        if handler is None or getattr(type(self.listener), method, None) is getattr(
            StreamingListener, method
        ):
            return None
        if is_async_callable(handler):
            return handler(event)  # type: ignore[no-any-return]
        return anyio.to_thread.run_sync(handler, event)

    def _batch(self, info: BatchInfo, started: bool, ended: bool) -> JavaBatchInfo:
        return JavaBatchInfo(_batch_as_posted(info, started, ended), self._ssc._unreported_input_ids())

    def on_streaming_started(self, event: events.StreamingStarted) -> Any:
        return self._call("onStreamingStarted", StreamingListenerStreamingStarted(_ms(event.time)))

    def on_receiver_started(self, event: events.ReceiverStarted) -> Any:
        return self._call("onReceiverStarted", StreamingListenerReceiverStarted(event.receiver_info))

    def on_receiver_error(self, event: events.ReceiverError) -> Any:
        return self._call("onReceiverError", StreamingListenerReceiverError(event.receiver_info))

    def on_receiver_stopped(self, event: events.ReceiverStopped) -> Any:
        return self._call("onReceiverStopped", StreamingListenerReceiverStopped(event.receiver_info))

    def on_batch_submitted(self, event: events.BatchSubmitted) -> Any:
        batch = self._batch(event.batch_info, started=False, ended=False)
        return self._call("onBatchSubmitted", StreamingListenerBatchSubmitted(batch))

    def on_batch_started(self, event: events.BatchStarted) -> Any:
        batch = self._batch(event.batch_info, started=True, ended=False)
        return self._call("onBatchStarted", StreamingListenerBatchStarted(batch))

    def on_batch_completed(self, event: events.BatchCompleted) -> Any:
        batch = self._batch(event.batch_info, started=True, ended=True)
        return self._call("onBatchCompleted", StreamingListenerBatchCompleted(batch))

    def on_output_operation_started(self, event: events.OutputOperationStarted) -> Any:
        info = _operation_as_posted(event.output_operation_info, started=True, ended=False)
        return self._call(
            "onOutputOperationStarted", StreamingListenerOutputOperationStarted(JavaOutputOperationInfo(info))
        )

    def on_output_operation_completed(self, event: events.OutputOperationCompleted) -> Any:
        info = _operation_as_posted(event.output_operation_info, started=True, ended=True)
        return self._call(
            "onOutputOperationCompleted",
            StreamingListenerOutputOperationCompleted(JavaOutputOperationInfo(info)),
        )
