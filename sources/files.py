"""text_file_stream: the lines of files newly moved into a directory (Spark's FileInputDStream).

Receiver-less: before each batch t, ``prepare`` lists the directory and reads every file it
has not seen before, in a worker thread so the event loop never waits on the disk. Each new
file becomes one partition of the batch's RDD. Files must appear atomically (written
elsewhere, then renamed in); names starting with ``.`` or ``_`` are ignored (temporary and
marker files), and so are the files present when the stream starts (Spark's newFilesOnly).

Files are read as bytes, undecoded (``aiostream_engine.raw``): a file's lines, their ends
made ``\\n`` (Hadoop's text input splits on ``\\n``, ``\\r\\n`` or ``\\r``), become one
``RawLines`` partition, decoded on the workers as the first stage of the batch's tasks. A
line that is not valid UTF-8 becomes an ``UndecodableLine`` in ``dead_letters()``, counted
(``invalid_lines``) and logged as its batch completes; the file's other lines are kept.

With backpressure each batch takes new files until their lines reach the stream's rate
bound times the batch interval (at least one file); the other new files wait in the
directory, first in line for the next batches.

Seen names are remembered only while they remain in the directory, so memory follows the
directory's size; a file deleted and later moved in again under the same name is read again.

Recovery: each batch's descriptor is the names of the files it read, and the checkpoint's
position is the names seen so far, so a batch run again after a restart reads the same
files (one that is gone by then is skipped and logged), and files moved in while the job
was down are new to the first batch after it (Spark keeps its batches' file names and
remembers recent files by modification time).
A file that vanishes before it is read, or cannot be read, is skipped, counted and logged;
the stream goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from aiostream_engine.decoding import DeadLetterInputDStream, WorkerDecoding
from aiostream_engine.dstream.input import InputDStream
from aiostream_engine.raw import LineDecoder, RawLines, UndecodableLine, is_raw
from aiostream_engine.rdd.core import RDD

if TYPE_CHECKING:
    from aiostream_engine.context import StreamingContext

log = logging.getLogger("aiostream_engine.sources.files")


def is_visible(name: str) -> bool:
    """Hidden (``.``) and marker or temporary (``_``) names are not data files."""
    return not name.startswith((".", "_"))


def list_files(directory: Path) -> set[str]:
    """Names of the visible regular files in ``directory``."""
    with os.scandir(directory) as entries:
        return {e.name for e in entries if is_visible(e.name) and e.is_file()}


def read_lines(path: Path) -> list[str]:
    """The file's lines, split like Hadoop's text input (``\\n``, ``\\r\\n`` or ``\\r``),
    decoded here (``SparkContext.textFile``'s tasks); UnicodeDecodeError if not UTF-8."""
    with open(path, encoding="utf-8") as file:  # universal newlines
        lines = file.read().split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def read_raw_lines(path: Path) -> RawLines:
    """The file's lines, undecoded, their ends made ``\\n`` as Hadoop's text input splits them
    (``\\n``, ``\\r\\n`` or ``\\r``; no UTF-8 sequence holds those bytes): the stream's
    partitions, decoded on the workers."""
    data = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return RawLines(data, data.count(b"\n"))


@dataclass
class Scan:
    """What one listing found: the names present, the new files read, the files skipped,
    and the new files left for later batches (over the rate bound), oldest first."""

    present: set[str]
    files: list[RawLines | list[Any]] = field(default_factory=list)
    #: The name of each file in ``files``.
    names: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


def scan(
    directory: Path,
    seen: frozenset[str],
    read: Callable[[Path], RawLines | list[Any]] = read_raw_lines,
    waiting: Sequence[str] = (),
    max_records: float | None = None,
) -> Scan:
    """List ``directory`` and ``read`` the files not in ``seen`` (blocking: run it in a
    thread): first those still ``waiting`` from earlier batches, then the new ones by name;
    a file ``read`` refuses (ValueError) is skipped with the reason. With ``max_records``
    it stops once the files read hold that many records (the last file may go over; at
    least one file is read) and leaves the rest waiting."""
    result = Scan(list_files(directory))
    earlier = [name for name in waiting if name in result.present]
    queue = earlier + sorted(result.present - seen - set(earlier))
    taken = 0
    for index, name in enumerate(queue):
        if max_records is not None and index > 0 and taken >= max_records:
            result.waiting = queue[index:]
            break
        taken += _read_into(result, directory, name, read)
    return result


def read_named(
    directory: Path, names: Sequence[str], read: Callable[[Path], RawLines | list[Any]]
) -> Scan:
    """``read`` the files ``names`` again (a batch run again after a restart), blocking."""
    result = Scan(set())
    for name in names:
        _read_into(result, directory, name, read)
    return result


def _read_into(
    result: Scan, directory: Path, name: str, read: Callable[[Path], RawLines | list[Any]]
) -> int:
    """Read one file into ``result`` (or record why it was skipped); its record count."""
    path = directory / name
    try:
        lines = read(path)
    except FileNotFoundError:
        result.skipped.append((path, "it vanished before it could be read"))
    except ValueError as exc:  # the stream's reader refused the file
        result.skipped.append((path, str(exc)))
    except OSError as exc:
        result.skipped.append((path, f"it could not be read ({exc})"))
    else:
        result.files.append(lines)
        result.names.append(name)
        return len(lines)
    return 0


class TextFileInputDStream(InputDStream):
    """Each batch holds the lines of the files moved into ``directory`` since the last one."""

    def __init__(self, ssc: StreamingContext, directory: str | os.PathLike[str]) -> None:
        super().__init__(ssc, f"text_file_stream({os.fspath(directory)})")
        self.directory = Path(directory)
        #: Files skipped because they vanished or could not be read.
        self.skipped_files = 0
        #: Lines that were not valid UTF-8 (dead letters).
        self.invalid_lines = 0
        #: Batches for which the directory could not be listed (they hold no files).
        self.failed_listings = 0
        self._seen: frozenset[str] = frozenset()
        #: New files over the rate bound, read by later batches (oldest first).
        self._waiting: list[str] = []
        self._prepared: tuple[int, RDD] | None = None
        #: The names of the files each batch read, until its checkpoint records them.
        self._descriptors: dict[int, list[str]] = {}
        #: Recovery: the names seen before the restart and the batches to read again.
        self._recovered_seen: frozenset[str] | None = None
        self._replays: dict[int, list[str]] = {}
        #: How a file becomes one partition: raw lines (decoded on the workers), or
        #: the records themselves (``binary_records_stream``).
        self._read: Callable[[Path], RawLines | list[Any]] = read_raw_lines
        self.decoding = WorkerDecoding(self, LineDecoder(strip_cr=False), on_finished=self._decoded)

    @property
    def waiting_files(self) -> int:
        """New files left in the directory for later batches by the rate bound."""
        return len(self._waiting)

    async def start(self) -> None:
        if not await anyio.to_thread.run_sync(self.directory.is_dir):
            raise FileNotFoundError(
                f"{self.name}: directory {str(self.directory)!r} does not exist "
                "or is not a directory"
            )
        present = frozenset(await anyio.to_thread.run_sync(list_files, self.directory))
        recovered = self._recovered_seen
        self._seen = present if recovered is None else present & recovered

    async def prepare(self, time_ms: int) -> None:
        if time_ms in self._replays:
            found = await anyio.to_thread.run_sync(
                read_named, self.directory, self._replays.pop(time_ms), self._read
            )
        else:
            found = await self._scan()
        if self._ssc.checkpoint_dir is not None:  # only a checkpoint takes them
            self._descriptors[time_ms] = found.names
        for path, reason in found.skipped:
            self.skipped_files += 1
            log.warning("%s: skipped file %s: %s", self.name, path, reason)
        self._records[time_ms] = sum(len(file) for file in found.files)
        partitions = [[file] if is_raw(file) else file for file in found.files]
        rdd = self._ssc.spark_context.from_partitions(partitions, self.name)  # type: ignore[arg-type]
        if found.files and is_raw(found.files[0]):
            rdd = self.decoding.rdd(time_ms, rdd)
        self._prepared = (time_ms, rdd)

    async def _scan(self) -> Scan:
        """The new files of the next batch, within the rate bound."""
        bound = self.rate_bound()
        max_records = None if bound is None else bound * self._ssc.batch_interval
        try:
            found = await anyio.to_thread.run_sync(
                scan, self.directory, self._seen, self._read, self._waiting, max_records
            )
        except OSError as exc:
            self.failed_listings += 1
            log.warning("%s: cannot list the directory, no files this batch: %s", self.name, exc)
            found = Scan(set(self._seen), waiting=self._waiting)
        self._waiting = found.waiting
        self._seen = frozenset(found.present - set(found.waiting))
        return found

    # ---- recovery: a batch is the names of the files it read -----------------------------

    replayable = True

    def take_batch_descriptor(self, time_ms: int) -> list[str]:
        return self._descriptors.pop(time_ms, [])

    def position(self) -> list[str]:
        return list(self._seen)

    def restore(self, position: Any, replays: dict[int, Any]) -> None:
        """Files seen before the restart are not new; the replayed batches read theirs
        again. (A checkpoint without a position: every file present at the start is old.)"""
        self._recovered_seen = frozenset(position) if position is not None else None
        self._replays = {t: list(names) for t, names in replays.items() if names}

    def compute(self, time_ms: int) -> RDD | None:
        if self._prepared is not None and self._prepared[0] == time_ms:
            return self._prepared[1]
        return self._ssc.spark_context.empty_rdd()

    async def batch_completed(self, time_ms: int) -> None:
        await self.decoding.finish(time_ms)

    def dead_letters(self) -> DeadLetterInputDStream:
        """``UndecodableLine(line bytes, error)`` of every line that is not valid UTF-8;
        call it before the context starts."""
        return self.decoding.dead_letters()

    def _decoded(self, time_ms: int, records: int, dead_letters: list[UndecodableLine]) -> None:
        if dead_letters:
            self.invalid_lines += len(dead_letters)
            log.warning("%s: %d line(s) of batch %.3f s are not valid UTF-8 (first: %r, a line %s)",
                        self.name, len(dead_letters), time_ms / 1000, dead_letters[0].line,
                        dead_letters[0].error)
