"""MQTT's raw block: the PUBLISH packets of one block, undecoded, back to back.

The receive loop (``mqtt_reader``) finds where each packet ends and copies whole runs of
PUBLISH packets into a ``PublishBlockBuilder``; nothing of a message is read there but its
length and, for QoS 1/2, its packet id (to acknowledge it). The block is one buffer: its
offsets are the packets' own length fields, and each packet carries its message's topic,
packet id and MQTT 5 properties. It is stored, logged and sent to a worker as that buffer;
there ``PublishDecoder`` reads each packet (``decode_publish``) and decodes its payload into
an ``MqttRecord``. A payload the decoder refuses, or a packet the broker malformed past
what the loop checks (topic not UTF-8, bad properties), becomes a ``DeadLetter``.

Arrival times are kept per run of packets read together: ``arrivals`` holds, for each run,
(number of messages up to the end of the run, the engine's clock when it was read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiostream_engine.raw.shared import Buffer, SharedBuffer
from aiostream_engine.sources.mqtt_protocol import ProtocolError, decode_publish, decode_varint

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
    """A message whose payload the decoder refused (or whose packet was malformed)."""

    topic: str
    payload: bytes
    error: str
    packet_id: int = 0


@dataclass(frozen=True)
class PublishBlock:
    """PUBLISH packets back to back (see the module docstring). ``data`` is ``bytes``, or,
    under ``local[N]``, the buffer in shared memory (``aiostream_engine.raw.shared``)."""

    data: Buffer | SharedBuffer
    count: int
    v5: bool
    arrivals: tuple[tuple[int, float], ...]

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def packets(self) -> Iterator[tuple[int, int, int]]:
        """(header byte, start of the body, end) of each packet."""
        data = self.data
        pos, size = 0, len(data)
        while pos < size:
            length, start = decode_varint(data, pos + 1)
            yield data[pos], start, start + length
            pos = start + length


class PublishBlockBuilder:
    """Collects runs of PUBLISH packets, and the acknowledgements they need once stored."""

    def __init__(self, v5: bool) -> None:
        self.v5 = v5
        self._parts: list[memoryview] = []
        self._arrivals: list[tuple[int, float]] = []
        self.count = 0
        self.nbytes = 0
        #: ``ACK_WORDS[qos bits] | packet id`` of every QoS 1/2 message read into this block,
        #: redeliveries that were dropped included: what to acknowledge once it is stored.
        self.acks: list[int] = []

    def add(self, view: memoryview, start: int, end: int, count: int, arrival: float) -> None:
        """``count`` whole PUBLISH packets, ``view[start:end]``, read at ``arrival``."""
        self._parts.append(view[start:end])
        self.count += count
        self.nbytes += end - start
        if self._arrivals and self._arrivals[-1][1] == arrival:
            self._arrivals[-1] = (self.count, arrival)
        else:
            self._arrivals.append((self.count, arrival))

    def build(self) -> PublishBlock:
        return PublishBlock(b"".join(self._parts), self.count, self.v5, tuple(self._arrivals))


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class PublishDecoder:
    """The worker-side decoder of ``PublishBlock``s (a ``decoding.Decoder``): records, and
    dead letters for payloads ``payload_decoder`` refuses or malformed packets."""

    payload_decoder: Decoder

    def decode(self, raw: Iterator[Any], dead: list[Any]) -> Iterator[list[Any]]:
        for block in raw:
            yield self._records(block, dead)

    def _records(self, block: PublishBlock, dead: list[Any]) -> list[Any]:
        """One block's records. The common packet (a known topic, no MQTT 5 properties)
        is read inline, topics decoded once per block; any other goes through
        ``decode_publish``, which checks everything."""
        decode = self.payload_decoder
        data = block.data
        v5 = block.v5
        records: list[Any] = []
        keep = records.append
        topics: dict[bytes, str] = {}
        arrivals = iter(block.arrivals)
        until, arrival = 0, 0.0
        index, pos, size = 0, 0, len(data)
        while pos < size:
            while index >= until:
                until, arrival = next(arrivals)
            index += 1
            header = data[pos]
            length, start = decode_varint(data, pos + 1)
            pos = end = start + length
            qos = (header >> 1) & 3
            topic_end = start + 2 + (data[start] << 8 | data[start + 1])
            p = topic_end + 2 if qos else topic_end
            topic = topics.get(data[start + 2:topic_end])
            if topic is None or (v5 and (p >= end or data[p] != 0)):
                try:
                    topic, payload, qos, retain, mid, timestamp, _ = decode_publish(
                        data, header, start, end, v5
                    )
                except ProtocolError as exc:  # the broker sent a bad packet: keep its bytes
                    dead.append(DeadLetter("", data[start:end], _error(exc)))
                    continue
                topics[data[start + 2:topic_end]] = topic
            else:
                payload = data[p + 1 if v5 else p:end]
                retain = bool(header & 1)
                mid = (data[topic_end] << 8 | data[topic_end + 1]) if qos else 0
                timestamp = None
            try:
                value = decode(payload)
            except Exception as exc:  # any decoder failure is a dead letter, never fatal
                dead.append(DeadLetter(topic, payload, _error(exc), mid))
                continue
            keep(MqttRecord(topic, value, timestamp, arrival, qos, retain, mid))
        return records
