"""Checkpointing a running graph and resuming it after a crash.

Written while running (``CheckpointManager``):
* metadata after every batch is generated and completed, in two copies (a damaged file
  never loses the newest batch boundaries): the batch clock's zero time, the last
  generated and completed batches (batches complete in order), what each input is
  (``identity``), what each read in every batch since the history horizon (its
  "descriptor"), and each input's position;
* state every checkpoint interval, after that batch completed: the data each stateful
  stream needs to resume (``checkpoint_data``), under its stable name, and the batches of
  every stream whose children look back in time (window parents), for their remember span.

The history horizon is the oldest state checkpoint kept once there are two (before that,
the first batch): descriptors and the receivers' logged blocks are kept for every batch
after it, so when the newest state checkpoint is damaged recovery falls back to an older
one (or to the first batch) and recomputes the same results.

On recovery (``load_plan``; the plan is applied by the context) the user's setup code has
rebuilt the graph; the state of the newest usable state checkpoint s is restored, batches
after s that had completed are recomputed without output (to bring state forward),
batches that were pending at the crash (a failed output among them) are run again with
output, and the batch times missed while the process was down follow at once. What cannot
be recomputed faithfully is refused with ``CheckpointDamagedError`` instead of resumed
with a hole.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .checkpoint import CheckpointStore
from .errors import CheckpointDamagedError, CheckpointWriteError, StreamingError
from .scheduler.listener import CheckpointWriteFailed

if TYPE_CHECKING:
    from .clock import Clock
    from .dstream.base import DStream
    from .dstream.input import InputDStream
    from .scheduler.listener import ListenerBus

log = logging.getLogger("aiostream_engine.recovery")

METADATA, STATE = "metadata", "state"
#: Copies of each metadata file written.
METADATA_COPIES = 2
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


def input_identities(inputs: Iterable[InputDStream]) -> dict[int, str]:
    return {stream.id: stream.identity() for stream in inputs}


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
    inputs: dict[int, str] = field(default_factory=dict)  # input id -> identity
    #: Every batch after this one is described and its logged blocks kept (None: from the
    #: first batch); the state checkpoints kept at it or later can be fallen back to.
    history_from_ms: int | None = None
    #: The kept state checkpoints, oldest first, whether usable or not.
    state_times: list[int] = field(default_factory=list)
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

    def check_graph(
        self, streams: dict[str, DStream], batch_ms: int, inputs: Iterable[InputDStream] = ()
    ) -> None:
        if batch_ms != self.batch_ms:
            raise CheckpointMismatchError(
                f"the checkpoint was written with a {self.batch_ms / 1000:g} s batch interval, "
                f"the context has {batch_ms / 1000:g} s"
            )
        now = input_identities(inputs)
        for stream_id, saved in sorted(self.inputs.items()):
            if now.get(stream_id) != saved:
                found = f"is {now[stream_id]!r}" if stream_id in now else "is not in the graph"
                raise CheckpointMismatchError(
                    f"input stream {stream_id} of the checkpoint was {saved!r} and {found}: "
                    "this checkpoint directory belongs to another program (or an incompatible "
                    "version of this one); use another directory"
                )
        for name, saved in self.state.items():
            if name in self.fresh:
                continue
            if name not in streams:
                raise CheckpointMismatchError(
                    f"stateful stream {name!r} is in the checkpoint but not in the graph; pass "
                    f"fresh=[{name!r}] to get_or_create to drop its state"
                )
            now_signature = signature(streams[name])
            if now_signature != saved["signature"]:
                raise CheckpointMismatchError(
                    f"stateful stream {name!r} changed (checkpoint: {saved['signature']}; now: "
                    f"{now_signature}); pass fresh=[{name!r}] to get_or_create to start it empty"
                )


def load_plan(store: CheckpointStore, *, accept_data_loss: bool = False) -> RecoveryPlan | None:
    """The plan from the newest metadata and the newest usable state checkpoint it allows.

    None when the directory holds no metadata (nothing to resume). Raises
    ``CheckpointDamagedError`` when metadata files exist but none is usable (the receivers'
    logs must then not be replayed as new data), when the newest metadata is unusable in
    every copy (the batches it described would be recomputed from other input; allowed with
    ``accept_data_loss``), and when no state checkpoint the history reaches back to is
    usable. Blocking."""
    meta = store.latest(METADATA)
    written = store.times(METADATA)
    if meta is None:
        if not written:
            return None
        raise CheckpointDamagedError(
            f"{store.directory}: none of the {len(written)} metadata checkpoint(s) is usable "
            f"({'; '.join(store.rejected)}). Without it the batches cannot be told apart from "
            "new data, so nothing is replayed; move the directory aside to start over"
        )
    if meta.time_ms != written[0]:
        message = (
            f"{store.directory}: the newest metadata checkpoint(s) {written[: written.index(meta.time_ms)]} "
            f"are unusable in every copy ({'; '.join(store.rejected)}); the batches they "
            "described would be rebuilt from other input"
        )
        if not accept_data_loss:
            raise CheckpointDamagedError(
                message + f". Set accept_data_loss=True to resume from metadata {meta.time_ms}"
            )
        log.error("%s; resuming from metadata %d (accept_data_loss)", message, meta.time_ms)
    m = meta.data
    horizon = m.get("history_from_ms")
    state = _usable_state(store, m, horizon)
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
        inputs=m.get("inputs", {}),
        history_from_ms=horizon,
        state_times=[t for t in m["state_times"] if state is None or t <= state.time_ms],
    )


def _usable_state(store: CheckpointStore, m: dict[str, Any], horizon: int | None) -> Any:
    """The newest usable state checkpoint the metadata lists and the history reaches
    back to; None to recompute from the first batch (allowed while the history does)."""
    if m["state_ms"] is None:
        return None
    eligible = {t for t in m["state_times"] if horizon is None or t >= horizon}
    for state in store.valid(STATE, at_or_before=m["state_ms"]):
        if state.time_ms in eligible:
            if state.time_ms != m["state_ms"]:
                log.warning(
                    "state checkpoint %d is unusable; recomputing from state checkpoint %d",
                    m["state_ms"], state.time_ms,
                )
            return state
    if horizon is None:
        log.warning("no state checkpoint is usable; recomputing from the first batch")
        return None
    raise CheckpointDamagedError(
        f"{store.directory}: no usable state checkpoint at or after {horizon} ms, the oldest "
        f"batch the checkpoint still describes ({'; '.join(store.rejected)}); resuming would "
        "run with a hole in the state. Move the directory aside to start over"
    )


@dataclass
class CheckpointStatistics:
    """Counters of the checkpoint writer (for metrics)."""

    writes: int = 0
    write_failures: int = 0
    #: Seconds spent in successful writes (files written, fsynced, renamed).
    write_seconds: float = 0.0


class CheckpointManager:
    """Writes metadata every batch and state every interval; one write at a time.

    A write that fails (a full disk) is retried ``retries`` times after ``backoff``
    seconds, doubling, each failure logged, counted and posted to listeners
    (``CheckpointWriteFailed``); then it raises ``CheckpointWriteError``."""

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
        *,
        clock: Clock,
        bus: ListenerBus,
        retries: int = 3,
        backoff: float = 1.0,
    ) -> None:
        self._store = store
        self._batch_ms = batch_ms
        self._zero_ms = zero_ms
        self.interval_ms = interval_ms
        self._inputs = inputs
        self._stateful = stateful
        self._history = history
        self._clock = clock
        self._bus = bus
        self._retries = retries
        self._backoff = backoff
        self._lock = anyio.Lock()
        written = store.times(METADATA)
        self._sequence = itertools.count(written[0] + 1 if written else 0)
        self._state_times: deque[int] = deque(maxlen=store.keep)
        self._batches: dict[int, dict[int, Any]] = {}
        self.history_from_ms: int | None = None
        self.last_generated_ms: int | None = None
        self.last_completed_ms: int | None = None
        self.state_ms: int | None = None
        if plan is not None:
            self.state_ms = plan.state_ms
            self._state_times.extend(plan.state_times)
            self._batches = dict(plan.batches)
            self.history_from_ms = plan.history_from_ms
            self.last_completed_ms = plan.last_completed_ms
        self.statistics = CheckpointStatistics()

    def is_checkpoint_time(self, time_ms: int) -> bool:
        return (time_ms - self._zero_ms) % self.interval_ms == 0

    async def batch_generated(self, time_ms: int) -> None:
        self._batches[time_ms] = {i.id: i.take_batch_descriptor(time_ms) for i in self._inputs}
        self.last_generated_ms = max(self.last_generated_ms or time_ms, time_ms)
        await self._write_metadata(time_ms)

    async def batch_completed(self, time_ms: int) -> None:
        """Record that batch ``time_ms`` completed; batches complete in order."""
        self.last_completed_ms = max(self.last_completed_ms or time_ms, time_ms)
        if self.is_checkpoint_time(time_ms):
            await self._write_state(time_ms)
        await self._write_metadata(time_ms)

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
        await self._write(STATE, time_ms, payload, time_ms)
        self.state_ms = time_ms
        if time_ms not in self._state_times:
            self._state_times.append(time_ms)
        if len(self._state_times) >= 2:
            # Once a state checkpoint has a predecessor, the history need only reach back
            # to the oldest one kept: the fallback if the newer ones are damaged.
            self.history_from_ms = self._state_times[0]
            self._batches = {t: d for t, d in self._batches.items() if t > self.history_from_ms}

    async def _write_metadata(self, time_ms: int) -> None:
        payload = {
            "batch_ms": self._batch_ms,
            "zero_ms": self._zero_ms,
            "state_ms": self.state_ms,
            "state_times": list(self._state_times),
            "history_from_ms": self.history_from_ms,
            "last_generated_ms": self.last_generated_ms,
            "last_completed_ms": self.last_completed_ms,
            "batches": dict(self._batches),
            "positions": {i.id: i.position() for i in self._inputs},
            "inputs": input_identities(self._inputs),
        }
        await self._write(METADATA, next(self._sequence), payload, time_ms, METADATA_COPIES)

    async def _write(
        self, kind: str, file_time: int, payload: dict[str, Any], batch_ms: int, copies: int = 1
    ) -> None:
        for attempt in range(1, self._retries + 2):
            try:
                async with self._lock:
                    started = time.perf_counter()
                    await anyio.to_thread.run_sync(self._store.write, kind, file_time, payload, copies)
                    self.statistics.write_seconds += time.perf_counter() - started
                self.statistics.writes += 1
                return
            except OSError as exc:
                self.statistics.write_failures += 1
                retry_in = self._backoff * 2 ** (attempt - 1) if attempt <= self._retries else None
                what = f"writing the {kind} checkpoint of batch {batch_ms / 1000:g} s"
                self._bus.post(CheckpointWriteFailed(kind, batch_ms / 1000, attempt, str(exc), retry_in))
                if retry_in is None:
                    raise CheckpointWriteError(f"{what} failed {attempt} time(s): {exc}") from exc
                log.warning("%s failed (attempt %d), retrying in %g s: %s", what, attempt, retry_in, exc)
                await self._clock.sleep_until(self._clock.now() + retry_in)
