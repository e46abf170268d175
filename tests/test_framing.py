"""Authenticated record framing: reading resynchronises after damage, losing only the
records the damage touched, and refuses records written with another key."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aiostream_engine.storage.framing import HEADER_SIZE, Damage, Record, frame, scan
from aiostream_engine.storage.keys import CheckpointKey

KEY = CheckpointKey(b"f" * 32, "a test key")
LABEL = b"test\0"


def log_of(payloads: list[bytes]) -> tuple[bytes, list[tuple[int, int]]]:
    """The framed log and each record's (start, end)."""
    blob = b""
    spans = []
    for i, payload in enumerate(payloads):
        record = b"".join(frame(KEY, LABEL, 1, 7, i, payload))
        spans.append((len(blob), len(blob) + len(record)))
        blob += record
    return blob, spans


def test_records_round_trip() -> None:
    blob, spans = log_of([b"a", b"", b"x" * 1000])
    items = list(scan(blob, KEY, LABEL))
    assert all(isinstance(i, Record) for i in items)
    assert [(r.offset, r.end, r.kind, r.stream, r.sequence, r.payload) for r in items] == [  # type: ignore[union-attr]
        (spans[0][0], spans[0][1], 1, 7, 0, b"a"),
        (spans[1][0], spans[1][1], 1, 7, 1, b""),
        (spans[2][0], spans[2][1], 1, 7, 2, b"x" * 1000),
    ]


def test_sixteen_flipped_bytes_in_the_middle_lose_only_that_record() -> None:
    blob, spans = log_of([bytes([i]) * 200 for i in range(5)])
    damaged = bytearray(blob)
    middle = (spans[2][0] + spans[2][1]) // 2
    for i in range(middle, middle + 16):
        damaged[i] ^= 0xFF
    items = list(scan(bytes(damaged), KEY, LABEL))
    assert [i.sequence for i in items if isinstance(i, Record)] == [0, 1, 3, 4]
    [damage] = [i for i in items if isinstance(i, Damage)]
    assert (damage.start, damage.end, damage.torn) == (spans[2][0], spans[3][0], False)
    assert damage.header is not None and damage.header.sequence == 2  # named exactly


def test_damage_across_a_record_boundary_loses_both_records() -> None:
    blob, spans = log_of([bytes([i]) * 100 for i in range(4)])
    damaged = bytearray(blob)
    for i in range(spans[2][0] - 8, spans[2][0] + 8):  # end of record 1, sync of record 2
        damaged[i] ^= 0x5A
    items = list(scan(bytes(damaged), KEY, LABEL))
    assert [i.sequence for i in items if isinstance(i, Record)] == [0, 3]
    [damage] = [i for i in items if isinstance(i, Damage)]
    assert (damage.start, damage.end) == (spans[1][0], spans[3][0])


def test_a_cut_short_last_record_is_torn_not_lost() -> None:
    blob, spans = log_of([b"a" * 50, b"b" * 50])
    for cut in (spans[1][0] + 3, spans[1][0] + HEADER_SIZE + 10, spans[1][1] - 1):
        items = list(scan(blob[:cut], KEY, LABEL))
        assert isinstance(items[0], Record) and items[0].sequence == 0
        assert items[1] == Damage(spans[1][0], cut, items[1].header, True)  # type: ignore[union-attr]


def test_a_damaged_complete_last_record_is_damage_not_torn() -> None:
    blob, spans = log_of([b"a" * 50, b"b" * 50])
    damaged = bytearray(blob)
    damaged[-40] ^= 1  # in the payload of the last, complete record
    items = list(scan(bytes(damaged), KEY, LABEL))
    assert items[1] == Damage(spans[1][0], spans[1][1], items[1].header, False)  # type: ignore[union-attr]


def test_records_under_another_key_or_label_are_refused() -> None:
    blob, _ = log_of([b"payload"])
    for key, label in ((CheckpointKey(b"g" * 32, "other"), LABEL), (KEY, b"other\0")):
        [item] = list(scan(blob, key, label))
        assert isinstance(item, Damage) and not item.torn


def test_a_forged_record_inside_a_payload_is_not_resynchronised_to() -> None:
    """A payload carrying a record framed under another key (an attacker's message, say)
    never passes for a record when reading resynchronises through it."""
    forged = b"".join(frame(CheckpointKey(b"z" * 32, "attacker"), LABEL, 1, 7, 99, b"evil"))
    blob, spans = log_of([b"x" * 40 + forged + b"y" * 40, b"next"])
    damaged = bytearray(blob)
    damaged[spans[0][0] + 2] ^= 1  # damage the carrier's sync marker
    items = list(scan(bytes(damaged), KEY, LABEL))
    assert [i.sequence for i in items if isinstance(i, Record)] == [1]


@settings(max_examples=150, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=12),
    damage=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 40)), max_size=3),
    data=st.data(),
)
def test_every_record_the_damage_did_not_touch_is_read_back(
    payloads: list[bytes], damage: list[tuple[int, int]], data: st.DataObject
) -> None:
    blob, spans = log_of(payloads)
    damaged = bytearray(blob)
    touched: set[int] = set()
    for start, length in damage:
        start %= len(blob)
        for i in range(start, min(start + length, len(blob))):
            if i in touched:  # flipped once: a second flip could restore the byte
                continue
            damaged[i] ^= data.draw(st.integers(1, 255))
            touched.add(i)
    items = list(scan(bytes(damaged), KEY, LABEL))
    read = {i.sequence: i.payload for i in items if isinstance(i, Record)}
    intact = {n for n, (a, b) in enumerate(spans) if not any(a <= i < b for i in touched)}
    assert read == {n: payloads[n] for n in intact}
    # The damaged stretches and the records tile the file, in order.
    position = 0
    for item in items:
        start = item.offset if isinstance(item, Record) else item.start
        assert start == position
        position = item.end
    assert position == len(blob)

