"""RedeliveryFilter: the leading redeliveries of a resumed session are dropped, nothing else;
it compares packet id, topic and a digest of the raw payload, decoding nothing."""

from __future__ import annotations

import pytest

from aiostream_engine.sources.mqtt_block import PublishBlock, PublishBlockBuilder
from aiostream_engine.sources.mqtt_protocol import encode_publish
from aiostream_engine.sources.mqtt_reader import PublishFramer
from aiostream_engine.sources.mqtt_redelivery import RedeliveryFilter

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
