"""PySpark's ``StreamingContext(sparkContext, batchDuration)``.

It is the engine's StreamingContext, run the way PySpark runs one: blocking calls
(``start``, ``awaitTermination``, ``stop``) on the SparkContext's event loop and executor,
batch times handed to ``foreachRDD`` and ``transform`` functions as ``datetime`` objects,
listeners called with PySpark's event objects. One may be active at a time.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from ...context import StreamingContext as _EngineContext
from ...errors import ContextStateError
from ...executor.runner import TaskRunner
from ...loop_thread import LoopThread
from ...recovery import stateful_streams
from ..context import SparkContext
from .listener import ListenerBridge

__all__ = ["StreamingContext"]


class StreamingContext(_EngineContext):
    """``StreamingContext(sc, batchDuration)``: batches every ``batchDuration`` seconds on
    the executor of ``sc``."""

    _owns_executor = False  # the SparkContext starts and stops the executor and the loop
    _active_context: ClassVar[StreamingContext | None] = None
    _active_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        sparkContext: SparkContext,
        batchDuration: float | None = None,
        jssc: Any = None,
    ) -> None:
        if not isinstance(sparkContext, SparkContext):
            raise TypeError(
                "StreamingContext(sparkContext, batchDuration): sparkContext must be an "
                f"aiostream_engine.pyspark.SparkContext, got {type(sparkContext).__name__}"
            )
        if batchDuration is None:
            raise TypeError("StreamingContext needs batchDuration (seconds)")
        sparkContext._require_running()
        self._sc = sparkContext
        self._listener_bridges: dict[int, ListenerBridge] = {}
        super().__init__(batchDuration, master=sparkContext.master, conf=sparkContext._streaming_conf)

    # ---- what the SparkContext provides ------------------------------------------------------

    def _make_runner(self) -> TaskRunner:
        return self._sc._runner

    def _make_loop_thread(self) -> LoopThread:
        self._sc._require_running()
        return self._sc._loop_thread

    def _batch_time(self, time_ms: int) -> datetime:
        """As PySpark: ``datetime.fromtimestamp(ms / 1000.0)``, local time."""
        return datetime.fromtimestamp(time_ms / 1000.0)

    @property
    def sparkContext(self) -> SparkContext:  # type: ignore[override]
        """The SparkContext this context runs on."""
        return self._sc

    # ---- the active context ------------------------------------------------------------------

    @classmethod
    def getActive(cls) -> StreamingContext | None:
        """The started and not yet stopped StreamingContext, if any."""
        with cls._active_lock:
            return cls._active_context

    @classmethod
    def getActiveOrCreate(
        cls,
        checkpointPath: str | None,
        setupFunc: Callable[[], StreamingContext],
    ) -> StreamingContext:
        """The active context; else one recovered from ``checkpointPath`` or made by
        ``setupFunc`` (see ``getOrCreate``)."""
        active = cls.getActive()
        if active is not None:
            return active
        if checkpointPath is not None:
            return cls.getOrCreate(checkpointPath, setupFunc)
        return setupFunc()

    @classmethod
    def getOrCreate(  # type: ignore[override]
        cls,
        checkpointPath: str,
        setupFunc: Callable[[], StreamingContext],
    ) -> StreamingContext:
        """``setupFunc()`` builds the context; if ``checkpointPath`` holds a checkpoint, its
        state and pending batches come back into it. Unlike PySpark, ``setupFunc`` runs on
        recovery too (the graph is rebuilt from today's code, so compatible code changes
        keep their state): keep its side effects repeatable."""
        ssc = cls.get_or_create(checkpointPath, setupFunc)
        return ssc  # type: ignore[return-value]

    # ---- lifecycle (blocking, as in PySpark) -------------------------------------------------

    def start(self) -> None:  # type: ignore[override]
        """Start receiving and processing; returns once the batch clock runs."""
        with StreamingContext._active_lock:
            active = StreamingContext._active_context
            if active is not None and active is not self:
                raise ValueError(
                    "Only one StreamingContext may be started at a time; stop the active one "
                    "(StreamingContext.getActive()) first"
                )
            self._checkpoint_into_spark_context_dir()
            self._start_blocking()
            StreamingContext._active_context = self
            self._sc._streaming = self

    def _checkpoint_into_spark_context_dir(self) -> None:
        """Spark lets stateful streams run when only ``sc.setCheckpointDir`` was called (their
        state goes there): give such a context a directory of its own under it, as Spark
        gives each SparkContext a fresh subdirectory."""
        directory = self._sc._checkpoint_dir
        if self.checkpoint_dir is None and directory is not None and stateful_streams(self._streams):
            self.checkpoint(tempfile.mkdtemp(prefix="streaming-", dir=directory))

    def stop(  # type: ignore[override]
        self,
        stopSparkContext: bool = True,
        stopGraceFully: bool = False,
    ) -> None:
        """Stop; ``stopGraceFully=True`` first processes every received record. With
        ``stopSparkContext`` the SparkContext stops too. Raises a job failure that
        happened during the stop or that no ``awaitTermination`` has raised; stopping a
        stopped context does nothing."""
        try:
            self._stop_blocking(stopGraceFully)
        finally:
            with StreamingContext._active_lock:
                if StreamingContext._active_context is self:
                    StreamingContext._active_context = None
            if self._sc._streaming is self:
                self._sc._streaming = None
            if stopSparkContext:
                self._sc.stop()

    def awaitTermination(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until the context stops (or ``timeout`` seconds); raises a failed job's
        error as soon as it fails. Returns whether it has stopped."""
        if self.state.value == "initialized":
            raise ContextStateError("the context has not been started")
        return self._await_termination_blocking(timeout)

    def awaitTerminationOrTimeout(self, timeout: float) -> bool:  # type: ignore[override]
        """``awaitTermination(timeout)``: whether the context has stopped."""
        return self.awaitTermination(timeout)

    # ---- listeners -------------------------------------------------------------------------

    def addStreamingListener(self, streamingListener: Any) -> None:
        """Call ``streamingListener``'s PySpark-style methods (``onBatchCompleted(event)``
        with ``event.batchInfo()``, ...) for this context's events."""
        bridge = ListenerBridge(streamingListener, self)
        self._listener_bridges[id(streamingListener)] = bridge
        self.add_streaming_listener(bridge)

    def removeStreamingListener(self, streamingListener: Any) -> None:
        """Stop calling ``streamingListener``."""
        bridge = self._listener_bridges.pop(id(streamingListener), None)
        if bridge is not None:
            self.remove_streaming_listener(bridge)

    def _unreported_input_ids(self) -> frozenset[int]:
        """Input streams that report no input to listeners (queue streams, as in Spark)."""
        from ...sources.queue import QueueInputDStream

        return frozenset(s.id for s in self._inputs if isinstance(s, QueueInputDStream))
