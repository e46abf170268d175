"""StreamingContext: the streaming graph, its sources, and its lifecycle.

Two ways to run it:

* async: ``async with StreamingContext(1.0) as ssc: ...; await ssc.start();
  await ssc.await_termination()``; the engine's tasks live in the ``async with`` block.
* blocking, PySpark style: ``ssc.start(); ssc.awaitTermination(5); ssc.stop()``; the engine
  runs on an event loop in a background thread (``loop_thread``).

``start``, ``stop`` and ``await_termination`` return an awaitable when called inside a
running event loop and block otherwise.
"""

from __future__ import annotations

import atexit
import enum
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .checkpoint import CheckpointStore
from .clock import Clock, SystemClock
from .conf import StreamingConf
from .dstream.base import DStream
from .dstream.functions import takes_time
from .dstream.input import InputDStream, ReceiverInputDStream
from .dstream.output import ForEachDStream
from .dstream.transformed import TransformedDStream, UnionDStream
from .errors import ConfigurationError, ContextStateError, JobFailedError, StreamingError
from .executor.master import backend_for
from .executor.runner import TaskRunner
from .loop_thread import LoopThread, in_async_context
from .rdd.core import RDD
from .receiver.base import Receiver
from .receiver.tracker import ReceiverTracker
from .recovery import (
    CheckpointManager,
    CheckpointStatistics,
    RecoveryPlan,
    default_interval_ms,
    history_streams,
    load_plan,
    stateful_streams,
)
from .scheduler.batch_info import BatchInfo
from .scheduler.job_generator import JobGenerator
from .scheduler.job_scheduler import JobScheduler
from .scheduler.listener import ListenerBus, StreamingStarted, StreamRateUpdated
from .scheduler.rate.controller import rate_controllers
from .storage.keys import CheckpointKey, resolve_key
from .timeutil import to_ms, to_seconds
from .ui import ui_enabled

if TYPE_CHECKING:
    import ssl

    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette

    from .sources.kafka import DirectKafkaInputDStream
    from .sources.mqtt import MqttStream
    from .sources.simulator import SensorSimulator
    from .ui.runtime import StreamingUI

log = logging.getLogger("aiostream_engine")
T = TypeVar("T")


class Ready(Generic[T]):
    """What a lifecycle call returns in blocking mode: already done, yet awaitable, so
    ``await ssc.start()`` and ``ssc.start()`` type-check the same way."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self.value
        yield  # makes this a generator

    def __bool__(self) -> bool:
        return bool(self.value)


def _fit_block_interval(conf: StreamingConf, batch_interval: float) -> None:
    """A block interval longer than the batch interval would leave batches without blocks:
    refuse it if the user set it, else use the batch interval (Spark accepts short batches;
    PySpark's own tests use 0.1 s with the default 0.2 s blocks)."""
    if conf.block_interval <= batch_interval:
        return
    if "block_interval" in conf.explicit_keys:
        raise ConfigurationError(
            f"block_interval ({conf.block_interval:g} s) is larger than the batch "
            f"interval ({batch_interval:g} s): every batch would miss blocks"
        )
    log.info(
        "block_interval: the default %g s is longer than the batch interval; using the "
        "batch interval, %g s (set block_interval to a divisor of it to cut finer blocks)",
        conf.block_interval, batch_interval,
    )
    conf.adapt("block_interval", batch_interval)


class State(enum.Enum):
    INITIALIZED = "initialized"
    ACTIVE = "active"
    STOPPED = "stopped"


class StreamingContext:
    """Entry point: build streams on it, then start it."""

    # PySpark's names, written by `python scripts/aliases.py --update` from aliases.ALIASES
    if TYPE_CHECKING:
        queueStream: Callable[..., DStream]
        socketTextStream: Callable[..., DStream]
        textFileStream: Callable[..., DStream]
        binaryRecordsStream: Callable[..., DStream]
        receiverStream: Callable[..., DStream]
        awaitTermination: Callable[..., Awaitable[bool]]
        awaitTerminationOrTimeout: Callable[..., Awaitable[bool]]
        addStreamingListener: Callable[..., None]
        removeStreamingListener: Callable[..., None]
        getOrCreate: ClassVar[Callable[..., StreamingContext]]
        sparkContext: TaskRunner
    # end of PySpark's names

    def __init__(
        self,
        batch_interval: float,
        *,
        master: str = "local[*]",
        conf: StreamingConf | dict[str, Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(batch_interval, int | float) or batch_interval <= 0:
            raise ConfigurationError(f"batch_interval must be > 0 seconds, got {batch_interval!r}")
        self.conf = StreamingConf.of(conf)
        self.batch_ms = to_ms(batch_interval, "batch interval")
        _fit_block_interval(self.conf, batch_interval)
        self.master = master
        self.clock: Clock = clock or SystemClock()
        self.state = State.INITIALIZED
        self._runner = self._make_runner()
        self._bus = ListenerBus(self.conf.listener_queue_size)
        self._receiver_tracker = ReceiverTracker(self.conf, self.clock, self._bus)
        self._streams: list[DStream] = []
        self._inputs: list[InputDStream] = []
        self._outputs: list[ForEachDStream] = []
        self._job_scheduler = JobScheduler(
            self.conf, self.clock, self._bus, self._batch_completed, self._fail
        )
        self._job_scheduler.batch_observers.append(self._update_rates)
        self._job_generator = JobGenerator(self.clock, self.batch_ms, self._generate_batch)
        self._errors: list[BaseException] = []
        self._surfaced = False  # whether a lifecycle call has raised one of the errors
        self._wakeup = threading.Condition()  # blocking waiters: termination or an error
        self._failed = False  # a batch failed: the context stops without finishing batches
        self._key: CheckpointKey | None = None
        self._terminated = threading.Event()
        self._changed: anyio.Event | None = None  # set on termination or a reported error
        self._stopped: anyio.Event | None = None  # set on termination only
        self._task_group: TaskGroup | None = None
        self._engine_scope: anyio.CancelScope | None = None
        self._stop_request: anyio.Event | None = None
        self._graceful = False
        self._loop_thread: LoopThread | None = None
        self._host_future: Any = None
        self._remember_ms: int | None = None
        self._zero_ms: int | None = None
        self.checkpoint_dir: str | None = None
        self._recovery: RecoveryPlan | None = None
        self._checkpoints: CheckpointManager | None = None
        self._ui: StreamingUI | None = None

    # ---- what a layer on top may share (the PySpark layer's SparkContext) ----------------

    #: Whether this context starts and stops its executor and (blocking use) its loop
    #: thread; False when a longer-lived owner (a PySpark-style SparkContext) shares them.
    _owns_executor = True

    def _make_runner(self) -> TaskRunner:
        """The executor this context runs its tasks on."""
        return TaskRunner(backend_for(self.master, self.conf), self.conf)

    def _make_loop_thread(self) -> LoopThread:
        """The event loop the engine runs on in blocking use."""
        return LoopThread()

    def _batch_time(self, time_ms: int) -> Any:
        """A batch time as user functions receive it (``foreach_rdd``, ``transform``):
        seconds here; a ``datetime`` in the PySpark layer, as in PySpark."""
        return to_seconds(time_ms)

    # ---- graph registration -------------------------------------------------------------

    def _require_buildable(self) -> None:
        if self.state is not State.INITIALIZED:
            raise ContextStateError(
                "streams and output operations cannot be added once the context has started"
            )

    def _register_stream(self, stream: DStream) -> None:
        self._require_buildable()
        self._streams.append(stream)

    def _register_input(self, stream: InputDStream) -> int:
        self._inputs.append(stream)
        return len(self._inputs) - 1

    def _register_output(self, stream: ForEachDStream) -> int:
        self._outputs.append(stream)
        return len(self._outputs) - 1

    @property
    def spark_context(self) -> TaskRunner:
        """Builds RDDs (``parallelize``, ``empty_rdd``): PySpark's ``ssc.sparkContext``."""
        return self._runner


    def add_py_file(self, path: str) -> None:
        """Ship a ``.py`` file or a ``.zip`` / ``.egg`` of packages to every worker, for the
        job's functions to import there (Spark's ``addPyFile``): a module a Dask worker
        lacks is otherwise an error naming it. Call before start."""
        self._runner.add_py_file(path)

    @property
    def batch_interval(self) -> float:
        """Seconds between batches."""
        return to_seconds(self.batch_ms)

    @property
    def zero_time(self) -> float:
        """The batch clock's zero time (first batch time minus one interval), in seconds;
        kept across a recovery. Batch k is at ``zero_time + k * batch_interval``."""
        if self._zero_ms is None:
            raise ContextStateError("the batch clock has no zero time before start")
        return to_seconds(self._zero_ms)

    def remember(self, duration: float) -> None:
        """Keep every stream's RDDs at least ``duration`` seconds (for ``slice``)."""
        self._remember_ms = to_ms(duration, "remember duration")

    def checkpoint(self, directory: str) -> None:
        """Checkpoint into ``directory``: metadata every batch, state every checkpoint
        interval. Stateful and inverse-window streams require it."""
        self.checkpoint_dir = directory

    def _checkpoint_key(self) -> CheckpointKey:
        """The key checkpoint and log files are authenticated with (``storage.keys``)."""
        if self._key is None:
            self._key = resolve_key(
                self.conf.checkpoint_key, self.conf.checkpoint_key_file, self.checkpoint_dir
            )
        return self._key

    def _checkpoint_store(self, directory: str) -> CheckpointStore:
        return CheckpointStore(
            directory, self._checkpoint_key(), require_private=self.conf.checkpoint_dir_check
        )

    @property
    def checkpoint_statistics(self) -> CheckpointStatistics | None:
        """Checkpoint writes and failed write attempts (None without checkpointing)."""
        return self._checkpoints.statistics if self._checkpoints is not None else None

    @classmethod
    def get_or_create(
        cls,
        checkpoint_path: str,
        setup: Callable[[], StreamingContext],
        *,
        fresh: Iterable[str] = (),
    ) -> StreamingContext:
        """Build the context with ``setup()``; if ``checkpoint_path`` holds a checkpoint,
        resume it: state comes back by each stateful stream's stable name, pending and
        missed batches run again. A stateful stream that was removed or changed is refused,
        unless named in ``fresh`` (then it starts empty); so is a directory another program
        wrote (``CheckpointMismatchError``), one another user could have written
        (``CheckpointSecurityError``) and one that cannot be resumed faithfully
        (``CheckpointDamagedError``)."""
        ssc = setup()
        if not isinstance(ssc, StreamingContext):
            raise TypeError("get_or_create: setup() must return a StreamingContext")
        if ssc.checkpoint_dir is None:
            ssc.checkpoint(checkpoint_path)
        plan = load_plan(ssc._checkpoint_store(checkpoint_path), accept_data_loss=ssc.conf.accept_data_loss)
        if plan is not None:
            plan.fresh = set(fresh)
            plan.check_graph(stateful_streams(ssc._streams), ssc.batch_ms, ssc._inputs)
            ssc._recovery = plan
        return ssc


    # ---- sources ------------------------------------------------------------------------

    def queue_stream(
        self,
        rdds: Iterable[RDD | Iterable[Any]],
        one_at_a_time: bool = True,
        default: RDD | Iterable[Any] | None = None,
    ) -> DStream:
        """Each item (a list or an RDD) is one batch; ``default`` once the queue is empty."""
        from .sources.queue import QueueInputDStream

        return QueueInputDStream(self, rdds, one_at_a_time, default)

    def socket_text_stream(self, hostname: str, port: int, storage_level: Any = None) -> DStream:
        """Lines of UTF-8 text from a TCP server; reconnects when the connection drops.
        ``storage_level`` is PySpark's and not needed: blocks live with the engine."""
        from .sources.socket import SocketTextReceiver

        return self.receiver_stream(SocketTextReceiver(hostname, port))

    def text_file_stream(self, directory: str) -> DStream:
        """Lines of files newly moved into ``directory`` (dot-files are ignored)."""
        from .sources.files import TextFileInputDStream

        return TextFileInputDStream(self, directory)

    def binary_records_stream(self, directory: str, record_length: int) -> DStream:
        """Records of ``record_length`` bytes from files newly moved into ``directory``
        (PySpark's ``binaryRecordsStream``)."""
        from .sources.binary_records import BinaryRecordsInputDStream

        return BinaryRecordsInputDStream(self, directory, record_length)

    def receiver_stream(self, receiver: Receiver) -> DStream:
        """A stream fed by a user-defined ``Receiver``; one with a ``decoder`` stores raw
        blocks, decoded on the workers (its stream has ``dead_letters()``)."""
        if receiver.decoder is not None:
            from .decoding.streams import DecodedReceiverInputDStream

            return DecodedReceiverInputDStream(self, receiver, receiver.display_name)
        return ReceiverInputDStream(self, receiver, receiver.display_name)

    def mqtt_stream(
        self,
        host: str,
        port: int = 1883,
        topics: str | Sequence[str] = (),
        *,
        qos: int = 1,
        client_id: str | None = None,
        clean_start: bool = False,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | bool | None = None,
        decoder: str | Callable[[bytes], Any] = "json",
        num_receivers: int = 1,
        shared_group: str | None = None,
        session_expiry: int | None = None,
        max_block_records: int | None = None,
        max_block_bytes: int | None = None,
        max_inflight: int | None = None,
        max_queued_bytes: int | None = None,
        keepalive: int | None = None,
        protocol: str | None = None,
    ) -> MqttStream:
        """Messages from an MQTT broker (MQTT 5 or 3.1.1) on ``topics`` (filters).

        ``qos``: the subscription's QoS (a message is acknowledged once its block is
        stored). ``client_id`` and ``clean_start=False`` keep a persistent session across
        reconnects; ``username``/``password``, ``tls`` (True: the system's CA store).
        ``decoder``: "json", "text", "bytes" or a function of the payload; payloads it
        refuses go to the stream's ``dead_letters()``. ``num_receivers`` > 1 spreads the
        topics over that many receivers of the MQTT 5 shared subscription ``shared_group``.
        Left at None, the receiver's defaults: ``session_expiry`` (seconds the broker keeps
        the session), ``max_block_records`` / ``max_block_bytes`` (a block is cut sooner
        when it reaches them), ``max_inflight`` (unacknowledged QoS>0 messages),
        ``max_queued_bytes`` (buffered before the socket is read less), ``keepalive``
        (seconds), ``protocol`` ("5" or "3.1.1"). See ``sources.mqtt``."""
        from .sources.mqtt import mqtt_stream

        receiver_defaults = {
            "session_expiry": session_expiry, "max_block_records": max_block_records,
            "max_block_bytes": max_block_bytes, "max_inflight": max_inflight,
            "max_queued_bytes": max_queued_bytes, "keepalive": keepalive, "protocol": protocol,
        }
        return mqtt_stream(
            self, host, port, topics, qos=qos, client_id=client_id, clean_start=clean_start,
            username=username, password=password, tls=tls, decoder=decoder,
            num_receivers=num_receivers, shared_group=shared_group,
            **{name: value for name, value in receiver_defaults.items() if value is not None},
        )

    def kafka_direct_stream(
        self, topics: str | Sequence[str], kafka_params: dict[str, Any], **options: Any
    ) -> DirectKafkaInputDStream:
        """Kafka's direct stream: each batch reads an offset range per partition, read by
        the tasks themselves; ``options`` are those of ``sources.kafka.kafka_direct_stream``
        (from_offsets, key_decoder, value_decoder, message_handler, name). Its RDDs have
        ``offset_ranges()``; the stream has ``commit_async``."""
        from .sources.kafka import kafka_direct_stream

        return kafka_direct_stream(self, topics, kafka_params, **options)

    def kafka_stream(
        self, topics: str | Sequence[str], kafka_params: dict[str, Any], **options: Any
    ) -> DStream:
        """Kafka's receiver stream: a consumer group read on the event loop, offsets
        committed once a block is stored (in the write-ahead log when it is on);
        ``options`` are those of ``sources.kafka_receiver.kafka_stream`` (num_receivers,
        key_decoder, value_decoder, message_handler, max_block_records, name)."""
        from .sources.kafka_receiver import kafka_stream

        return kafka_stream(self, topics, kafka_params, **options)

    def simulator_stream(self, **options: Any) -> DStream:
        """JSON readings from simulated IoT devices (see ``sources.simulator``)."""
        from .sources.simulator import SensorSimulator

        simulator: SensorSimulator = SensorSimulator(**options)
        return self.receiver_stream(simulator)

    def union(self, *streams: DStream) -> DStream:
        """The records of every stream, batch by batch (they must slide alike)."""
        if not streams:
            raise ValueError("union needs at least one stream")
        return UnionDStream(self, list(streams))

    def transform(self, streams: list[DStream], func: Callable[..., RDD]) -> DStream:
        """``func(rdds)`` or ``func(time, rdds)`` over the streams' RDDs of each batch."""
        with_time = takes_time(func, 1)
        return TransformedDStream(
            self,
            list(streams),
            "transform",
            lambda rdds, t: func(self._batch_time(t), rdds) if with_time else func(rdds),
        )

    def __call__(self) -> StreamingContext:
        """The context itself. ``dstream.context`` is a property here and a method in
        PySpark; calling what the property gives returns the same context, so a ported
        ``dstream.context()`` works unchanged."""
        return self

    # ---- observation --------------------------------------------------------------------

    def add_streaming_listener(self, listener: Any) -> None:
        """Deliver listener events (batch submitted, started, completed, ...) to ``listener``."""
        self._bus.add(listener)

    def remove_streaming_listener(self, listener: Any) -> None:
        """Stop delivering events to ``listener``."""
        self._bus.remove(listener)

    @property
    def batch_history(self) -> list[BatchInfo]:
        """The last ``retained_batches`` completed batches, oldest first."""
        return list(self._job_scheduler.history)

    @property
    def errors(self) -> list[BaseException]:
        """Every error reported so far (failed jobs, in order)."""
        return list(self._errors)

    # ---- the web UI and metrics (aiostream_engine.ui, extra "ui") -----------------------

    def _ui_runtime(self) -> StreamingUI:
        if self._ui is None:
            from .ui import require_ui

            require_ui()
            from .ui.runtime import StreamingUI

            self._ui = StreamingUI(self)
        return self._ui

    @property
    def ui_url(self) -> str | None:
        """Where the web UI is served (``http://127.0.0.1:4040/``); None when it is off,
        not started yet, or could not bind."""
        return self._ui.url if self._ui is not None else None

    def ui_app(self) -> Starlette:
        """The UI as an ASGI app, to mount in your own Starlette/FastAPI service
        (``Mount("/streaming", app=ssc.ui_app())``); it shows this context once started."""
        return self._ui_runtime().app

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """This context's Prometheus registry (what ``/metrics`` serves); register it in
        yours with ``your_registry.register(ssc.metrics_registry)``."""
        return self._ui_runtime().registry

    # ---- the engine ---------------------------------------------------------------------

    def _validate(self) -> None:
        if not self._outputs:
            raise ContextStateError(
                "no output operations registered: add foreach_rdd, pprint or a save operation"
            )
        stateful = stateful_streams(self._streams)
        if stateful and self.checkpoint_dir is None:
            raise ContextStateError(
                f"{', '.join(stateful)} need(s) checkpointing: call ssc.checkpoint(directory) "
                "before start"
            )

    def _prepare_graph(self) -> int:
        """Set the batch clock's zero time on every stream; returns the first batch time."""
        plan = self._recovery
        if plan is not None:
            zero_ms, first_ms = plan.zero_ms, plan.resume_from_ms + self.batch_ms
        else:
            first_ms = self._job_generator.first_batch_time()
            zero_ms = first_ms - self.batch_ms
        self._zero_ms = zero_ms
        for output in self._outputs:
            output.initialize(zero_ms)
            output.remember(self._remember_ms or 0)
        if self.checkpoint_dir is not None:
            stateful = stateful_streams(self._streams)
            interval = self.conf.checkpoint_interval
            self._checkpoints = CheckpointManager(
                self._checkpoint_store(self.checkpoint_dir),
                self.batch_ms,
                zero_ms,
                to_ms(interval) if interval else default_interval_ms(
                    [s.slide_ms for s in stateful.values()] or [self.batch_ms]
                ),
                self._inputs,
                stateful,
                history_streams(self._streams),
                plan,
                clock=self.clock,
                bus=self._bus,
                retries=self.conf.checkpoint_write_retries,
                backoff=self.conf.checkpoint_write_backoff,
            )
        if plan is not None:
            self._restore(plan)
        return first_ms

    def _restore(self, plan: RecoveryPlan) -> None:
        for name, stateful in stateful_streams(self._streams).items():
            if name in plan.state and name not in plan.fresh:
                stateful.restore_checkpoint_data(plan.state[name]["data"])  # type: ignore[attr-defined]
        for name, remembering in history_streams(self._streams).items():
            for time_ms, partitions in plan.history.get(name, {}).items():
                remembering._generated[time_ms] = self._runner.from_partitions(
                    partitions, remembering.name
                )
        after = plan.resume_from_ms
        for stream in self._inputs:
            replays = {
                t: inputs[stream.id]
                for t, inputs in plan.batches.items()
                if t > after and stream.id in inputs
            }
            stream.restore(plan.positions.get(stream.id), replays)

    async def _replay(self, plan: RecoveryPlan) -> None:
        """Recompute completed batches after the state checkpoint without output, then run
        the batches that were pending at the crash."""
        stateful = list(stateful_streams(self._streams).values())
        for time_ms in plan.silent_times():
            await self._receiver_tracker.allocate(time_ms, live=False)
            await self._read_inputs(time_ms)
            for output in self._outputs:
                output.dependencies[0].get_or_compute(time_ms)
            for state_stream in stateful:
                rdd = state_stream.get_or_compute(time_ms)
                if rdd is not None:
                    await rdd.acollect_partitions()
            for stream in self._inputs:
                stream.input_info_at(time_ms)
            assert self._checkpoints is not None
            await self._checkpoints.batch_generated(time_ms)
            await self._batch_completed(time_ms)
            self._job_generator.last_generated_ms = time_ms
        for time_ms in plan.pending_times():
            await self._job_generator.generate(time_ms)

    async def _engine(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Owns every task of the running engine; returns when the context has stopped."""
        self._validate()
        self._stop_request = anyio.Event()
        self._changed = anyio.Event()
        self._stopped = anyio.Event()
        if self.checkpoint_dir is not None:
            await anyio.to_thread.run_sync(self._checkpoint_key)
        first_ms = self._prepare_graph()
        plan = self._recovery
        receivers = [s for s in self._inputs if isinstance(s, ReceiverInputDStream)]
        serve_ui = ui_enabled(self.conf)
        ui = self._ui_runtime() if serve_ui or self._ui is not None else None
        replay_error: BaseException | None = None
        try:
            # Started outside the task group so that a failure (a missing directory, a pool
            # that cannot start) reaches start() as itself, not wrapped in an ExceptionGroup.
            if self._owns_executor:
                await self._runner.start()
            for stream in self._inputs:
                await stream.start()
            async with anyio.create_task_group() as tg:
                self._engine_scope = tg.cancel_scope
                tg.start_soon(self._bus.run, name="listener bus")
                if ui is not None:
                    ui.graph_built()
                    await tg.start(ui.run, serve_ui, name="web UI")
                tg.start_soon(self._job_scheduler.run, name="job scheduler")
                await tg.start(
                    self._receiver_tracker.run, receivers, self._runner.backend.place_raw_block,
                    name="receivers",
                )
                if plan is not None:
                    self._job_generator.first_batch_ms = first_ms
                    try:
                        await self._replay(plan)
                    except Exception as exc:  # reaches start() as itself, not grouped
                        replay_error = exc
                        tg.cancel_scope.cancel()
                    first_ms = self._job_generator.next_batch_ms()
                if replay_error is None:
                    await tg.start(self._job_generator.run, first_ms, name="batch clock")
                    self.state = State.ACTIVE
                    self._bus.post(StreamingStarted(self.clock.now()))
                    task_status.started()
                    await self._stop_request.wait()
                    await self._shutdown(self._graceful and not self._failed)
                    with anyio.move_on_after(5):  # let listeners see the last batches
                        await self._bus.drained.wait()
                    if ui is not None:
                        await ui.stop()
                    tg.cancel_scope.cancel()
            if replay_error is not None:
                raise replay_error
        finally:
            self._job_scheduler.stopped()
            with anyio.CancelScope(shield=True):
                for stream in self._inputs:
                    await stream.stop()
                for output in self._outputs:
                    await output.stop()
                if self._owns_executor:
                    await self._runner.stop()
            self.state = State.STOPPED
            self._terminated.set()
            self._stopped.set()
            self._wake_waiters()

    async def _shutdown(self, graceful: bool) -> None:
        """Spark's order: receivers, then every received block into a batch, then the clock,
        then every generated batch; bounded by the graceful stop timeout."""
        timeout = self.conf.graceful_stop_timeout or 10 * self.batch_interval
        with anyio.move_on_after(timeout) as scope:
            # Even a hard stop lets receivers close their connections (on_stop) and report.
            await self._receiver_tracker.stop_receivers(timeout if graceful else min(timeout, 1.0))
            await self._job_generator.stop()
            if graceful:
                while self._receiver_tracker.has_unallocated_blocks():
                    await self._job_generator.generate(self._job_generator.next_batch_ms())
                self._job_scheduler.close()
                while self._job_scheduler.pending and not self._failed:
                    try:
                        await self._job_scheduler.wait_for_batch(self._oldest_pending_ms())
                    except JobFailedError:
                        break  # the context stops with that error; the batch stays pending
        if scope.cancelled_caught:
            log.warning("graceful stop timed out after %.1f s; pending batches dropped", timeout)
        self._bus.close()

    def _oldest_pending_ms(self) -> int:
        done = self._job_scheduler.last_completed_ms
        first = self._job_generator.first_batch_ms or 0
        return first if done is None else done + self.batch_ms

    async def _generate_batch(self, time_ms: int) -> None:
        replayed = self._recovery is not None and time_ms <= (self._recovery.last_generated_ms or 0)
        await self._receiver_tracker.allocate(time_ms, live=not replayed)
        failure: JobFailedError | None = None
        try:
            await self._read_inputs(time_ms)
            jobs = [job for out in self._outputs if (job := out.generate_job(time_ms))]
        except Exception as exc:  # e.g. a transform function raised: that batch fails
            failure = JobFailedError(to_seconds(time_ms), "job generation", exc)
            jobs = []
        inputs = {s.id: s.input_info_at(time_ms) for s in self._inputs}
        if self._checkpoints is not None:
            try:
                # Recorded even for a failed batch: a restart runs it with the same input.
                await self._checkpoints.batch_generated(time_ms)
            except StreamingError as error:
                self._fail(error)
                return
        if failure is not None:
            self._job_scheduler.fail_batch(time_ms, failure)
            return
        await self._job_scheduler.submit(time_ms, jobs, inputs)

    async def _read_inputs(self, time_ms: int) -> None:
        """Every input reads its batch at every batch time, even when no output emits then
        (a window sliding slower than the batch): its data must land in that batch."""
        for stream in self._inputs:
            stream.note_rate_bound(time_ms)
            await stream.prepare(time_ms)
        for stream in self._inputs:
            stream.get_or_compute(time_ms)

    def _update_rates(self, info: BatchInfo) -> None:
        """Backpressure: feed the completed batch to every rate controller; tell listeners
        of each new bound."""
        for controller in rate_controllers(self._inputs):
            rate = controller.on_batch_completed(info)
            if rate is not None:
                self._bus.post(StreamRateUpdated(
                    controller.stream_ids, controller.name, rate, info.batch_time, self.clock.now()
                ))

    async def _batch_completed(self, time_ms: int) -> None:
        for stream in self._inputs:  # counts only the tasks could tell (worker decoding)
            await stream.batch_completed(time_ms)
        for stream in self._inputs:
            stream.release_info(time_ms)
        if self._checkpoints is not None:
            await self._checkpoints.batch_completed(time_ms)
        for output in self._outputs:
            output.clear_metadata(time_ms)
        # Logged blocks are kept as long as the checkpoint's history reaches back to their
        # batch: recovery may recompute from an older state checkpoint with them.
        horizon = self._checkpoints.history_from_ms if self._checkpoints is not None else None
        await self._receiver_tracker.forget_batch(time_ms, horizon)

    def _fail(self, error: BaseException) -> None:
        """A batch failed (its output, building its jobs, or its checkpoint): the context
        stops with ``error``, without completing it or any later batch."""
        self._failed = True
        self._report_error(error)
        self._stop_soon(graceful=False)

    # ---- lifecycle: async ---------------------------------------------------------------

    async def __aenter__(self) -> StreamingContext:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        assert self._task_group is not None
        try:
            if self.state is State.ACTIVE:
                await self._stop_async(graceful=False)
        except Exception as stop_failure:
            if exc_type is None:  # nothing else is propagating: the failure is the news
                await self._task_group.__aexit__(None, None, None)
                raise
            # The body's own exception goes on; this one stays in ssc.errors.
            log.debug("while leaving the context after an error: %s", stop_failure)
        except BaseException:
            await self._task_group.__aexit__(exc_type, exc, tb)
            raise
        if exc_type is not None and issubclass(exc_type, anyio.get_cancelled_exc_class()):
            return await self._task_group.__aexit__(exc_type, exc, tb)
        # The engine has stopped, so the group only waits; the body's own exception then
        # propagates as itself instead of wrapped in an ExceptionGroup.
        await self._task_group.__aexit__(None, None, None)
        return None

    async def _start_async(self) -> None:
        if self.state is not State.INITIALIZED:
            raise ContextStateError(f"cannot start a context that is {self.state.value}")
        if self._task_group is None:
            raise ContextStateError(
                "in async code use `async with StreamingContext(...) as ssc:` so the engine's "
                "tasks have an owner"
            )
        await self._task_group.start(self._engine)

    async def _stop_engine(self, graceful: bool) -> None:
        """Ask the running engine to stop and wait until it has."""
        assert self._stop_request is not None and self._stopped is not None
        self._graceful = graceful
        self._stop_request.set()
        await self._stopped.wait()

    async def _stop_async(self, graceful: bool) -> None:
        first_new = len(self._errors)
        if self.state is State.ACTIVE:
            await self._stop_engine(graceful)
        else:
            self._mark_stopped()
        self._raise_unsurfaced(first_new)

    async def _await_termination_async(self, timeout: float | None) -> bool:
        with anyio.move_on_after(timeout):
            while not self._terminated.is_set() and not self._errors:
                if self._changed is None:
                    raise ContextStateError("the context has not been started")
                await self._changed.wait()
            if self._failed and self._stopped is not None:
                await self._stopped.wait()  # a failed batch stops the context: raise once it has
        self._raise_first_error()
        return self._terminated.is_set()

    # ---- lifecycle: errors and termination, both modes ------------------------------------

    def _report_error(self, error: BaseException) -> None:
        """The one way an error reaches the context (a failed job, a failed-output policy,
        a component of the engine): it is logged and kept in ``errors``, and every waiter,
        async or blocking, wakes: ``await_termination`` raises it."""
        log.error("%s", error)
        self._errors.append(error)
        self._wake_waiters()

    def _stop_soon(self, graceful: bool = False) -> None:
        """Ask the engine to stop without waiting (for the engine's own components, e.g. a
        policy that stops the context on a failed batch; call it on the engine's loop).
        ``stop()`` afterwards raises an error reported before, unless
        ``await_termination`` already has."""
        if self._stop_request is not None and not self._stop_request.is_set():
            self._graceful = graceful
            self._stop_request.set()

    def _wake_waiters(self) -> None:
        if self._changed is not None:
            self._changed.set()
        with self._wakeup:
            self._wakeup.notify_all()

    def _mark_stopped(self) -> None:
        """A context that never ran is stopped at once; a stopped one stays stopped."""
        if self.state is State.INITIALIZED:
            self.state = State.STOPPED
        if self.state is State.STOPPED:
            self._terminated.set()
            self._wake_waiters()

    def _raise_first_error(self) -> None:
        if self._errors:
            self._surfaced = True
            raise self._errors[0]

    def _raise_unsurfaced(self, first_new: int) -> None:
        """What ``stop()`` raises: the first error reported while it ran (a batch of a
        graceful stop failed), else the first error at all if no lifecycle call has raised
        one yet (so a script that never awaited termination still fails). A second stop
        has nothing new to raise."""
        if len(self._errors) > first_new:
            error = self._errors[first_new]
        elif self._errors and not self._surfaced:
            error = self._errors[0]
        else:
            return
        self._surfaced = True
        raise error

    # ---- lifecycle: both modes ----------------------------------------------------------

    def start(self) -> Awaitable[None]:
        """Start receiving and processing (awaitable in async code, blocking otherwise).

        A failure to start (a missing directory, a pool that cannot start) is raised here;
        the context is then stopped and ``stop()`` does nothing."""
        if in_async_context():
            return self._start_async()
        self._start_blocking()
        return Ready(None)

    def stop(
        self,
        stop_spark_context: bool = True,
        stop_gracefully: bool = False,
        *,
        graceful: bool | None = None,
    ) -> Awaitable[None]:
        """Stop; ``graceful=True`` first finishes every received record (Spark's order).

        Raises a job failure that happened during the stop (a batch that a graceful stop
        finished failed) or that no lifecycle call has raised yet; stopping a stopped
        context does nothing. ``stop_spark_context`` is PySpark's: see
        ``aiostream_engine.pyspark`` (the executor always stops with this context here).
        """
        graceful = bool(stop_gracefully if graceful is None else graceful)
        if in_async_context():
            return self._stop_async(graceful)
        self._stop_blocking(graceful)
        return Ready(None)

    def await_termination(self, timeout: float | None = None) -> Awaitable[bool]:
        """Wait until stopped (or ``timeout`` s); raises the first failed job's error as
        soon as it fails (and again at every later call).

        Gives whether the context has terminated: awaitable in async code, a plain bool in
        blocking code.
        """
        if in_async_context():
            return self._await_termination_async(timeout)
        return self._await_termination_blocking(timeout)  # type: ignore[return-value]

    def await_termination_or_timeout(self, timeout: float) -> Awaitable[bool]:
        """PySpark's name for ``await_termination(timeout)``: whether it has terminated."""
        return self.await_termination(timeout)

    # ---- lifecycle: blocking ------------------------------------------------------------

    def _start_blocking(self) -> None:
        if self.state is not State.INITIALIZED:
            raise ContextStateError(f"cannot start a context that is {self.state.value}")
        self._loop_thread = self._make_loop_thread()
        started = threading.Event()
        failure: list[BaseException] = []

        async def host() -> None:
            async with anyio.create_task_group() as tg:
                try:
                    await tg.start(self._engine)
                except BaseException as exc:
                    failure.append(exc)
                    raise
                finally:
                    started.set()

        self._host_future = self._loop_thread.submit(host())
        started.wait()
        if failure:
            self._close_loop_thread()
            self._mark_stopped()
            raise failure[0]
        atexit.register(self._stop_at_exit)

    def _stop_at_exit(self) -> None:
        """Spark's shutdown hook: a script that ends (or dies of an exception) without
        stopping its context still stops it, so workers and directories go."""
        try:
            self._stop_blocking(graceful=False)
        except Exception as exc:  # the script is ending; the error is not news any more
            log.debug("stopping the context at exit: %s", exc)

    def _stop_blocking(self, graceful: bool) -> None:
        first_new = len(self._errors)
        try:
            if self.state is State.ACTIVE and self._loop_thread is not None:
                self._loop_thread.run(self._stop_engine(graceful))
                self._host_future.result()  # an unexpected failure of the engine itself
            else:
                self._mark_stopped()
        finally:
            self._close_loop_thread()
        self._raise_unsurfaced(first_new)

    def _close_loop_thread(self) -> None:
        thread, self._loop_thread = self._loop_thread, None
        if thread is not None:
            atexit.unregister(self._stop_at_exit)
            if self._owns_executor:
                thread.close()

    def _await_termination_blocking(self, timeout: float | None) -> bool:
        """Wakes on termination and on every reported error (``_wake_waiters``)."""
        if self.state is State.INITIALIZED:
            raise ContextStateError("the context has not been started")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._wakeup:
            # Until it terminates or fails; a failed batch stops the context: raise once it
            # has (as the async call does), so that a batch in flight that fails too is
            # reported before, not raised later by ``stop()``.
            while not self._terminated.is_set() and (self._failed or not self._errors):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._wakeup.wait(remaining)
        self._raise_first_error()
        return self._terminated.is_set()
