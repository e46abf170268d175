"""The frame format between the driver and a worker process.

Frame: 8-byte big-endian length, then a payload. Request payload: cloudpickle of
``(plan, index)``. Response: one status byte (``RESULT`` / ``ERROR``) and a pickle.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">Q")
RESULT, ERROR = b"R", b"E"

#: Environment variable telling a worker how much to lower its priority.
NICE_ENV = "AIOSTREAM_WORKER_NICE"
