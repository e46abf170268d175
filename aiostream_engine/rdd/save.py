"""Writing an RDD's partitions as files: one ``part-NNNNN`` per partition, written where the
task runs, in a staging directory moved into place with a ``_SUCCESS`` marker once every
partition is written (``saveAsTextFile``, ``saveAsTextFiles``, ``saveAsObjectFiles``)."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, cast

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from .core import RDD

PartWriter = Callable[[int, Iterator[Any]], list[int]]

#: Hadoop's codec class names ``saveAsTextFile`` accepts, and the file suffix of each.
CODECS = {
    "org.apache.hadoop.io.compress.GzipCodec": ".gz",
    "org.apache.hadoop.io.compress.DefaultCodec": ".gz",
}


async def asave(
    rdd: RDD, target: str, writer: Callable[[str], PartWriter], replace: bool
) -> None:
    """Write ``rdd``'s partitions with ``writer(directory)`` into ``target`` (see ``publish``
    for ``replace``); nothing is left behind if a task fails."""
    if not replace and await anyio.to_thread.run_sync(os.path.exists, target):
        raise FileExistsError(f"Output directory {target} already exists")
    staging = await anyio.to_thread.run_sync(staging_directory, target)
    try:
        await rdd.map_partitions_with_index(writer(staging)).acollect()
        await anyio.to_thread.run_sync(publish, staging, target, replace)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(discard, staging)
        raise


def text_part_writer(directory: str, suffix: str = "") -> PartWriter:
    """The stage writing partition ``index`` as lines of ``str(record)`` (gzipped for a
    ``.gz`` suffix)."""

    def write(index: int, records: Iterator[Any]) -> list[int]:
        count = 0
        path = os.path.join(directory, f"part-{index:05d}{suffix}")
        opened = gzip.open(path, "wt", encoding="utf-8") if suffix == ".gz" else open(
            path, "w", encoding="utf-8"
        )
        with cast(IO[str], opened) as out:
            for record in records:
                out.write(f"{record}\n")
                count += 1
        return [count]

    return write


def object_part_writer(directory: str) -> PartWriter:
    """The stage writing partition ``index`` as one pickled list."""

    def write(index: int, records: Iterator[Any]) -> list[int]:
        items = list(records)
        with open(os.path.join(directory, f"part-{index:05d}"), "wb") as out:
            pickle.dump(items, out, protocol=pickle.HIGHEST_PROTOCOL)
        return [len(items)]

    return write


def staging_directory(target: str) -> str:
    """A fresh hidden directory next to ``target`` to write into before it is moved."""
    parent, name = os.path.split(os.path.abspath(target))
    staging = os.path.join(parent, f".{name}.staging-{uuid.uuid4().hex}")
    os.makedirs(staging)
    return staging


def publish(staging: str, target: str, replace: bool) -> None:
    """Mark ``staging`` complete and move it to ``target``. With ``replace`` an existing
    target (a batch written again after a recovery) is swapped out, never appended to;
    without it an existing target is an error, as Spark's saveAsTextFile."""
    with open(os.path.join(staging, "_SUCCESS"), "w"):
        pass
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    if not replace:
        raise FileExistsError(f"Output directory {target} already exists")
    trash = f"{target}.old-{uuid.uuid4().hex}"
    os.rename(target, trash)
    os.rename(staging, target)
    shutil.rmtree(trash, ignore_errors=True)


def discard(staging: str) -> None:
    shutil.rmtree(staging, ignore_errors=True)
