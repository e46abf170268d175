"""The frame format between the driver and a worker process.

Request: 4-byte big-endian part count, then each part as an 8-byte big-endian length and
its bytes. Part 0 is the cloudpickle of ``(plan, index, drops)``, drops being the ids of
blocks the worker may forget before it runs the task. A plan whose input is a
``RecordsInput`` goes with an empty ``RecordSlices`` instead, and its records follow as
the other parts, one pickled slice each, written as they are encoded. A partition of raw
blocks (undecoded buffers from a receiver, ``aiostream_engine.raw``) goes as the blocks
without their buffers (``RawBuffers``), and the buffers follow as they are, one part
each: not pickled (no copy on the event loop), and read by the worker straight into one
``bytes`` (no joining of pieces: that copy cost 4% of the workers' CPU on W2 from a
receiver). A raw block placed in shared memory as it was stored (``shared_input``) has
no buffer here: it goes pickled, as its file's name, and the worker maps the file
(``raw.shared``). The driver writes every part in pieces of at most ``PIECE`` bytes
(``pieces``), one pipe's worth per write and event-loop turn.
Response: 8-byte big-endian length, then one status byte (``RESULT`` / ``ERROR``) and a
pickle.
"""

from __future__ import annotations

import dataclasses
import pickle
import struct
from collections.abc import Iterator
from typing import Any

import cloudpickle

from ..raw import has_buffer, with_buffer, without_buffer
from ..rdd.tasks import RecordsInput, RecordSlices, TaskPlan, dumps_slice

HEADER = struct.Struct(">Q")
PART_COUNT = struct.Struct(">I")
RESULT, ERROR = b"R", b"E"

#: Environment variable telling a worker how much to lower its priority.
NICE_ENV = "AIOSTREAM_WORKER_NICE"
GC_THRESHOLD_ENV = "AIOSTREAM_WORKER_GC_THRESHOLD"

#: Records per slice: about a millisecond of pickling for lines of ~100 bytes.
SLICE = 16_384
#: Bytes per write of a part: the worker's pipe holds 1 MiB.
PIECE = 1 << 20


@dataclasses.dataclass(frozen=True)
class RawBuffers:
    """In transit only: a partition of raw blocks without their buffers (``data``); the
    buffers follow the plan as parts, one per block."""

    blocks: tuple[Any, ...]

    def filled(self, parts: list[bytes]) -> RecordsInput:
        """The partition again, each block with its buffer from ``parts``."""
        return RecordsInput([with_buffer(b, p) for b, p in zip(self.blocks, parts, strict=True)])


def pieces(part: bytes | memoryview) -> Iterator[memoryview]:
    """A part as the writes that carry it, each at most ``PIECE`` bytes."""
    view = memoryview(part)
    return (view[start : start + PIECE] for start in range(0, max(len(view), 1), PIECE))


def _raw_partition(records: list[Any]) -> bool:
    return bool(records) and all(map(has_buffer, records))


def request_parts(
    plan: TaskPlan, index: int, drops: list[str]
) -> tuple[int, Iterator[bytes | memoryview]]:
    """How many parts the request has, and the parts, each encoded when it is reached
    (the caller writes one and yields to the event loop before the next)."""
    records: list[Any] = []
    buffers: list[memoryview] = []
    if isinstance(plan.input, RecordsInput) and _raw_partition(plan.input.records):
        blocks = plan.input.records
        hollow = RawBuffers(tuple(map(without_buffer, blocks)))
        plan = dataclasses.replace(plan, input=hollow)  # type: ignore[arg-type]
        buffers = [memoryview(b.data) for b in blocks]
    elif isinstance(plan.input, RecordsInput):
        records = plan.input.records
        plan = dataclasses.replace(plan, input=RecordSlices([]))
    slices = range(0, len(records), SLICE)

    def parts() -> Iterator[bytes | memoryview]:
        yield cloudpickle.dumps((plan, index, drops), protocol=pickle.HIGHEST_PROTOCOL)
        for start in slices:
            yield dumps_slice(records[start : start + SLICE])
        yield from buffers

    return 1 + len(slices) + len(buffers), parts()


def decode_request(parts: list[bytes]) -> tuple[TaskPlan, int, list[str]]:
    """``(plan, index, drops)`` from a request's parts."""
    plan, index, drops = cloudpickle.loads(parts[0])
    if isinstance(plan.input, RecordSlices):
        plan = dataclasses.replace(plan, input=RecordSlices(parts[1:]))
    elif isinstance(plan.input, RawBuffers):
        plan = dataclasses.replace(plan, input=plan.input.filled(parts[1:]))
    return plan, index, drops
