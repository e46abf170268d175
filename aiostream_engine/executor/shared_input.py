"""Parallelized collections pickled once, into shared memory, and read there by workers.

PySpark's ``parallelize`` serializes a collection once, when the RDD is built, and every
job that uses the RDD hands those bytes to its Python workers. Without that, a local[N]
task pickles its partition again each time and pipes it to its worker: for an RDD used
again and again (a ``queue_stream`` of one RDD, a lookup table joined with every batch)
the driver spends CPU every batch on the same bytes, on the cores the workers need, and
the bytes are copied into and out of the pipe. So the first job that reads a parallelized
RDD pickles each of its partitions of at least one slice, one slice per event-loop turn as
the pipe path does, into a file of a RAM file system (``shared_memory_dir``), before its
tasks start; every task then names the file (``SharedSlices``), and its worker reads one
slice at a time as it goes, holding about one slice of the partition's bytes instead of
all of them.

A file lives as long as its ``SharedSlices`` object on the driver (held by the RDD and by
the plans of tasks in flight). The directory is removed when the backend stops, and a
killed driver's directory when the next one starts. Where the directory is missing, or
full (or would be left with under a tenth of its space free), partitions travel through
the pipes as before, with a warning: slower, not lost.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
import weakref
from typing import Any

import anyio.lowlevel

from ..rdd.tasks import SharedSlices, dumps_slice
from .protocol import SLICE


def worth_sharing(records: list[Any]) -> bool:
    """A partition smaller than one slice costs less to pipe than a file costs to make."""
    return len(records) >= SLICE


async def share_records(records: list[Any], directory: str) -> SharedSlices:
    """The records pickled into a new file of ``directory``, removed when the returned
    object is collected. Raises OSError (leaving no file) when the file system is full,
    or would be left with less than ``HEADROOM`` of its size free by this file."""
    path = os.path.join(directory, uuid.uuid4().hex)
    slices = range(0, len(records), SLICE)
    sizes: list[int] = []
    try:
        with open(path, "wb") as file:
            for start in slices:
                payload = dumps_slice(records[start : start + SLICE])
                if not sizes:
                    _ensure_room(directory, len(payload) * len(slices))
                file.write(payload)
                sizes.append(len(payload))
                del payload
                await anyio.lowlevel.checkpoint()  # one slice per event-loop turn
    except BaseException:  # full, cancelled, or a record that cannot be pickled
        _remove(path)
        raise
    shared = SharedSlices(path, tuple(sizes))
    weakref.finalize(shared, _remove, path)
    return shared


#: Share of a shared-memory file system left free for other programs (and other drivers):
#: a full /dev/shm breaks whatever else uses it.
HEADROOM = 0.1


def _ensure_room(directory: str, estimate: int) -> None:
    usage = os.statvfs(directory)
    free = usage.f_bavail * usage.f_frsize
    if free - estimate < HEADROOM * usage.f_blocks * usage.f_frsize:
        raise OSError(
            errno.ENOSPC,
            f"about {estimate >> 20} MiB would leave less than {HEADROOM:.0%} of the file "
            f"system free ({free >> 20} MiB free now)",
        )


def _remove(path: str) -> None:
    """Called from finalizers too, so it never raises."""
    with contextlib.suppress(OSError):
        os.unlink(path)
