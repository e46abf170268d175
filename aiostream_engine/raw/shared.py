"""A raw block's buffer kept in a file of a RAM file system, mapped by the worker that
decodes it.

Piping a raw block to its worker when its task starts put the copy on the batch's
critical path: on W2 at 1.12M readings a batch (two blocks of 72 MB) each worker waited
0.059 s for its block to cross, and spent 0.033 s of CPU reading it, while a
``parallelize``d partition was already in shared memory. So under ``local[N]`` a raw
block is written to the pool's shared-memory directory when it is stored (in a thread,
off the event loop: ``executor.shared_input.share_raw_block``); its ``data`` becomes a
``SharedBuffer`` naming the file, and the task carries only that. Unpickled on the worker,
a ``SharedBuffer`` is the file mapped read-only (``mmap``): the decoder reads the pages in
place, no copy (decoding 36 MB of lines from the map cost 0.019 s of CPU; reading it into
``bytes`` first, 0.019 s more).

A decoder therefore reads its block's ``data`` as a ``Buffer``: ``bytes`` or a
read-only ``MappedBuffer`` (an ``mmap``). Both index to ints, slice to ``bytes``, have
``len``, ``find``/``rfind`` and give a ``memoryview``; ``bytes`` methods beyond these
(``split``, ``decode``, comparison with ``bytes``) need a slice first (``data[:]``). Only a
stream decoded on the workers has its blocks placed so (``BlockInputDStream.
decodes_on_workers``); should a mapped buffer leave its task all the same (a decoder
passing its block on), it pickles as the ``bytes`` it holds.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Any


class MappedBuffer(mmap.mmap):
    """A raw block's file mapped read-only on the worker; pickled, the bytes it holds."""

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return bytes, (self[:],)


#: What a raw block's ``data`` is where it is decoded.
Buffer = bytes | MappedBuffer


@dataclass(frozen=True, eq=False)
class SharedBuffer:
    """A raw block's buffer in the file ``path`` of ``size`` bytes. On the driver it names
    the file (which lives as long as this object: ``shared_input``); pickled, it travels
    as that name, and unpickles as the file mapped (``mapped``). Compared by identity, as
    each one owns its file."""

    path: str
    size: int

    def __len__(self) -> int:
        return self.size

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return mapped, (self.path, self.size)


def mapped(path: str, size: int) -> Buffer:
    """The file ``path`` mapped read-only; it must hold ``size`` bytes. Raises ``OSError``
    when it is gone or not that size (changed or cut by someone else)."""
    if size == 0:
        return b""
    with open(path, "rb") as file:
        found = os.fstat(file.fileno()).st_size
        if found != size:
            raise OSError(f"shared raw block {path} holds {found} bytes, not {size}: it was changed or cut")
        return MappedBuffer(file.fileno(), size, prot=mmap.PROT_READ)
