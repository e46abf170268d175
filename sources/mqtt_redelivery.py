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
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable, Iterable
from typing import Any

#: (packet id, topic, payload): payload is the decoded value for stored records and the
#: raw bytes for dead letters, compared the same way on redelivery.
MessageKey = tuple[int, str, Any]


def _hashable(value: Any) -> Hashable:
    """A hashable stand-in for a decoded payload (JSON objects are dicts and lists)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


class RedeliveryFilter:
    def __init__(self, window: int) -> None:
        self._recent: deque[tuple[int, str, Hashable]] = deque(maxlen=window)
        self._expected: Counter[tuple[int, str, Hashable]] = Counter()
        self.dropped = 0

    def remember(self, keys: Iterable[MessageKey]) -> None:
        """Messages just stored (in arrival order); only QoS >= 1 ones have packet ids."""
        self._recent.extend((mid, topic, _hashable(p)) for mid, topic, p in keys if mid)

    def connected(self) -> None:
        """A new connection: its leading redeliveries may repeat the recent messages."""
        self._expected = Counter(self._recent)

    def is_redelivery(self, mid: int, topic: str, payload: Any) -> bool:
        if not self._expected:
            return False
        key = (mid, topic, _hashable(payload))
        if self._expected[key] > 0:
            self._expected[key] -= 1
            self.dropped += 1
            return True
        self._expected.clear()  # the first new message ends the redeliveries
        return False
