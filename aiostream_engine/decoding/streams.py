"""Worker-side decoding on the driver's side: decoded RDDs, dead letters, exact counts.

An input stream whose partitions arrive undecoded owns a ``WorkerDecoding``. Its RDD at
batch t is ``decoding.rdd(t, raw)``: the raw RDD with ``decode_stage`` first in every
task, so decoding runs on the workers, fused with the stream's downstream operators. The
outcome of each partition (records decoded, dead letters) comes back with the tasks and is
kept per batch:

* ``dead_letters()`` is a stream whose RDD at t holds, partition by partition and in order,
  the dead letters of the stream's partitions at t: those already reported, and for a
  partition no task has decoded yet (no job read it, or only ``take`` did), a task that
  decodes it and keeps only its dead letters;
* when batch t completes (before listeners hear of it), every partition of t whose outcome
  is still unknown is decoded once more by a pass that keeps nothing but its outcome, so the
  batch's ``StreamInputInfo`` holds exact counts: the stream's ``num_records`` is the
  records decoded, its metadata ``dead_letters`` the number of dead letters, and the
  dead-letter stream's ``num_records`` the same number. ``on_finished`` then hears of the
  batch's dead letters (a source counts and reports them).

Decoding is deterministic (the same raw partition always decodes to the same records and
dead letters), so a partition decoded by two jobs reports the same outcome twice and it is
kept once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..dstream.input import InputDStream, ReceiverInputDStream
from ..rdd.core import RDD, PipelinedRDD
from ..rdd.side_output import SideOutput
from ..rdd.tasks import RecordsInput, TaskPlan
from .stage import DecodeOutcome, Decoder, Emit, decode_stage

if TYPE_CHECKING:
    from ..context import StreamingContext
    from ..receiver.base import Receiver

log = logging.getLogger("aiostream_engine.decoding")

#: Called when a batch's outcome is complete: (batch time ms, records, dead letters).
FinishedCallback = Callable[[int, int, list[Any]], None]


@dataclass
class _Batch:
    """One batch's raw RDD and the outcomes reported for its partitions so far."""

    raw: RDD
    outcomes: dict[int, DecodeOutcome] = field(default_factory=dict)

    def missing(self) -> list[int]:
        return [i for i in range(self.raw.num_partitions) if i not in self.outcomes]


class WorkerDecoding:
    """The worker-side decoding of one input stream (see the module docstring)."""

    def __init__(
        self,
        stream: InputDStream,
        decoder: Decoder,
        *,
        operator: str | None = None,
        on_finished: FinishedCallback | None = None,
    ) -> None:
        self.stream = stream
        self.decoder = decoder
        self.operator = operator or f"decode {stream.name}"
        self.on_finished = on_finished
        self._runner = stream.context.spark_context
        self._channel = self._runner.side_channels.register(self._report)
        self._batches: dict[int, _Batch] = {}
        self._dead_letter_stream: DeadLetterInputDStream | None = None
        #: Dead letters of every finished batch (a plain counter for metrics).
        self.dead_letter_count = 0

    def _stage(self, time_ms: int, emit: Emit) -> Any:
        return decode_stage(self.decoder, self._channel, time_ms, emit, self.operator)

    def rdd(self, time_ms: int, raw: RDD) -> RDD:
        """The decoded RDD of batch t, whose partitions are those of ``raw``."""
        batch = self._batches.get(time_ms)
        if batch is None or batch.raw is not raw:
            self._batches[time_ms] = _Batch(raw)
        return PipelinedRDD(raw, self._stage(time_ms, Emit.RECORDS))

    def _report(self, output: SideOutput) -> None:
        time_ms, partition = output.key
        batch = self._batches.get(time_ms)
        if batch is not None:
            batch.outcomes.setdefault(partition, output.value)

    def dead_letter_rdd(self, time_ms: int) -> RDD:
        batch = self._batches.get(time_ms)
        if batch is None:
            return self._runner.empty_rdd()
        return DeadLetterRDD(batch, self._stage(time_ms, Emit.DEAD_LETTERS), self.stream.name)

    def dead_letters(self) -> DeadLetterInputDStream:
        """The stream of this stream's dead letters (one, created on first call; before
        the context starts)."""
        if self._dead_letter_stream is None:
            self._dead_letter_stream = DeadLetterInputDStream(self.stream.context, self)
        return self._dead_letter_stream

    async def finish(self, time_ms: int) -> None:
        """Batch t completed: learn the outcome of every partition no task decoded whole,
        count the batch into its input infos, and let the batch go."""
        batch = self._batches.get(time_ms)
        if batch is None:
            return
        try:
            missing = batch.missing()
            if missing:
                plans = await batch.raw._plans()
                stage = self._stage(time_ms, Emit.NOTHING)
                await self._runner.run_tasks(
                    [plans[i].then(stage.at(i)) for i in missing], f"{self.operator} (count)"
                )
        except Exception as exc:  # the batch is done; only its counts are in doubt
            log.warning("%s: batch %.3f s keeps its provisional counts: %s",
                        self.operator, time_ms / 1000, exc)
            return
        finally:
            del self._batches[time_ms]
        dead = [letter for i in sorted(batch.outcomes) for letter in batch.outcomes[i].dead_letters]
        records = sum(o.records for o in batch.outcomes.values())
        self.stream._amend_info(time_ms, num_records=records, dead_letters=len(dead))
        if self._dead_letter_stream is not None:
            self._dead_letter_stream._amend_info(time_ms, num_records=len(dead))
        self.dead_letter_count += len(dead)
        if self.on_finished is not None:
            self.on_finished(time_ms, records, dead)

    def close(self) -> None:
        self._runner.side_channels.unregister(self._channel)


class DeadLetterRDD(RDD):
    """The dead letters of one batch of a decoded stream, one partition per partition of
    the stream, in order; a partition whose outcome is known costs no decoding."""

    def __init__(self, batch: _Batch, stage: Any, source: str) -> None:
        super().__init__(batch.raw._runner, batch.raw.num_partitions, f"dead letters of {source}")
        self._batch = batch
        self._stage = stage

    async def _uncached_plans(self) -> list[TaskPlan]:
        outcomes = self._batch.outcomes
        missing = [i for i in range(self.num_partitions) if i not in outcomes]
        raw_plans = await self._batch.raw._plans() if missing else []
        return [
            TaskPlan(RecordsInput(outcomes[i].dead_letters)) if i in outcomes
            else raw_plans[i].then(self._stage.at(i))
            for i in range(self.num_partitions)
        ]


class DeadLetterInputDStream(InputDStream):
    """The dead letters of a decoded input stream, batch by batch (an input of its own,
    so each batch's info counts them under this stream's id)."""

    #: Bounded with its source's stream, whose rate controller counts these records too.
    rate_controlled = False

    def __init__(self, ssc: StreamingContext, decoding: WorkerDecoding) -> None:
        super().__init__(ssc, f"{decoding.stream.name}.dead_letters")
        self.decoding = decoding
        if decoding.stream.rate_controller is not None:
            decoding.stream.rate_controller.count_records_of(self.id)
        # Computed from the source's batches: the source is started, remembered and
        # cleared with it even when nothing else reads the source.
        self.dependencies = [decoding.stream]

    @property
    def replayable(self) -> bool:  # type: ignore[override]
        return self.decoding.stream.replayable

    def compute(self, time_ms: int) -> RDD | None:
        self.decoding.stream.get_or_compute(time_ms)  # the source's batch, decoded or not
        return self.decoding.dead_letter_rdd(time_ms)


class DecodedReceiverInputDStream(ReceiverInputDStream):
    """A receiver's stream whose blocks hold raw items, decoded on the workers by
    ``decoder`` (default: the receiver's own); ``dead_letters()`` is the stream of what did
    not decode, and each batch's outcome goes to the receiver's ``on_decoded``."""

    decodes_on_workers = True

    def __init__(
        self,
        ssc: StreamingContext,
        receiver: Receiver,
        name: str,
        decoder: Decoder | None = None,
    ) -> None:
        super().__init__(ssc, receiver, name)
        decoder = decoder or receiver.decoder
        if decoder is None:
            raise ValueError(f"{name}: a decoded stream needs a decoder (or a receiver with one)")
        self.decoding = WorkerDecoding(self, decoder, on_finished=receiver.on_decoded)

    def compute(self, time_ms: int) -> RDD | None:
        raw = super().compute(time_ms)
        return None if raw is None else self.decoding.rdd(time_ms, raw)

    async def batch_completed(self, time_ms: int) -> None:
        await self.decoding.finish(time_ms)

    def dead_letters(self) -> DeadLetterInputDStream:
        """The records that did not decode, batch by batch; call it before the context
        starts."""
        return self.decoding.dead_letters()
