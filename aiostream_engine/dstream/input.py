"""Input streams: where each batch's data enters the graph."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..rdd.core import RDD
from .base import DStream

if TYPE_CHECKING:
    from ..context import StreamingContext
    from ..receiver.base import Receiver


class InputDStream(DStream):
    """A source of the graph. ``prepare(t)`` runs on the loop before the graph computes t
    (to allocate blocks, list a directory, fetch offsets); ``compute(t)`` is then cheap."""

    def __init__(self, ssc: StreamingContext, name: str) -> None:
        super().__init__(ssc, [], name)
        self.id = ssc._register_input(self)
        self._records: dict[int, int] = {}

    async def prepare(self, time_ms: int) -> None:
        return None

    def records_at(self, time_ms: int) -> int:
        """Records this stream contributed to batch t (for BatchInfo)."""
        return self._records.pop(time_ms, 0)

    def _count(self, time_ms: int, partitions: list[list[Any]]) -> None:
        self._records[time_ms] = sum(len(p) for p in partitions)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    # ---- recovery: sources that can give a batch's data again -------------------------

    #: Whether ``restore`` can generate past batches again (queue, files, Kafka, WAL).
    replayable = False

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


class ReceiverInputDStream(InputDStream):
    """An input stream fed by a Receiver; each block received becomes one partition."""

    def __init__(self, ssc: StreamingContext, receiver: Receiver, name: str) -> None:
        super().__init__(ssc, name)
        self.receiver = receiver

    def compute(self, time_ms: int) -> RDD | None:
        blocks = self._ssc._receiver_tracker.blocks_of_batch(time_ms, self.id)
        partitions = [block.records for block in blocks]
        self._count(time_ms, partitions)
        return self._ssc.spark_context.from_partitions(partitions, self.name)
