"""The Receiver: a long-running async reader of one source.

Subclass it and implement ``on_start``: read the source and ``await self.store(record)``
until it ends (return) or fails (raise: the supervisor restarts it with backoff).
``on_stop`` releases what ``on_start`` opened; it runs after every run, failed or not.

Reliable receivers (a source that redelivers what was not acknowledged: MQTT QoS 1, a
queue) use ``await self.store_block(records)`` instead and acknowledge their source only
after it returns: the block is then durable (in the write-ahead log when it is on), so a
crash never loses an acknowledged record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ContextStateError
from ..raw import RawBlock

if TYPE_CHECKING:
    from ..clock import Clock
    from ..decoding.stage import Decoder
    from .supervisor import ReceiverSupervisor


class Receiver:
    """Base class of every receiver (socket, simulator, MQTT, user-defined)."""

    #: A short name for listeners and the UI; defaults to the class name.
    name: str = ""
    #: For a receiver that stores raw blocks (``store_lines``, ``store_block`` of a raw
    #: block): what decodes them on the workers, as the first stage of its stream's tasks
    #: (``aiostream_engine.decoding``); the stream then has ``dead_letters()``.
    decoder: Decoder | None = None

    def __init__(self) -> None:
        self._supervisor: ReceiverSupervisor | None = None

    # ---- to implement -------------------------------------------------------------------

    async def on_start(self) -> None:
        """Read the source, storing records, until it ends or fails."""
        raise NotImplementedError

    async def on_stop(self) -> None:
        """Release resources; called after each run of ``on_start``."""
        return None

    # ---- available to implementations --------------------------------------------------

    def _require_supervisor(self) -> ReceiverSupervisor:
        if self._supervisor is None:
            raise ContextStateError(f"receiver {self.display_name} is not running")
        return self._supervisor

    @property
    def display_name(self) -> str:
        """The receiver's name for listeners and the UI."""
        return self.name or type(self).__name__

    @property
    def clock(self) -> Clock:
        """The context's clock (a ManualClock in tests)."""
        return self._require_supervisor().clock

    @property
    def block_interval(self) -> float:
        """Seconds between block cuts: how long a receiver that batches its own blocks
        (``store_block``) should hold records at most."""
        return self._require_supervisor().blocks.interval

    @property
    def rate_limit(self) -> float | None:
        """Records per second this receiver may store now: ``receiver_max_rate``, or with
        backpressure its share of the stream's bound; None: unlimited. ``store`` enforces
        it; a source that reads in batches can size its reads with it."""
        rate = self._require_supervisor().blocks.rate_limiter.rate
        return rate if rate > 0 else None

    async def wait_for_rate(self) -> None:
        """Wait until the rate limit allows storing again (what was stored is paid for).
        A receiver that takes bursts from its source calls it before taking the next one,
        so under a lower bound it reads less and the source holds the rest."""
        await self._require_supervisor().blocks.rate_limiter.wait_clear()

    async def store(self, record: Any) -> None:
        """Store one record; waits while the block queue is full or the rate limit holds."""
        await self._require_supervisor().blocks.store(record)

    async def store_many(self, records: Iterable[Any]) -> None:
        """Store several records as one unit."""
        await self._require_supervisor().blocks.store_many(records)

    async def store_lines(self, data: bytes, count: int) -> None:
        """Store ``count`` undecoded lines, each followed by ``b"\\n"`` in ``data`` (no step
        per line here); they are decoded on the workers by the stream's decoder (a
        ``DecodedReceiverInputDStream``). Waits while the block queue or the byte budget is
        full, or the rate limit holds."""
        await self._require_supervisor().blocks.store_lines(data, count)

    async def store_block(self, records: Iterable[Any] | RawBlock) -> None:
        """Store ``records`` (or one raw block) as one block now (bypassing the buffer),
        waiting while the block queue or the byte budget is full; returns once the block is
        durable: written (and fsynced) to the write-ahead log when it is on, else queued for
        the next batch. Acknowledge the source only after this returns."""
        await self._require_supervisor().blocks.store_block(records)

    store_reliably = store_block

    def on_recovered(self, blocks: list[Any]) -> None:
        """Called before the first run after a crash with the blocks the write-ahead log
        still holds for this receiver's stream (oldest first; each a list of records or a
        raw block), for receivers whose source redelivers what was stored but not yet
        acknowledged (MQTT)."""
        return None

    def on_decoded(self, time_ms: int, records: int, dead_letters: list[Any]) -> None:
        """A batch's raw blocks were decoded on the workers (called as the batch completes,
        for a receiver with a ``decoder``): ``records`` decoded, ``dead_letters`` in order.
        Count or report them here."""
        return None

    def report_healthy(self) -> None:
        """The source is reachable again (e.g. connected): the next failure restarts after
        the initial restart delay instead of the backed-off one."""
        self._require_supervisor().reset_backoff()

    def restart(self, reason: str, error: BaseException | None = None) -> None:
        """Stop this run and start again after the restart delay."""
        self._require_supervisor().request_restart(reason, error)

    def report_error(self, error: BaseException | str) -> None:
        """Tell listeners about a problem without stopping (a bad record, a retry)."""
        self._require_supervisor().report_error(error)

    @property
    def is_stopped(self) -> bool:
        """Whether the receiver has been asked to stop."""
        return self._supervisor is None or self._supervisor.stopping
