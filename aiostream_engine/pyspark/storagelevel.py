"""PySpark's ``StorageLevel``: accepted wherever PySpark takes one.

The engine keeps cached partitions where their tasks ran, in memory with a disk copy on
``local[N]`` (see ``executor.block_store``), whatever level is asked for: the levels exist
so ported code runs unchanged; ``persist(level)`` caches as ``cache()`` does.
"""

from __future__ import annotations

from typing import ClassVar


class StorageLevel:
    """Where Spark would keep a cached RDD (disk, memory, off heap, deserialized, replicas)."""

    DISK_ONLY: ClassVar[StorageLevel]
    DISK_ONLY_2: ClassVar[StorageLevel]
    DISK_ONLY_3: ClassVar[StorageLevel]
    MEMORY_ONLY: ClassVar[StorageLevel]
    MEMORY_ONLY_2: ClassVar[StorageLevel]
    MEMORY_AND_DISK: ClassVar[StorageLevel]
    MEMORY_AND_DISK_2: ClassVar[StorageLevel]
    MEMORY_AND_DISK_DESER: ClassVar[StorageLevel]
    OFF_HEAP: ClassVar[StorageLevel]
    NONE: ClassVar[StorageLevel]

    def __init__(
        self,
        useDisk: bool,
        useMemory: bool,
        useOffHeap: bool,
        deserialized: bool,
        replication: int = 1,
    ) -> None:
        self.useDisk = useDisk
        self.useMemory = useMemory
        self.useOffHeap = useOffHeap
        self.deserialized = deserialized
        self.replication = replication

    def _fields(self) -> tuple[bool, bool, bool, bool, int]:
        return self.useDisk, self.useMemory, self.useOffHeap, self.deserialized, self.replication

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageLevel) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "StorageLevel({}, {}, {}, {}, {})".format(*self._fields())

    def __str__(self) -> str:
        parts = [
            "Disk" if self.useDisk else "",
            "Memory" if self.useMemory else "",
            "OffHeap" if self.useOffHeap else "",
            "Deserialized" if self.deserialized else "Serialized",
        ]
        return " ".join(p for p in parts if p) + f" {self.replication}x Replicated"


StorageLevel.NONE = StorageLevel(False, False, False, False)
StorageLevel.DISK_ONLY = StorageLevel(True, False, False, False)
StorageLevel.DISK_ONLY_2 = StorageLevel(True, False, False, False, 2)
StorageLevel.DISK_ONLY_3 = StorageLevel(True, False, False, False, 3)
StorageLevel.MEMORY_ONLY = StorageLevel(False, True, False, False)
StorageLevel.MEMORY_ONLY_2 = StorageLevel(False, True, False, False, 2)
StorageLevel.MEMORY_AND_DISK = StorageLevel(True, True, False, False)
StorageLevel.MEMORY_AND_DISK_2 = StorageLevel(True, True, False, False, 2)
StorageLevel.MEMORY_AND_DISK_DESER = StorageLevel(True, True, False, True)
StorageLevel.OFF_HEAP = StorageLevel(True, True, True, False, 1)
