"""A worker process: reads framed tasks on stdin, writes framed results on stdout.

Started as ``python -m aiostream_engine.executor.worker`` by the process pool. It never
imports the user's main module (cloudpickle carries user code by value), so a PySpark-style
script without an ``if __name__ == "__main__"`` guard works. Output a user function prints
goes to stderr; stdout carries only the protocol.
The frame format is in ``protocol``.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import signal
import sys
from typing import BinaryIO

import cloudpickle

from aiostream_engine.executor.block_store import STORE
from aiostream_engine.executor.protocol import (
    ERROR,
    GC_THRESHOLD_ENV,
    HEADER,
    NICE_ENV,
    PART_COUNT,
    RESULT,
    decode_request,
)
from aiostream_engine.rdd.tasks import execute_packed

PIPE_SIZE = 1 << 20
#: The older generations' thresholds beside ``worker_gc_threshold`` (Python's: 10, 10):
#: with Python's, the full passes walking every record a task holds were what cost
#: (0.5-0.75 s of processing at 300,000 Kafka readings/s, 0.13-0.5 s with these).
WORKER_GC_OLDER = (20, 100)


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _respond(out: BinaryIO, status: bytes, payload: bytes) -> None:
    out.write(HEADER.pack(len(payload) + 1))
    out.write(status)
    out.write(payload)
    out.flush()


def _read_request(stream: BinaryIO) -> list[bytes] | None:
    """The parts of one request frame (see ``protocol``), None at end of input."""
    head = _read_exact(stream, PART_COUNT.size)
    if head is None:
        return None
    parts = []
    for _ in range(PART_COUNT.unpack(head)[0]):
        size = _read_exact(stream, HEADER.size)
        part = None if size is None else _read_exact(stream, HEADER.unpack(size)[0])
        if part is None:
            return None
        parts.append(part)
    return parts


def _run(parts: list[bytes]) -> tuple[bytes, bytes]:
    try:
        plan, index, drops = decode_request(parts)
        parts.clear()  # the plan holds what it needs
        STORE.drop(drops)
        result = pickle.dumps(execute_packed(plan, index), protocol=pickle.HIGHEST_PROTOCOL)
        return RESULT, result
    except BaseException as exc:  # report every failure to the driver, keep serving
        return ERROR, cloudpickle.dumps(exc)


def serve(requests: BinaryIO, responses: BinaryIO) -> None:
    while (parts := _read_request(requests)) is not None:
        _respond(responses, *_run(parts))


def _widen_pipes(*fds: int) -> None:
    """Grow the pipes to the driver to 1 MiB (Linux; default 64 KiB): a partition's
    megabytes then cross in a sixteenth of the read and write calls and event-loop turns."""
    for fd in fds:
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or over the limit
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group; the driver decides how to
    # stop, and a worker ends when its stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    niceness = int(os.environ.get(NICE_ENV, "0"))
    if niceness > 0:
        os.nice(niceness)
    gc_threshold = int(os.environ.get(GC_THRESHOLD_ENV, "0"))
    if gc_threshold > 0:
        gc.set_threshold(gc_threshold, *WORKER_GC_OLDER)
    _widen_pipes(sys.stdin.fileno(), sys.stdout.fileno())
    responses = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # user prints go to stderr
    serve(sys.stdin.buffer, responses)


if __name__ == "__main__":
    main()
