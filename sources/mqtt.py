"""mqtt_stream: messages from an MQTT broker (MQTT 5 or 3.1.1), through our own lean asyncio
client (``mqtt_client``, ``mqtt_protocol``: why not aiomqtt is explained there: throughput).

Receiving. The event loop does as little per message as it can: the connection queues what
the socket gives (``mqtt_client``), the receive loop frames it in bounded steps and copies
runs of PUBLISH packets, undecoded, into a block (``mqtt_reader``, ``mqtt_block``); a block
is handed over when ``max_block_records`` or ``max_block_bytes`` are reached, when half the
broker's window of unacknowledged messages (QoS >= 1) is in it, or every block interval;
a second task stores blocks (and acknowledges them) while the next one fills. Messages are
decoded on the workers, as the first stage of the stream's tasks.

Block size. Blocks wait for their batch in a queue of ``block_queue_size`` blocks (10 by
default), so a receiver takes at most that many blocks per batch interval: blocks cut at
5,000 records held a 1 s batch to 50,000 messages (measured: 48,900 msg/s against
mosquitto's 87,000 here, the driver and the workers mostly idle). ``max_block_records``
defaults to 20,000, as the Kafka receiver's: blocks of a block interval of up to 100,000
msg/s, cut sooner by ``max_block_bytes`` (4 MiB) or the broker's window; the receive loop's
steps stay bounded whatever the block's size.

Delivery. With QoS >= 1 a message is acknowledged to the broker (PUBACK; PUBREC for QoS 2)
only after the block holding it is stored: ``store_block`` returned, so it is in the
write-ahead log when that is on; the acknowledgements of a block go out in one write. A
crash or a lost connection before that leaves the message unacknowledged, and the broker
delivers it again to the same session: nothing acknowledged is ever lost (at least once;
the redelivery filter, ``mqtt_redelivery``, drops what was stored but not acknowledged).

Overload. A store waits while the receivers' byte budget (``receiver_max_pending_bytes``)
or the block queue is full; the receive loop then stops framing, the connection stops
reading past ``max_queued_bytes``, and the broker keeps the rest (QoS >= 1: Receive
Maximum, then TCP). The connection stays up meanwhile: keepalive pings go on, and a ping
answer that waits unread behind the messages is not taken for a dead broker.

Sessions. ``clean_start=False`` with a fixed ``client_id`` asks the broker to keep the
session (subscriptions and undelivered QoS >= 1 messages) for ``session_expiry`` seconds
(MQTT 5 needs a non-zero Session Expiry Interval for that), so messages published while the
receiver was away arrive after it reconnects; they are stored as they come, also while the
receiver still waits for its SUBACK. Without a ``client_id`` one is generated per receiver,
kept across its reconnections (not across processes).

Reconnection. A lost connection ends the receiver's run with an error; the supervisor
reports it to listeners (``on_receiver_error``) and reconnects after an exponential backoff
with jitter on the engine's clock (``receiver_restart_delay``, doubling up to 60 s; reset
once connected again).

Load sharing. ``num_receivers`` > 1 needs ``shared_group``: each receiver subscribes to
``$share/<group>/<filter>`` (MQTT 5 shared subscriptions), the broker spreads the messages
over them, and their streams are unioned into one.

Decoding. ``decoder`` is "json" (orjson), "text" (UTF-8), "raw" (bytes) or a callable on the
payload bytes (it travels to the workers with the tasks). A payload that fails to decode
becomes ``DeadLetter(topic, payload bytes, error)``: in the ``dead_letters()`` stream, in
arrival order, counted in the batch's info (the stream's records are the messages that
decoded), counted on the receiver (``MqttReceiver.dead_letter_count``) and reported to
listeners once its batch completes; it was acknowledged like any other message and never
stops the receiver.
"""

from __future__ import annotations

import math
import ssl
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from aiostream_engine.decoding import DeadLetterInputDStream, DecodedReceiverInputDStream
from aiostream_engine.dstream.base import DStream
from aiostream_engine.dstream.transformed import UnionDStream
from aiostream_engine.receiver.base import Receiver
from aiostream_engine.scheduler.rate.controller import share_rate_controller
from aiostream_engine.sources.mqtt_block import (
    DeadLetter,
    MqttRecord,
    PublishBlock,
    PublishBlockBuilder,
    PublishDecoder,
)
from aiostream_engine.sources.mqtt_client import DEFAULT_MAX_QUEUED_BYTES, MqttConnection
from aiostream_engine.sources.mqtt_protocol import CONNACK, TIMESTAMP_PROPERTY, MqttError, ProtocolError
from aiostream_engine.sources.mqtt_reader import STEP_PACKETS, PublishFramer
from aiostream_engine.sources.mqtt_redelivery import RedeliveryFilter

if TYPE_CHECKING:
    from aiostream_engine.context import StreamingContext

__all__ = [
    "DeadLetter", "MqttError", "MqttInputDStream", "MqttReceiver", "MqttRecord",
    "MqttUnionDStream", "ProtocolError", "TIMESTAMP_PROPERTY", "mqtt_stream", "resolve_decoder",
]

#: MQTT 5 (the default: message properties, session expiry) or 3.1.1 (no properties).
#: mosquitto serves shared subscriptions ($share/...) to 3.1.1 clients too.
PROTOCOLS = ("5", "3.1.1")
DEFAULT_SESSION_EXPIRY = 24 * 3600
#: Under the lowest rate bound the connection still queues this much before it pauses.
MIN_QUEUED_BYTES = 64 << 10

Decoder = Callable[[bytes], Any]


def _text(payload: bytes) -> str:
    return payload.decode("utf-8")


def _raw(payload: bytes) -> bytes:
    return payload


DECODERS: dict[str, Decoder] = {"json": orjson.loads, "text": _text, "raw": _raw}


def resolve_decoder(decoder: str | Decoder) -> Decoder:
    if callable(decoder):
        return decoder
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {sorted(DECODERS)} or a callable, got {decoder!r}")
    return DECODERS[decoder]


class MqttReceiver(Receiver):
    """Subscribes to ``topics`` and stores what arrives as raw blocks (see the module
    docstring), acknowledging a block's messages once it is stored."""

    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        topics: Sequence[str],
        *,
        qos: int = 1,
        client_id: str | None = None,
        clean_start: bool = False,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | bool | None = None,
        decoder: str | Decoder = "json",
        shared_group: str | None = None,
        session_expiry: int = DEFAULT_SESSION_EXPIRY,
        max_block_records: int = 20_000,
        max_block_bytes: int = 4 << 20,
        max_inflight: int = 1000,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        keepalive: int = 30,
        protocol: str = "5",
    ) -> None:
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
        self.protocol = protocol
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        self.host, self.port, self.qos = host, port, qos
        self.filters = [f"$share/{shared_group}/{t}" if shared_group else t for t in topics]
        self.client_id = client_id or f"aiostream-{uuid.uuid4().hex[:12]}"
        self.clean_start = clean_start
        self.username, self.password = username, password
        self.tls = ssl.create_default_context() if tls is True else (tls or None)
        self.decoder = PublishDecoder(resolve_decoder(decoder))
        self.session_expiry = session_expiry
        self.max_block_records = max_block_records
        self.max_block_bytes = max_block_bytes
        self.max_inflight = max_inflight
        self.max_queued_bytes = max_queued_bytes
        self.keepalive = keepalive
        #: The connection while a run is connected (None otherwise).
        self.client: MqttConnection | None = None
        #: Messages read from the broker (a redelivered message counts again).
        self.messages_received = 0
        #: Messages stored (and acknowledged); dropped redeliveries are not stored again.
        self.messages_stored = 0
        #: Messages whose payload did not decode (counted as their batches complete).
        self.dead_letter_count = 0
        self.connections = 0
        self.redeliveries = RedeliveryFilter(max_inflight)
        self._builder = PublishBlockBuilder(protocol == "5")
        #: Times the connection stopped reading because the engine could not keep up.
        self.pauses = 0
        #: Records per block under a rate bound (max_block_records without one).
        self._bounded_block = max_block_records

    def _connection(self) -> MqttConnection:
        return MqttConnection(
            self.host, self.port, client_id=self.client_id, now=self.clock.now,
            protocol=self.protocol, clean_start=self.clean_start, keepalive=self.keepalive,
            username=self.username, password=self.password, tls=self.tls,
            # MQTT 5 needs a non-zero Session Expiry Interval to keep the session.
            session_expiry=0 if self.clean_start else self.session_expiry,
            # Receive Maximum: the broker sends at most this many unacknowledged messages.
            receive_maximum=self.max_inflight,
            max_queued_bytes=self.max_queued_bytes,
        )

    async def on_start(self) -> None:
        await self.redeliveries.prepare()
        conn = self._connection()
        self._builder = PublishBlockBuilder(self.protocol == "5")
        send, receive = anyio.create_memory_object_stream[PublishBlockBuilder](0)
        try:
            async with anyio.create_task_group() as tg:
                await conn.open()
                framer = PublishFramer(self.protocol == "5", self.redeliveries,
                                       self._control_handler(conn))
                tg.start_soon(self._read, conn, framer, send)
                tg.start_soon(self._store, conn, receive)
                # The timer counts from now, not from when its task first runs.
                tg.start_soon(self._cut_every_block_interval, send, self.clock.now())
                await conn.connected()
                self.client = conn
                await self._subscribe(conn)
                self.connections += 1
                self.report_healthy()
        except BaseExceptionGroup as group:
            # The tasks fail for the same reason (the lost connection): report the first.
            if all(isinstance(e, Exception) for e in group.exceptions):
                raise group.exceptions[0] from None
            raise
        finally:
            self.client = None
            self.pauses += conn.pauses
            conn.close()

    def _control_handler(self, conn: MqttConnection) -> Callable[[int, int, bytes], None]:
        def control(kind: int, flags: int, body: bytes) -> None:
            conn.handle_control(kind, flags, body)
            if kind == CONNACK and body and body[0] & 1:  # session present: resends may lead
                self.redeliveries.connected()

        return control

    async def _read(
        self, conn: MqttConnection, framer: PublishFramer, blocks: MemoryObjectSendStream[PublishBlockBuilder]
    ) -> None:
        """Frame what arrives into blocks, one bounded step per event-loop turn."""
        before = self.messages_received
        while True:
            await self._rate_gate(conn)
            arrival, chunk = await conn.next_chunk()
            buf = framer.join(chunk)
            if buf is not None:
                pos = 0
                while True:
                    room = self._bounded_block - self._builder.count
                    pos = framer.frame(buf, pos, self._builder, arrival,
                                       min(STEP_PACKETS, max(1, room)))
                    self.messages_received = before + framer.received
                    if self._block_full():
                        await self._hand_over(blocks)
                    if not framer.complete(buf, pos):
                        break
                    await anyio.lowlevel.checkpoint()
                framer.keep(buf, pos)
            conn.framed(len(chunk))

    def _block_full(self) -> bool:
        """Hand a block over before the block interval when it is full, or when the broker
        is about to stop sending (half its window of unacknowledged messages), or under a
        rate bound when it holds a block interval of the bound (so a lower bound is taken
        in small, evenly paced blocks, each stored once the rate allows it)."""
        builder = self._builder
        return (
            builder.count >= self.max_block_records
            or builder.nbytes >= self.max_block_bytes
            or len(builder.acks) >= self.max_inflight // 2
            or builder.count >= self._bounded_block
        )

    async def _rate_gate(self, conn: MqttConnection) -> None:
        """The rate gate: under a rate bound (receiver_max_rate, backpressure) read no more
        until the blocks stored are paid for, in blocks of a block interval of the bound,
        and let the connection queue about a second of the bound before it stops reading
        the socket: TCP flow control holds the rest at the broker (and, with QoS >= 1, its
        window of unacknowledged messages)."""
        bound = self.rate_limit
        if bound is None:
            self._bounded_block = self.max_block_records
            conn.max_queued_bytes = self.max_queued_bytes
            return
        self._bounded_block = max(1, math.ceil(bound * self.block_interval))
        builder = self._builder
        message_bytes = builder.nbytes / builder.count if builder.count else 256
        conn.max_queued_bytes = max(
            MIN_QUEUED_BYTES, min(self.max_queued_bytes, int(bound * message_bytes))
        )
        await self.wait_for_rate()

    async def _hand_over(self, blocks: MemoryObjectSendStream[PublishBlockBuilder]) -> None:
        builder, self._builder = self._builder, PublishBlockBuilder(self.protocol == "5")
        await blocks.send(builder)

    async def _cut_every_block_interval(
        self, blocks: MemoryObjectSendStream[PublishBlockBuilder], deadline: float
    ) -> None:
        while True:
            deadline += self.block_interval
            await self.clock.sleep_until(deadline)
            if self._builder.count or self._builder.acks:
                await self._hand_over(blocks)

    async def _store(
        self, conn: MqttConnection, blocks: MemoryObjectReceiveStream[PublishBlockBuilder]
    ) -> None:
        """Store each block (waiting while the budget or the block queue is full), then
        acknowledge its messages."""
        async for builder in blocks:
            if builder.count:
                block = builder.build()
                await self.store_block(block)
                if self.qos:
                    self.redeliveries.remember(block)
                self.messages_stored += builder.count
            conn.ack(builder.acks)

    async def _subscribe(self, conn: MqttConnection) -> None:
        codes = await conn.subscribe(self.filters, self.qos)
        refused = [(f, f"0x{c:02x}") for f, c in zip(self.filters, codes, strict=False) if c >= 0x80]
        if refused or len(codes) != len(self.filters):
            raise MqttError(f"subscription refused: {refused or codes}")

    def on_recovered(self, blocks: list[Any]) -> None:
        """The write-ahead log's blocks (oldest first): the messages stored before a crash,
        whose PUBACK the broker may not have read."""
        for block in blocks:
            if isinstance(block, PublishBlock):
                self.redeliveries.remember(block)

    def on_decoded(self, time_ms: int, records: int, dead_letters: list[DeadLetter]) -> None:
        """A batch's messages were decoded on the workers: count and report its dead
        letters (the stream calls it as the batch completes)."""
        if not dead_letters:
            return
        self.dead_letter_count += len(dead_letters)
        first = dead_letters[0]
        self.report_error(
            f"{len(dead_letters)} undecodable payload(s) sent to dead letters "
            f"(first on {first.topic}: {first.error})"
        )


class MqttInputDStream(DecodedReceiverInputDStream):
    """The stream of one MQTT receiver, decoded on the workers; ``dead_letters()`` holds
    ``DeadLetter(topic, payload bytes, error)`` of every payload that failed to decode
    (call it before the context starts)."""

    receiver: MqttReceiver

    def __init__(self, ssc: StreamingContext, receiver: MqttReceiver, name: str) -> None:
        super().__init__(ssc, receiver, name)

    def dead_letters(self) -> DeadLetterInputDStream:
        return super().dead_letters()


class MqttUnionDStream(UnionDStream):
    """Several MQTT receivers sharing a subscription, as one stream."""

    def __init__(self, ssc: StreamingContext, parts: list[MqttInputDStream]) -> None:
        super().__init__(ssc, list(parts))
        self.parts = parts
        self._dead: DStream | None = None

    @property
    def receivers(self) -> list[MqttReceiver]:
        return [p.receiver for p in self.parts]

    def dead_letters(self) -> DStream:
        if self._dead is None:
            self._dead = UnionDStream(self._ssc, [p.dead_letters() for p in self.parts])
        return self._dead


MqttStream = MqttInputDStream | MqttUnionDStream


def mqtt_stream(
    ssc: StreamingContext,
    host: str,
    port: int = 1883,
    topics: str | Sequence[str] = (),
    *,
    qos: int = 1,
    client_id: str | None = None,
    clean_start: bool = False,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | bool | None = None,
    decoder: str | Decoder = "json",
    num_receivers: int = 1,
    shared_group: str | None = None,
    **options: Any,
) -> MqttStream:
    """Build the receiver(s) and their stream; see the module docstring. ``options``:
    session_expiry, max_block_records, max_block_bytes, max_inflight, max_queued_bytes,
    keepalive, protocol ("5" or "3.1.1") (of ``MqttReceiver``)."""
    filters = [topics] if isinstance(topics, str) else list(topics)
    if not filters:
        raise ValueError("mqtt_stream needs at least one topic filter")
    if num_receivers < 1:
        raise ValueError(f"num_receivers must be >= 1, got {num_receivers}")
    if num_receivers > 1 and not shared_group:
        raise ValueError(
            "num_receivers > 1 needs shared_group: without a shared subscription every "
            "receiver would get every message"
        )
    resolve_decoder(decoder)  # fail now, not in the receiver
    parts = []
    for index in range(num_receivers):
        receiver = MqttReceiver(
            host, port, filters, qos=qos,
            client_id=f"{client_id}-{index}" if client_id and num_receivers > 1 else client_id,
            clean_start=clean_start, username=username, password=password, tls=tls,
            decoder=decoder, shared_group=shared_group, **options,
        )
        parts.append(MqttInputDStream(ssc, receiver, f"mqtt_stream[{index}]"))
    if num_receivers == 1:
        return parts[0]
    # One stream with N receivers: one backpressure bound, split evenly over them.
    share_rate_controller(parts, f"mqtt_stream({', '.join(filters)})")
    return MqttUnionDStream(ssc, parts)
