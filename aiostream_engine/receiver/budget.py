"""The byte budget of received data: how much the receivers may hold that no batch has
finished with yet.

The block queue bounds blocks waiting for a batch, and the job scheduler bounds batches
waiting to run; neither bounds bytes. Under overload (data arriving faster than batches
complete) a batch's blocks can be of any size, so memory grew with the backlog. Every
store takes its bytes from this budget, shared by all receivers of a context, and gives
them back when the batch holding them completes; a store that does not fit waits, which
presses back on the source (a receiver stops reading, TCP holds the sender, an MQTT broker
keeps its unacknowledged messages). One store larger than the whole budget may go in
alone, when nothing else is held, so an oversized block slows the stream instead of
stopping it.
"""

from __future__ import annotations

import anyio


class ByteBudget:
    """Bytes taken by stores, given back as batches complete. One owner: the event loop."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"the byte budget must be > 0, got {limit}")
        self.limit = limit
        self.used = 0
        #: The most ever held at once (for tests and metrics).
        self.peak = 0
        #: Stores that had to wait for bytes to be given back.
        self.waits = 0
        #: Bytes counted without waiting: blocks read back from the write-ahead log.
        self.recovered = 0
        self._freed = anyio.Event()

    @property
    def available(self) -> int:
        return max(0, self.limit - self.used)

    def try_take(self, nbytes: int) -> bool:
        """Take ``nbytes`` if they fit (or nothing is held); whether they were taken."""
        if self.used and self.used + nbytes > self.limit:
            return False
        self._count(nbytes)
        return True

    async def take(self, nbytes: int) -> None:
        """Take ``nbytes``, waiting until enough are given back."""
        if self.try_take(nbytes):
            return
        self.waits += 1
        while not self.try_take(nbytes):
            await self._freed.wait()

    def force(self, nbytes: int) -> None:
        """Count bytes that are held already, fitting or not (blocks recovered from the
        write-ahead log): stores then wait until enough of them are given back."""
        self.recovered += nbytes
        self._count(nbytes)

    def _count(self, nbytes: int) -> None:
        self.used += nbytes
        self.peak = max(self.peak, self.used)

    def release(self, nbytes: int) -> None:
        if nbytes <= 0:
            return
        self.used = max(0, self.used - nbytes)
        self._freed.set()
        self._freed = anyio.Event()
