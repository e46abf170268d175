"""The raw path gives what the record path gave, for every source: random payloads (malformed
ones included), cut into chunks at random places, through the event loop's side (framing,
cutting lines, packing Kafka records: no decoding), the write-ahead log's encoding of the
block and back, and the worker's side (the source's decoder), against a plain Python
reference that decodes message by message as the receivers used to. Each block is also
decoded as a local[N] worker reads it: written to a file of shared memory (over the file
of an earlier block, once that block is gone) and mapped where it is unpickled.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostream_engine.executor.shared_input import RawBlockFiles
from aiostream_engine.raw import LineCutter, LineDecoder, RawLines, SharedBuffer, UndecodableLine
from aiostream_engine.raw.shared import MappedBuffer
from aiostream_engine.receiver.block_payload import RAW_BUFFER, decode_block, encode_block
from aiostream_engine.sources.kafka_block import KafkaBlock, KafkaBlockBuilder, KafkaBlockDecoder
from aiostream_engine.sources.kafka_fetch import RecordDecoding
from aiostream_engine.sources.kafka_types import KafkaMessage, utf8_decoder
from aiostream_engine.sources.mqtt import resolve_decoder
from aiostream_engine.sources.mqtt_block import DeadLetter, MqttRecord, PublishBlockBuilder, PublishDecoder
from aiostream_engine.sources.mqtt_protocol import ProtocolError, decode_publish, encode_publish, packet_span
from aiostream_engine.sources.mqtt_reader import PublishFramer
from aiostream_engine.sources.mqtt_redelivery import RedeliveryFilter

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=8,
)
#: Payloads: valid JSON, broken JSON, arbitrary bytes (often not UTF-8 nor JSON), empty.
PAYLOADS = st.one_of(
    JSON_VALUES.map(orjson.dumps),
    JSON_VALUES.map(lambda v: orjson.dumps(v)[:-1] if orjson.dumps(v)[1:] else b"{"),
    st.binary(max_size=60),
)
TOPICS = st.sampled_from(["a", "plant/7/t", "caf\u00e9/\u00fc", "x" * 130])
MESSAGES = st.lists(
    st.tuples(TOPICS, PAYLOADS, st.integers(0, 2), st.booleans(),
              st.one_of(st.none(), st.sampled_from(["1700000000.5", "soon"]))),
    max_size=40,
)


def logged(block: Any) -> Any:
    """``block`` as the write-ahead log writes it (its buffer as it is) and reads it back."""
    kind, parts = encode_block(block)
    assert kind == RAW_BUFFER and parts[-1] is block.data
    return decode_block(kind, b"".join(parts))


#: Files for the mapped variant: a few kept, written over example after example.
SHARED_FILES: list[RawBlockFiles] = []


@pytest.fixture(scope="module", autouse=True)
def _shared_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    SHARED_FILES.append(RawBlockFiles(str(tmp_path_factory.mktemp("shared")), keep_bytes=1 << 16))
    yield
    SHARED_FILES.clear()


def mapped_blocks(blocks: list[Any]) -> Iterator[Any]:
    """The blocks as a local[N] worker reads them (``executor.shared_input``): each written
    to a file of shared memory, pickled as a task carries it, and mapped where it is
    unpickled. The driver's copy of each lives until the blocks are all read, as a batch's
    blocks do; a file is written again only once its block is gone."""
    (files,) = SHARED_FILES
    placed = [files.share(block) for block in blocks]
    assert all(isinstance(b.data, SharedBuffer) for b in placed)
    for block in placed:
        mapped = pickle.loads(pickle.dumps(block))
        assert isinstance(mapped.data, MappedBuffer) or mapped.data == b""
        yield mapped


#: How blocks reach the decoder: from the write-ahead log, or from shared memory.
READ_BACK: list[Callable[[list[Any]], Iterator[Any]]] = [lambda blocks: map(logged, blocks), mapped_blocks]


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` in chunks cut at ``points`` (indexes taken modulo its length)."""
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(marks, marks[1:], strict=False)]


# ---- MQTT -------------------------------------------------------------------------------


def packets_of(messages: list[tuple[str, bytes, int, bool, str | None]], protocol: str) -> bytes:
    out = []
    for i, (topic, payload, qos, retain, stamp) in enumerate(messages):
        props = [(0x26, ("timestamp", stamp))] if stamp and protocol == "5" else []
        out.append(encode_publish(topic, payload, qos=qos, packet_id=i + 1, retain=retain,
                                  protocol=protocol, properties=props))
    return b"".join(out)


def mqtt_reference(data: bytes, protocol: str, decoder: str) -> tuple[list[Any], list[Any]]:
    """Message by message, as the receiver decoded on the event loop before raw blocks."""
    decode = resolve_decoder(decoder)
    records, dead = [], []
    pos = 0
    while (span := packet_span(data, pos)) is not None:
        start, end = span
        try:
            p = decode_publish(data, data[pos], start, end, protocol == "5")
        except ProtocolError as exc:
            dead.append(DeadLetter("", data[start:end], f"ProtocolError: {exc}"))
        else:
            try:
                value = decode(p.payload)
            except Exception as exc:
                dead.append(DeadLetter(p.topic, p.payload, f"{type(exc).__name__}: {exc}", p.packet_id))
            else:
                records.append(MqttRecord(p.topic, value, p.timestamp, 0.0, p.qos, p.retain, p.packet_id))
        pos = end
    return records, dead


def mqtt_raw(
    chunks: list[bytes], protocol: str, decoder: str, block_size: int
) -> tuple[list[Any], list[Any]]:
    """Framed chunk by chunk into blocks of at most ``block_size`` messages, as the
    receive loop does, then decoded block by block, as the workers do."""
    v5 = protocol == "5"
    framer = PublishFramer(v5, RedeliveryFilter(1), lambda *_: None)
    blocks, builder = [], PublishBlockBuilder(v5)
    for chunk in chunks:
        buf = framer.join(chunk)
        if buf is None:
            continue
        pos = 0
        while True:
            pos = framer.frame(buf, pos, builder, 0.0)
            if builder.count >= block_size:
                blocks.append(builder.build())
                builder = PublishBlockBuilder(v5)
            if not framer.complete(buf, pos):
                break
        framer.keep(buf, pos)
    blocks.append(builder.build())
    decoder_ = PublishDecoder(resolve_decoder(decoder))
    results = []
    for read_back in READ_BACK:
        dead: list[Any] = []
        records = [r for chunk in decoder_.decode(read_back(blocks), dead) for r in chunk]
        results.append((records, dead))
    assert results[1] == results[0]
    return results[0]


@settings(max_examples=150, deadline=None)
@given(
    messages=MESSAGES,
    protocol=st.sampled_from(["5", "3.1.1"]),
    decoder=st.sampled_from(["json", "text", "raw"]),
    points=st.lists(st.integers(0, 10_000), max_size=6),
    block_size=st.integers(1, 50),
)
def test_mqtt_raw_blocks_decode_to_what_messages_did(
    messages: list[Any], protocol: str, decoder: str, points: list[int], block_size: int
) -> None:
    data = packets_of(messages, protocol)
    raw = mqtt_raw(cuts(data, points), protocol, decoder, block_size)
    assert raw == mqtt_reference(data, protocol, decoder)


# ---- lines (socket, files) ----------------------------------------------------------------

LINES = st.lists(
    st.one_of(st.text(max_size=12).map(str.encode), st.binary(max_size=12)).map(
        lambda b: b.replace(b"\n", b"")
    ),
    max_size=30,
)


def lines_reference(lines: list[bytes], max_bytes: int) -> tuple[list[str], list[Any]]:
    """Line by line, as the socket receiver decoded on the event loop before raw lines."""
    good: list[str] = []
    dead: list[Any] = []
    for line in lines:
        line = line.removesuffix(b"\r")
        if len(line) > max_bytes:
            dead.append(len(line))
            continue
        try:
            good.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            dead.append(line)
    return good, dead


@settings(max_examples=200, deadline=None)
@given(lines=LINES, points=st.lists(st.integers(0, 1000), max_size=6), max_bytes=st.integers(4, 20))
def test_raw_lines_decode_to_what_lines_did(lines: list[bytes], points: list[int], max_bytes: int) -> None:
    data = b"".join(line + b"\n" for line in lines)
    cutter = LineCutter(max_bytes)
    stored = [cutter.feed(chunk) for chunk in cuts(data, points)]
    block = RawLines(b"".join(d for d, _ in stored), sum(n for _, n in stored))
    assert block.count == len(lines)
    expected_good, expected_dead = lines_reference(lines, max_bytes)
    for read_back in READ_BACK:
        dead: list[UndecodableLine] = []
        good = [line for chunk in LineDecoder(max_bytes=max_bytes).decode(read_back([block]), dead)
                for line in chunk]
        assert good == expected_good
        # An oversized line is held to max_bytes + 2 bytes while it grows across chunks.
        assert [d.line if d.error.startswith("that") else len(d.line) > max_bytes for d in dead] == [
            d if isinstance(d, bytes) else True for d in expected_dead
        ]


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.tuples(LINES.map(lambda ls: b"".join(ls).replace(b"\r", b"")),
                             st.sampled_from([b"\n", b"\r\n", b"\r"])), max_size=20),
    last_terminated=st.booleans(),
)
def test_files_read_raw_decode_to_what_their_lines_did(
    tmp_path_factory: Any, lines: list[tuple[bytes, bytes]], last_terminated: bool
) -> None:
    """text_file_stream: a file's bytes, newlines made \\n in the reading thread, decoded on
    the worker; the reference splits with universal newlines (a regular expression on the
    bytes) and decodes line by line."""
    from aiostream_engine.sources.files import read_raw_lines

    data = b"".join(text + end for text, end in lines)
    if lines and not last_terminated:
        data = data[: -len(lines[-1][1])]
    path = tmp_path_factory.mktemp("files") / "part.txt"
    path.write_bytes(data)
    dead: list[UndecodableLine] = []
    good = [line for chunk in LineDecoder(strip_cr=False).decode(iter([logged(read_raw_lines(path))]), dead)
            for line in chunk]
    texts = re.split(rb"\r\n|\r|\n", data)
    if texts[-1] == b"":
        texts.pop()  # after the last line end (or an empty file)
    expected_good, expected_dead = lines_reference(texts, 1 << 20)
    assert good == expected_good
    assert [d.line for d in dead] == expected_dead


# ---- Kafka (the receiver stream) ----------------------------------------------------------

KAFKA_BYTES = st.one_of(st.none(), PAYLOADS)
#: Fetches as aiokafka's getmany gives them: the records of one partition each.
FETCHES = st.lists(
    st.tuples(
        st.sampled_from([("readings", 0), ("readings", 1), ("caf\u00e9", 0)]),
        st.lists(st.tuples(KAFKA_BYTES, KAFKA_BYTES, st.integers(-1, 2**41),
                           st.sampled_from([(), (("h", b"v"),), (("a", b""), ("b", b"\xff"))])),
                 max_size=8),
    ),
    max_size=6,
)


def _strict_json(data: bytes | None) -> Any:
    return orjson.loads(data)  # None: TypeError, a dead letter


def _handler(m: KafkaMessage) -> Any:
    if m.headers and m.value is None:
        raise ValueError("headers without a value")
    return (m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, m.headers)


@settings(max_examples=150, deadline=None)
@given(
    fetches=FETCHES,
    decoding=st.sampled_from([
        RecordDecoding(utf8_decoder, utf8_decoder),
        RecordDecoding(utf8_decoder, _strict_json),
        RecordDecoding(utf8_decoder, utf8_decoder, _handler),
    ]),
    block_size=st.integers(1, 4),
)
def test_kafka_receiver_blocks_decode_to_what_its_records_did(
    fetches: list[Any], decoding: RecordDecoding, block_size: int
) -> None:
    """The receiver stream: fetched records packed into raw blocks (``block_size`` fetches
    each) decode on the workers to what the records stored one by one (``KafkaMessage``s of
    raw bytes, as before raw blocks) decoded to, dead letters included; a block knows the
    last offset of each partition it holds (what the receiver commits)."""
    offsets: dict[tuple[str, int], int] = {}
    stored: list[KafkaMessage] = []
    blocks: list[KafkaBlock] = []
    builder = KafkaBlockBuilder()
    for number, ((topic, partition), items) in enumerate(fetches, 1):
        start = offsets.get((topic, partition), 0)
        records = [KafkaMessage(topic, partition, start + i, stamp, key, value, headers)
                   for i, (key, value, stamp, headers) in enumerate(items)]
        offsets[(topic, partition)] = start + len(records)
        stored.extend(records)
        builder.add(topic, partition, records)
        if number % block_size == 0 or number == len(fetches):
            blocks.append(builder.build())
            builder = KafkaBlockBuilder()
    assert sum(len(b) for b in blocks) == len(stored)
    last: dict[tuple[str, int], int] = {}
    for block in blocks:
        last.update(block.last_offsets())
    assert last == {(r.topic, r.partition): r.offset for r in stored}

    expected_dead: list[Any] = []
    expected = [r for chunk in decoding.decode(iter(stored), expected_dead) for r in chunk]
    for read_back in READ_BACK:
        dead: list[Any] = []
        raw = [r for chunk in KafkaBlockDecoder(decoding).decode(read_back(blocks), dead) for r in chunk]
        assert raw == expected
        assert dead == expected_dead
