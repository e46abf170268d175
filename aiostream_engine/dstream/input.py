"""Input streams: where each batch's data enters the graph."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ..errors import ConfigurationError, DataLossError
from ..rdd.core import RDD
from ..receiver.block_generator import Block, data_bytes
from ..receiver.block_payload import decode_block
from ..receiver.wal import WalContents, WalEntry, WriteAheadLog
from ..receiver.wal_recovery import plan_block_recovery
from ..scheduler.batch_info import StreamInputInfo
from ..scheduler.rate.controller import RateController, new_rate_controller, receiver_rate
from .base import DStream

if TYPE_CHECKING:
    from ..context import StreamingContext
    from ..receiver.base import Receiver

log = logging.getLogger("aiostream_engine.input")


class InputDStream(DStream):
    """A source of the graph. ``prepare(t)`` runs on the loop before the graph computes t
    (to allocate blocks, list a directory, fetch offsets); ``compute(t)`` is then cheap.

    With backpressure on (``backpressure_enabled``) a stream that can read less has a
    ``rate_controller``: its ``latest_rate()`` is the stream's bound in records/s (None:
    no bound yet), updated after every completed batch; the source reads it when it sizes
    what it takes.
    """

    #: Whether the stream can take less than what is offered (has a rate controller with
    #: backpressure on); a stream whose batches are given (queue_stream) is not.
    rate_controlled = True

    def __init__(self, ssc: StreamingContext, name: str) -> None:
        super().__init__(ssc, [], name)
        self.id = ssc._register_input(self)
        self._records: dict[int, int] = {}
        self._metadata: dict[int, dict[str, Any]] = {}
        #: The infos given out for batches not yet completed (amended as tasks report).
        self._issued: dict[int, StreamInputInfo] = {}
        self.rate_controller: RateController | None = (
            new_rate_controller(ssc.conf, ssc.batch_interval, name, [self.id])
            if self.rate_controlled
            else None
        )

    def rate_bound(self) -> float | None:
        """The bound in force now for the whole stream, records/s (None: unbounded)."""
        return self.rate_controller.latest_rate() if self.rate_controller is not None else None

    def note_rate_bound(self, time_ms: int) -> None:
        """Record the bound in force for batch t in its input metadata (``rate_bound``);
        called by the context before the stream prepares batch t."""
        if self.rate_controller is not None:
            self._describe(time_ms, rate_bound=self.rate_bound())

    async def prepare(self, time_ms: int) -> None:
        return None

    def input_info_at(self, time_ms: int) -> StreamInputInfo:
        """What this stream contributed to batch t (for BatchInfo); asked once per batch."""
        info = StreamInputInfo(
            self.id, self._records.pop(time_ms, 0), self._metadata.pop(time_ms, {})
        )
        self._issued[time_ms] = info
        return info

    def _amend_info(self, time_ms: int, num_records: int | None = None, **metadata: Any) -> None:
        """Correct batch t's info before the batch completes (a count known only once its
        tasks ran: records decoded on the workers, dead letters)."""
        info = self._issued.get(time_ms)
        if info is None:
            return
        if num_records is not None:
            info.num_records = num_records
        info.metadata.update(metadata)

    async def batch_completed(self, time_ms: int) -> None:
        """Batch t's jobs are done; listeners hear of it after every input's call."""
        return None

    def release_info(self, time_ms: int) -> None:
        self._issued.pop(time_ms, None)

    def _count(self, time_ms: int, partitions: list[list[Any]]) -> None:
        self._records[time_ms] = sum(len(p) for p in partitions)

    def _describe(self, time_ms: int, **metadata: Any) -> None:
        """Add to batch t's input metadata (shown in BatchInfo, listeners and the UI)."""
        self._metadata.setdefault(time_ms, {}).update(metadata)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    # ---- recovery: sources that can give a batch's data again -------------------------

    #: Whether ``restore`` can generate past batches again (queue, files, Kafka, WAL).
    replayable = False

    def identity(self) -> str:
        """What kind of input this is, as recorded in the checkpoint: a checkpoint whose
        input stream with this id was another kind (its descriptors mean something else)
        belongs to another program and is refused (``CheckpointMismatchError``) before its
        descriptors reach ``restore``. Addresses and topics are left out: a redeploy may
        move a broker."""
        return type(self).__name__

    def take_batch_descriptor(self, time_ms: int) -> Any:
        """What batch t read, as plain picklable data (None: nothing to record)."""
        return None

    def position(self) -> Any:
        """Where the next new batch starts reading (plain picklable data)."""
        return None

    def restore(self, position: Any, replays: dict[int, Any]) -> None:
        """Resume after ``position``; each batch in ``replays`` (time -> descriptor) is
        generated again from its descriptor, the same data as before the crash."""
        return None


class BlockInputDStream(InputDStream):
    """An input stream made of the blocks of one block generator: each block is one
    partition. With the receiver write-ahead log on, the stream is replayable: a batch's
    descriptor is where its blocks are in the log, and recovery reads them back."""

    #: Whether every task reading a block decodes it first (so a raw block's buffer may be
    #: handed to the workers in place, ``ExecutorBackend.place_raw_block``); without a
    #: decoder the blocks are the stream's records, and go wherever the job takes them.
    decodes_on_workers = False

    def __init__(self, ssc: StreamingContext, name: str) -> None:
        super().__init__(ssc, name)
        self._recovery: tuple[int, dict[int, Any]] | None = None
        self._wal: WriteAheadLog | None = None

    @property
    def wal_enabled(self) -> bool:
        return bool(self._ssc.conf.receiver_wal_enable)

    @property
    def replayable(self) -> bool:  # type: ignore[override]
        return self.wal_enabled

    def compute(self, time_ms: int) -> RDD | None:
        blocks = self._ssc._receiver_tracker.blocks_of_batch(time_ms, self.id)
        self._records[time_ms] = sum(block.count for block in blocks)
        partitions = [block.partition for block in blocks]
        return self._ssc.spark_context.from_partitions(partitions, self.name)

    # ---- recovery -----------------------------------------------------------------------

    def take_batch_descriptor(self, time_ms: int) -> list[tuple[int, str, int]] | None:
        """(block id, segment, offset) of every block of batch t, when they are logged."""
        if not self.wal_enabled:
            return None
        blocks = self._ssc._receiver_tracker.blocks_of_batch(time_ms, self.id)
        return [(b.block_id, *b.ref) for b in blocks if b.ref is not None]

    def position(self) -> int:
        """Every block id below this one was allocated to a batch already generated."""
        return self._ssc._receiver_tracker.allocated_through.get(self.id, 0)

    def restore(self, position: Any, replays: dict[int, Any]) -> None:
        # The log is read in start(), off the event loop; here we only keep the plan.
        self._recovery = (position or 0, replays)

    async def start(self) -> None:
        if not self.wal_enabled:
            return
        if self._ssc.checkpoint_dir is None:
            raise ConfigurationError(
                f"{self.name}: the receiver write-ahead log (receiver_wal_enable) keeps its "
                "files under the checkpoint directory: call ssc.checkpoint(directory) or use "
                "StreamingContext.get_or_create"
            )
        conf = self._ssc.conf
        self._wal = WriteAheadLog(
            os.path.join(self._ssc.checkpoint_dir, "receivedData", str(self.id)),
            self._ssc.clock,
            self._ssc._checkpoint_key(),
            fsync=conf.receiver_wal_fsync,
            fsync_interval=conf.receiver_wal_fsync_interval,
            roll_interval=conf.receiver_wal_roll_interval,
            max_segment_bytes=conf.receiver_wal_max_segment_bytes,
            require_private=conf.checkpoint_dir_check,
        )
        await self._recover(self._wal)

    async def _recover(self, wal: WriteAheadLog) -> None:
        """Hand the blocks in the log back: those of the batches being generated again to
        those batches, those no batch took to the next batch (``wal_recovery``). Blocks the
        batches need but the log lost fail the start with ``DataLossError`` naming them,
        unless ``accept_data_loss`` is set. Without a recovery plan every logged block is
        unclaimed (the process died before its first batch was recorded), unless the
        directory holds metadata of a previous run: then the context was not resumed
        (``get_or_create``, which refuses metadata it cannot trust) and the old blocks are
        dropped."""
        contents = await wal.recover()
        position: int = 0
        replays: dict[int, Any] = {}
        if self._recovery is not None:
            position, replays = self._recovery
        elif contents.entries and await anyio.to_thread.run_sync(self._has_metadata):
            log.warning("%s: dropping %d logged blocks of a run that was not resumed "
                        "(StreamingContext.get_or_create resumes it)",
                        self.name, len(contents.entries))
            contents = WalContents([], [])
        recovery = plan_block_recovery(contents, position, replays)
        if recovery.lost:
            self._report_loss(recovery.lost)
        decoded = {e.block_id: _block(self.id, e) for e in contents.entries}
        self._source_receiver().on_recovered([b.records for b in decoded.values()])
        tracker = self._ssc._receiver_tracker
        for time_ms, entries in recovery.restored.items():
            tracker.restore_allocation(time_ms, self.id, [decoded[e.block_id] for e in entries])
        await wal.keep_only(recovery.needed)
        tracker.prepare_stream(
            self.id, wal, recovery.next_block_id, [decoded[e.block_id] for e in recovery.unallocated]
        )

    def _report_loss(self, lost: list[str]) -> None:
        message = (
            f"{self.name}: the write-ahead log cannot give back {len(lost)} block(s) or "
            f"stretch(es) (damaged, or not written with this engine's key): {'; '.join(lost)}"
        )
        if not self._ssc.conf.accept_data_loss:
            raise DataLossError(
                message + ". Set accept_data_loss=True to resume without them", lost
            )
        log.error("%s; resuming without them (accept_data_loss)", message)

    def _source_receiver(self) -> Receiver:
        raise NotImplementedError

    def _has_metadata(self) -> bool:
        from ..checkpoint import CheckpointStore
        from ..recovery import METADATA

        assert self._ssc.checkpoint_dir is not None
        return CheckpointStore.files_exist(self._ssc.checkpoint_dir, METADATA)

    async def stop(self) -> None:
        if self._wal is not None:
            await self._wal.close()


def _block(stream_id: int, entry: WalEntry) -> Block:
    content = decode_block(entry.kind, entry.payload)
    return Block(stream_id, entry.block_id, content, entry.ref, data_bytes(content))


class ReceiverInputDStream(BlockInputDStream):
    """An input stream fed by a Receiver; each block received becomes one partition."""

    def __init__(self, ssc: StreamingContext, receiver: Receiver, name: str) -> None:
        super().__init__(ssc, name)
        self.receiver = receiver

    def _source_receiver(self) -> Receiver:
        return self.receiver

    def rate_bound(self) -> float | None:
        """What the stream's receivers may store together per second: the backpressure
        bound, capped by ``receiver_max_rate`` per receiver (None: unbounded)."""
        controller = self.rate_controller
        if controller is None:
            return None
        each = receiver_rate(
            controller.latest_rate(), controller.num_receivers, self._ssc.conf.receiver_max_rate
        )
        return each * controller.num_receivers if each > 0 else None

    def identity(self) -> str:
        return f"{type(self).__name__} of {type(self.receiver).__name__}"
