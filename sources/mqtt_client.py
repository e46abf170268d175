"""A lean asyncio MQTT client for the receive path (MQTT 5 and 3.1.1, TLS through asyncio).

Why not aiomqtt (paho) here: see ``mqtt_protocol``; in short, paho reads and parses one
packet per event-loop wake-up, which caps ingest well below the 40,000 msg/s target. This
client is an ``asyncio.Protocol``: every chunk the transport hands over (up to 256 KiB) is
split into packets in one pass, and the messages wait in a list the receiver takes whole
(``messages()``). Acknowledgements are explicit: ``ack(messages)`` writes the PUBACKs
(PUBRECs for QoS 2) of a whole block in one write, once the receiver has stored it.

Flow control: QoS >= 1 is bounded by Receive Maximum (the broker stops at that many
unacknowledged messages); QoS 0 by ``max_buffered``: past it the client stops reading the
socket until the receiver takes the messages, so TCP pushes back on the broker.

Keepalive runs on real time (the network's clock, not the engine's): a PINGREQ every half
keepalive; no PINGRESP by the next one means the connection is dead.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Sequence

from .mqtt_protocol import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    SUBACK,
    V311_CONNACK,
    Connack,
    MqttError,
    PacketReader,
    Publish,
    decode_connack,
    decode_disconnect,
    decode_packet_id,
    decode_suback,
    encode_acks,
    encode_connect,
    encode_subscribe,
    reason,
)

CONNECT_TIMEOUT = 10.0


class MqttClient(asyncio.Protocol):
    """One connection: ``await connect()``, ``await subscribe(...)``, then loop on
    ``await messages()`` and ``ack(...)`` what was stored; ``close()`` at the end."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        protocol: str = "5",
        clean_start: bool = True,
        keepalive: int = 60,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        session_expiry: int = 0,
        receive_maximum: int | None = None,
        max_buffered: int = 100_000,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.protocol = protocol
        self.keepalive = keepalive
        self.max_buffered = max_buffered
        self._connect_packet = encode_connect(
            client_id, protocol=protocol, clean_start=clean_start, keepalive=keepalive,
            username=username, password=password, session_expiry=session_expiry,
            receive_maximum=receive_maximum,
        )
        self._reader = PacketReader(protocol)
        self._transport: asyncio.Transport | None = None
        self._messages: list[Publish] = []
        self._error: MqttError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._connack: asyncio.Future[Connack] | None = None
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._next_packet_id = 0
        self._paused = False
        self._ping_outstanding = False
        self._keepalive_task: asyncio.Task[None] | None = None

    # ---- the application's side ---------------------------------------------------------

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> Connack:
        """Open the connection and send CONNECT; returns the CONNACK (MqttError if the
        broker refuses). A resumed session's queued messages may follow at once: they wait
        in the client until ``messages()``."""
        loop = asyncio.get_running_loop()
        self._connack = loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: self, self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )
                assert self._transport is not None
                self._transport.write(self._connect_packet)
                connack = await self._connack
        except (OSError, TimeoutError) as exc:
            self._connack.cancel()  # nobody waits for it any more
            self.close()
            raise MqttError(f"cannot connect to {self.host}:{self.port}: {exc!r}") from exc
        if connack.reason_code:
            self.close()
            text = (reason(connack.reason_code) if self.protocol == "5"
                    else V311_CONNACK.get(connack.reason_code, str(connack.reason_code)))
            raise MqttError(f"connection refused: {text}")
        if self.keepalive:
            self._keepalive_task = loop.create_task(self._keep_alive())
        return connack

    async def subscribe(
        self,
        filters: str | Sequence[str],
        qos: int = 1,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
    ) -> list[int]:
        """Subscribe and wait for the SUBACK: its codes, one per filter (the granted QoS,
        or >= 0x80 for a refused filter; the caller decides what a refusal means)."""
        topics = [filters] if isinstance(filters, str) else list(filters)
        packet_id = self._packet_id()
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._subacks[packet_id] = future
        self._write(encode_subscribe(
            packet_id, [(t, qos) for t in topics], protocol=self.protocol, no_local=no_local,
            retain_as_published=retain_as_published, retain_handling=retain_handling,
        ))
        try:
            return await future
        finally:
            self._subacks.pop(packet_id, None)

    async def messages(self) -> list[Publish]:
        """Every message received since the last call (waits for at least one); raises
        MqttError once the connection is lost."""
        while not self._messages:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        burst, self._messages = self._messages, []
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return burst

    def ack(self, messages: Iterable[Publish]) -> None:
        """Acknowledge stored messages: PUBACK for QoS 1, PUBREC for QoS 2 (the broker's
        PUBREL is answered with PUBCOMP), in one write."""
        acks: list[int] = []
        recs: list[int] = []
        for m in messages:
            if m.qos:
                (acks if m.qos == 1 else recs).append(m.packet_id)
        if acks or recs:
            self._write(encode_acks(PUBACK, acks) + encode_acks(PUBREC, recs))

    def close(self) -> None:
        """Send DISCONNECT (when connected) and close; safe to call more than once."""
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            self._keepalive_task = None
        transport, self._transport = self._transport, None
        if transport is not None and not transport.is_closing():
            transport.write(DISCONNECT_PACKET)
            transport.close()
        self._fail(MqttError("connection closed"))

    # ---- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            publishes, others = self._reader.feed(data)
            for kind, flags, body in others:
                self._control(kind, flags, body)
        except MqttError as exc:
            self._abort(exc)
            return
        if publishes:
            self._messages += publishes
            self._wake()
            if len(self._messages) >= self.max_buffered and self._transport is not None:
                self._paused = True
                self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(MqttError(f"connection lost: {exc!r}" if exc else "connection lost"))

    # ---- internals ----------------------------------------------------------------------

    def _control(self, kind: int, flags: int, body: bytes) -> None:
        """Every packet but PUBLISH."""
        if kind == CONNACK and self._connack is not None and not self._connack.done():
            self._connack.set_result(decode_connack(body, self.protocol))
        elif kind == SUBACK:
            suback = decode_suback(body, self.protocol)
            future = self._subacks.get(suback.packet_id)
            if future is not None and not future.done():
                future.set_result(suback.reason_codes)
        elif kind == PUBREL:
            self._write(encode_acks(PUBCOMP, [decode_packet_id(body)]))
        elif kind == PINGRESP:
            self._ping_outstanding = False
        elif kind == DISCONNECT:
            code, text = decode_disconnect(body)
            raise MqttError(f"disconnected by the broker: {reason(code)} {text}".rstrip())
        else:
            raise MqttError(f"unexpected packet type {kind} for a subscriber")

    async def _keep_alive(self) -> None:
        interval = self.keepalive / 2
        while self._transport is not None:
            await asyncio.sleep(interval)
            if self._ping_outstanding:
                self._abort(MqttError(f"no PINGRESP within {interval:g} s"))
                return
            self._ping_outstanding = True
            self._write(PINGREQ_PACKET)

    def _packet_id(self) -> int:
        self._next_packet_id = self._next_packet_id % 0xFFFF + 1
        return self._next_packet_id

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._error is not None:
            raise self._error or MqttError("not connected")
        self._transport.write(data)

    def _abort(self, error: MqttError) -> None:
        """A protocol violation or a dead connection: drop it at once."""
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: MqttError) -> None:
        if self._error is None:
            self._error = error
        for future in (self._connack, *self._subacks.values()):
            if future is not None and not future.done():
                future.set_exception(self._error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
