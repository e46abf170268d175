"""mqtt_stream: messages from an MQTT broker, through aiomqtt (MQTT 5).

Delivery. With QoS >= 1 a message is acknowledged to the broker (PUBACK) only after the
block holding it is stored: ``store_block`` returned, so it is in the write-ahead log when
that is on. A crash or a lost connection before that leaves the message unacknowledged,
and the broker delivers it again to the same session: nothing acknowledged is ever lost
(at least once; redelivered messages may appear twice).

Manual acknowledgement. aiomqtt 2.x has no ack API (empicano/aiomqtt#345, the PR adding
one, #346, is not merged); it runs a paho-mqtt client, exposed as ``Client._client``, and
paho >= 2.0 supports application acknowledgements: ``manual_ack_set(True)`` stops paho from
sending PUBACK when a message arrives, and ``ack(mid, qos)`` sends it. We switch it on
before connecting, because a resumed session's queued messages arrive right after the
CONNACK, before ``async with client`` returns. The paho client is driven on this event
loop by aiomqtt, so ``ack`` is called from the loop, like aiomqtt's own calls.

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

Decoding. ``decoder`` is "json" (orjson), "text" (UTF-8), "raw" (bytes) or a callable on the
payload bytes. A payload that fails to decode goes to the dead letters as
``DeadLetter(topic, payload bytes, error)``: counted (``MqttReceiver.dead_letter_count``),
reported to listeners, stored in the ``dead_letters()`` stream if the program asked for it,
and acknowledged like any other message; it never stops the receiver.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import aiomqtt
import anyio
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from aiostream_engine.dstream.base import DStream
from aiostream_engine.dstream.input import ReceiverInputDStream
from aiostream_engine.dstream.transformed import UnionDStream
from aiostream_engine.receiver.base import Receiver
from aiostream_engine.sources.mqtt_redelivery import RedeliveryFilter

if TYPE_CHECKING:
    from aiostream_engine.context import StreamingContext

DEAD_LETTERS = "dead_letters"
#: MQTT 5 (the default: message properties, session expiry) or 3.1.1, whose messages carry
#: no properties, so paho parses them about twice as fast (see bench/mqtt_ingest.py).
#: mosquitto serves shared subscriptions ($share/...) to 3.1.1 clients too.
PROTOCOLS = {"5": aiomqtt.ProtocolVersion.V5, "3.1.1": aiomqtt.ProtocolVersion.V311}
DEFAULT_SESSION_EXPIRY = 24 * 3600
#: The user property a publisher may set to carry its own timestamp (seconds since epoch).
TIMESTAMP_PROPERTY = "timestamp"

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


def broker_time(properties: Properties | None) -> float | None:
    for key, value in getattr(properties, "UserProperty", None) or ():
        if key == TIMESTAMP_PROPERTY:
            try:
                return float(value)
            except ValueError:
                return None
    return None


class _DrainableQueue(asyncio.Queue):  # type: ignore[type-arg]
    """aiomqtt's incoming queue (its documented ``queue_type`` hook), drained in bulk: one
    await per burst of messages instead of one task per message (aiomqtt's iterator)."""

    def drain(self, limit: int) -> list[aiomqtt.Message]:
        out: list[aiomqtt.Message] = []
        while len(out) < limit:
            try:
                out.append(self.get_nowait())
            except asyncio.QueueEmpty:
                break
        return out


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
        self.decode = resolve_decoder(decoder)
        self.session_expiry = session_expiry
        self.max_block_records = max_block_records
        self.max_inflight = max_inflight
        self.keepalive = keepalive
        #: The connected client while a run is connected (None otherwise).
        self.client: aiomqtt.Client | None = None
        #: (arrival time, message): received, not yet stored nor acknowledged.
        self._pending: list[tuple[float, aiomqtt.Message]] = []
        self._flush_lock = anyio.Lock()
        #: Messages read from the broker (a redelivered message counts again).
        self.messages_received = 0
        #: Messages stored (and acknowledged), dead letters included.
        self.messages_stored = 0
        self.dead_letter_count = 0
        self.connections = 0
        # Main stream and dead letters are seeded separately on recovery: room for both.
        self.redeliveries = RedeliveryFilter(2 * max_inflight)

    def _client(self) -> tuple[aiomqtt.Client, _DrainableQueue]:
        v5 = self.protocol == "5"
        session: dict[str, Any] = {"clean_session": self.clean_start}
        if v5:
            connect = Properties(PacketTypes.CONNECT)
            connect.SessionExpiryInterval = 0 if self.clean_start else self.session_expiry
            # Receive Maximum: the broker sends at most this many unacknowledged messages.
            connect.ReceiveMaximum = self.max_inflight
            session = {"clean_start": self.clean_start, "properties": connect}
        queues: list[_DrainableQueue] = []

        def queue(maxsize: int = 0) -> _DrainableQueue:
            queues.append(_DrainableQueue(maxsize))
            return queues[-1]

        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            protocol=PROTOCOLS[self.protocol],
            username=self.username,
            password=self.password,
            tls_context=self.tls,
            keepalive=self.keepalive,
            **session,
            queue_type=queue,  # type: ignore[arg-type]
            # QoS >= 1 is bounded by Receive Maximum; this bounds QoS 0 bursts.
            max_queued_incoming_messages=max(self.max_inflight, 100_000),
        )
        # See the module docstring: PUBACK only after the block is stored.
        client._client.manual_ack_set(True)
        return client, queues[0]

    async def on_start(self) -> None:
        client, queue = self._client()
        async with client:
            self.client = client
            try:
                self.redeliveries.connected()
                await self._subscribe(client)
                self.connections += 1
                self.report_healthy()
                await self._receive(client, queue)
            finally:
                self.client = None
                self._pending.clear()  # never acknowledged: the broker sends them again

    async def _receive(self, client: aiomqtt.Client, queue: _DrainableQueue) -> None:
        """Read bursts of messages until the connection drops (MqttError)."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._flush_every_block_interval, client)
                async for first in client.messages:
                    now = self.clock.now()
                    burst = [first, *queue.drain(self.max_block_records)]
                    self._pending.extend((now, m) for m in burst)
                    self.messages_received += len(burst)
                    if self._must_flush():
                        await self._flush(client)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Only this task or the timer fails, one at a time: report the error itself.
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise

    def on_recovered(self, records: list[Any]) -> None:
        """The write-ahead log's records (oldest first), main stream and dead letters:
        the messages stored before a crash, whose PUBACK the broker may not have read."""
        self.redeliveries.remember(
            (r.packet_id, r.topic, r.payload)
            for r in records
            if isinstance(r, MqttRecord | DeadLetter)
        )

    def _must_flush(self) -> bool:
        """Flush before a block interval passes when the block is full, or when the
        broker is about to stop sending (half its window of unacknowledged messages)."""
        return len(self._pending) >= self.max_block_records or (
            self.qos > 0 and len(self._pending) >= self.max_inflight // 2
        )

    async def _flush_every_block_interval(self, client: aiomqtt.Client) -> None:
        deadline = self.clock.now()
        while True:
            deadline += self.block_interval
            await self.clock.sleep_until(deadline)
            await self._flush(client)

    async def _flush(self, client: aiomqtt.Client) -> None:
        async with self._flush_lock:
            messages, self._pending = self._pending, []
            if messages:
                await self._store(client, messages)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        # MQTT 5 takes subscription options; 3.1.1 only a QoS.
        options: Any = SubscribeOptions(qos=self.qos) if self.protocol == "5" else self.qos
        codes = await client.subscribe([(f, options) for f in self.filters])
        refused = [(f, str(c)) for f, c in zip(self.filters, codes, strict=False) if _failed(c)]
        if refused:
            raise aiomqtt.MqttError(f"subscription refused: {refused}")

    async def _store(
        self, client: aiomqtt.Client, messages: list[tuple[float, aiomqtt.Message]]
    ) -> None:
        """Decode, store (main stream and dead letters), then acknowledge."""
        records: list[MqttRecord] = []
        dead: list[DeadLetter] = []
        decode = self.decode
        redeliveries = self.redeliveries
        for arrival, m in messages:
            topic = m.topic.value
            payload = m.payload if isinstance(m.payload, bytes) else bytes(m.payload or b"")
            try:
                value = decode(payload)
            except Exception as exc:  # any decoder failure is a dead letter, never fatal
                if not redeliveries.is_redelivery(m.mid, topic, payload):
                    error = f"{type(exc).__name__}: {exc}"
                    dead.append(DeadLetter(topic, payload, error, m.mid))
                continue
            if not redeliveries.is_redelivery(m.mid, topic, value):
                records.append(MqttRecord(
                    topic, value, broker_time(m.properties), arrival, m.qos, m.retain, m.mid
                ))
        if records:
            await self.store_block(records)
        if dead:
            await self.store_block(dead, channel=DEAD_LETTERS)
            self.dead_letter_count += len(dead)
            self.report_error(
                f"{len(dead)} undecodable payload(s) sent to dead letters "
                f"(first on {dead[0].topic}: {dead[0].error})"
            )
        redeliveries.remember((r.packet_id, r.topic, r.payload) for r in records)
        redeliveries.remember((d.packet_id, d.topic, d.payload) for d in dead)
        self.messages_stored += len(records) + len(dead)
        paho = client._client
        for _, m in messages:
            if m.qos:
                paho.ack(m.mid, m.qos)


def _failed(code: Any) -> bool:
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= 0x80


class MqttInputDStream(ReceiverInputDStream):
    """The stream of one MQTT receiver, with its dead letters as a side stream."""

    receiver: MqttReceiver

    def dead_letters(self) -> DStream:
        """``DeadLetter(topic, payload bytes, error)`` of every payload that failed to
        decode; call it before the context starts."""
        return self.channel_stream(DEAD_LETTERS)


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
