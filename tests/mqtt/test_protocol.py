"""The MQTT codec of the receive path (sources/mqtt_protocol.py), and the receive loop's
framing (sources/mqtt_reader.py): chunks of a byte stream into blocks of raw PUBLISH
packets, control packets handed over in stream order, malformed framing refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiostream_engine.sources.mqtt_block import PublishBlockBuilder
from aiostream_engine.sources.mqtt_protocol import (
    CONNACK,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    RECEIVE_MAXIMUM,
    SESSION_EXPIRY_INTERVAL,
    SUBACK,
    USER_PROPERTY,
    ProtocolError,
    Publish,
    decode_connack,
    decode_disconnect,
    decode_packet_id,
    decode_properties,
    decode_publish,
    decode_suback,
    decode_varint,
    encode_ack_words,
    encode_acks,
    encode_connect,
    encode_properties,
    encode_publish,
    encode_subscribe,
    encode_varint,
    split_packets,
)
from aiostream_engine.sources.mqtt_reader import PublishFramer
from aiostream_engine.sources.mqtt_redelivery import RedeliveryFilter

EDGES = [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455]


@pytest.mark.parametrize("value", EDGES)
def test_varint_round_trip_at_the_byte_boundaries(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) == 1 + (value >= 128) + (value >= 16384) + (value >= 2097152)
    assert decode_varint(b"\xff" + encoded + b"\x00", 1) == (value, 1 + len(encoded))
    # Cut anywhere inside: incomplete, not an error.
    for cut in range(1, len(encoded)):
        assert decode_varint(encoded[:cut], 0) == (-1, 0)


def test_varint_limits() -> None:
    with pytest.raises(ValueError):
        encode_varint(268435456)
    with pytest.raises(ValueError):
        encode_varint(-1)
    with pytest.raises(ProtocolError, match="more than 4 bytes"):
        decode_varint(b"\xff\xff\xff\xff\x01", 0)


def test_connect_v5_carries_session_expiry_and_receive_maximum() -> None:
    packet = encode_connect(
        "cid", protocol="5", clean_start=False, keepalive=30, username="u", password="p",
        session_expiry=3600, receive_maximum=1000,
    )
    assert packet[0] == 0x10
    length, start = decode_varint(packet, 1)
    body = packet[start:]
    assert len(body) == length
    assert body[:7] == b"\x00\x04MQTT\x05"
    assert body[7] == 0x80 | 0x40  # username, password, no clean start
    assert body[8:10] == (30).to_bytes(2, "big")
    props_len, props_start = decode_varint(body, 10)
    props = decode_properties(body, props_start, props_start + props_len)
    assert props == [(SESSION_EXPIRY_INTERVAL, 3600), (RECEIVE_MAXIMUM, 1000)]
    assert body[props_start + props_len:] == b"\x00\x03cid\x00\x01u\x00\x01p"


def test_connect_311_has_no_properties() -> None:
    packet = encode_connect("c", protocol="3.1.1", clean_start=True, keepalive=60)
    assert packet == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"
    with pytest.raises(ValueError, match="username"):
        encode_connect("c", protocol="3.1.1", password="p")
    with pytest.raises(ValueError, match="protocol"):
        encode_connect("c", protocol="4")


def test_connack_and_suback() -> None:
    assert decode_connack(b"\x01\x00\x03\x21\x00\x0a", "5") == (True, 0, [(RECEIVE_MAXIMUM, 10)])
    assert decode_connack(b"\x00\x05", "3.1.1") == (False, 5, [])
    assert decode_suback(b"\x00\x07\x00\x01\x80\x02", "5") == (7, [1, 0x80, 2])
    assert decode_suback(b"\x00\x07\x01\x80", "3.1.1") == (7, [1, 0x80])
    with pytest.raises(ProtocolError):
        decode_connack(b"\x00", "5")
    with pytest.raises(ProtocolError, match="truncated"):
        decode_connack(b"\x00\x00\x05\x21", "5")


def test_subscribe_options() -> None:
    v5 = encode_subscribe(9, [("a/+", 1), ("$share/g/b", 2)], protocol="5", no_local=True,
                          retain_handling=2)
    assert v5 == b"\x82\x16\x00\x09\x00" + b"\x00\x03a/+\x25" + b"\x00\x0a$share/g/b\x26"
    v311 = encode_subscribe(9, [("a", 0)], protocol="3.1.1")
    assert v311 == b"\x82\x06\x00\x09\x00\x01a\x00"


def test_acks_of_a_block_in_one_buffer() -> None:
    assert encode_acks(PUBACK, [1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"
    assert encode_acks(PUBREC, [5]) == b"\x50\x02\x00\x05"
    assert encode_acks(PUBCOMP, []) == b""
    assert decode_packet_id(b"\x01\x02\x00\x00") == 258
    assert decode_disconnect(b"") == (0, "")
    assert decode_disconnect(b"\x8e\x07\x1f\x00\x04gone") == (0x8E, "gone")


def test_acks_as_words() -> None:
    assert encode_ack_words([0x40020001, 0x50020102]) == b"\x40\x02\x00\x01\x50\x02\x01\x02"
    assert encode_ack_words([]) == b""


class Framed:
    """What framing a byte stream gave: the PUBLISH packets copied (decoded here to compare),
    the control packets met, the acknowledgements to send."""

    def __init__(self, protocol: str) -> None:
        self.v5 = protocol == "5"
        self.controls: list[tuple[int, int, bytes]] = []
        self.framer = PublishFramer(self.v5, RedeliveryFilter(10), self._control)
        self.builder = PublishBlockBuilder(self.v5)

    def _control(self, kind: int, flags: int, body: bytes) -> None:
        self.controls.append((kind, flags, body))

    def feed(self, chunk: bytes, arrival: float = 0.0) -> None:
        """As the receive loop does: join, frame step by step, keep the rest."""
        buf = self.framer.join(chunk)
        if buf is None:
            return
        pos = 0
        while True:
            pos = self.framer.frame(buf, pos, self.builder, arrival)
            if not self.framer.complete(buf, pos):
                break
        self.framer.keep(buf, pos)

    def publishes(self) -> list[Publish]:
        block = self.builder.build()
        return [decode_publish(block.data, h, s, e, self.v5) for h, s, e in block.packets()]


def framed(data: bytes, protocol: str) -> Framed:
    result = Framed(protocol)
    result.feed(data)
    return result


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@given(
    topic=st.text(min_size=1, max_size=40).filter(lambda t: len(t.encode()) < 200),
    payload=st.binary(max_size=300),
    qos=st.integers(0, 2),
    retain=st.booleans(),
    packet_id=st.integers(1, 65535),
)
def test_publish_round_trip(
    protocol: str, topic: str, payload: bytes, qos: int, retain: bool, packet_id: int
) -> None:
    packet = encode_publish(topic, payload, qos=qos, packet_id=packet_id, retain=retain,
                            protocol=protocol)
    result = framed(packet, protocol)
    assert result.controls == []
    assert result.publishes() == [Publish(topic, payload, qos, retain, packet_id if qos else 0, None)]
    word = {1: 0x40020000, 2: 0x50020000}.get(qos)
    assert result.builder.acks == ([word | packet_id] if word else [])


def stream(protocol: str, n: int) -> tuple[bytes, list[Publish]]:
    """n PUBLISH packets of varied sizes (1- to 3-byte lengths) with a PINGRESP in between."""
    packets, expected = [], []
    for i in range(n):
        payload = bytes([i % 256]) * (i * 37 % 20000)
        qos = i % 3
        packets.append(encode_publish(f"t/{i}", payload, qos=qos, packet_id=i + 1,
                                      protocol=protocol))
        expected.append(Publish(f"t/{i}", payload, qos, False, i + 1 if qos else 0, None))
        if i == n // 2:
            packets.append(b"\xd0\x00")
    return b"".join(packets), expected


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_many_packets_in_one_chunk_framed_in_bounded_steps(protocol: str) -> None:
    data, expected = stream(protocol, 500)  # about 5 MB: many steps
    result = framed(data, protocol)
    assert result.publishes() == expected
    assert result.controls == [(PINGRESP, 0, b"")]
    assert result.framer.received == 500
    assert len(result.builder.acks) == sum(1 for p in expected if p.qos)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_packets_split_at_every_byte_offset(protocol: str) -> None:
    data, expected = stream(protocol, 6)
    big = b"x" * 17000  # a 3-byte remaining length
    data += encode_publish("last", big, qos=1, packet_id=9, protocol=protocol)
    expected.append(Publish("last", big, 1, False, 9, None))
    for cut in range(len(data) + 1):
        result = Framed(protocol)
        result.feed(data[:cut])
        result.feed(data[cut:])
        assert result.publishes() == expected, cut


def test_byte_by_byte() -> None:
    data, expected = stream("5", 4)
    result = Framed("5")
    for i in range(len(data)):
        result.feed(data[i:i + 1], arrival=float(i))
    assert result.publishes() == expected
    block = result.builder.build()
    assert [count for count, _ in block.arrivals] == [1, 2, 3, 4]  # one arrival per message


def test_v5_properties_are_skipped_but_the_timestamp_is_read() -> None:
    props = [(0x01, 1), (0x02, 60), (0x03, "application/json"), (0x09, b"corr"),
             (USER_PROPERTY, ("site", "7")), (USER_PROPERTY, ("timestamp", "1700000000.25"))]
    packets = (
        encode_publish("a", b"{}", qos=1, packet_id=3, properties=props)
        + encode_publish("b", b"1", properties=[(USER_PROPERTY, ("timestamp", "soon"))])
        + encode_publish("c", b"2", properties=[(0x08, "reply/to")])
    )
    assert [(p.topic, p.payload, p.timestamp) for p in framed(packets, "5").publishes()] == [
        ("a", b"{}", 1700000000.25), ("b", b"1", None), ("c", b"2", None)
    ]
    assert encode_properties([]) == b"\x00"


def test_control_packets_are_handed_over_in_stream_order_with_their_body() -> None:
    data = (b"\x20\x03\x00\x00\x00" + encode_publish("t", b"x", protocol="5")
            + b"\x90\x04\x00\x01\x00\x01" + b"\x62\x02\x00\x05")
    result = framed(data, "5")
    assert [p.topic for p in result.publishes()] == ["t"]
    assert result.controls == [(CONNACK, 0, b"\x00\x00\x00"), (SUBACK, 0, b"\x00\x01\x00\x01"),
                               (PUBREL, 2, b"\x00\x05")]
    packets, rest = split_packets(data + b"\x30")
    assert [kind for kind, _, _ in packets] == [CONNACK, 3, SUBACK, PUBREL] and rest == b"\x30"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x30\x01\x00", "malformed PUBLISH"),  # shorter than a topic length
        (b"\x30\x04\x00\x09ab", "malformed PUBLISH"),  # topic longer than the packet
        (b"\x32\x04\x00\x01a\x00", "malformed PUBLISH"),  # QoS 1 without a packet id
        (b"\x36\x05\x00\x01a\x00\x01", "malformed PUBLISH"),  # QoS 3
        (b"\x00\x00", "invalid packet type"),
        (b"\x30\xff\xff\xff\xff\x01", "more than 4 bytes"),
    ],
)
def test_framing_the_loop_cannot_trust_is_a_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        framed(data, "5")


@pytest.mark.parametrize(
    ("protocol", "data", "message"),
    [
        ("5", b"\x30\x03\x00\x01a", "no properties"),
        ("5", b"\x30\x05\x00\x01a\x09\x00", "properties"),  # property length overruns
        ("5", b"\x30\x06\x00\x01a\x02\x7f\x00", "unknown property"),
        ("3.1.1", b"\x30\x04\x00\x02\xff\xfe", "not UTF-8"),
        ("3.1.1", b"\x30\x02\x00\x00", "without a topic"),
    ],
)
def test_what_the_worker_reads_is_checked_there(protocol: str, data: bytes, message: str) -> None:
    """The loop frames these (their lengths are sound); the worker's decode refuses them
    (the stream makes them dead letters)."""
    result = framed(data, protocol)
    assert result.framer.received == 1
    with pytest.raises(ProtocolError, match=message):
        result.publishes()
