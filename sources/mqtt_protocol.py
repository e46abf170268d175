"""The MQTT packet codec of the receive path (MQTT 5 and 3.1.1): pure functions on bytes.

Why our own codec and not paho-mqtt's (the project rule: a well-kept library first). paho
parses every incoming packet in Python with about three socket reads per packet, one packet
per event-loop wake-up, and with MQTT 5 builds a ``Properties`` object per message; aiomqtt
on top of it receives about 6,000 msg/s (MQTT 5) to 20,000 msg/s (3.1.1) on the 2-core
target machine, against the 40,000 msg/s the ingest target needs (bench/mqtt_ingest.py).
So ``PacketReader`` splits every complete packet out of a large chunk in one pass and skips
MQTT 5 PUBLISH properties unless there are some (then only the user property "timestamp" is
read); the few other packets a subscriber meets are encoded and decoded here as well.

Only what a subscribing client sends or receives is covered (plus ``encode_publish`` for
publishers in tests and benchmarks): no will message, no AUTH exchange, no topic aliases
(we never announce a Topic Alias Maximum, so the broker must not use them).
"""

from __future__ import annotations

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


class PacketReader:
    """Splits a byte stream into packets, chunk by chunk: ``feed(chunk)`` returns the
    PUBLISH packets completed by it, decoded, and the other packets as (type, flags, body);
    an incomplete tail waits for the next chunk."""

    def __init__(self, protocol: str = "5") -> None:
        self.v5 = _is_v5(protocol)
        self._rest = b""

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet held for the next chunk."""
        return len(self._rest)

    def feed(self, data: bytes) -> tuple[list[Publish], list[tuple[int, int, bytes]]]:
        buf = self._rest + data if self._rest else bytes(data)
        publishes: list[Publish] = []
        others: list[tuple[int, int, bytes]] = []
        append = publishes.append
        v5 = self.v5
        size = len(buf)
        pos = 0
        # One pass over every complete packet; kept in one function on purpose: this loop
        # runs once per message at 40,000 messages a second.
        while pos + 1 < size:
            header = buf[pos]
            length = buf[pos + 1]
            if length < 0x80:
                start = pos + 2
            elif pos + 2 < size and buf[pos + 2] < 0x80:  # 128..16383: most readings
                length = (length & 0x7F) | buf[pos + 2] << 7
                start = pos + 3
            else:
                length, start = decode_varint(buf, pos + 1)
                if length < 0:
                    break
            end = start + length
            if end > size:
                break
            if header >> 4 != PUBLISH:
                if header >> 4 == 0:
                    raise ProtocolError(f"invalid packet type 0 at byte {pos}")
                others.append((header >> 4, header & 0x0F, buf[start:end]))
                pos = end
                continue
            qos = (header >> 1) & 3
            topic_end = start + 2 + ((buf[start] << 8 | buf[start + 1]) if length >= 2 else 0)
            p = topic_end + 2 if qos else topic_end
            if length < 2 or p > end or qos == 3:
                raise ProtocolError(f"malformed PUBLISH at byte {pos}")
            timestamp = None
            if v5:
                if p >= end:
                    raise ProtocolError(f"malformed PUBLISH at byte {pos} (no properties)")
                plen = buf[p]
                if plen == 0:
                    p += 1
                else:
                    plen, props = decode_varint(buf, p)
                    p = props + plen
                    if plen < 0 or p > end:
                        raise ProtocolError(f"malformed PUBLISH properties at byte {pos}")
                    timestamp = publish_timestamp(buf, props, p)
            try:
                topic = buf[start + 2:topic_end].decode()
            except UnicodeDecodeError:
                raise ProtocolError(f"PUBLISH topic is not UTF-8 at byte {pos}") from None
            if not topic:
                raise ProtocolError("PUBLISH without a topic (topic aliases are not enabled)")
            append(Publish(
                topic, buf[p:end], qos, bool(header & 1),
                (buf[topic_end] << 8 | buf[topic_end + 1]) if qos else 0,
                timestamp, bool(header & 0x08),
            ))
            pos = end
        self._rest = buf[pos:]
        return publishes, others
