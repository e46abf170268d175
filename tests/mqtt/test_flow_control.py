"""A receiver that cannot keep up stays connected (issue 11, part 1), against a broker that
sends beyond the Receive Maximum (as mosquitto 2.0.11 was seen doing): a fake one on a
socket, so the test decides exactly what is sent and when.

* Its reading paused for seconds (byte budget full, no batch completing on the manual
  clock), the receiver keeps pinging and never declares the broker dead for the PINGRESPs
  waiting unread behind the flood; memory stays within the budget plus the bounded queue.
* A broker that stops answering while nothing is left unread is still found dead.
* A resumed session whose resends exceed everything the receiver may hold before its
  SUBACK arrives: the resends are stored as batches make room, and the handshake completes
  behind them instead of deadlocking.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.sources.mqtt_protocol import (
    PINGREQ,
    SUBSCRIBE,
    decode_packet_id,
    encode_publish,
    split_packets,
)
from aiostream_engine.testing import advance_batches, collect_batches
from tests.mqtt.test_mqtt_stream import Events, until

pytestmark = pytest.mark.anyio

FLOOD = 20_000  # QoS 1 messages of about 60 bytes sent at once: 1.2 MB
#: A resend larger than everything the old client held before reading stopped (100,000
#: messages), with which its handshake deadlocked.
RESENDS = 120_000
BUDGET = 64 << 10
QUEUED = 64 << 10
INFLIGHT = 100  # the Receive Maximum the receiver announces; the broker ignores it


def flood(count: int, *, dup: bool = False) -> bytes:
    return b"".join(
        encode_publish("f", b'{"i": %d, "pad": "%s"}' % (i, b"x" * 30), qos=1,
                       packet_id=i % 65535 + 1, dup=dup)
        for i in range(count)
    )


class FakeBroker:
    """Answers CONNECT with ``connack``, then sends ``after_connack``; answers SUBSCRIBE
    with a granted SUBACK and then ``after_suback``; answers every PINGREQ with PINGRESP.
    Everything is written in order on one socket, so a reply waits behind what was sent
    before it."""

    def __init__(
        self, connack: bytes, after_connack: bytes, after_suback: bytes, *, pong: bool = True
    ) -> None:
        self.connack, self.after_connack, self.after_suback = connack, after_connack, after_suback
        self.pong = pong
        self.pings = 0
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(self.connack + self.after_connack)
        rest = b""
        while data := await reader.read(65536):
            packets, rest = split_packets(rest + data)
            for kind, _, body in packets:
                if kind == SUBSCRIBE:
                    pid = decode_packet_id(body).to_bytes(2, "big")
                    writer.write(b"\x90\x04" + pid + b"\x00\x01" + self.after_suback)
                elif kind == PINGREQ:
                    self.pings += 1
                    if self.pong:
                        writer.write(b"\xd0\x00")
            await writer.drain()  # blocks while the receiver does not read: TCP holds us
        writer.close()


@asynccontextmanager
async def serving(broker: FakeBroker) -> AsyncIterator[int]:
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def context() -> StreamingContext:
    return StreamingContext(
        1.0, master="local", clock=ManualClock(0.0),
        conf={"receiver_max_pending_bytes": BUDGET, "receiver_restart_delay": 0.5},
    )


async def drain(ssc: StreamingContext, done: Callable[[], bool]) -> int:
    """Run batches until ``done()``; how many it took (each frees the budget)."""
    batches = 0
    with anyio.fail_after(60):
        while not done():
            ssc.clock.advance(ssc.conf.block_interval)  # type: ignore[attr-defined]
            await advance_batches(ssc, 1)
            await anyio.sleep(0.01)  # real time: the socket refills
            batches += 1
    return batches


async def test_a_paused_receiver_keeps_its_connection_and_its_budget() -> None:
    broker = FakeBroker(b"\x20\x03\x00\x00\x00", b"", flood(FLOOD))
    events = Events()
    async with serving(broker) as port, context() as ssc:
        ssc.add_streaming_listener(events)
        stream = ssc.mqtt_stream("127.0.0.1", port, "f", client_id="slow", keepalive=1,
                                 max_inflight=INFLIGHT, max_queued_bytes=QUEUED)
        receiver = stream.receiver  # type: ignore[union-attr]
        out = collect_batches(stream.map(lambda r: r.payload["i"]))
        await ssc.start()
        await until(lambda: receiver.client is not None and receiver.client.paused,
                    "reading paused")
        budget = ssc._receiver_tracker.budget
        await anyio.sleep(3.0)  # six keepalive checks, real time, with reading paused
        assert receiver.client.paused and receiver.connections == 1
        assert broker.pings >= 4  # still pinging while paused
        assert events.events == ["started"]  # no "no PINGRESP", no lost connection
        assert budget.used <= BUDGET
        await drain(ssc, lambda: receiver.messages_stored == FLOOD)
        await advance_batches(ssc, 1)
        await until(lambda: not receiver.client.behind, "caught up")
        pings = broker.pings
        await anyio.sleep(1.5)  # caught up: pings answered, the connection stays
        assert broker.pings > pings and receiver.connections == 1
    assert sorted(i for _, batch in out for i in batch) == list(range(FLOOD))
    assert events.events == ["started", "stopped"]
    assert broker.connections == 1
    assert budget.peak <= BUDGET


async def test_resends_larger_than_the_budget_do_not_block_the_handshake() -> None:
    """CONNACK with a session present, then a resend far larger than the budget and the
    connection's queue, then (behind it) the SUBACK."""
    resends = flood(RESENDS, dup=True)
    broker = FakeBroker(b"\x20\x03\x01\x00\x00", resends, b"")
    events = Events()
    async with serving(broker) as port, context() as ssc:
        ssc.add_streaming_listener(events)
        stream = ssc.mqtt_stream("127.0.0.1", port, "f", client_id="resumed", keepalive=5,
                                 max_inflight=INFLIGHT, max_queued_bytes=QUEUED)
        receiver = stream.receiver  # type: ignore[union-attr]
        out = collect_batches(stream.map(lambda r: r.payload["i"]))
        await ssc.start()
        await until(lambda: receiver.client is not None and receiver.client.paused,
                    "reading paused")
        assert receiver.connections == 0  # the SUBACK is behind the resends
        await drain(ssc, lambda: receiver.connections == 1)
        await drain(ssc, lambda: receiver.messages_stored == RESENDS)
        await advance_batches(ssc, 1)
    assert sorted(i for _, batch in out for i in batch) == list(range(RESENDS))
    assert events.events == ["started", "stopped"]
    assert broker.connections == 1


async def test_a_broker_that_stops_answering_is_still_declared_dead() -> None:
    """Caught up (nothing unread) and no PINGRESP: that connection is dead."""
    broker = FakeBroker(b"\x20\x03\x00\x00\x00", b"", b"", pong=False)
    events = Events()
    async with serving(broker) as port, context() as ssc:
        ssc.add_streaming_listener(events)
        collect_batches(ssc.mqtt_stream("127.0.0.1", port, "f", client_id="lost", keepalive=1))
        await ssc.start()
        await until(lambda: len(events.events) >= 2, "the dead connection reported")
    assert events.events[1] == "error: MqttError: no PINGRESP within 0.5 s"
