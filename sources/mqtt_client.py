"""The MQTT connection of the receive path (MQTT 5 and 3.1.1, TLS through asyncio).

Why not aiomqtt (paho) here: see ``mqtt_protocol``; in short, paho reads and parses one
packet per event-loop wake-up, far below the ingest target. ``MqttConnection`` is an
``asyncio.Protocol`` that does no parsing at all when data arrives: ``data_received``
queues the chunk with the time it was read, and the receive loop (``mqtt_reader``) takes
chunks as it is ready for them (``next_chunk``), frames them in bounded steps and hands
back every packet but PUBLISH (``handle_control``): CONNACK and SUBACK complete the
futures ``connect`` and ``subscribe`` wait on, PUBREL is answered, PINGRESP noted. Since
the receive loop runs from the moment the connection opens, the messages a broker resends
on a resumed session before its CONNACK... SUBACK exchange completes are stored as they
come, and the handshake never waits behind them.

Flow control. QoS 1/2 is bounded by the Receive Maximum we announce (a broker may still
send more: mosquitto 2.0.11 was seen with 21,252 unacknowledged messages for 1,000), and
everything by ``max_queued_bytes``: past it the connection stops reading the socket until
the receive loop has caught up to half of it, so TCP holds the broker back and the excess
stays in the broker. Acknowledgements are explicit (``ack``), written once the block
holding the messages is stored.

Keepalive runs on real time (the network's clock, not the engine's): a PINGREQ every half
keepalive, also while reading is paused (the broker must hear from us). A PINGRESP missing
at the next one means the connection is dead only if this side has read everything the
broker sent by then: a receiver that is behind (reading paused, chunks waiting to be
framed, or reading resumed within the interval) cannot have seen the PINGRESP, which waits
behind the messages it has not read, so it never declares its broker dead for it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence

from .mqtt_protocol import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PINGRESP,
    PUBCOMP,
    PUBREL,
    SUBACK,
    V311_CONNACK,
    Connack,
    MqttError,
    decode_connack,
    decode_disconnect,
    decode_packet_id,
    decode_suback,
    encode_ack_words,
    encode_acks,
    encode_connect,
    encode_subscribe,
    reason,
)

CONNECT_TIMEOUT = 10.0
#: Bytes read from the socket and not yet framed before reading pauses.
DEFAULT_MAX_QUEUED_BYTES = 4 << 20


class MqttConnection(asyncio.Protocol):
    """One connection: ``await open()``, then run a receive loop over ``next_chunk()``
    (handing control packets to ``handle_control``) while awaiting ``connected()`` and
    ``subscribe(...)``; ``ack(...)`` what was stored; ``close()`` at the end."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        now: Callable[[], float],
        protocol: str = "5",
        clean_start: bool = True,
        keepalive: int = 60,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        session_expiry: int = 0,
        receive_maximum: int | None = None,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.protocol = protocol
        self.keepalive = keepalive
        self.max_queued_bytes = max_queued_bytes
        self._now = now
        self._connect_packet = encode_connect(
            client_id, protocol=protocol, clean_start=clean_start, keepalive=keepalive,
            username=username, password=password, session_expiry=session_expiry,
            receive_maximum=receive_maximum,
        )
        self._transport: asyncio.Transport | None = None
        self._chunks: deque[tuple[float, bytes]] = deque()
        #: Bytes received and not yet framed (the chunk being framed included).
        self.queued_bytes = 0
        self._error: MqttError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._connack: asyncio.Future[Connack] | None = None
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._next_packet_id = 0
        self.paused = False
        self._resumed_at = 0.0
        self._ping_outstanding = False
        self._keepalive_task: asyncio.Task[None] | None = None
        #: Times reading was paused (the receiver could not keep up).
        self.pauses = 0

    # ---- the application's side ---------------------------------------------------------

    async def open(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Open the connection and send CONNECT (a receive loop must then read it)."""
        loop = asyncio.get_running_loop()
        self._connack = loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: self, self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )
        except (OSError, TimeoutError) as exc:
            self.close()
            raise MqttError(f"cannot connect to {self.host}:{self.port}: {exc!r}") from exc
        self._write(self._connect_packet)

    async def connected(self, timeout: float = CONNECT_TIMEOUT) -> Connack:
        """The CONNACK (MqttError if the broker refuses, or none comes in ``timeout``)."""
        assert self._connack is not None, "open() first"
        try:
            async with asyncio.timeout(timeout):
                connack = await asyncio.shield(self._connack)
        except TimeoutError:
            self.close()
            raise MqttError(f"no CONNACK from {self.host}:{self.port} within {timeout:g} s") from None
        if connack.reason_code:
            self.close()
            text = (reason(connack.reason_code) if self.protocol == "5"
                    else V311_CONNACK.get(connack.reason_code, str(connack.reason_code)))
            raise MqttError(f"connection refused: {text}")
        if self.keepalive and self._keepalive_task is None:
            self._keepalive_task = asyncio.get_running_loop().create_task(self._keep_alive())
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

    async def next_chunk(self) -> tuple[float, bytes]:
        """The next chunk read (waits for one) with the engine's time it was read;
        MqttError once the connection is lost. Call ``framed`` when done with it."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._chunks.popleft()

    def framed(self, nbytes: int) -> None:
        """The receive loop is done with ``nbytes`` of what it took: read more if paused."""
        self.queued_bytes -= nbytes
        if self.paused and self.queued_bytes <= self.max_queued_bytes // 2:
            self.paused = False
            self._resumed_at = time.monotonic()
            if self._transport is not None:
                self._transport.resume_reading()

    def ack(self, words: list[int]) -> None:
        """Acknowledge stored messages (``ACK_WORDS[qos bits] | packet id`` each), in one
        write. A broker's PUBREL (QoS 2) is answered with PUBCOMP as it comes."""
        if words:
            self._write(encode_ack_words(words))

    def handle_control(self, kind: int, flags: int, body: bytes) -> None:
        """Every packet but PUBLISH, as the receive loop frames it."""
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

    @property
    def behind(self) -> bool:
        """Whether bytes the broker sent may be unread here: reading paused, chunks not
        yet framed, or reading resumed less than a keepalive interval ago."""
        recently = time.monotonic() - self._resumed_at < self.keepalive / 2
        return self.paused or self.queued_bytes > 0 or recently

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
        self._chunks.append((self._now(), data))
        self.queued_bytes += len(data)
        if self.queued_bytes >= self.max_queued_bytes and not self.paused:
            self.paused = True
            self.pauses += 1
            if self._transport is not None:
                self._transport.pause_reading()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(MqttError(f"connection lost: {exc!r}" if exc else "connection lost"))

    # ---- internals ----------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        interval = self.keepalive / 2
        while self._transport is not None:
            await asyncio.sleep(interval)
            if self._ping_outstanding and not self.behind:
                self.abort(MqttError(f"no PINGRESP within {interval:g} s"))
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

    def abort(self, error: MqttError) -> None:
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
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
