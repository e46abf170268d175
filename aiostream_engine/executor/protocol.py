"""The frame format between the driver and a worker process.

Request: 4-byte big-endian part count, then each part as an 8-byte big-endian length and
its bytes. Part 0 is the cloudpickle of ``(plan, index, drops)``, drops being the ids of
blocks the worker may forget before it runs the task. A plan whose input is a
``RecordsInput`` goes with an empty ``RecordSlices`` instead, and its records follow as
the other parts, one pickled slice each, written as they are encoded.
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

from ..rdd.tasks import RecordsInput, RecordSlices, TaskPlan, dumps_slice

HEADER = struct.Struct(">Q")
PART_COUNT = struct.Struct(">I")
RESULT, ERROR = b"R", b"E"

#: Environment variable telling a worker how much to lower its priority.
NICE_ENV = "AIOSTREAM_WORKER_NICE"

#: Records per slice: about a millisecond of pickling for lines of ~100 bytes.
SLICE = 16_384


def request_parts(plan: TaskPlan, index: int, drops: list[str]) -> tuple[int, Iterator[bytes]]:
    """How many parts the request has, and the parts, each encoded when it is reached
    (the caller writes one and yields to the event loop before the next)."""
    records: list[Any] = []
    if isinstance(plan.input, RecordsInput):
        records = plan.input.records
        plan = dataclasses.replace(plan, input=RecordSlices([]))
    slices = range(0, len(records), SLICE)

    def parts() -> Iterator[bytes]:
        yield cloudpickle.dumps((plan, index, drops), protocol=pickle.HIGHEST_PROTOCOL)
        for start in slices:
            yield dumps_slice(records[start : start + SLICE])

    return 1 + len(slices), parts()


def decode_request(parts: list[bytes]) -> tuple[TaskPlan, int, list[str]]:
    """``(plan, index, drops)`` from a request's parts."""
    plan, index, drops = cloudpickle.loads(parts[0])
    if isinstance(plan.input, RecordSlices):
        plan = dataclasses.replace(plan, input=RecordSlices(parts[1:]))
    return plan, index, drops
