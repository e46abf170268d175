"""The live feed of open pages: a server-sent-events stream per client.

Every batch transition (submitted, started, completed) and receiver report becomes one
small JSON message, encoded once and offered to every client's bounded queue without
waiting. A client that does not keep up (its queue is full: a slow network, a stalled
tab) is dropped, its stream ends, and its browser reconnects and reloads the page's
data. So open pages never hold up the listener bus, let alone the batch clock; with no
page open a message is not even encoded.
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

#: Messages a client may have pending before it counts as lagging and is dropped.
CLIENT_QUEUE_SIZE = 64


class LiveFeed(StreamingListener):
    def __init__(self, status: StreamingStatus, queue_size: int = CLIENT_QUEUE_SIZE) -> None:
        self._status = status
        self._queue_size = queue_size
        self._clients: set[MemoryObjectSendStream[bytes]] = set()
        self.dropped = 0
        self.closed = False

    @property
    def clients(self) -> int:
        return len(self._clients)

    def subscribe(self) -> MemoryObjectReceiveStream[bytes]:
        """A new client's queue; it ends when the client is dropped or the feed closes."""
        send, receive = anyio.create_memory_object_stream[bytes](self._queue_size)
        if self.closed:
            send.close()
        else:
            self._clients.add(send)
        return receive

    def unsubscribe(self, queue: MemoryObjectReceiveStream[bytes]) -> None:
        queue.close()  # its send side then fails and is removed at the next message

    def close(self) -> None:
        """End every client's stream (the server is stopping)."""
        self.closed = True
        for send in self._clients:
            send.close()
        self._clients.clear()

    def publish(self, event: str, data: Any) -> None:
        if not self._clients:
            return
        message = b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for send in list(self._clients):
            try:
                send.send_nowait(message)
            except anyio.WouldBlock:  # lagging: drop it rather than wait or grow
                self.dropped += 1
                self._drop(send)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(send)

    def _drop(self, send: MemoryObjectSendStream[bytes]) -> None:
        self._clients.discard(send)
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


async def event_stream(feed: LiveFeed) -> AsyncIterator[bytes]:
    """The body of one client's ``text/event-stream`` response."""
    queue = feed.subscribe()
    try:
        yield b"retry: 2000\n\n"  # reconnect after 2 s when dropped or the server restarts
        async with queue:
            async for message in queue:
                yield message
    finally:
        feed.unsubscribe(queue)
