"""A hash of keys that is the same in every process and every run.

Python's ``hash`` of str and bytes is salted per process (PYTHONHASHSEED), so two worker
processes would send the same key to different partitions. Keys are hashed here instead:
strings and bytes with CRC-32 (C speed, stable), numbers with Python's numeric hash (which
is not salted), tuples by combining their items the way PySpark's ``portable_hash`` does.
"""

from __future__ import annotations

from typing import Any
from zlib import crc32

_MASK = (1 << 64) - 1


def stable_hash(key: Any) -> int:
    """Return a non-salted hash of ``key``; equal keys hash equal in every process."""
    if key is None:
        return 0
    if isinstance(key, str):
        return crc32(key.encode("utf-8", "surrogatepass"))
    if isinstance(key, bytes | bytearray):
        return crc32(key)
    if isinstance(key, tuple):
        value = 0x345678
        for item in key:
            value = ((1000003 * value) ^ stable_hash(item)) & _MASK
        return value ^ len(key)
    if isinstance(key, frozenset):
        value = 0
        for item in key:
            value ^= stable_hash(item)
        return value
    # int, float, bool, Decimal, Fraction: numeric hashes are not salted.
    return hash(key)


def partition_of(key: Any, num_partitions: int) -> int:
    """The partition a key belongs to under hash partitioning."""
    return stable_hash(key) % num_partitions
