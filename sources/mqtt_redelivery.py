"""Dropping messages the broker sends again although we already stored them.

A QoS 1 message is acknowledged (PUBACK) only after its block is stored. If the process
dies, or the connection drops, after the block is stored but before the broker has read
the PUBACK, the broker sends the message again when the session resumes: a duplicate that
no sink keyed by (batch, partition) can catch, since it lands in a new batch.

MQTT gives us what is needed to recognise them (MQTT 5 section 4.4, 3.1.1 section 4.4):
on session resumption the broker must first resend every unacknowledged PUBLISH, in the
original order, with its original packet identifier. So on every new connection the
leading run of messages that match, by packet id, topic and payload, the last stored
messages (at most the broker's window of unacknowledged messages: Receive Maximum) are
redeliveries; they are acknowledged and dropped. The first message that does not match
ends the run: everything after it is new. The stored messages survive a crash in the
receiver write-ahead log, which seeds the filter on recovery.

Nothing is decoded for this, and nothing is done per message while connected: the filter
keeps references to the last stored blocks (raw PUBLISH packets, see ``mqtt_block``), and
only when a connection is about to open does it compute, in bounded steps, a digest of
each of their last ``window`` payloads (BLAKE2b from the standard library's hashlib,
128 bits); during the leading run each arriving message is digested the same way.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque

import anyio.lowlevel

from aiostream_engine.sources.mqtt_block import PublishBlock
from aiostream_engine.sources.mqtt_protocol import publish_key

#: (packet id, topic bytes, payload digest).
MessageKey = tuple[int, bytes, bytes]

#: Messages digested per event-loop step while a connection is prepared.
STEP = 256


def digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


class RedeliveryFilter:
    def __init__(self, window: int) -> None:
        self.window = window
        self._recent: deque[PublishBlock] = deque()
        self._recent_count = 0
        self._prepared: list[MessageKey] = []
        self._expected: Counter[MessageKey] = Counter()
        self.dropped = 0

    def remember(self, block: PublishBlock) -> None:
        """A block just stored (blocks in the order they were stored)."""
        self._recent.append(block)
        self._recent_count += block.count
        while self._recent_count - self._recent[0].count >= self.window:
            self._recent_count -= self._recent.popleft().count

    async def prepare(self) -> None:
        """Before a connection opens: the keys of the last ``window`` stored QoS 1/2
        messages, digested ``STEP`` messages per event-loop step."""
        packets = [(block, *span) for block in self._recent for span in block.packets()]
        keys: list[MessageKey] = []
        for done, (block, header, start, end) in enumerate(packets[-self.window:], 1):
            if header & 6:  # QoS 1 or 2: only they have packet ids, only they come again
                mid, topic, payload = publish_key(block.data, header, start, end, block.v5)
                keys.append((mid, topic, digest(payload)))
            if done % STEP == 0:
                await anyio.lowlevel.checkpoint()
        self._prepared = keys

    def connected(self) -> None:
        """The connection is up (CONNACK): its leading messages may repeat the prepared ones."""
        self._expected = Counter(self._prepared)

    @property
    def expecting(self) -> bool:
        """Whether the next message may still be a redelivery."""
        return bool(self._expected)

    def is_redelivery(self, mid: int, topic: bytes, payload: bytes) -> bool:
        if not self._expected:
            return False
        key = (mid, topic, digest(payload))
        if self._expected[key] > 0:
            self._expected[key] -= 1
            self.dropped += 1
            return True
        self._expected.clear()  # the first new message ends the redeliveries
        return False
