"""PySpark's ``SparkContext``: the executor (a master URL's backend) and its event loop,
usable on its own, before, with and after a ``StreamingContext``.

PySpark programs are blocking code. A ``SparkContext`` starts its executor on an event
loop in a background thread (``loop_thread``) when it is created, as PySpark starts its
JVM; RDD actions called from the program's thread run there and block until done. A
``StreamingContext`` built on it runs its engine on the same loop and the same executor,
so RDDs made with ``sc.parallelize`` before the stream starts feed it, and after
``ssc.stop(stopSparkContext=False)`` the context still runs RDD actions.
"""

from __future__ import annotations

import atexit
import getpass
import glob
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .. import __version__
from ..errors import ContextStateError
from ..executor.master import backend_for
from ..executor.runner import TaskRunner
from ..loop_thread import LoopThread
from ..rdd.core import RDD, UnionRDD
from ..sources.files import is_visible, read_lines
from ..variables.accumulator import Accumulator, AccumulatorParam
from ..variables.broadcast import Broadcast
from .conf import SparkConf

if TYPE_CHECKING:
    from .streaming.context import StreamingContext

log = logging.getLogger("aiostream_engine.pyspark")
T = TypeVar("T")

#: Spark's log levels and the ``logging`` level each stands for.
LOG_LEVELS = {
    "ALL": logging.NOTSET,
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
    "OFF": logging.CRITICAL + 10,
}


class SparkContext:
    """The entry point for RDDs: ``SparkContext(master="local[2]", appName="job")``.

    One may be active at a time (as in PySpark); ``SparkContext.getOrCreate()`` returns it.
    """

    _active: ClassVar[SparkContext | None] = None
    _active_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        master: str | None = None,
        appName: str | None = None,
        sparkHome: str | None = None,
        pyFiles: list[str] | None = None,
        environment: dict[str, str] | None = None,
        batchSize: int = 0,
        serializer: Any = None,
        conf: SparkConf | None = None,
        gateway: Any = None,
        jsc: Any = None,
        profiler_cls: Any = None,
    ) -> None:
        with SparkContext._active_lock:
            if SparkContext._active is not None:
                active = SparkContext._active
                raise ValueError(
                    f"Cannot run multiple SparkContexts at once; existing SparkContext"
                    f"(app={active.appName}, master={active.master})"
                )
            self._conf = conf.copy() if conf is not None else SparkConf()
            if master:
                self._conf.setMaster(master)
            if appName:
                self._conf.setAppName(appName)
            self.master: str = self._conf.get("spark.master") or "local[*]"
            self._conf.setIfMissing("spark.master", self.master)
            self.appName: str = self._conf.get("spark.app.name") or "aiostream-engine"
            self.environment = dict(environment or {})
            self.pythonExec = None  # kept for ported code that reads it
            self.startTime = int(time.time() * 1000)
            self._streaming_conf = self._conf.streaming_conf()
            self._runner = TaskRunner(backend_for(self.master, self._streaming_conf),
                                      self._streaming_conf)
            self._loop_thread = LoopThread(name="aiostream-engine SparkContext")
            try:
                self._loop_thread.run(self._runner.start())
            except BaseException:
                self._loop_thread.run(self._runner.stop())
                self._loop_thread.close()
                raise
            self._stopped = False
            self._checkpoint_dir: str | None = None
            #: The StreamingContext running on this context, if any.
            self._streaming: StreamingContext | None = None
            SparkContext._active = self
        atexit.register(self.stop)

    @classmethod
    def getOrCreate(cls, conf: SparkConf | None = None) -> SparkContext:
        """The active SparkContext, or a new one from ``conf``."""
        with cls._active_lock:
            active = cls._active
        return active if active is not None else cls(conf=conf)

    # ---- facts about the application -----------------------------------------------------

    @property
    def defaultParallelism(self) -> int:
        """Partitions of ``parallelize`` and of shuffles when none is named: the
        ``spark.default.parallelism`` key, else the executor's cores."""
        return self._runner.default_parallelism

    @property
    def defaultMinPartitions(self) -> int:
        """Spark's default ``minPartitions`` hint: ``min(defaultParallelism, 2)``."""
        return min(self.defaultParallelism, 2)

    @property
    def version(self) -> str:
        """The engine's version (this is not Spark)."""
        return __version__

    @property
    def applicationId(self) -> str:
        """An id for this run, in Spark's local form (``local-<start ms>``)."""
        return f"local-{self.startTime}"

    @property
    def uiWebUrl(self) -> str | None:
        """The web UI of the running StreamingContext, if it serves one."""
        return self._streaming.ui_url if self._streaming is not None else None

    def sparkUser(self) -> str:
        """The user running the program."""
        return getpass.getuser()

    def getConf(self) -> SparkConf:
        """A copy of this context's configuration."""
        return self._conf.copy()

    # ---- RDDs ----------------------------------------------------------------------------

    def _require_running(self) -> None:
        if self._stopped:
            raise ContextStateError("this SparkContext has been stopped")

    def parallelize(self, c: Iterable[Any], numSlices: int | None = None) -> RDD:
        """An RDD of the collection ``c`` in ``numSlices`` partitions (default:
        ``defaultParallelism``), serialized once for every job that reads it."""
        self._require_running()
        return self._runner.parallelize(c, numSlices)

    def range(
        self, start: int, end: int | None = None, step: int = 1, numSlices: int | None = None
    ) -> RDD:
        """``range(start, end, step)`` as an RDD; ``range(n)`` is ``range(0, n)``."""
        if end is None:
            start, end = 0, start
        return self.parallelize(range(start, end, step), numSlices)

    def emptyRDD(self) -> RDD:
        """An RDD with no partitions."""
        self._require_running()
        return self._runner.empty_rdd()

    def union(self, rdds: list[RDD]) -> RDD:
        """The partitions of every RDD in ``rdds`` side by side."""
        if not rdds:
            raise ValueError("union needs at least one RDD")
        return rdds[0] if len(rdds) == 1 else UnionRDD(list(rdds))

    def textFile(
        self, name: str, minPartitions: int | None = None, use_unicode: bool = True
    ) -> RDD:
        """The lines of the text files ``name`` names: a file, a directory (its visible
        files), a glob, or several of them separated by commas, as Hadoop reads them
        (``.gz`` files decompressed). One partition per file, read where its task runs;
        ``minPartitions`` is a hint, as in Spark (files are not split)."""
        self._require_running()
        paths = expand_paths(name)
        return self._runner.parallelize(paths, max(1, len(paths))).flat_map(read_text_file)

    # ---- shared variables ----------------------------------------------------------------

    def broadcast(self, value: T) -> Broadcast[T]:
        """A read-only value tasks read as ``b.value``, pickled once here."""
        self._require_running()
        return self._runner.broadcast(value)

    def accumulator(self, value: T, accum_param: AccumulatorParam[T] | None = None) -> Accumulator[T]:
        """A value tasks add to (``acc.add(x)``, ``acc += x``) and the driver reads
        (``acc.value``); a retried task's additions count once."""
        self._require_running()
        return self._runner.accumulator(value, accum_param)

    # ---- settings ------------------------------------------------------------------------

    def setLogLevel(self, logLevel: str) -> None:
        """The engine's log level, by Spark's names (ALL, DEBUG, ERROR, FATAL, INFO, OFF,
        TRACE, WARN). Messages go where ``logging`` sends them; with no handler set up
        anywhere, to stderr."""
        level = LOG_LEVELS.get(logLevel.upper())
        if level is None:
            raise ValueError(
                f"Supplied level {logLevel} did not match one of: {','.join(LOG_LEVELS)}"
            )
        logger = logging.getLogger("aiostream_engine")
        logger.setLevel(level)
        if not logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)

    def setCheckpointDir(self, dirName: str) -> None:
        """Where RDD checkpoints go (created if missing). Streaming checkpoints go where
        ``ssc.checkpoint(directory)`` says; without it, stateful streams checkpoint into a
        fresh subdirectory of this one, as in Spark."""
        os.makedirs(dirName, exist_ok=True)
        self._checkpoint_dir = dirName

    def getCheckpointDir(self) -> str | None:
        """The directory set with ``setCheckpointDir``, if any."""
        return self._checkpoint_dir

    # ---- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the executor (and a StreamingContext still running on it); stopping twice
        does nothing."""
        if self._stopped:
            return
        streaming = self._streaming
        if streaming is not None:
            try:
                streaming.stop(stopSparkContext=False)
            except Exception as exc:  # the executor goes anyway; the failure was logged
                log.warning("stopping the StreamingContext with its SparkContext: %s", exc)
        self._stopped = True
        atexit.unregister(self.stop)
        try:
            self._loop_thread.run(self._runner.stop())
        finally:
            self._loop_thread.close()
            with SparkContext._active_lock:
                if SparkContext._active is self:
                    SparkContext._active = None

    def __enter__(self) -> SparkContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SparkContext master={self.master} appName={self.appName}>"


def expand_paths(name: str) -> list[str]:
    """The files a Hadoop-style path list names, in order: comma-separated entries, each a
    file, a directory (its visible files, sorted) or a glob. Raises FileNotFoundError
    naming an entry that matches nothing."""
    paths: list[str] = []
    for entry in (part.strip() for part in name.split(",")):
        if not entry:
            continue
        matches = sorted(glob.glob(entry)) if glob.has_magic(entry) else [entry]
        found = False
        for match in matches:
            if os.path.isdir(match):
                with os.scandir(match) as items:
                    files = sorted(i.path for i in items if is_visible(i.name) and i.is_file())
                paths += files
                found = True
            elif os.path.isfile(match):
                paths.append(match)
                found = True
        if not found:
            raise FileNotFoundError(f"Input path does not exist: {entry}")
    return paths


def read_text_file(path: str) -> list[str]:
    """The lines of one file (a task's work); ``.gz`` files are decompressed."""
    if path.endswith(".gz"):
        import gzip

        with gzip.open(path, "rt", encoding="utf-8", newline=None) as file:
            lines = file.read().split("\n")
        if lines[-1] == "":
            lines.pop()
        return lines
    return read_lines(Path(path))
