"""The receive loop's framing: chunks of the MQTT byte stream into blocks of raw PUBLISH
packets, in bounded steps.

Per packet the event loop reads only the fixed header (type, flags, length) and, for QoS
1/2, the topic length and packet id (what acknowledging it needs); the bytes are copied
into the block in whole runs, one copy per run of consecutive PUBLISH packets. Every other
packet goes to the connection's ``handle_control`` as it is met, in stream order, so a
CONNACK is handled before the messages that follow it. A step frames at most
``STEP_BYTES`` and ``STEP_PACKETS`` (about half a millisecond of CPU here, see
``bench/mqtt_ingest.py``), then the loop yields.

What the loop checks is what it must trust to stay in step with the stream: lengths, a
topic length and packet id that fit in the packet, QoS below 3, no packet of type 0; a
broker that breaks those gets a ``ProtocolError`` (the connection is dropped and the
receiver reconnects). The rest of a message (topic text, properties) is checked on the
worker, where a bad one becomes a dead letter.

While the redelivery filter expects the broker's resent messages (the leading run after a
resumed session's CONNACK), each PUBLISH is checked against it one by one; a redelivery is
acknowledged with the block but not copied into it.
"""

from __future__ import annotations

from collections.abc import Callable

from aiostream_engine.sources.mqtt_block import PublishBlockBuilder
from aiostream_engine.sources.mqtt_protocol import (
    ACK_WORDS,
    PUBLISH,
    ProtocolError,
    decode_varint,
    packet_span,
    publish_key,
)
from aiostream_engine.sources.mqtt_redelivery import RedeliveryFilter

#: Bytes and packets framed per event-loop step.
STEP_BYTES = 32 << 10
STEP_PACKETS = 512

ControlHandler = Callable[[int, int, bytes], None]


class PublishFramer:
    """Frames one connection's byte stream (see the module docstring)."""

    def __init__(self, v5: bool, redeliveries: RedeliveryFilter, control: ControlHandler) -> None:
        self.v5 = v5
        self._redeliveries = redeliveries
        self._control = control
        self._partial: list[bytes] = []  # the start of a packet not yet complete
        self._partial_size = 0
        #: PUBLISH packets framed (redeliveries included).
        self.received = 0

    def join(self, chunk: bytes) -> bytes | None:
        """The bytes to frame next: ``chunk`` after what is left of an incomplete packet;
        None while that packet is still incomplete (the chunk is kept with it)."""
        if not self._partial:
            return chunk
        self._partial.append(chunk)
        self._partial_size += len(chunk)
        head = self._partial[0] if len(self._partial[0]) >= 5 else b"".join(self._partial)
        length, start = decode_varint(head[:5], 1) if len(head) > 1 else (-1, 0)
        if length < 0 or start + length > self._partial_size:
            return None
        buf = b"".join(self._partial)
        self._partial, self._partial_size = [], 0
        return buf

    def keep(self, buf: bytes, pos: int) -> None:
        """``buf[pos:]`` is the start of an incomplete packet: keep it for the next chunk."""
        if pos < len(buf):
            rest = buf[pos:]
            self._partial, self._partial_size = [rest], len(rest)

    def frame(
        self, buf: bytes, pos: int, builder: PublishBlockBuilder, arrival: float,
        max_packets: int = STEP_PACKETS,
    ) -> int:
        """Frame whole packets of ``buf`` from ``pos``, one step's worth at most (and at
        most ``max_packets``), into ``builder``; returns where it stopped (at an incomplete
        packet, or the step's end)."""
        view = memoryview(buf)
        size = len(buf)
        stop = min(size, pos + STEP_BYTES)
        acks = builder.acks
        ack = acks.append
        redeliveries = self._redeliveries
        expecting = redeliveries.expecting
        run, n, packets = pos, 0, 0
        while pos < stop and packets < max_packets:
            if pos + 1 >= size:
                break
            header = buf[pos]
            length = buf[pos + 1]
            if length < 0x80:
                start = pos + 2
            elif pos + 2 < size and buf[pos + 2] < 0x80:  # 128..16383 bytes: most messages
                length = (length & 0x7F) | buf[pos + 2] << 7
                start = pos + 3
            else:
                length, start = decode_varint(buf, pos + 1)
                if length < 0:
                    break
            end = start + length
            if end > size:
                break
            packets += 1
            if header >> 4 == PUBLISH:
                if length < 2:
                    raise ProtocolError(f"malformed PUBLISH at byte {pos}")
                qos = header & 6
                topic_end = start + 2 + (buf[start] << 8 | buf[start + 1])
                if qos:
                    if topic_end + 2 > end or qos == 6:
                        raise ProtocolError(f"malformed PUBLISH at byte {pos}")
                    ack(ACK_WORDS[qos] | buf[topic_end] << 8 | buf[topic_end + 1])
                elif topic_end > end:
                    raise ProtocolError(f"malformed PUBLISH at byte {pos}")
                if expecting and redeliveries.is_redelivery(
                    *publish_key(buf, header, start, end, self.v5)
                ):  # acknowledged with the block, not stored again
                    if n:
                        builder.add(view, run, pos, n, arrival)
                    self.received += n + 1
                    run, n = end, 0
                    expecting = redeliveries.expecting
                    pos = end
                    continue
                expecting = expecting and redeliveries.expecting
                n += 1
            else:
                if header >> 4 == 0:
                    raise ProtocolError(f"invalid packet type 0 at byte {pos}")
                if n:
                    builder.add(view, run, pos, n, arrival)
                    self.received += n
                    n = 0
                self._control(header >> 4, header & 0x0F, buf[start:end])
                run = end
                expecting = redeliveries.expecting  # a CONNACK arms the filter
            pos = end
        if n:
            builder.add(view, run, pos, n, arrival)
            self.received += n
        return pos

    @staticmethod
    def complete(buf: bytes, pos: int) -> bool:
        """Whether a whole packet starts at ``pos``."""
        return packet_span(buf, pos) is not None
