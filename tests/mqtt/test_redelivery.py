"""RedeliveryFilter: the leading redeliveries of a resumed session are dropped, nothing else;
it compares packet id, topic and a digest of the raw payload, decoding nothing."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.sources.mqtt_block import PublishBlock, PublishBlockBuilder
from aiostream_engine.sources.mqtt_protocol import (
    PINGREQ,
    PUBACK,
    SUBSCRIBE,
    decode_packet_id,
    encode_publish,
    split_packets,
)
from aiostream_engine.sources.mqtt_reader import PublishFramer
from aiostream_engine.sources.mqtt_redelivery import RedeliveryFilter
from aiostream_engine.testing import advance_batches, collect_batches
from tests.mqtt.test_mqtt_stream import store_received

pytestmark = pytest.mark.anyio


def block(*messages: tuple[int, str, bytes]) -> PublishBlock:
    """A stored block of (packet id, topic, payload); packet id 0 is QoS 0."""
    data = b"".join(
        encode_publish(topic, payload, qos=1 if mid else 0, packet_id=mid)
        for mid, topic, payload in messages
    )
    builder = PublishBlockBuilder(True)
    PublishFramer(True, RedeliveryFilter(1), lambda *_: None).frame(data, 0, builder, 0.0)
    return builder.build()


async def armed(f: RedeliveryFilter) -> RedeliveryFilter:
    await f.prepare()
    f.connected()
    return f


async def test_leading_redeliveries_are_dropped_until_the_first_new_message() -> None:
    f = RedeliveryFilter(window=10)
    f.remember(block((1, "t", b'{"i": 1}'), (2, "t", b'{"i": 2}')))
    f.remember(block((3, "t", b'{"i": 3}')))
    await armed(f)
    assert f.is_redelivery(2, b"t", b'{"i": 2}')
    assert f.is_redelivery(3, b"t", b'{"i": 3}')
    assert not f.is_redelivery(4, b"t", b'{"i": 4}')  # new: ends the redeliveries
    assert not f.expecting
    assert not f.is_redelivery(1, b"t", b'{"i": 1}')  # a later repeat is a new message
    assert f.dropped == 2


async def test_packet_id_topic_and_payload_must_all_match() -> None:
    f = RedeliveryFilter(window=10)
    f.remember(block((7, "a", b"x")))
    for mid, topic, payload in [(8, b"a", b"x"), (7, b"b", b"x"), (7, b"a", b"y")]:
        await armed(f)
        assert not f.is_redelivery(mid, topic, payload)
    await armed(f)
    assert f.is_redelivery(7, b"a", b"x")


async def test_nothing_is_dropped_without_a_new_connection_or_for_qos0() -> None:
    f = RedeliveryFilter(window=10)
    f.remember(block((0, "t", b"1")))  # QoS 0: no packet id, never redelivered
    f.remember(block((5, "t", b"1")))
    assert not f.is_redelivery(5, b"t", b"1")  # not connected again since
    await armed(f)
    assert not f.is_redelivery(0, b"t", b"1")


async def test_the_window_keeps_only_the_most_recent_messages() -> None:
    f = RedeliveryFilter(window=2)
    f.remember(block((1, "t", b"1")))
    f.remember(block((2, "t", b"2"), (3, "t", b"3")))
    assert len(f._recent) == 1  # the first block fell out of the window
    await armed(f)
    assert not f.is_redelivery(1, b"t", b"1")
    await armed(f)
    assert f.is_redelivery(2, b"t", b"2") and f.is_redelivery(3, b"t", b"3")


class ResumingBroker:
    """A fake broker whose first session delivers ``first`` after its SUBACK and closes the
    connection once every message of it was acknowledged; the second session resumes
    (session present) with ``resent`` (messages of the first whose PUBACKs it acts as if
    it had lost, DUP set) followed by ``new``."""

    def __init__(self, first: bytes, count: int, resent: bytes, new: bytes) -> None:
        self.first, self.count, self.resent, self.new = first, count, resent, new
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        writer.write(b"\x20\x03\x00\x00\x00" if first else b"\x20\x03\x01\x00\x00" + self.resent + self.new)
        acks, rest = 0, b""
        while not (first and acks >= self.count) and (data := await reader.read(65536)):
            packets, rest = split_packets(rest + data)
            for kind, _, body in packets:
                if kind == SUBSCRIBE:
                    pid = decode_packet_id(body).to_bytes(2, "big")
                    writer.write(b"\x90\x04" + pid + b"\x00\x01" + (self.first if first else b""))
                elif kind == PINGREQ:
                    writer.write(b"\xd0\x00")
                elif kind == PUBACK:
                    acks += 1
            await writer.drain()
        writer.close()


def publishes(ids: range, *, dup: bool = False) -> bytes:
    return b"".join(encode_publish("r", b'{"i": %d}' % i, qos=1, packet_id=i, dup=dup) for i in ids)


async def test_a_resumed_session_s_resends_of_stored_messages_are_dropped() -> None:
    """Through the live receiver: the first session's 10 messages are stored and
    acknowledged, then the connection drops; the broker resumes the session by resending
    the last 5 (as if their PUBACKs were lost), then sends 5 new ones. Every message is
    stored once; the 5 resends are recognised by packet id, topic and payload digest."""
    broker = ResumingBroker(publishes(range(1, 11)), 10, publishes(range(6, 11), dup=True),
                            publishes(range(11, 16)))
    server = await asyncio.start_server(broker.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, StreamingContext(
        1.0, master="local", clock=ManualClock(0.0), conf={"receiver_restart_delay": 0.5}
    ) as ssc:
        stream = ssc.mqtt_stream("127.0.0.1", port, "r", client_id="resumer", max_inflight=100)
        receiver = stream.receiver  # type: ignore[union-attr]
        out = collect_batches(stream.map(lambda r: r.payload["i"]))
        await ssc.start()
        await store_received(ssc, [receiver], 10)
        with anyio.fail_after(30):
            while receiver.messages_received < 20 or receiver.messages_stored < 15:
                ssc.clock.advance(ssc.conf.block_interval)  # type: ignore[attr-defined]
                await anyio.sleep(0.01)  # real time: the reconnection and the resends
        await advance_batches(ssc, 1)
    assert [i for _, batch in out for i in batch] == list(range(1, 16))
    assert receiver.redeliveries.dropped == 5
    assert broker.connections == 2
