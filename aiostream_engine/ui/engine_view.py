"""Read-only counters of a running context, gathered in one place for /metrics and the page.

Each engine part keeps plain counters on itself (the task runner's attempts, a receiver
supervisor's restarts, a write-ahead log's appends and bytes, the checkpoint writer's
statistics, a stream's rate bound); this module is the one place the UI reaches into the
context for them, so the rest of the UI depends on these few methods, not on the engine's
internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..executor.task_counts import TaskCounts

if TYPE_CHECKING:
    from ..context import StreamingContext
    from ..loop_lag import LoopLagProbe


@dataclass(frozen=True)
class ReceiverCounters:
    """One receiver's supervisor counts."""

    stream_id: int
    name: str
    restarts: int
    errors: int


@dataclass(frozen=True)
class WalCounters:
    """One receiver's write-ahead log: blocks appended, fsyncs, bytes written (records and
    their framing)."""

    stream_id: int
    appends: int
    fsyncs: int
    bytes_written: int


class EngineView:
    """The engine's counters of one context, read when asked (a scrape, a page load)."""

    def __init__(self, ssc: StreamingContext, lag: LoopLagProbe) -> None:
        self._ssc = ssc
        self.lag = lag

    def task_counts(self) -> TaskCounts:
        """Task attempts of the whole run."""
        return self._ssc._runner.counts

    def receivers(self) -> list[ReceiverCounters]:
        """Every receiver's restarts and errors, by stream id."""
        supervisors = self._ssc._receiver_tracker.supervisors
        return [
            ReceiverCounters(
                stream_id,
                s.receiver.display_name,
                s.restarts,
                s.errors,
            )
            for stream_id, s in sorted(supervisors.items())
        ]

    def rate_bounds(self) -> dict[int, float]:
        """Input stream id -> its ingestion bound in records/s, for bounded streams."""
        bounds = {}
        for stream in self._ssc._inputs:
            rate_bound = getattr(stream, "rate_bound", None)
            bound = rate_bound() if callable(rate_bound) else None
            if bound is None and stream.id in self._ssc._receiver_tracker.generators:
                limit = self._ssc._receiver_tracker.generators[stream.id].rate_limiter.rate
                bound = limit if limit > 0 else None
            if bound is not None:
                bounds[stream.id] = float(bound)
        return bounds

    def wal(self) -> list[WalCounters]:
        """The write-ahead log of each receiver that has one."""
        found = []
        for stream_id, generator in sorted(self._ssc._receiver_tracker.generators.items()):
            wal = generator.wal
            if wal is not None:
                found.append(WalCounters(stream_id, wal.appends, wal.fsyncs, wal.bytes_written))
        return found

    def checkpoint_writes(self) -> int | None:
        """Checkpoint writes that succeeded (metadata and state); None without checkpointing."""
        statistics = self._ssc.checkpoint_statistics
        return None if statistics is None else statistics.writes

    def checkpoint_write_seconds(self) -> float | None:
        """Seconds those writes took (files written, fsynced, renamed); None without
        checkpointing."""
        statistics = self._ssc.checkpoint_statistics
        return None if statistics is None else statistics.write_seconds

    def state_sizes(self) -> dict[str, int]:
        """Keys held by each stateful stream after its newest computed batch."""
        from ..recovery import stateful_streams

        sizes = {}
        for name, stream in stateful_streams(self._ssc._streams).items():
            size = getattr(stream, "state_size", None)
            value = size() if callable(size) else None
            if value is not None:
                sizes[name] = int(value)
        return sizes

    def listener_events_dropped(self) -> int:
        """Listener events the bus dropped (its queue was full)."""
        return self._ssc._bus.dropped

    def extra(self) -> dict[str, Any]:
        """Counters shown on the page beside the batches (one JSON-friendly dict)."""
        counts = self.task_counts()
        return {
            "tasks": vars(counts).copy(),
            "receivers": [vars(r) for r in self.receivers()],
            "rateBounds": {str(k): v for k, v in self.rate_bounds().items()},
            "stateSizes": self.state_sizes(),
            "wal": [vars(w) for w in self.wal()],
            "checkpointWrites": self.checkpoint_writes(),
            "checkpointWriteSeconds": self.checkpoint_write_seconds(),
            "loopLag": {"last": self.lag.last, "max": self.lag.max},
            "listenerEventsDropped": self.listener_events_dropped(),
        }
