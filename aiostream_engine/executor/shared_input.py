"""Parallelized collections pickled once, into shared memory, and read there by workers.

PySpark's ``parallelize`` serializes a collection once, when the RDD is built, and every
job that uses the RDD hands those bytes to its Python workers. Without that, a local[N]
task pickles its partition again each time and pipes it to its worker: for an RDD used
again and again (a ``queue_stream`` of one RDD, a lookup table joined with every batch)
the driver spends CPU every batch on the same bytes, on the cores the workers need, and
the bytes are copied into and out of the pipe. So the first task of a parallelized
partition of at least one slice pickles it, one slice per event-loop turn as the pipe
path does, into a file of a RAM file system (``shared_memory_dir``); every task then names
the file (``SharedSlices``), and its worker reads one slice at a time as it goes, holding
about one slice of the partition's bytes instead of all of them.

A file lives as long as its ``SharedSlices`` object on the driver (held by the RDD and by
the plans of tasks in flight). The directory is removed when the backend stops, and a
killed driver's directory when the next one starts. Where the directory is missing or
full, a partition travels through the pipe as before, with a warning: slower, not lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import weakref
from typing import Any

import anyio.lowlevel

from ..rdd.tasks import SharedSlices, dumps_slice
from .protocol import SLICE

log = logging.getLogger(__name__)


def worth_sharing(records: list[Any]) -> bool:
    """A partition smaller than one slice costs less to pipe than a file costs to make."""
    return len(records) >= SLICE


async def share_records(records: list[Any], directory: str) -> SharedSlices | None:
    """The records pickled into a new file of ``directory``; None (with a warning) if the
    file cannot be written. The file is removed when the returned object is collected."""
    path = os.path.join(directory, uuid.uuid4().hex)
    sizes: list[int] = []
    try:
        with open(path, "wb") as file:
            for start in range(0, len(records), SLICE):
                payload = dumps_slice(records[start : start + SLICE])
                file.write(payload)
                sizes.append(len(payload))
                del payload
                await anyio.lowlevel.checkpoint()  # one slice per event-loop turn
    except OSError as exc:
        _remove(path)
        log.warning(
            "a parallelized partition of %d records goes through the pipe to every task "
            "that reads it: it could not be written to shared memory in %s (%s)",
            len(records), directory, exc,
        )
        return None
    except BaseException:  # cancelled, or a record that cannot be pickled
        _remove(path)
        raise
    shared = SharedSlices(path, tuple(sizes))
    weakref.finalize(shared, _remove, path)
    return shared


def _remove(path: str) -> None:
    """Called from finalizers too, so it never raises."""
    with contextlib.suppress(OSError):
        os.unlink(path)
