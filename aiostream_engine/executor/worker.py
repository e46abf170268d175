"""A worker process: reads framed tasks on stdin, writes framed results on stdout.

Started as ``python -m aiostream_engine.executor.worker`` by the process pool. It never
imports the user's main module (cloudpickle carries user code by value), so a PySpark-style
script without an ``if __name__ == "__main__"`` guard works. Output a user function prints
goes to stderr; stdout carries only the protocol.
The frame format is in ``protocol``.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import BinaryIO

import cloudpickle

from aiostream_engine.executor.protocol import ERROR, HEADER, NICE_ENV, RESULT


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


def serve(requests: BinaryIO, responses: BinaryIO) -> None:
    from aiostream_engine.rdd.tasks import execute_task

    while True:
        header = _read_exact(requests, HEADER.size)
        if header is None:
            return
        payload = _read_exact(requests, HEADER.unpack(header)[0])
        if payload is None:
            return
        try:
            plan, index = cloudpickle.loads(payload)
            result = pickle.dumps(execute_task(plan, index), protocol=pickle.HIGHEST_PROTOCOL)
            status = RESULT
        except BaseException as exc:  # report every failure to the driver, keep serving
            result = cloudpickle.dumps(exc)
            status = ERROR
        _respond(responses, status, result)


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group; the driver decides how to
    # stop, and a worker ends when its stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    niceness = int(os.environ.get(NICE_ENV, "0"))
    if niceness > 0:
        os.nice(niceness)
    responses = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # user prints go to stderr
    serve(sys.stdin.buffer, responses)


if __name__ == "__main__":
    main()
