"""Checkpointing a running graph and resuming it after a crash.

Written while running (``CheckpointManager``):
* metadata after every batch is generated and completed: the batch clock's zero time, the
  last generated and completed batches, what each input read in every batch since the
  oldest kept state checkpoint (its "descriptor"), and each input's position;
* state every checkpoint interval, after that batch completed: the data each stateful
  stream needs to resume (``checkpoint_data``), under its stable name, and the batches of
  every stream whose children look back in time (window parents), for their remember span.

On recovery (``RecoveryPlan``, applied by the context) the user's setup code has rebuilt
the graph; the state of the newest usable state checkpoint s is restored, batches after s
that had completed are recomputed without output (to bring state forward), batches that
were pending at the crash are run again with output, and the batch times missed while the
process was down follow at once.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .checkpoint import CheckpointStore
from .errors import StreamingError

if TYPE_CHECKING:
    from .dstream.base import DStream
    from .dstream.input import InputDStream

METADATA, STATE = "metadata", "state"
DEFAULT_MIN_INTERVAL_MS = 10_000


class CheckpointMismatchError(StreamingError):
    """The checkpoint's stateful streams do not match the graph built by today's code."""


def stateful_streams(streams: Iterable[DStream]) -> dict[str, DStream]:
    """Stateful streams by stable name: the ``name=`` given, else ``<operator>#<n>``, the
    n-th stream of that operator in the order the graph was built. Adding stateless
    operators anywhere keeps these names."""
    named: dict[str, DStream] = {}
    counters: dict[str, itertools.count[int]] = {}
    for stream in streams:
        if not getattr(stream, "requires_checkpoint", False):
            continue
        name = getattr(stream, "state_name", None)
        if not name:
            name = f"{stream.name}#{next(counters.setdefault(stream.name, itertools.count()))}"
        if name in named:
            raise CheckpointMismatchError(f"two stateful streams are both named {name!r}")
        named[name] = stream
    return named


def signature(stream: DStream) -> str:
    """What must not change for a stream's saved state to stay valid."""
    parts = [type(stream).__name__, f"slide={stream.slide_ms}"]
    for attribute in ("window_ms", "num_partitions", "timeout_ms"):
        value = getattr(stream, attribute, None)
        if value is not None:
            parts.append(f"{attribute}={value}")
    return " ".join(parts)


def history_streams(streams: Iterable[DStream]) -> dict[str, DStream]:
    """Streams that keep past batches for their children (window parents), by position."""
    return {
        f"{stream.name}@{index}": stream
        for index, stream in enumerate(streams)
        if stream.remember_ms > stream.slide_ms and not getattr(stream, "requires_checkpoint", False)
    }


def default_interval_ms(slides_ms: Iterable[int]) -> int:
    """Spark's default: the smallest multiple of the slide that is at least 10 s."""
    slide = 1
    for s in slides_ms:
        slide = slide * s // _gcd(slide, s)
    return -(-DEFAULT_MIN_INTERVAL_MS // slide) * slide


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


@dataclass
class RecoveryPlan:
    batch_ms: int
    zero_ms: int
    state_ms: int | None
    last_completed_ms: int | None
    last_generated_ms: int | None
    state: dict[str, Any]  # stable name -> {"signature", "data"}
    history: dict[str, dict[int, list[list[Any]]]]
    batches: dict[int, dict[int, Any]]  # time -> input id -> descriptor
    positions: dict[int, Any]
    fresh: set[str] = field(default_factory=set)

    @property
    def resume_from_ms(self) -> int:
        return self.state_ms if self.state_ms is not None else self.zero_ms

    def silent_times(self) -> list[int]:
        """Completed after the state checkpoint: recomputed to rebuild state, no output."""
        last = self.last_completed_ms or self.resume_from_ms
        return list(range(self.resume_from_ms + self.batch_ms, last + self.batch_ms, self.batch_ms))

    def pending_times(self) -> list[int]:
        """Generated but not completed when the process died: run again with output."""
        first = max(self.last_completed_ms or self.resume_from_ms, self.resume_from_ms)
        last = self.last_generated_ms or first
        return list(range(first + self.batch_ms, last + self.batch_ms, self.batch_ms))

    def check_graph(self, streams: dict[str, DStream], batch_ms: int) -> None:
        if batch_ms != self.batch_ms:
            raise CheckpointMismatchError(
                f"the checkpoint was written with a {self.batch_ms / 1000:g} s batch interval, "
                f"the context has {batch_ms / 1000:g} s"
            )
        for name, saved in self.state.items():
            if name in self.fresh:
                continue
            if name not in streams:
                raise CheckpointMismatchError(
                    f"stateful stream {name!r} is in the checkpoint but not in the graph; pass "
                    f"fresh=[{name!r}] to get_or_create to drop its state"
                )
            now = signature(streams[name])
            if now != saved["signature"]:
                raise CheckpointMismatchError(
                    f"stateful stream {name!r} changed (checkpoint: {saved['signature']}; now: "
                    f"{now}); pass fresh=[{name!r}] to get_or_create to start it empty"
                )


def load_plan(store: CheckpointStore) -> RecoveryPlan | None:
    """The plan from the newest usable metadata and the state checkpoint it names (or the
    newest older usable one, if that is damaged)."""
    meta = store.latest(METADATA)
    if meta is None:
        return None
    m = meta.data
    state_ms = m["state_ms"]
    state = store.latest(STATE, at_or_before=state_ms) if state_ms is not None else None
    if state is not None and state.time_ms not in m["state_times"]:
        state = None
    return RecoveryPlan(
        batch_ms=m["batch_ms"],
        zero_ms=m["zero_ms"],
        state_ms=state.time_ms if state else None,
        last_completed_ms=m["last_completed_ms"],
        last_generated_ms=m["last_generated_ms"],
        state=state.data["streams"] if state else {},
        history=state.data["history"] if state else {},
        batches=m["batches"],
        positions=m["positions"],
    )


class CheckpointManager:
    """Writes metadata every batch and state every interval; one write at a time."""

    def __init__(
        self,
        store: CheckpointStore,
        batch_ms: int,
        zero_ms: int,
        interval_ms: int,
        inputs: list[InputDStream],
        stateful: dict[str, DStream],
        history: dict[str, DStream],
        plan: RecoveryPlan | None = None,
    ) -> None:
        self._store = store
        self._batch_ms = batch_ms
        self._zero_ms = zero_ms
        self.interval_ms = interval_ms
        self._inputs = inputs
        self._stateful = stateful
        self._history = history
        self._lock = anyio.Lock()
        newest = store.latest(METADATA)
        self._sequence = itertools.count(newest.time_ms + 1 if newest else 0)
        self._state_times: deque[int] = deque(maxlen=store.keep)
        self._batches: dict[int, dict[int, Any]] = {}
        self.last_generated_ms: int | None = None
        self.last_completed_ms: int | None = None
        self.state_ms: int | None = None
        if plan is not None:
            self.state_ms = plan.state_ms
            if plan.state_ms is not None:
                self._state_times.append(plan.state_ms)
            self._batches = dict(plan.batches)
            self.last_completed_ms = plan.last_completed_ms
        self.writes = 0

    def is_checkpoint_time(self, time_ms: int) -> bool:
        return (time_ms - self._zero_ms) % self.interval_ms == 0

    async def batch_generated(self, time_ms: int) -> None:
        self._batches[time_ms] = {i.id: i.take_batch_descriptor(time_ms) for i in self._inputs}
        self.last_generated_ms = max(self.last_generated_ms or time_ms, time_ms)
        await self._write_metadata()

    async def batch_completed(self, time_ms: int) -> None:
        self.last_completed_ms = max(self.last_completed_ms or time_ms, time_ms)
        if self.is_checkpoint_time(time_ms):
            await self._write_state(time_ms)
        await self._write_metadata()

    async def _write_state(self, time_ms: int) -> None:
        streams = {
            name: {"signature": signature(stream), "data": await stream.checkpoint_data(time_ms)}  # type: ignore[attr-defined]
            for name, stream in self._stateful.items()
        }
        # Batches after time_ms may be generated while this runs (the clock goes on): the
        # snapshot holds the history as of time_ms, and recovery recomputes the later ones.
        history = {
            name: {
                t: await rdd.acollect_partitions()
                for t, rdd in list(stream._generated.items())
                if t <= time_ms
            }
            for name, stream in self._history.items()
        }
        payload = {"time_ms": time_ms, "streams": streams, "history": history}
        async with self._lock:
            await anyio.to_thread.run_sync(self._store.write, STATE, time_ms, payload)
            self.writes += 1
        self.state_ms = time_ms
        self._state_times.append(time_ms)
        oldest_kept = self._state_times[0]
        self._batches = {t: d for t, d in self._batches.items() if t > oldest_kept}

    async def _write_metadata(self) -> None:
        payload = {
            "batch_ms": self._batch_ms,
            "zero_ms": self._zero_ms,
            "state_ms": self.state_ms,
            "state_times": list(self._state_times),
            "last_generated_ms": self.last_generated_ms,
            "last_completed_ms": self.last_completed_ms,
            "batches": dict(self._batches),
            "positions": {i.id: i.position() for i in self._inputs},
        }
        async with self._lock:
            await anyio.to_thread.run_sync(
                self._store.write, METADATA, next(self._sequence), payload
            )
            self.writes += 1
