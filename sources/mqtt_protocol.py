"""The MQTT packet codec of the receive path (MQTT 5 and 3.1.1): pure functions on bytes.

Why our own codec and not paho-mqtt's (the project rule: a well-kept library first). paho
parses every incoming packet in Python with about three socket reads per packet, one packet
per event-loop wake-up, and with MQTT 5 builds a ``Properties`` object per message; aiomqtt
on top of it receives about 6,000 msg/s (MQTT 5) to 20,000 msg/s (3.1.1) on the 2-core
target machine, against the 150,000 msg/s the ingest target needs (bench/mqtt_ingest.py).
The receive path splits the work in two: on the event loop, ``sources.mqtt_reader`` only
finds where each packet ends and copies runs of PUBLISH packets, undecoded, into a block;
on the workers ``decode_publish`` reads each one (topic, packet id, the MQTT 5 user property
"timestamp", payload). The few other packets a subscriber meets are encoded and decoded
here as well.

Only what a subscribing client sends or receives is covered (plus ``encode_publish`` for
publishers in tests and benchmarks): no will message, no AUTH exchange, no topic aliases
(we never announce a Topic Alias Maximum, so the broker must not use them).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple, cast

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # MQTT 5: no reason code means 0, normal disconnection
MAX_REMAINING_LENGTH = 268_435_455
#: The user property a publisher may set to carry its own timestamp (seconds since epoch).
TIMESTAMP_PROPERTY = "timestamp"

# MQTT 5 property identifiers by value type (section 2.2.2.2).
_BYTE_PROPS = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_SHORT_PROPS = frozenset({0x13, 0x21, 0x22, 0x23})
_INT_PROPS = frozenset({0x02, 0x11, 0x18, 0x27})
_VARINT_PROPS = frozenset({0x0B})
_STRING_PROPS = frozenset({0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F})
_BINARY_PROPS = frozenset({0x09, 0x16})
USER_PROPERTY = 0x26
REASON_STRING = 0x1F
SESSION_EXPIRY_INTERVAL = 0x11
RECEIVE_MAXIMUM = 0x21

#: Reason codes a subscriber may be told about (MQTT 5), and 3.1.1's CONNACK return codes.
REASONS = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8B: "server shutting down", 0x8C: "bad authentication method",
    0x8D: "keep alive timeout", 0x8E: "session taken over", 0x8F: "topic filter invalid",
    0x93: "receive maximum exceeded", 0x95: "packet too large", 0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported", 0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}
V311_CONNACK = {
    1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
    4: "bad user name or password", 5: "not authorized",
}


class MqttError(Exception):
    """The connection failed or was refused; the receiver reconnects."""


class ProtocolError(MqttError):
    """The broker sent bytes that are not valid MQTT (a malformed packet)."""


class Publish(NamedTuple):
    """One received PUBLISH."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    #: 0 for QoS 0.
    packet_id: int
    #: The MQTT 5 user property ``timestamp`` as a float, when present and numeric.
    timestamp: float | None
    dup: bool = False


class Connack(NamedTuple):
    session_present: bool
    #: MQTT 5 reason code or 3.1.1 return code; 0 is success.
    reason_code: int
    properties: list[tuple[int, object]]


class Suback(NamedTuple):
    packet_id: int
    #: One per filter: the granted QoS (0-2), or a failure code (>= 0x80).
    reason_codes: list[int]


# ---- primitives ------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """MQTT's Variable Byte Integer: 7 bits per byte, least significant first."""
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"variable byte integer out of range: {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it); value -1 when ``buf`` ends inside the integer."""
    value = shift = 0
    for i in range(pos, min(pos + 4, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    if len(buf) - pos >= 4:
        raise ProtocolError("malformed variable byte integer (more than 4 bytes)")
    return -1, pos


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    if len(data) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_varint(len(body)) + body


def _read_string(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise ProtocolError("truncated string")
    stop = pos + 2 + int.from_bytes(buf[pos:pos + 2], "big")
    if stop > end:
        raise ProtocolError("truncated string")
    return buf[pos + 2:stop], stop


def decode_properties(buf: bytes, pos: int, end: int) -> list[tuple[int, object]]:
    """The (identifier, value) pairs of an MQTT 5 property block in ``buf[pos:end]``;
    strings are returned as str, user properties as (key, value) pairs of str."""
    out: list[tuple[int, object]] = []
    try:
        while pos < end:
            ident = buf[pos]
            pos += 1
            value: object
            if ident in _BYTE_PROPS:
                value, pos = buf[pos], pos + 1
            elif ident in _SHORT_PROPS:
                value, pos = int.from_bytes(buf[pos:pos + 2], "big"), pos + 2
            elif ident in _INT_PROPS:
                value, pos = int.from_bytes(buf[pos:pos + 4], "big"), pos + 4
            elif ident in _VARINT_PROPS:
                value, pos = decode_varint(buf, pos)
            elif ident in _STRING_PROPS:
                raw, pos = _read_string(buf, pos, end)
                value = raw.decode()
            elif ident in _BINARY_PROPS:
                value, pos = _read_string(buf, pos, end)
            elif ident == USER_PROPERTY:
                key, pos = _read_string(buf, pos, end)
                val, pos = _read_string(buf, pos, end)
                value = (key.decode(), val.decode())
            else:
                raise ProtocolError(f"unknown property identifier 0x{ident:02x}")
            out.append((ident, value))
    except (IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed properties: {exc}") from None
    if pos != end:
        raise ProtocolError("properties overrun their length")
    return out


def encode_properties(properties: Sequence[tuple[int, object]]) -> bytes:
    """A property block (length first); the types we send: ints, strings, user pairs."""
    body = bytearray()
    for ident, value in properties:
        body.append(ident)
        if ident in _BYTE_PROPS:
            body.append(int(value))  # type: ignore[call-overload]
        elif ident in _SHORT_PROPS:
            body += int(value).to_bytes(2, "big")  # type: ignore[call-overload]
        elif ident in _INT_PROPS:
            body += int(value).to_bytes(4, "big")  # type: ignore[call-overload]
        elif ident == USER_PROPERTY:
            key, val = cast("tuple[str, str]", value)
            body += _string(key) + _string(val)
        elif ident in _STRING_PROPS or ident in _BINARY_PROPS:
            body += _string(value)  # type: ignore[arg-type]
        else:
            raise ValueError(f"cannot encode property 0x{ident:02x}")
    return encode_varint(len(body)) + bytes(body)


def reason(code: int) -> str:
    return f"0x{code:02x} {REASONS.get(code, 'error')}"


# ---- packets a client sends ---------------------------------------------------------------


def encode_connect(
    client_id: str,
    *,
    protocol: str = "5",
    clean_start: bool = True,
    keepalive: int = 60,
    username: str | None = None,
    password: str | None = None,
    session_expiry: int = 0,
    receive_maximum: int | None = None,
) -> bytes:
    """CONNECT. MQTT 5 keeps the session ``session_expiry`` seconds after the connection
    closes (0: not at all) and sends at most ``receive_maximum`` unacknowledged messages."""
    v5 = _is_v5(protocol)
    flags = 0x02 if clean_start else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        if username is None and not v5:
            raise ValueError("MQTT 3.1.1 needs a username to send a password")
        flags |= 0x40
    body = _string("MQTT") + bytes((5 if v5 else 4, flags)) + keepalive.to_bytes(2, "big")
    if v5:
        props: list[tuple[int, object]] = []
        if session_expiry:
            props.append((SESSION_EXPIRY_INTERVAL, session_expiry))
        if receive_maximum is not None:
            if not 1 <= receive_maximum <= 0xFFFF:
                raise ValueError("receive_maximum must be within 1..65535")
            props.append((RECEIVE_MAXIMUM, receive_maximum))
        body += encode_properties(props)
    body += _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(CONNECT << 4, body)


def encode_subscribe(
    packet_id: int,
    filters: Sequence[tuple[str, int]],
    *,
    protocol: str = "5",
    no_local: bool = False,
    retain_as_published: bool = False,
    retain_handling: int = 0,
) -> bytes:
    """SUBSCRIBE (filter, QoS) pairs; MQTT 5 adds the subscription options to the QoS."""
    v5 = _is_v5(protocol)
    body = packet_id.to_bytes(2, "big") + (b"\x00" if v5 else b"")
    for topic_filter, qos in filters:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        options = qos
        if v5:
            options |= no_local << 2 | retain_as_published << 3 | (retain_handling & 3) << 4
        body += _string(topic_filter) + bytes((options,))
    return _packet(SUBSCRIBE << 4 | 0x02, body)


def encode_acks(kind: int, packet_ids: Iterable[int]) -> bytes:
    """PUBACK, PUBREC or PUBCOMP (success, so MQTT 5's reason code is left out) for each
    packet id, as one buffer: a whole block is acknowledged with one write."""
    first = bytes((kind << 4, 2))
    return b"".join([first + pid.to_bytes(2, "big") for pid in packet_ids])


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 0,
    retain: bool = False,
    dup: bool = False,
    protocol: str = "5",
    properties: Sequence[tuple[int, object]] = (),
) -> bytes:
    """PUBLISH (for publishers in tests and benchmarks; the receiver only decodes them)."""
    body = _string(topic)
    if qos:
        body += packet_id.to_bytes(2, "big")
    if _is_v5(protocol):
        body += encode_properties(properties)
    return _packet(PUBLISH << 4 | dup << 3 | qos << 1 | retain, body + payload)


# ---- packets a client receives ----------------------------------------------------------


def decode_connack(body: bytes, protocol: str) -> Connack:
    if len(body) < 2:
        raise ProtocolError("CONNACK too short")
    props = decode_properties(body, *_property_span(body, 2)) if _is_v5(protocol) else []
    return Connack(bool(body[0] & 1), body[1], props)


def decode_suback(body: bytes, protocol: str) -> Suback:
    if len(body) < 3:
        raise ProtocolError("SUBACK too short")
    pos = _property_span(body, 2)[1] if _is_v5(protocol) else 2
    return Suback(int.from_bytes(body[:2], "big"), list(body[pos:]))


def decode_packet_id(body: bytes) -> int:
    """The packet id leading PUBACK/PUBREC/PUBREL/PUBCOMP (reason code and properties,
    MQTT 5, follow it)."""
    if len(body) < 2:
        raise ProtocolError("acknowledgement too short")
    return int.from_bytes(body[:2], "big")


def decode_disconnect(body: bytes) -> tuple[int, str]:
    """MQTT 5 DISCONNECT from the broker: (reason code, reason string or "")."""
    if not body:
        return 0, ""
    code = body[0]
    text = ""
    if len(body) > 1:
        for ident, value in decode_properties(body, *_property_span(body, 1)):
            if ident == REASON_STRING:
                text = str(value)
    return code, text


def _property_span(body: bytes, pos: int) -> tuple[int, int]:
    length, start = decode_varint(body, pos)
    if length < 0 or start + length > len(body):
        raise ProtocolError("truncated properties")
    return start, start + length


def _is_v5(protocol: str) -> bool:
    if protocol not in ("5", "3.1.1"):
        raise ValueError(f'protocol must be "5" or "3.1.1", got {protocol!r}')
    return protocol == "5"


def publish_timestamp(buf: bytes, pos: int, end: int) -> float | None:
    """The user property ``timestamp`` of a PUBLISH property block, as a float."""
    for ident, value in decode_properties(buf, pos, end):
        if ident == USER_PROPERTY and value[0] == TIMESTAMP_PROPERTY:  # type: ignore[index]
            try:
                return float(value[1])  # type: ignore[index]
            except ValueError:
                return None
    return None


def packet_span(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(start of the body, end) of the packet at ``pos``; None while it is incomplete."""
    size = len(buf)
    if pos + 1 >= size:
        return None
    length, start = decode_varint(buf, pos + 1)
    if length < 0 or start + length > size:
        return None
    return start, start + length


def split_packets(buf: bytes) -> tuple[list[tuple[int, int, bytes]], bytes]:
    """Every complete packet of ``buf`` as (type, flags, body), and the incomplete rest:
    for a few packets at a time (a fake broker in tests reading what a client sends)."""
    packets = []
    pos = 0
    while (span := packet_span(buf, pos)) is not None:
        start, end = span
        packets.append((buf[pos] >> 4, buf[pos] & 0x0F, buf[start:end]))
        pos = end
    return packets, buf[pos:]


def decode_publish(buf: bytes, header: int, start: int, end: int, v5: bool) -> Publish:
    """The PUBLISH packet whose body is ``buf[start:end]``; ProtocolError if malformed."""
    qos = (header >> 1) & 3
    length = end - start
    topic_end = start + 2 + ((buf[start] << 8 | buf[start + 1]) if length >= 2 else 0)
    p = topic_end + 2 if qos else topic_end
    if length < 2 or p > end or qos == 3:
        raise ProtocolError("malformed PUBLISH")
    timestamp = None
    if v5:
        if p >= end:
            raise ProtocolError("malformed PUBLISH (no properties)")
        if buf[p] == 0:
            p += 1
        else:
            plen, props = decode_varint(buf, p)
            p = props + plen
            if plen < 0 or p > end:
                raise ProtocolError("malformed PUBLISH properties")
            timestamp = publish_timestamp(buf, props, p)
    try:
        topic = buf[start + 2:topic_end].decode()
    except UnicodeDecodeError:
        raise ProtocolError("PUBLISH topic is not UTF-8") from None
    if not topic:
        raise ProtocolError("PUBLISH without a topic (topic aliases are not enabled)")
    packet_id = (buf[topic_end] << 8 | buf[topic_end + 1]) if qos else 0
    return Publish(topic, buf[p:end], qos, bool(header & 1), packet_id, timestamp, bool(header & 0x08))


def publish_key(buf: bytes, header: int, start: int, end: int, v5: bool) -> tuple[int, bytes, bytes]:
    """(packet id, topic bytes, payload) of a PUBLISH the receive loop framed (so its topic
    and packet id are known to fit): what recognises a redelivery, without decoding."""
    topic_end = start + 2 + (buf[start] << 8 | buf[start + 1])
    p = topic_end
    packet_id = 0
    if header & 6:
        packet_id = buf[p] << 8 | buf[p + 1]
        p += 2
    if v5 and p < end:
        plen, props = decode_varint(buf, p)
        p = min(end, props + max(plen, 0))
    return packet_id, bytes(buf[start + 2:topic_end]), bytes(buf[p:end])


#: The acknowledgement of a stored QoS 1 (PUBACK) or QoS 2 (PUBREC) message as one 32-bit
#: word, by the QoS bits of its PUBLISH header (``header & 6``): type, length 2, packet id.
ACK_WORDS = {2: PUBACK << 28 | 2 << 16, 4: PUBREC << 28 | 2 << 16}


def encode_ack_words(words: list[int]) -> bytes:
    """Acknowledgements given as ``ACK_WORDS[qos bits] | packet id``, in one buffer."""
    return struct.pack(f">{len(words)}I", *words)
