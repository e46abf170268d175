"""Kafka: the direct (receiver-less) stream, Spark's recommended Kafka integration.

    stream = ssc.kafka_direct_stream(["readings"], {"bootstrap.servers": "host:9092",
                                                    "group.id": "iot"})

At each batch time the driver asks the cluster for every partition's latest offset and
cuts one ``OffsetRange`` per partition, ``[from, until)``: ``from`` is where the previous
batch ended, ``until`` the latest offset capped by the rate limits (``kafka_ranges``). The
batch's RDD (``KafkaRDD``) has one partition per Kafka partition; its tasks read their own
range on the executor (``kafka_fetch``), so records never pass through the driver.

Starting offsets: ``from_offsets``, else the group's committed offsets, else
``auto.offset.reset`` (earliest/smallest or latest/largest; Kafka's default, latest, when
not given; ``none`` refuses to start). Partitions added while the job runs are picked up
at the next batch and read from their committed offset, else from their beginning (every
record in them was written after the job started; "latest" would drop them).

Offsets: ``rdd.offset_ranges()`` on every RDD the stream produces (in ``transform`` and
``foreach_rdd``, Spark's ``HasOffsetRanges``), and ``stream.commit_async(ranges)`` commits
them to the group (Spark's ``CanCommitOffsets``): queued, and committed at the start of the
next batch (after the output that used them) or at stop.

Recovery: with checkpointing, each batch's ranges are saved; after ``get_or_create`` the
pending batches read exactly the same ranges again, and new batches continue from the last
range (not from the group's commits). Exactly once then needs an idempotent output keyed
by (batch time, partition) (``PostgresSink``, ``KafkaSink(transactional=True)``).

Offsets no longer on the broker (retention, DeleteRecords): the batch fails with an error
naming topic, partition and the missing range, as in Spark, unless ``auto.offset.reset``
was given as earliest/smallest or latest/largest: then the missing records are skipped and
counted (``skipped_records``, and the batch's input metadata). The check runs on the driver
when a batch is cut (or replayed); a range that loses its start later, while its task
reads it, fails that task with the same kind of error.

A broker that cannot be reached when a batch is cut: the look-up is retried
(``kafka_max_retries``), then that batch reads nothing (the offsets stay where they were;
the next batch catches up): nothing is lost or read twice. Unreachable at start: a clear
error after bounded attempts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from aiokafka.errors import KafkaError

from aiostream_engine.decoding import WorkerDecoding
from aiostream_engine.dstream.base import DStream
from aiostream_engine.dstream.input import InputDStream
from aiostream_engine.errors import ConfigurationError, StreamingError
from aiostream_engine.executor.serialization import ensure_serializable
from aiostream_engine.rdd.core import RDD, PipelinedRDD
from aiostream_engine.rdd.tasks import TaskPlan
from aiostream_engine.sources.kafka_fetch import (
    FetchedDecoding,
    KafkaFetchError,
    KafkaOffsetsGoneError,
    KafkaRangeInput,
    RecordDecoding,
    close_thread_consumers,
)
from aiostream_engine.sources.kafka_offsets import (
    KafkaOffsets,
    KafkaTopicMissingError,
    KafkaUnavailableError,
)
from aiostream_engine.sources.kafka_params import ClientSettings, parse_kafka_params
from aiostream_engine.sources.kafka_ranges import cut_ranges, max_records_per_partition
from aiostream_engine.sources.kafka_read_ahead import ReadAhead
from aiostream_engine.sources.kafka_types import (
    Decoder,
    KafkaDeadLetter,
    KafkaMessage,
    OffsetRange,
    TopicAndPartition,
    raw_decoder,
    utf8_decoder,
)

if TYPE_CHECKING:
    from aiostream_engine.context import StreamingContext
    from aiostream_engine.executor.runner import TaskRunner

__all__ = [
    "DirectKafkaInputDStream", "KafkaDeadLetter", "KafkaFetchError", "KafkaMessage",
    "KafkaOffsetsGoneError", "KafkaRDD", "KafkaRangesRDD", "KafkaTopicMissingError", "KafkaUnavailableError",
    "OffsetRange", "TopicAndPartition", "kafka_direct_stream", "raw_decoder", "utf8_decoder",
]

log = logging.getLogger("aiostream_engine.kafka")

CommitCallback = Callable[[dict[TopicAndPartition, int], BaseException | None], Any]


class KafkaRangesRDD(RDD):
    """The raw records of one batch: partition i fetches ``ranges[i]`` on the worker."""

    def __init__(
        self, runner: TaskRunner, ranges: list[OffsetRange], settings: ClientSettings,
        fetch_timeout: float, name: str, read_ahead: ReadAhead | None = None,
        homes: Mapping[TopicAndPartition, int] | None = None,
    ) -> None:
        super().__init__(runner, len(ranges), name)
        self._inputs = [
            KafkaRangeInput(settings, r, fetch_timeout, read_ahead,
                            None if homes is None else homes.get(r.topic_and_partition))
            for r in ranges
        ]

    async def _uncached_plans(self) -> list[TaskPlan]:
        return [TaskPlan(i, description=str(i.offset_range)) for i in self._inputs]  # type: ignore[arg-type]


class KafkaRDD(RDD):
    """One batch of a direct Kafka stream, decoded: partition i holds what
    ``offset_ranges()[i]`` gave."""

    def __init__(self, decoded: RDD, ranges: list[OffsetRange]) -> None:
        super().__init__(decoded._runner, decoded.num_partitions, decoded.name)
        self._decoded = decoded
        self._ranges = ranges

    async def _uncached_plans(self) -> list[TaskPlan]:
        return await self._decoded._plans()

    def offset_ranges(self) -> list[OffsetRange]:
        """The range each partition reads (Spark's ``HasOffsetRanges.offsetRanges``)."""
        return list(self._ranges)

    offsetRanges = offset_ranges  # noqa: N815


def partition_offset_ranges(rdd: RDD, who: str) -> list[OffsetRange]:
    """The offset range behind each partition of ``rdd``, when ``rdd`` is one direct-stream
    batch or a narrow transformation of it (partition i holds what range i gave)."""
    node = rdd
    while not isinstance(node, KafkaRDD):
        parent = node._parent if isinstance(node, PipelinedRDD) else None
        if parent is None:
            raise ConfigurationError(
                f"{who}: storing Kafka offsets with the results needs each output partition "
                f"to come from one Kafka partition, but the output's lineage has "
                f"{type(node).__name__} {node.name!r} between it and the direct stream (a "
                "shuffle, union or window); use checkpointing for aggregated outputs"
            )
        node = parent
    return node.offset_ranges()


def _partition_key(p: TopicAndPartition | tuple[str, int]) -> TopicAndPartition:
    return TopicAndPartition(str(p[0]), int(p[1]))


class DirectKafkaInputDStream(InputDStream):
    """The direct stream; see the module docstring."""

    replayable = True

    def __init__(
        self,
        ssc: StreamingContext,
        topics: Sequence[str],
        settings: ClientSettings,
        *,
        from_offsets: Mapping[Any, int] | None = None,
        decoding: RecordDecoding,
        name: str | None = None,
    ) -> None:
        super().__init__(ssc, name or f"kafka_direct_stream[{','.join(topics)}]")
        self.topics = list(topics)
        self.settings = settings
        self.decoding = decoding
        self._from_offsets = {_partition_key(p): int(o) for p, o in (from_offsets or {}).items()}
        self._offsets = KafkaOffsets(settings)
        self._worker_decoding = WorkerDecoding(self, FetchedDecoding(decoding))
        ahead = ssc.conf.kafka_read_ahead_records
        self._read_ahead = (
            ReadAhead(f"{uuid.uuid4().hex}:{self.name}", decoding, ahead)
            if ahead > 0 and ssc.master != "local" else None
        )
        self._homes: dict[TopicAndPartition, int] = {}
        self._current: dict[TopicAndPartition, int] | None = None
        self._ranges: dict[int, list[OffsetRange]] = {}
        self._descriptors: dict[int, list[tuple[str, int, int, int]]] = {}
        self._replays: dict[int, list[OffsetRange]] = {}
        self._pending_commits: dict[TopicAndPartition, int] = {}
        self._commit_callbacks: list[tuple[dict[TopicAndPartition, int], CommitCallback | None]] = []
        #: Records skipped because their offsets were gone (with a skipping reset policy).
        self.skipped_records = 0
        #: Batches that read nothing because the cluster could not be asked for offsets.
        self.offset_lookup_failures = 0

    @property
    def _all_topics(self) -> list[str]:
        return list(dict.fromkeys([*self.topics, *(p.topic for p in self._from_offsets)]))

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._offsets.start()
        if self._current is None:  # not restored from a checkpoint
            self._current = await self._starting_offsets()
        else:  # a restored stream still learns of missing topics now, not at the first batch
            await self._offsets.partitions(self._all_topics)

    async def stop(self) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._commit_pending()
        finally:
            self._worker_decoding.close()
            await self._offsets.stop()
            # With master="local" the tasks ran on this process's threads.
            await anyio.to_thread.run_sync(close_thread_consumers)

    async def _starting_offsets(self) -> dict[TopicAndPartition, int]:
        partitions = await self._offsets.partitions(self._all_topics)
        start = {p: o for p, o in self._from_offsets.items()}
        rest = [p for p in partitions if p not in start]
        committed = await self._offsets.committed(rest)
        start.update(committed)
        rest = [p for p in rest if p not in committed]
        if rest:
            start.update(await self._reset_offsets(rest))
        return start

    async def _reset_offsets(self, partitions: list[TopicAndPartition]) -> dict[TopicAndPartition, int]:
        reset = self.settings.auto_offset_reset or "latest"
        if reset == "none":
            raise ConfigurationError(
                f"{self.name}: no committed offset for {', '.join(map(str, partitions))} and "
                "auto.offset.reset is 'none': give from_offsets or another reset policy"
            )
        if reset in ("earliest", "smallest"):
            return await self._offsets.earliest(partitions)
        return await self._offsets.latest(partitions)

    # ---- each batch ---------------------------------------------------------------------

    async def prepare(self, time_ms: int) -> None:
        await self._commit_pending()
        if time_ms in self._replays:
            ranges = await self._replayed(time_ms, self._replays.pop(time_ms))
        else:
            ranges = await self._cut(time_ms)
        self._ranges[time_ms] = ranges
        if self._ssc.checkpoint_dir is not None:
            self._descriptors[time_ms] = [tuple(r) for r in ranges]  # type: ignore[misc]
        self._records[time_ms] = sum(r.count for r in ranges)
        self._describe(
            time_ms,
            offsets=[
                {"topic": r.topic, "partition": r.partition, "fromOffset": r.from_offset,
                 "untilOffset": r.until_offset}
                for r in ranges
            ],
            description="\n".join(
                f"topic: {r.topic}\tpartition: {r.partition}\toffsets: {r.from_offset} to {r.until_offset}"
                for r in ranges
            ),
        )

    def compute(self, time_ms: int) -> RDD | None:
        ranges = self._ranges.pop(time_ms, [])
        raw = KafkaRangesRDD(
            self._ssc.spark_context, ranges, self.settings, self._ssc.conf.kafka_fetch_timeout,
            self.name, self._read_ahead, self._homes_of(ranges) if self._read_ahead else None,
        )
        return KafkaRDD(self._worker_decoding.rdd(time_ms, raw), ranges)

    def _homes_of(self, ranges: list[OffsetRange]) -> dict[TopicAndPartition, int]:
        """Each partition's worker, stable while the job runs (a new partition takes the
        next): its read-ahead lives there."""
        for r in ranges:
            self._homes.setdefault(r.topic_and_partition, len(self._homes))
        return self._homes

    async def batch_completed(self, time_ms: int) -> None:
        await self._worker_decoding.finish(time_ms)

    def dead_letters(self) -> DStream:
        """``KafkaDeadLetter(topic, partition, offset, key, value, error)`` of every record
        the decoders refused, batch by batch (counted in each batch's input metadata as
        ``dead_letters``); call it before the context starts."""
        return self._worker_decoding.dead_letters()

    @property
    def dead_letter_count(self) -> int:
        return self._worker_decoding.dead_letter_count

    async def _cut(self, time_ms: int) -> list[OffsetRange]:
        assert self._current is not None
        try:
            latest, earliest = await self._look_up()
        except (KafkaError, OSError, TimeoutError) as exc:
            self.offset_lookup_failures += 1
            log.warning("%s: batch %.3f reads nothing: the offsets could not be looked up (%s)",
                        self.name, time_ms / 1000, exc)
            self._describe(time_ms, offsets_unavailable=f"{type(exc).__name__}: {exc}")
            return [OffsetRange(p.topic, p.partition, o, o) for p, o in sorted(self._current.items())]
        skipped = self._skip_gone(earliest)
        if skipped:
            self._describe(time_ms, skipped_records=skipped)
        conf = self._ssc.conf
        controller = getattr(self, "rate_controller", None)
        rate = controller.latest_rate() if controller is not None else None
        limits = max_records_per_partition(
            self._current, latest, self._ssc.batch_ms / 1000,
            conf.kafka_max_rate_per_partition, conf.kafka_min_rate_per_partition, rate,
        )
        ranges = cut_ranges(self._current, latest, limits)
        self._current = {r.topic_and_partition: r.until_offset for r in ranges}
        return ranges

    async def _look_up(self) -> tuple[dict[TopicAndPartition, int], dict[TopicAndPartition, int]]:
        """Latest and earliest offsets of every partition (new partitions join ``_current``),
        retried ``kafka_max_retries`` times."""
        assert self._current is not None
        attempts = self._ssc.conf.kafka_max_retries + 1
        for attempt in range(attempts):
            try:
                partitions = await self._offsets.partitions(self._all_topics)
                new = [p for p in partitions if p not in self._current]
                if new:
                    await self._add_partitions(new)
                known = sorted(self._current)
                return await self._offsets.latest(known), await self._offsets.earliest(known)
            except (KafkaError, OSError, TimeoutError):
                if attempt + 1 == attempts:
                    raise
                await anyio.sleep(self._offsets.retry_backoff * 2**attempt)
        raise AssertionError("unreachable")

    async def _add_partitions(self, new: list[TopicAndPartition]) -> None:
        assert self._current is not None
        committed = await self._offsets.committed(new)
        rest = [p for p in new if p not in committed]
        start = {**committed, **(await self._offsets.earliest(rest) if rest else {})}
        log.info("%s: new partitions %s start at %s", self.name, new, start)
        self._current.update(start)

    def _skip_gone(self, earliest: Mapping[TopicAndPartition, int]) -> int:
        """Offsets before a partition's log start: an error, or skipped and counted."""
        assert self._current is not None
        gone = {p: (o, earliest[p]) for p, o in self._current.items() if p in earliest and o < earliest[p]}
        if not gone:
            return 0
        if self.settings.auto_offset_reset in (None, "none"):
            p, (start, first) = sorted(gone.items())[0]
            raise KafkaOffsetsGoneError(
                f"{self.name}: offsets [{start}, {first}) of {p.topic}-{p.partition} are no longer "
                "on the broker (retention or DeleteRecords removed them); set auto.offset.reset "
                "to skip them"
            )
        skipped = 0
        for p, (start, first) in gone.items():
            skipped += first - start
            self._current[p] = first
            log.warning("%s: skipped offsets [%d, %d) of %s-%d: no longer on the broker",
                        self.name, start, first, p.topic, p.partition)
        self.skipped_records += skipped
        return skipped

    async def _replayed(self, time_ms: int, ranges: list[OffsetRange]) -> list[OffsetRange]:
        """A recovered batch reads its saved ranges again, less what the broker no longer has."""
        try:
            earliest = await self._offsets.earliest(r.topic_and_partition for r in ranges)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("%s: log start of replayed batch %.3f unknown (%s)", self.name, time_ms / 1000, exc)
            return ranges
        kept = []
        skipped = 0
        for r in ranges:
            first = earliest.get(r.topic_and_partition, r.from_offset)
            if r.from_offset >= first or r.count == 0:
                kept.append(r)
                continue
            if self.settings.auto_offset_reset in (None, "none"):
                raise KafkaOffsetsGoneError(
                    f"{self.name}: recovered batch {time_ms / 1000:.3f} needs offsets "
                    f"[{r.from_offset}, {min(first, r.until_offset)}) of {r.topic}-{r.partition}, "
                    "which are no longer on the broker"
                )
            start = min(first, r.until_offset)
            skipped += start - r.from_offset
            kept.append(OffsetRange(r.topic, r.partition, start, r.until_offset))
        if skipped:
            self.skipped_records += skipped
            self._describe(time_ms, skipped_records=skipped)
        return kept

    # ---- committing -----------------------------------------------------------------------

    def commit_async(
        self, offset_ranges: Iterable[OffsetRange], callback: CommitCallback | None = None
    ) -> None:
        """Commit each range's end to the group (Spark's ``CanCommitOffsets.commitAsync``):
        queued now, committed at the start of the next batch or at stop. ``callback(offsets,
        error)`` runs on the event loop once that commit succeeded (error None) or failed."""
        if self.settings.group_id is None:
            raise ConfigurationError(f"{self.name}: commit_async needs 'group.id' in kafka_params")
        offsets: dict[TopicAndPartition, int] = {}
        for r in offset_ranges:
            p = TopicAndPartition(r.topic, r.partition)
            offsets[p] = max(offsets.get(p, r.until_offset), r.until_offset)
            self._pending_commits[p] = max(self._pending_commits.get(p, 0), r.until_offset)
        self._commit_callbacks.append((offsets, callback))

    commitAsync = commit_async  # noqa: N815

    async def _commit_pending(self) -> None:
        if not self._pending_commits:
            return
        offsets, self._pending_commits = self._pending_commits, {}
        callbacks, self._commit_callbacks = self._commit_callbacks, []
        error: BaseException | None = None
        try:
            await self._offsets.commit(offsets)
        except (KafkaError, OSError, TimeoutError, StreamingError) as exc:
            error = exc
            log.warning("%s: committing %s failed: %s", self.name, offsets, exc)
            for p, o in offsets.items():  # try again with the next batch
                self._pending_commits[p] = max(self._pending_commits.get(p, 0), o)
        for wanted, callback in callbacks:
            if callback is not None:
                callback(wanted, error)

    # ---- recovery -----------------------------------------------------------------------

    def take_batch_descriptor(self, time_ms: int) -> list[tuple[str, int, int, int]] | None:
        return self._descriptors.pop(time_ms, None)

    def position(self) -> list[tuple[str, int, int]] | None:
        if self._current is None:
            return None
        return [(p.topic, p.partition, o) for p, o in sorted(self._current.items())]

    def restore(self, position: Any, replays: dict[int, Any]) -> None:
        if position is not None:
            self._current = {TopicAndPartition(t, p): o for t, p, o in position}
        self._replays = {
            t: [OffsetRange(*r) for r in ranges] for t, ranges in replays.items() if ranges is not None
        }


def kafka_direct_stream(
    ssc: StreamingContext,
    topics: str | Sequence[str],
    kafka_params: Mapping[str, Any],
    *,
    from_offsets: Mapping[Any, int] | None = None,
    key_decoder: Decoder = utf8_decoder,
    value_decoder: Decoder = utf8_decoder,
    message_handler: Callable[[KafkaMessage], Any] | None = None,
    name: str | None = None,
) -> DirectKafkaInputDStream:
    """The direct stream of ``topics``; records are ``(key, value)`` decoded with the
    decoders, or ``message_handler(KafkaMessage)``. See the module docstring."""
    topic_list = [topics] if isinstance(topics, str) else list(topics)
    if not topic_list and not from_offsets:
        raise ValueError("kafka_direct_stream needs at least one topic (or from_offsets)")
    settings = parse_kafka_params(kafka_params, for_what="kafka_direct_stream")
    decoding = RecordDecoding(key_decoder, value_decoder, message_handler)
    ensure_serializable(decoding, "kafka_direct_stream decoders")
    return DirectKafkaInputDStream(
        ssc, topic_list, settings, from_offsets=from_offsets, decoding=decoding, name=name
    )
