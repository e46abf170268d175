"""The live feed of open pages: a server-sent-events stream per client.

Every batch transition (submitted, started, completed) and receiver report becomes one
small JSON message, encoded once. Messages are sent to the pages in bursts, every
``FLUSH_INTERVAL`` seconds (a page redraws at most that often anyway), so a 0.1 s batch
costs each page a write every few batches, not three per batch. Each burst is offered to
every client's bounded queue without waiting; a client that does not keep up (its queue
is full: a slow network, a stalled tab) is dropped, its stream ends, and its browser
reconnects and reloads the page's data. So open pages never hold up the listener bus, let
alone the batch clock; with no page open nothing is encoded. A burst holds at most
``MAX_BURST`` messages: past that (a flood of events, a loop too busy to flush) the burst
is replaced by one ``reload`` message, and the pages reload their data instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..scheduler.batch_info import BatchInfo
from ..scheduler.listener import (
    BatchCompleted,
    BatchStarted,
    BatchSubmitted,
    ReceiverError,
    ReceiverStarted,
    ReceiverStopped,
    StreamingListener,
)
from .status import StreamingStatus
from .views import batch_row

#: Bursts a client may have pending before it counts as lagging and is dropped (4 s).
CLIENT_QUEUE_SIZE = 16
#: Seconds between bursts (real time: it paces writes to browsers, not batches).
FLUSH_INTERVAL = 0.25
#: Messages a burst may hold; past it the burst is one ``reload`` message.
MAX_BURST = 256
RELOAD = b"event: reload\ndata: {}\n\n"

Queue = MemoryObjectReceiveStream[bytes]


class LiveFeed(StreamingListener):
    """A listener that turns batch and receiver events into messages for open pages."""

    def __init__(self, status: StreamingStatus, queue_size: int = CLIENT_QUEUE_SIZE) -> None:
        self._status = status
        self._queue_size = queue_size
        self._clients: dict[Queue, MemoryObjectSendStream[bytes]] = {}
        self._pending: list[bytes] = []
        self.dropped = 0
        self.closed = False

    @property
    def clients(self) -> int:
        """Pages following the feed now."""
        return len(self._clients)

    def subscribe(self) -> Queue:
        """A new client's queue; it ends when the client is dropped or the feed closes."""
        send, receive = anyio.create_memory_object_stream[bytes](self._queue_size)
        if self.closed:
            send.close()
        else:
            self._clients[receive] = send
        return receive

    def unsubscribe(self, queue: Queue) -> None:
        """The client has gone (its response ended)."""
        self._drop(queue)
        queue.close()

    def close(self) -> None:
        """Send what is queued, then end every client's stream (the server is stopping)."""
        self.flush()
        self.closed = True
        for queue in list(self._clients):
            self._drop(queue)

    def publish(self, event: str, data: Any) -> None:
        """Queue a message for the next burst (nothing when no page is open)."""
        if not self._clients or self._pending == [RELOAD]:
            return
        if len(self._pending) >= MAX_BURST:
            self._pending = [RELOAD]  # too much to send: the pages reload instead
            return
        self._pending.append(
            b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        )

    def flush(self) -> None:
        """Offer the messages queued since the last burst to every page, never waiting."""
        if not self._pending:
            return
        burst = b"".join(self._pending)
        self._pending.clear()
        for queue, send in list(self._clients.items()):
            try:
                send.send_nowait(burst)
            except anyio.WouldBlock:  # lagging: drop it rather than wait or grow
                self.dropped += 1
                self._drop(queue)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(queue)

    async def run(self) -> None:
        """Send a burst every ``FLUSH_INTERVAL`` seconds; one of the UI's tasks."""
        while True:
            await anyio.sleep(FLUSH_INTERVAL)
            self.flush()

    def _drop(self, queue: Queue) -> None:
        """End a client's stream: it gets what its queue holds, then the end."""
        send = self._clients.pop(queue, None)
        if send is not None:
            send.close()

    # ---- listener events ----------------------------------------------------------------

    def _batch(self, info: BatchInfo) -> None:
        if self._clients:
            self.publish("batch", batch_row(self._status, info))

    def on_batch_submitted(self, event: BatchSubmitted) -> None:
        self._batch(event.batch_info)

    def on_batch_started(self, event: BatchStarted) -> None:
        self._batch(event.batch_info)

    def on_batch_completed(self, event: BatchCompleted) -> None:
        self._batch(event.batch_info)

    def _receiver(self) -> None:
        self.publish("receiver", {})

    def on_receiver_started(self, event: ReceiverStarted) -> None:
        self._receiver()

    def on_receiver_error(self, event: ReceiverError) -> None:
        self._receiver()

    def on_receiver_stopped(self, event: ReceiverStopped) -> None:
        self._receiver()

    def on_stream_rate_updated(self, event: Any) -> None:
        """Backpressure set a new bound (``StreamRateUpdated``): pages reload the streams."""
        self._receiver()


async def event_stream(feed: LiveFeed) -> AsyncIterator[bytes]:
    """The body of one client's ``text/event-stream`` response."""
    queue = feed.subscribe()
    try:
        yield b"retry: 2000\n\n"  # reconnect after 2 s when dropped or the server restarts
        async with queue:
            async for burst in queue:
                yield burst
    finally:
        feed.unsubscribe(queue)
