"""update_state_by_key and map_with_state: exact per-batch outputs on the in-process backend
and on a two-process pool, state snapshots, timeouts on the right batch, initial state, the
checkpoint hooks, and a property test against a plain-Python reference.

Batch k (1-based) runs at time k seconds (ManualClock from 0, 1 s batches), so a key last
seen at batch b with timeout T times out at the first batch k with b < k - T.
"""

from __future__ import annotations

import pickle
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostream_engine import (
    DStream,
    ManualClock,
    State,
    StateSpec,
    StreamingContext,
    StreamingError,
    stable_hash,
)
from aiostream_engine.dstream.stateful import StateRDD
from aiostream_engine.testing import advance_batches, collect_batches, run_stream
from tests.masters import MASTERS


@pytest.fixture
def checkpointed(tmp_path: Path) -> Callable[[Callable[..., DStream]], Callable[..., DStream]]:
    """Wrap a build function so its context checkpoints (stateful streams require it)."""

    def wrap(build: Callable[..., DStream]) -> Callable[..., DStream]:
        def built(*streams: DStream) -> DStream:
            streams[0].context.checkpoint(str(tmp_path / uuid.uuid4().hex))
            return build(*streams)

        return built

    return wrap


def sorted_batches(batches: list[list[Any]]) -> list[list[Any]]:
    return [sorted(batch, key=repr) for batch in batches]


async def run_outputs(
    build: Callable[[DStream], Sequence[DStream]],
    batches: list[list[Any]],
    num_batches: int,
    master: str,
    directory: Path,
) -> list[list[list[Any]]]:
    """Like run_stream, with several output streams: each one's records per batch."""
    async with StreamingContext(1.0, master=master, clock=ManualClock(0.0)) as ssc:
        ssc.checkpoint(str(directory / uuid.uuid4().hex))
        source = ssc.queue_stream([ssc.spark_context.parallelize(b) for b in batches])
        outputs = [collect_batches(s) for s in build(source)]
        await ssc.start()
        await advance_batches(ssc, num_batches)
        await ssc.stop()
    if ssc.errors:
        raise ssc.errors[0]
    return [sorted_batches([records for _, records in out]) for out in outputs]


def words(lines: DStream) -> DStream:
    return lines.flat_map(str.split).map(lambda w: (w, 1))


# ---- update_state_by_key ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_running_word_count(master: str, checkpointed: Any) -> None:
    def running(values: list[int], state: int | None) -> int:
        return sum(values) + (state or 0)

    out = await run_stream(
        checkpointed(lambda lines: words(lines).update_state_by_key(running)),
        [["a b", "a"], ["b c"], [], ["a"]],
        num_batches=5,
        master=master,
    )
    counts = [("a", 2), ("b", 2), ("c", 1)]
    assert sorted_batches(out) == [
        [("a", 2), ("b", 1)],
        counts,
        counts,
        [("a", 3), ("b", 2), ("c", 1)],
        [("a", 3), ("b", 2), ("c", 1)],
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_returning_none_removes_the_key(master: str, checkpointed: Any) -> None:
    def until_quiet(values: list[int], state: int | None) -> int | None:
        # a key lives while it has data; a total of 3 or more also ends it
        total = sum(values) + (state or 0)
        return None if not values or total >= 3 else total

    out = await run_stream(
        checkpointed(lambda lines: words(lines).update_state_by_key(until_quiet)),
        [["a b"], ["a b b"], ["a"], [], ["b"]],
        master=master,
    )
    assert sorted_batches(out) == [
        [("a", 1), ("b", 1)],
        [("a", 2)],  # b reached 3: removed
        [],  # a reached 3: removed
        [],
        [("b", 1)],  # b starts again from nothing
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_every_key_is_updated_every_batch(master: str, checkpointed: Any) -> None:
    """The update sees each batch's values as a list, [] when the key had none."""

    def history(values: list[int], state: list[list[int]] | None) -> list[list[int]]:
        return [*(state or []), sorted(values)]

    out = await run_stream(
        checkpointed(lambda pairs: pairs.update_state_by_key(history)),
        [[("a", 1), ("a", 2)], [("b", 5)], []],
        master=master,
    )
    assert sorted_batches(out) == [
        [("a", [[1, 2]])],
        [("a", [[1, 2], []]), ("b", [[5]])],
        [("a", [[1, 2], [], []]), ("b", [[5], []])],
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_initial_rdd_seeds_the_state(master: str, checkpointed: Any) -> None:
    def build(lines: DStream) -> DStream:
        initial = lines.context.spark_context.parallelize([("a", 10), ("z", 5)], 2)
        return words(lines).update_state_by_key(
            lambda values, state: sum(values) + (state or 0), 3, initial
        )

    out = await run_stream(checkpointed(build), [["a b"], ["z"]], master=master)
    assert sorted_batches(out) == [
        [("a", 11), ("b", 1), ("z", 5)],
        [("a", 11), ("b", 1), ("z", 6)],
    ]


@pytest.mark.anyio
async def test_initial_state_may_be_a_list_and_camel_case_alias(checkpointed: Any) -> None:
    out = await run_stream(
        checkpointed(
            lambda lines: words(lines).updateStateByKey(  # type: ignore[attr-defined]
                lambda values, state: sum(values) + state if state else sum(values),
                None,
                [("a", 100)],
            )
        ),
        [["a"]],
    )
    assert out == [[("a", 101)]]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_state_is_hash_partitioned(master: str, checkpointed: Any) -> None:
    """Partition i of the state holds exactly the keys with stable_hash(key) % n == i."""
    out = await run_stream(
        checkpointed(
            lambda lines: words(lines)
            .update_state_by_key(lambda values, state: sum(values) + (state or 0), 3)
            .glom()
        ),
        [["a b c d e f g"], ["h i j"]],
        master=master,
    )
    for batch in out:
        assert len(batch) == 3
        for index, partition in enumerate(batch):
            assert all(stable_hash(key) % 3 == index for key, _ in partition)
    assert sorted(key for part in out[1] for key, _ in part) == list("abcdefghij")


@pytest.mark.anyio
async def test_update_errors_name_the_operator(checkpointed: Any) -> None:
    def broken(values: list[int], state: int | None) -> int:
        raise ZeroDivisionError("nope")

    with pytest.raises(StreamingError, match="update_state_by_key raised ZeroDivisionError"):
        await run_stream(checkpointed(lambda p: p.update_state_by_key(broken)), [[("a", 1)]])


def test_stateful_streams_require_checkpointing() -> None:
    async def main() -> None:
        await run_stream(lambda p: p.update_state_by_key(lambda v, s: 1), [[("a", 1)]])

    with pytest.raises(StreamingError, match="update_state_by_key#0 need"):
        anyio.run(main)


def leaves_when_quiet(values: list[int], state: int | None) -> int | None:
    total = (state or 0) + sum(values)
    return None if not values and total > 4 else total


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 3)), max_size=8),
        max_size=6,
    ),
    initial=st.dictionaries(st.sampled_from("aezx"), st.integers(1, 9), max_size=3),
    extra=st.integers(0, 2),
    num_partitions=st.sampled_from([None, 1, 2, 3]),
)
def test_update_state_by_key_matches_a_reference(
    batches: list[list[tuple[str, int]]],
    initial: dict[str, int],
    extra: int,
    num_partitions: int | None,
) -> None:
    state = dict(initial)
    expected = []
    for batch in [*batches, *([[]] * extra)]:
        new: dict[str, list[int]] = {}
        for key, value in batch:
            new.setdefault(key, []).append(value)
        state = {
            key: updated
            for key in {*state, *new}
            if (updated := leaves_when_quiet(new.get(key, []), state.get(key))) is not None
        }
        expected.append(sorted(state.items()))

    with tempfile.TemporaryDirectory() as directory:

        def build(pairs: DStream) -> DStream:
            pairs.context.checkpoint(directory)
            return pairs.update_state_by_key(
                leaves_when_quiet, num_partitions, list(initial.items())
            )

        got = anyio.run(
            lambda: run_stream(build, batches, num_batches=len(batches) + extra)
        )
    assert [sorted(batch) for batch in got] == expected


# ---- map_with_state -----------------------------------------------------------------------


def running_total(key: str, value: int | None, state: State) -> tuple[Any, ...]:
    """Outputs what happened; a timing-out call reports the state it ends with."""
    if state.is_timing_out():
        assert value is None
        return ("timeout", key, state.get())
    total = state.get_option(0) + value
    state.update(total)
    return (key, total, state.is_timing_out())


def snapshots_too(spec: StateSpec) -> Callable[[DStream], list[DStream]]:
    def build(pairs: DStream) -> list[DStream]:
        mapped = pairs.map_with_state(spec)
        return [mapped, mapped.state_snapshots()]

    return build


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_map_with_state_outputs_one_per_record(master: str, tmp_path: Path) -> None:
    mapped, snapshots = await run_outputs(
        snapshots_too(StateSpec(running_total, num_partitions=2)),
        [[("a", 1), ("b", 2), ("a", 3)], [], [("a", 10)]],
        3,
        master,
        tmp_path,
    )
    assert mapped == [
        [("a", 1, False), ("a", 4, False), ("b", 2, False)],
        [],
        [("a", 14, False)],
    ]
    assert snapshots == [[("a", 4), ("b", 2)], [("a", 4), ("b", 2)], [("a", 14), ("b", 2)]]


@pytest.mark.anyio
async def test_records_of_a_key_are_seen_in_batch_order(checkpointed: Any) -> None:
    def seen(key: str, value: int, state: State) -> list[int]:
        state.update([*state.get_option([]), value])
        return state.get()

    out = await run_stream(
        checkpointed(lambda pairs: pairs.map_with_state(StateSpec(seen))),
        [[("k", i) for i in range(5)]],
    )
    assert sorted(out[0]) == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4]]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_remove_and_none_outputs(master: str, tmp_path: Path) -> None:
    """state.remove() drops the key; every returned value is emitted, None included."""

    def func(key: str, value: int, state: State) -> Any:
        if value == 0:
            state.remove()
            return None
        state.update(state.get_option(0) + value)
        return key if state.get() > 2 else None

    mapped, snapshots = await run_outputs(
        snapshots_too(StateSpec(func)),
        [[("a", 1), ("b", 1)], [("a", 0), ("b", 2)], [("a", 1)]],
        3,
        master,
        tmp_path,
    )
    assert mapped == [[None, None], ["b", None], [None]]  # sorted by repr
    assert snapshots == [[("a", 1), ("b", 1)], [("b", 3)], [("a", 1), ("b", 3)]]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_timeouts_fire_on_the_right_batch(master: str, tmp_path: Path) -> None:
    # timeout 2 s, 1 s batches: a key last seen at batch b times out at batch b + 3
    mapped, snapshots = await run_outputs(
        snapshots_too(StateSpec(running_total, timeout=2)),
        [[("a", 1), ("b", 1)], [], [("b", 1)], [], [], [("c", 7)]],
        9,
        master,
        tmp_path,
    )
    assert mapped == [
        [("a", 1, False), ("b", 1, False)],
        [],
        [("b", 2, False)],
        [("timeout", "a", 1)],  # 1 < 4 - 2
        [],
        [("c", 7, False), ("timeout", "b", 2)],  # 3 < 6 - 2
        [],
        [],
        [("timeout", "c", 7)],
    ]
    assert snapshots == [
        [("a", 1), ("b", 1)],
        [("a", 1), ("b", 1)],
        [("a", 1), ("b", 2)],
        [("b", 2)],
        [("b", 2)],
        [("c", 7)],
        [("c", 7)],
        [("c", 7)],
        [],
    ]


@pytest.mark.anyio
async def test_data_refreshes_a_key_clock_even_without_update(tmp_path: Path) -> None:
    """With a timeout, a key with state and data keeps its state alive (Spark's rule)."""

    def func(key: str, value: int | None, state: State) -> Any:
        if state.is_timing_out():
            return ("timeout", key)
        if not state.exists():
            state.update(value)
        return ("seen", key)

    mapped, _ = await run_outputs(
        snapshots_too(StateSpec(func, timeout=1)),
        [[("a", 1)], [("a", 2)], [("a", 3)]],
        5,
        "local",
        tmp_path,
    )
    assert mapped == [[("seen", "a")]] * 3 + [[], [("timeout", "a")]]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_update_on_a_timing_out_state_raises(master: str, checkpointed: Any) -> None:
    def func(key: str, value: int | None, state: State) -> None:
        state.update(value)

    with pytest.raises(StreamingError, match="batch 3.*cannot update the state of key 'a'.*timing out"):
        await run_stream(
            checkpointed(lambda pairs: pairs.map_with_state(StateSpec(func, timeout=1))),
            [[("a", 1)]],
            num_batches=3,
            master=master,
        )


@pytest.mark.anyio
async def test_get_without_state_raises(checkpointed: Any) -> None:
    with pytest.raises(StreamingError, match="key 'a' has no state"):
        await run_stream(
            checkpointed(lambda p: p.map_with_state(StateSpec(lambda k, v, s: s.get()))),
            [[("a", 1)]],
        )


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_map_with_state_initial_state(master: str, tmp_path: Path) -> None:
    def build(pairs: DStream) -> list[DStream]:
        initial = pairs.context.spark_context.parallelize([("a", 10), ("z", 5)])
        mapped = pairs.map_with_state(StateSpec(running_total, timeout=2, initial_state=initial))
        return [mapped, mapped.state_snapshots()]

    mapped, snapshots = await run_outputs(build, [[("a", 1)]], 4, master, tmp_path)
    # the initial keys' clock starts at the first batch: z (never seen) times out at batch 4
    assert mapped == [[("a", 11, False)], [], [], [("timeout", "a", 11), ("timeout", "z", 5)]]
    assert snapshots == [[("a", 11), ("z", 5)]] * 3 + [[]]


@pytest.mark.anyio
async def test_function_may_take_the_batch_time(tmp_path: Path) -> None:
    def func(time: float, key: str, value: int, state: State) -> tuple[float, str]:
        return (time, key)

    mapped, _ = await run_outputs(
        snapshots_too(StateSpec(func)), [[("a", 1)], [("b", 1)]], 2, "local", tmp_path
    )
    assert mapped == [[(1.0, "a")], [(2.0, "b")]]


@pytest.mark.anyio
async def test_state_snapshots_camel_case(tmp_path: Path) -> None:
    def build(pairs: DStream) -> list[DStream]:
        mapped = pairs.mapWithState(StateSpec(running_total))  # type: ignore[attr-defined]
        return [mapped.stateSnapshots()]

    (snapshots,) = await run_outputs(build, [[("a", 1)], [("a", 2)]], 2, "local", tmp_path)
    assert snapshots == [[("a", 1)], [("a", 3)]]


def test_state_spec_validation() -> None:
    with pytest.raises(TypeError):
        StateSpec(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        StateSpec(running_total, timeout=0)
    with pytest.raises(ValueError, match="num_partitions"):
        StateSpec(running_total, num_partitions=0)


def test_state_object() -> None:
    state = State()
    assert not state.exists() and state.get_option("x") == "x" and not state.is_timing_out()
    with pytest.raises(LookupError):
        state.get()
    state.update(3)
    assert state.exists() and state.get() == 3
    state.remove()
    assert not state.exists()
    with pytest.raises(RuntimeError, match="after removing"):
        state.update(4)


# ---- checkpoint hooks ---------------------------------------------------------------------

RECOVERY_BATCHES = [[("a", 1), ("b", 1)], [("a", 1)], [("c", 5)], [], [("a", 1)], [], [("b", 2)]]


def recovery_setup(
    directory: Path, master: str, interval: float, outputs: dict[str, list[Any]]
) -> Callable[[], StreamingContext]:
    def setup() -> StreamingContext:
        ssc = StreamingContext(
            1.0, master=master, clock=ManualClock(0.0), conf={"checkpoint_interval": interval}
        )
        ssc.checkpoint(str(directory))
        source = ssc.queue_stream([ssc.spark_context.parallelize(b) for b in RECOVERY_BATCHES])
        counts = source.update_state_by_key(
            lambda values, state: sum(values) + (state or 0), name="counts"
        )
        mapped = source.map_with_state(StateSpec(running_total, timeout=2))
        for key, stream in (("counts", counts), ("mapped", mapped)):
            outputs.setdefault(key, []).append(collect_batches(stream))
        outputs.setdefault("snapshots", []).append(collect_batches(mapped.state_snapshots()))
        return ssc

    return setup


def joined(outputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {
        key: [(t, sorted(r, key=repr)) for run in runs for t, r in run]
        for key, runs in outputs.items()
    }


@pytest.mark.anyio
@pytest.mark.parametrize("interval", [1.0, 2.0])
@pytest.mark.parametrize(("first", "then"), [("local", "local"), ("local", "local[2]")])
async def test_recovery_continues_the_state(
    first: str, then: str, interval: float, tmp_path: Path
) -> None:
    """Stop after 3 batches, get_or_create, run 5 more: the outputs are those of a run that
    never stopped. With a 2 s interval the state is from batch 2 and batch 3 is replayed
    silently; going from one partition to two re-hashes the restored state."""
    expected: dict[str, list[Any]] = {}
    setup = recovery_setup(tmp_path / "reference", first, interval, expected)
    async with setup() as ssc:
        await ssc.start()
        await advance_batches(ssc, 8)
        await ssc.stop()
    assert not ssc.errors

    got: dict[str, list[Any]] = {}
    async with recovery_setup(tmp_path / "run", first, interval, got)() as ssc:
        await ssc.start()
        await advance_batches(ssc, 3)
        await ssc.stop()
    ssc = StreamingContext.get_or_create(
        str(tmp_path / "run"), recovery_setup(tmp_path / "run", then, interval, got)
    )
    async with ssc:
        await ssc.start()
        await advance_batches(ssc, 5)
        await ssc.stop()
    assert not ssc.errors
    assert joined(got) == joined(expected)
    assert joined(expected)["mapped"][3:6] == [
        (4.0, [("timeout", "b", 1)]),
        (5.0, [("a", 3, False)]),
        (6.0, [("timeout", "c", 5)]),
    ]


@pytest.mark.anyio
async def test_checkpoint_data_is_plain_data(tmp_path: Path) -> None:
    outputs: dict[str, list[Any]] = {}
    ssc = recovery_setup(tmp_path, "local", 10.0, outputs)()
    async with ssc:
        counts, mapped = (s for s in ssc._streams if getattr(s, "requires_checkpoint", False))
        assert counts.state_name == "counts" and mapped.state_name is None  # type: ignore[attr-defined]
        assert await counts.checkpoint_data() is None  # type: ignore[attr-defined]
        await ssc.start()
        await advance_batches(ssc, 2)
        counts_data = await counts.checkpoint_data()  # type: ignore[attr-defined]
        mapped_data = await mapped.checkpoint_data()  # type: ignore[attr-defined]
        first = await mapped.checkpoint_data(1000)  # type: ignore[attr-defined]
        await ssc.stop()
    assert counts_data["time_ms"] == mapped_data["time_ms"] == 2000
    assert first["time_ms"] == 1000
    assert [sorted(part) for part in counts_data["partitions"]] == [[("a", 2), ("b", 1)]]
    assert [sorted(part) for part in mapped_data["partitions"]] == [[("a", 2, 2000), ("b", 1, 1000)]]
    assert mapped_data["outputs"] == [[("a", 2, False)]]
    restored = pickle.loads(pickle.dumps(mapped_data))
    assert restored == mapped_data


@pytest.mark.anyio
async def test_only_the_latest_states_are_kept(tmp_path: Path) -> None:
    """After the batches the stream holds only the newest state, and a computed
    state has let go of its lineage (the previous state and the batch's input)."""
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        ssc.checkpoint(str(tmp_path))
        source = ssc.queue_stream([[(i % 3, 1)] for i in range(12)])
        counts = source.update_state_by_key(lambda values, state: sum(values) + (state or 0))
        mapped = source.map_with_state(StateSpec(running_total))
        received = collect_batches(counts)
        collect_batches(mapped)
        await ssc.start()
        await advance_batches(ssc, 12)
        await ssc.stop()
    assert not ssc.errors
    assert sorted(received[-1][1]) == [(0, 4), (1, 4), (2, 4)]
    for stream in (counts, mapped):
        assert len(stream._states) == 1
        (state,) = stream._states.values()
        assert isinstance(state, StateRDD) and state._prev is None and state._new is None
