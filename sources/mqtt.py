"""mqtt_stream: messages from an MQTT broker (MQTT 5 or 3.1.1), through our own lean asyncio
client (``mqtt_client``, ``mqtt_protocol``: why not aiomqtt is explained there: throughput).

Delivery. With QoS >= 1 a message is acknowledged to the broker (PUBACK; PUBREC for QoS 2)
only after the block holding it is stored: ``store_block`` returned, so it is in the
write-ahead log when that is on; the acknowledgements of a block go out in one write. A
crash or a lost connection before that leaves the message unacknowledged, and the broker
delivers it again to the same session: nothing acknowledged is ever lost (at least once;
the redelivery filter, ``mqtt_redelivery``, drops what was stored but not acknowledged).

Sessions. ``clean_start=False`` with a fixed ``client_id`` asks the broker to keep the
session (subscriptions and undelivered QoS >= 1 messages) for ``session_expiry`` seconds
(MQTT 5 needs a non-zero Session Expiry Interval for that), so messages published while the
receiver was away arrive after it reconnects. Without a ``client_id`` one is generated per
receiver, kept across its reconnections (not across processes).

Reconnection. A lost connection ends the receiver's run with an error; the supervisor
reports it to listeners (``on_receiver_error``) and reconnects after an exponential backoff
with jitter on the engine's clock (``receiver_restart_delay``, doubling up to 60 s; reset
once connected again).

Load sharing. ``num_receivers`` > 1 needs ``shared_group``: each receiver subscribes to
``$share/<group>/<filter>`` (MQTT 5 shared subscriptions), the broker spreads the messages
over them, and their streams are unioned into one.

Decoding. The receiver stores messages undecoded; they are decoded on the workers, as the
first stage of the stream's tasks (``aiostream_engine.decoding``), so the event loop never
runs the decoder. ``decoder`` is "json" (orjson), "text" (UTF-8), "raw" (bytes) or a
callable on the payload bytes (it travels to the workers with the tasks). A payload that
fails to decode becomes ``DeadLetter(topic, payload bytes, error)``: in the
``dead_letters()`` stream, in arrival order, counted in the batch's info (the stream's
records are the messages that decoded), counted on the receiver
(``MqttReceiver.dead_letter_count``) and reported to listeners once its batch completes; it
was acknowledged like any other message and never stops the receiver.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import orjson

from aiostream_engine.decoding import DeadLetterInputDStream, DecodedReceiverInputDStream, ItemDecoder
from aiostream_engine.dstream.base import DStream
from aiostream_engine.dstream.transformed import UnionDStream
from aiostream_engine.receiver.base import Receiver
from aiostream_engine.sources.mqtt_client import MqttClient
from aiostream_engine.sources.mqtt_protocol import (
    TIMESTAMP_PROPERTY,
    MqttError,
    ProtocolError,
    Publish,
)
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

Decoder = Callable[[bytes], Any]


@dataclass(frozen=True, slots=True)
class MqttRecord:
    """One received message."""

    topic: str
    payload: Any
    #: The MQTT 5 user property ``timestamp`` when the publisher or broker set one, else None.
    broker_time: float | None
    #: When the receiver read it, on the engine's clock.
    arrival_time: float
    qos: int
    retain: bool
    #: The MQTT packet identifier (0 for QoS 0): recognises a redelivery after a crash.
    packet_id: int = 0


class DeadLetter(NamedTuple):
    """A message whose payload the decoder refused."""

    topic: str
    payload: bytes
    error: str
    packet_id: int = 0


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


#: A stored, undecoded message: (topic, payload, qos, retain, packet id, broker time,
#: arrival time).
RawMessage = tuple[str, bytes, int, bool, int, "float | None", float]


def _record(decode: Decoder, message: RawMessage) -> MqttRecord:
    topic, payload, qos, retain, mid, timestamp, arrival = message
    return MqttRecord(topic, decode(payload), timestamp, arrival, qos, retain, mid)


def _dead_letter(message: RawMessage, error: Exception) -> DeadLetter:
    return DeadLetter(message[0], message[1], f"{type(error).__name__}: {error}", message[4])


def message_decoder(decoder: str | Decoder) -> ItemDecoder:
    """The worker-side decoder of stored messages: MqttRecords, DeadLetters for payloads
    ``decoder`` refuses."""
    return ItemDecoder(partial(_record, resolve_decoder(decoder)), _dead_letter)


class MqttReceiver(Receiver):
    """Subscribes to ``topics`` and stores what arrives as one block per block interval
    (sooner when ``max_block_records`` are waiting, or half the broker's window of
    unacknowledged messages), acknowledging a block's messages once it is stored."""

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
        max_block_records: int = 5000,
        max_inflight: int = 1000,
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
        self.decoder = message_decoder(decoder)
        self.session_expiry = session_expiry
        self.max_block_records = max_block_records
        self.max_inflight = max_inflight
        self.keepalive = keepalive
        #: The connected client while a run is connected (None otherwise).
        self.client: MqttClient | None = None
        #: (arrival time, burst of messages): received, not yet stored nor acknowledged.
        self._pending: list[tuple[float, list[Publish]]] = []
        self._pending_count = 0
        self._flush_lock = anyio.Lock()
        #: Messages read from the broker (a redelivered message counts again).
        self.messages_received = 0
        #: Messages stored (and acknowledged), dead letters included.
        self.messages_stored = 0
        #: Messages whose payload did not decode (counted as their batches complete).
        self.dead_letter_count = 0
        self.connections = 0
        self.redeliveries = RedeliveryFilter(max_inflight)

    def _client(self) -> MqttClient:
        return MqttClient(
            self.host, self.port, client_id=self.client_id, protocol=self.protocol,
            clean_start=self.clean_start, keepalive=self.keepalive,
            username=self.username, password=self.password, tls=self.tls,
            # MQTT 5 needs a non-zero Session Expiry Interval to keep the session.
            session_expiry=0 if self.clean_start else self.session_expiry,
            # Receive Maximum: the broker sends at most this many unacknowledged messages.
            receive_maximum=self.max_inflight,
            # QoS >= 1 is bounded by Receive Maximum; this bounds QoS 0 bursts.
            max_buffered=max(self.max_inflight, 100_000),
        )

    async def on_start(self) -> None:
        client = self._client()
        try:
            await client.connect()
            self.client = client
            self.redeliveries.connected()
            await self._subscribe(client)
            self.connections += 1
            self.report_healthy()
            await self._receive(client)
        finally:
            self.client = None
            client.close()
            self._pending.clear()  # never acknowledged: the broker sends them again
            self._pending_count = 0

    async def _receive(self, client: MqttClient) -> None:
        """Read bursts of messages until the connection drops (MqttError)."""
        try:
            async with anyio.create_task_group() as tg:
                # The timer counts from now, not from when its task first runs.
                tg.start_soon(self._flush_every_block_interval, client, self.clock.now())
                while True:
                    burst = await client.messages()
                    self._pending.append((self.clock.now(), burst))
                    self._pending_count += len(burst)
                    self.messages_received += len(burst)
                    if self._must_flush():
                        await self._flush(client)
        except BaseExceptionGroup as group:
            # This task and the timer fail for the same reason (the lost connection, seen
            # by both when a flush was under way): report the first error itself.
            if all(isinstance(e, Exception) for e in group.exceptions):
                raise group.exceptions[0] from None
            raise

    def on_recovered(self, blocks: list[Any]) -> None:
        """The write-ahead log's blocks (oldest first): the messages stored before a crash,
        whose PUBACK the broker may not have read."""
        messages = [m for block in blocks for m in block][-self.max_inflight:]
        self.redeliveries.remember((m[4], m[0], m[1]) for m in messages)

    def on_decoded(self, time_ms: int, records: int, dead: list[DeadLetter]) -> None:
        """A batch's messages were decoded on the workers: count and report its dead
        letters (the stream calls it as the batch completes)."""
        if not dead:
            return
        self.dead_letter_count += len(dead)
        self.report_error(
            f"{len(dead)} undecodable payload(s) sent to dead letters "
            f"(first on {dead[0].topic}: {dead[0].error})"
        )

    def _must_flush(self) -> bool:
        """Flush before a block interval passes when the block is full, or when the
        broker is about to stop sending (half its window of unacknowledged messages)."""
        return self._pending_count >= self.max_block_records or (
            self.qos > 0 and self._pending_count >= self.max_inflight // 2
        )

    async def _flush_every_block_interval(self, client: MqttClient, deadline: float) -> None:
        while True:
            deadline += self.block_interval
            await self.clock.sleep_until(deadline)
            await self._flush(client)

    async def _flush(self, client: MqttClient) -> None:
        async with self._flush_lock:
            bursts, self._pending, self._pending_count = self._pending, [], 0
            if bursts:
                await self._store(client, bursts)

    async def _subscribe(self, client: MqttClient) -> None:
        codes = await client.subscribe(self.filters, self.qos)
        refused = [(f, f"0x{c:02x}") for f, c in zip(self.filters, codes, strict=False) if c >= 0x80]
        if refused or len(codes) != len(self.filters):
            raise MqttError(f"subscription refused: {refused or codes}")

    async def _store(self, client: MqttClient, bursts: list[tuple[float, list[Publish]]]) -> None:
        """Store the messages undecoded (they are decoded on the workers), then
        acknowledge them."""
        is_redelivery = self.redeliveries.is_redelivery
        messages: list[RawMessage] = [
            (topic, payload, qos, retain, mid, timestamp, arrival)
            for arrival, burst in bursts
            for topic, payload, qos, retain, mid, timestamp, _ in burst
            if not is_redelivery(mid, topic, payload)
        ]
        if messages:
            await self.store_block(messages)
        if self.qos:
            # The filter keeps only its window of the most recent ones: hash no more.
            self.redeliveries.remember(
                (m[4], m[0], m[1]) for m in messages[-self.max_inflight:]
            )
        self.messages_stored += len(messages)
        client.ack(chain.from_iterable(burst for _, burst in bursts))


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
    session_expiry, max_block_records, max_inflight, keepalive, protocol ("5" or "3.1.1")
    (of ``MqttReceiver``)."""
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
    return parts[0] if num_receivers == 1 else MqttUnionDStream(ssc, parts)
