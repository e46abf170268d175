"""One typed configuration for the engine.

Every key has a snake_case name, a default, a description, and, where Spark has one, the
Spark key it mirrors; Spark key names are accepted as aliases so ported jobs keep their
settings. Durations are seconds (floats).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError
from .scheduler.rate.estimator import check_backpressure_conf


def _key(default: Any, doc: str, spark: str | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "spark": spark})


@dataclass
class StreamingConf:
    """Engine configuration. Build with keywords, ``StreamingConf.of(mapping)`` or ``set()``."""

    block_interval: float = _key(
        0.2,
        "Seconds between cuts of a receiver's buffer into a block (one partition).",
        "spark.streaming.blockInterval",
    )
    block_queue_size: int = _key(
        10,
        "Blocks a receiver may hold before store() waits (backpressure to the source).",
        "spark.streaming.blockQueueSize",
    )
    receiver_max_rate: float = _key(
        0.0,
        "Records per second each receiver may store; <= 0 means no limit.",
        "spark.streaming.receiver.maxRate",
    )
    backpressure_enabled: bool = _key(
        False,
        "Backpressure: each input stream's ingestion rate follows what the job processes, "
        "estimated from every completed batch, so an overloaded job settles instead of "
        "queueing batches (receivers store slower, files and Kafka read less per batch).",
        "spark.streaming.backpressure.enabled",
    )
    backpressure_initial_rate: float = _key(
        0.0,
        "Records per second a stream may take before its first estimate, with backpressure "
        "on; <= 0: no bound until then.",
        "spark.streaming.backpressure.initialRate",
    )
    backpressure_rate_estimator: str = _key(
        "pid",
        'The rate estimator of backpressure; "pid" is the one there is.',
        "spark.streaming.backpressure.rateEstimator",
    )
    backpressure_pid_proportional: float = _key(
        1.0,
        "Weight of the last batch's error (asked minus processed rate) in the new rate; >= 0.",
        "spark.streaming.backpressure.pid.proportional",
    )
    backpressure_pid_integral: float = _key(
        0.2,
        "Weight of the accumulated error (records waiting, seen as scheduling delay) in the "
        "new rate; >= 0.",
        "spark.streaming.backpressure.pid.integral",
    )
    backpressure_pid_derived: float = _key(
        0.0,
        "Weight of the error's change per second in the new rate; >= 0.",
        "spark.streaming.backpressure.pid.derived",
    )
    backpressure_pid_min_rate: float = _key(
        100.0,
        "The lowest rate (records per second per stream) backpressure may set; > 0.",
        "spark.streaming.backpressure.pid.minRate",
    )
    backpressure_headroom: float = _key(
        0.1,
        "Share of the PID estimate backpressure leaves unused: the bound is (1 - headroom) "
        "times the estimate, so jitter in processing times (a busy machine) does not queue "
        "batches; 0 sets the bound to the estimate itself, as Spark does. In [0, 1).",
        None,
    )
    backpressure_rate_window: int = _key(
        5,
        "Batches whose processing rate (their records over their processing time) caps the "
        "PID estimate: the bound never exceeds what the job processed over the last N "
        "batches with records, so one batch that happened to run fast does not raise it "
        "above what the job sustains. 0 or 1: no cap beyond the estimate, as in Spark.",
        None,
    )
    receiver_restart_delay: float = _key(
        2.0,
        "Initial delay before a failed receiver is restarted; doubles per failure up to 60 s.",
        "spark.streaming.receiverRestartDelay",
    )
    receiver_wal_enable: bool = _key(
        False,
        "Write every received block to a write-ahead log under the checkpoint directory "
        "before it is acknowledged or used; needs ssc.checkpoint(dir).",
        "spark.streaming.receiver.writeAheadLog.enable",
    )
    receiver_wal_fsync: str = _key(
        "block",
        'When the write-ahead log is fsynced: "block" (before every stored block returns) '
        'or "interval" (at most every receiver_wal_fsync_interval seconds).',
        None,
    )
    receiver_wal_fsync_interval: float = _key(
        1.0,
        'Seconds between fsyncs of the write-ahead log with receiver_wal_fsync="interval".',
        None,
    )
    receiver_wal_roll_interval: float = _key(
        60.0,
        "Seconds after which a write-ahead log segment is closed and a new one started.",
        "spark.streaming.receiver.writeAheadLog.rollingIntervalSecs",
    )
    receiver_wal_max_segment_bytes: int = _key(
        64 << 20,
        "Bytes after which a write-ahead log segment is closed and a new one started.",
        None,
    )
    receiver_max_pending_bytes: int = _key(
        256 << 20,
        "Bytes of received data the receivers may hold that no completed batch has "
        "finished with (stored, queued or in a running batch); a store that does not fit "
        "waits, so under overload the excess stays at the source. Spark-style sizes "
        "accepted (\"512m\", \"1g\"). Default 256 MiB: about the storage memory of Spark's "
        "default 1 GB executor ((1024 - 300 reserved) MB x 0.6 x 0.5 = 217 MB), rounded up.",
        None,
    )
    local_dir: str | None = _key(
        None,
        "Directory for the disk copies of cached partitions (state, windows) of local[N] "
        "and Dask workers, so a worker that dies loses none; default: the system's temporary "
        "directory. On a Dask cluster of several machines: storage every worker reaches. "
        "Removed at stop.",
        "spark.local.dir",
    )
    shared_memory_dir: str = _key(
        "/dev/shm",
        "RAM file system where local[N] keeps the partitions of parallelize()d collections "
        "pickled once, for workers to read in place instead of having them pickled and "
        "piped again by every task that uses them (as PySpark's parallelize serializes "
        "once), and receivers' raw blocks of 1 MiB and more, written as they are stored "
        "and mapped by the worker that decodes them; '' or an unusable directory: every "
        "task pipes its partition. This run's directory in it is removed at stop.",
        None,
    )
    worker_nice: int = _key(
        5,
        "Niceness added to local[N] worker processes: CPU-bound tasks yield the CPU to the "
        "driver, whose event loop (receivers, batch clock) is latency-sensitive; 0 = same "
        "priority.",
        None,
    )
    worker_gc_threshold: int = _key(
        50_000,
        "Allocations between two young-generation passes of the cyclic garbage collector in "
        "local[N] worker processes (Python's default: 700; the older generations then "
        "pass every 20 and 100 of these instead of 10 and 10). A task holding hundreds of "
        "thousands of records (a Kafka range decoded, a partition collected) made the "
        "default collect every few hundred records, the older passes walking all it holds: "
        "0.3-0.5 s of each 1 s batch of a worker at 300,000 Kafka readings/s "
        "(bench/results/kafka_ingest.md). 0 = Python's defaults.",
        None,
    )
    task_max_failures: int = _key(
        4,
        "Attempts of one task before its job fails.",
        "spark.task.maxFailures",
    )
    concurrent_jobs: int = _key(
        1,
        "Output-operation jobs that may run at the same time.",
        "spark.streaming.concurrentJobs",
    )
    graceful_stop_timeout: float | None = _key(
        None,
        "Seconds a graceful stop may take; None means 10 batch intervals.",
        "spark.streaming.gracefulStopTimeout",
    )
    remember_duration: float | None = _key(
        None,
        "Seconds each stream keeps its generated RDDs; None derives it from the graph "
        "(the longest window, at least one slide).",
        "StreamingContext.remember",
    )
    default_parallelism: int | None = _key(
        None,
        "Partitions of a shuffle when an operator names none; None means the executor's cores.",
        "spark.default.parallelism",
    )
    max_pending_batches: int = _key(
        100,
        "Generated batches waiting for the scheduler before the batch clock waits too.",
        None,
    )
    retained_batches: int = _key(
        1000,
        "BatchInfo records kept in the context's history.",
        "spark.streaming.ui.retainedBatches",
    )
    stop_gracefully_on_shutdown: bool = _key(
        True,
        "Whether Ctrl-C / SIGTERM in the command line stops gracefully.",
        "spark.streaming.stopGracefullyOnShutdown",
    )
    listener_queue_size: int = _key(
        10_000,
        "Listener events buffered; past that events are dropped and counted.",
        "spark.scheduler.listenerbus.eventqueue.capacity",
    )
    max_concurrent_tasks: int | None = _key(
        None,
        "Tasks in flight on the executor at once; None means twice its cores.",
        None,
    )
    checkpoint_interval: float | None = _key(
        None,
        "Seconds between state checkpoints; None: smallest multiple of the slide >= 10 s.",
        "DStream.checkpoint",
    )
    window_check_interval: int = _key(
        0,
        "Every N slides, recompute inverse-reduced windows from scratch and fail with a clear "
        "error naming the operator on mismatch; 0 = off",
        None,
    )
    sink_max_concurrency: int = _key(
        4,
        "Partition writes of one write_to output in flight at once (default of its "
        "max_concurrency); a sink's pool needs no more connections than this.",
        None,
    )
    sink_max_retries: int = _key(
        3,
        "Retries of a failed partition write before its batch fails (default of write_to's "
        "retries); 0 fails on the first error.",
        None,
    )
    sink_retry_backoff: float = _key(
        0.5,
        "Seconds before the first retry of a partition write, doubling per retry (default "
        "of write_to's backoff).",
        None,
    )
    # ---- the Dask backend (dask://host:port, dask-local[N]) ----
    dask_connect_timeout: float = _key(
        10.0,
        "Seconds a Dask master waits at start for its scheduler to answer, and then for a "
        "worker (dask-local[N]: all N), before the start fails with a clear error.",
        None,
    )

    # ---- durability: failed outputs, checkpoint files, the write-ahead log ----------
    output_failure_policy: str = _key(
        "stop",
        'What follows when a batch\'s output operation fails after its own retries (a sink\'s): '
        '"stop" stops the context with the JobFailedError (await_termination raises it; '
        'get_or_create runs the batch again), "retry" runs the operation again after '
        "output_retry_backoff seconds, doubling, while later batches wait in order. Either "
        "way the batch is never completed (its logged blocks are kept) nor skipped.",
        None,
    )
    output_retry_backoff: float = _key(
        1.0,
        'Seconds before the first retry of a failed output operation (policy "retry").',
        None,
    )
    output_retry_max_backoff: float = _key(
        60.0,
        'Longest wait between retries of a failed output operation (policy "retry").',
        None,
    )
    checkpoint_write_retries: int = _key(
        3,
        "Retries of a checkpoint write that failed (a full disk), checkpoint_write_backoff "
        "apart, doubling; each failure is logged, counted and posted to listeners; then "
        "the context stops with CheckpointWriteError.",
        None,
    )
    checkpoint_write_backoff: float = _key(
        1.0,
        "Seconds before the first retry of a failed checkpoint write.",
        None,
    )
    checkpoint_key: str | None = _key(
        None,
        "Secret (16+ characters) that checkpoint and write-ahead log files are "
        "authenticated with (HMAC-SHA256); a file without a valid MAC is refused unread. "
        "None: the key in checkpoint_key_file.",
        None,
    )
    checkpoint_key_file: str | None = _key(
        None,
        "File holding that key, outside the checkpoint directory, created (random, 0600) "
        "if missing; None: $XDG_CONFIG_HOME/aiostream-engine/checkpoint.key "
        "(~/.config/...).",
        None,
    )
    checkpoint_dir_check: bool = _key(
        True,
        "Refuse an existing checkpoint directory owned by another user or writable by group "
        "or others (anyone could plant files there); False accepts it.",
        None,
    )
    accept_data_loss: bool = _key(
        False,
        "Resume even though recovery found written data it cannot read back (damaged "
        "write-ahead log records, damaged newest metadata), logging exactly what is lost; "
        "False: fail with DataLossError / CheckpointDamagedError naming it.",
        None,
    )

    # ---- Kafka (sources.kafka) -----------------------------------------------------------
    kafka_max_rate_per_partition: float = _key(
        0.0,
        "Records per second the direct Kafka stream reads from each partition at most; "
        "0 = no limit (backpressure, when on, still bounds it).",
        "spark.streaming.kafka.maxRatePerPartition",
    )
    kafka_min_rate_per_partition: float = _key(
        1.0,
        "Records per second each partition may read at least whenever a rate limit is in "
        "force (so backpressure never stops a partition).",
        "spark.streaming.kafka.minRatePerPartition",
    )
    kafka_max_retries: int = _key(
        1,
        "Retries of the driver's offset look-ups for one batch of the direct Kafka stream; "
        "after that the batch reads nothing and the next one catches up.",
        "spark.streaming.kafka.maxRetries",
    )
    kafka_read_ahead_records: int = _key(
        200_000,
        "Records per partition a worker reads and decodes ahead of the direct Kafka "
        "stream's next batch (sources.kafka_read_ahead), so that a batch's tasks find them "
        "ready at the cut; 0 = off. Off with master='local' (the driver's own threads).",
        None,
    )
    kafka_fetch_timeout: float = _key(
        60.0,
        "Seconds a task reading a Kafka offset range may go without progress (broker down, "
        "no leader) before it fails and is retried.",
        None,
    )

    # ---- the web UI, its REST API and /metrics (aiostream_engine.ui) --------------------
    ui_enabled: bool | None = _key(
        None,
        "Serve the streaming web UI, Spark's REST API and /metrics while the context runs; "
        "None: on when the ui extra is installed, unless the environment variable "
        "AIOSTREAM_UI_ENABLED is false (test suites set it).",
        "spark.ui.enabled",
    )
    ui_port: int = _key(
        4040,
        "Port of the web UI; when taken, the next free one (up to ui_port_retries more); "
        "0: any free port.",
        "spark.ui.port",
    )
    ui_port_retries: int = _key(
        16,
        "Ports after ui_port tried when it is taken, before the UI gives up (a warning).",
        "spark.port.maxRetries",
    )
    ui_host: str = _key(
        "127.0.0.1",
        "Address the web UI listens on: loopback unless set ('0.0.0.0' for every interface).",
        None,
    )
    app_name: str = _key(
        "aiostream-engine",
        "Application name shown by the UI and /api/v1/applications.",
        "spark.app.name",
    )

    #: The keys the user set (see ``explicit_keys``); not a setting itself.
    _explicit: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def explicit_keys(self) -> frozenset[str]:
        """The keys set by the user (constructor keywords, ``of``, ``set``), as opposed to
        defaults; the engine may adapt a default to the job (a short batch interval makes
        the default block interval shorter) but refuses an explicit setting that cannot
        work."""
        return frozenset(self._explicit)

    def copy(self) -> StreamingConf:
        """An independent copy that remembers which keys were set explicitly."""
        copied = dataclasses.replace(self)
        copied._explicit = set(self._explicit)
        return copied

    def adapt(self, key: str, value: Any) -> None:
        """Change a key the user did not set (the engine adapting a default); validated,
        and not recorded as explicit."""
        name = self._resolve(key)
        setattr(self, name, value)
        self.validate()

    # ---- aliases and mapping access -------------------------------------------------

    @classmethod
    def keys(cls) -> list[str]:
        """Every configuration key (snake_case)."""
        return [f.name for f in _settings(cls)]

    @classmethod
    def spark_aliases(cls) -> dict[str, str]:
        """Spark key -> our key."""
        return {
            f.metadata["spark"]: f.name
            for f in _settings(cls)
            if f.metadata.get("spark", "") and f.metadata["spark"].startswith("spark.")
        }

    @classmethod
    def describe(cls) -> Iterator[tuple[str, Any, str | None, str]]:
        """(key, default, spark key, description) for every key: the documentation table."""
        for f in _settings(cls):
            yield f.name, f.default, f.metadata.get("spark"), f.metadata["doc"]

    @classmethod
    def of(cls, values: Mapping[str, Any] | StreamingConf | None = None) -> StreamingConf:
        """A conf from a mapping of keys (Spark names accepted, strings parsed) or a copy of a
        conf."""
        if isinstance(values, StreamingConf):
            return values.copy()
        conf = cls()
        for key, value in (values or {}).items():
            conf.set(key, value)
        return conf

    def set(self, key: str, value: Any) -> StreamingConf:
        """Set one key (snake_case or the Spark name); returns self for chaining."""
        name = self._resolve(key)
        current = getattr(self, name)
        setattr(self, name, _coerce(name, value, current, self._field(name)))
        self.validate()
        self._explicit.add(name)
        return self

    def get(self, key: str) -> Any:
        """A key's value (snake_case or Spark name)."""
        return getattr(self, self._resolve(key))

    def _resolve(self, key: str) -> str:
        if key in self.keys():
            return key
        aliases = self.spark_aliases()
        if key in aliases:
            return aliases[key]
        raise ConfigurationError(f"unknown configuration key {key!r}")

    @classmethod
    def _field(cls, name: str) -> dataclasses.Field[Any]:
        return next(f for f in _settings(cls) if f.name == name)

    def validate(self) -> None:
        """Raise ConfigurationError for a value or combination that cannot work."""
        if self.block_interval <= 0:
            raise ConfigurationError(f"block_interval must be > 0, got {self.block_interval}")
        for name in ("block_queue_size", "task_max_failures", "concurrent_jobs",
                     "max_pending_batches", "retained_batches", "listener_queue_size"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dask_connect_timeout <= 0:
            raise ConfigurationError(
                f"dask_connect_timeout must be > 0 seconds, got {self.dask_connect_timeout}"
            )
        if self.default_parallelism is not None and self.default_parallelism < 1:
            raise ConfigurationError("default_parallelism must be >= 1")
        if self.sink_max_concurrency < 1 or self.sink_max_retries < 0 or self.sink_retry_backoff < 0:
            raise ConfigurationError(
                "sink_max_concurrency must be >= 1, sink_max_retries and sink_retry_backoff >= 0"
            )
        if not 0 <= self.ui_port <= 65535 or self.ui_port_retries < 0:
            raise ConfigurationError(
                f"ui_port must be in 0..65535 and ui_port_retries >= 0, got {self.ui_port}, "
                f"{self.ui_port_retries}"
            )
        if self.receiver_wal_fsync not in ("block", "interval"):
            raise ConfigurationError(
                f'receiver_wal_fsync must be "block" or "interval", got {self.receiver_wal_fsync!r}'
            )
        if self.kafka_max_rate_per_partition < 0 or self.kafka_min_rate_per_partition < 0:
            raise ConfigurationError("kafka_max/min_rate_per_partition must be >= 0")
        if self.kafka_read_ahead_records < 0:
            raise ConfigurationError(
                f"kafka_read_ahead_records must be >= 0, got {self.kafka_read_ahead_records}"
            )
        if self.kafka_max_retries < 0:
            raise ConfigurationError(f"kafka_max_retries must be >= 0, got {self.kafka_max_retries}")
        if self.receiver_max_pending_bytes < 1:
            raise ConfigurationError(
                f"receiver_max_pending_bytes must be >= 1, got {self.receiver_max_pending_bytes}"
            )
        check_backpressure_conf(self)
        for name in ("receiver_wal_fsync_interval", "receiver_wal_roll_interval",
                     "receiver_wal_max_segment_bytes", "kafka_fetch_timeout",
                     "output_retry_backoff", "output_retry_max_backoff"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.output_failure_policy not in ("stop", "retry"):
            raise ConfigurationError(
                f'output_failure_policy must be "stop" or "retry", got {self.output_failure_policy!r}'
            )
        if self.checkpoint_write_retries < 0 or self.checkpoint_write_backoff < 0:
            raise ConfigurationError("checkpoint_write_retries and checkpoint_write_backoff must be >= 0")


def _settings(conf: type[StreamingConf] | StreamingConf) -> list[dataclasses.Field[Any]]:
    """The configuration keys' fields (the bookkeeping field excluded)."""
    return [f for f in dataclasses.fields(conf) if f.init]


def _recording_explicit_keys(generated: Any) -> Any:
    """Wrap the dataclass's ``__init__`` so the conf remembers which keys its caller gave."""

    @functools.wraps(generated)
    def __init__(self: StreamingConf, *args: Any, **kwargs: Any) -> None:
        generated(self, *args, **kwargs)
        names = [f.name for f in _settings(self)]
        self._explicit = set(names[: len(args)]) | set(kwargs)

    return __init__


StreamingConf.__init__ = _recording_explicit_keys(StreamingConf.__init__)  # type: ignore[method-assign]


def _coerce(name: str, value: Any, current: Any, f: dataclasses.Field[Any]) -> Any:
    """Accept strings as Spark does (``"200ms"``, ``"true"``, ``"4"``)."""
    if not isinstance(value, str):
        return value
    kind = str(f.type)
    if "bool" in kind:
        return value.strip().lower() in ("1", "true", "yes", "on")
    if "int" in kind and "float" not in kind:
        return parse_size(value)
    if "float" in kind:
        return parse_duration(value)
    return value


_SIZES = (("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("tb", 1 << 40),
          ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("b", 1))


def parse_size(text: str) -> int:
    """An integer, or bytes from a Spark size string: ``"512m"``, ``"1g"``, ``"64kb"``."""
    text = text.strip().lower()
    for suffix, scale in _SIZES:
        if text.endswith(suffix) and text[: -len(suffix)].strip().isdigit():
            return int(text[: -len(suffix)]) * scale
    return int(text)


def parse_duration(text: str) -> float:
    """Seconds from a Spark duration string: ``"200ms"``, ``"2s"``, ``"1min"``, ``"0.5"``."""
    text = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("min", 60.0), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)
