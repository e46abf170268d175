"""Window operations: exact per-batch outputs (DESIGN.md section 4)."""

from __future__ import annotations

import operator
import pickle
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostream_engine.clock import ManualClock
from aiostream_engine.context import StreamingContext
from aiostream_engine.dstream.base import DStream
from aiostream_engine.dstream.reduced_window import ReducedWindowedDStream, WindowedDStream
from aiostream_engine.errors import JobFailedError, WindowCheckError
from aiostream_engine.testing import advance_batches, collect_batches, run_stream
from tests.masters import MASTERS

add, sub = operator.add, operator.sub


def sort_batches(batches: list[list[Any]]) -> list[list[Any]]:
    return [sorted(batch, key=repr) for batch in batches]


async def run_windowed(
    build: Callable[..., DStream], *inputs: Sequence[Sequence[Any]], **options: Any
) -> list[list[Any]]:
    """run_stream with checkpointing on (inverse windows require it); batches sorted."""
    with tempfile.TemporaryDirectory() as directory:
        out = await run_stream(build, *inputs, checkpoint_dir=directory, **options)
    return sort_batches(out)


def nonzero(pair: tuple[Any, Any]) -> bool:
    return pair[1] != 0


# ---- window(): DESIGN.md section 4, verbatim -----------------------------------------------

ONE_PER_BATCH = [[k] for k in range(6)]  # batch k (1-based) holds [k - 1]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_design_window_4_slide_2(master: str) -> None:
    out = await run_stream(lambda s: s.window(4, 2), ONE_PER_BATCH, num_batches=8, master=master)
    assert sort_batches(out) == [[0, 1], [0, 1, 2, 3], [2, 3, 4, 5], [4, 5]]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_design_window_2_slide_3(master: str) -> None:
    """The slide is longer than the window: batches 1, 4 are in no window."""
    out = await run_stream(lambda s: s.window(2, 3), ONE_PER_BATCH, master=master)
    assert sort_batches(out) == [[1, 2], [4, 5]]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_design_pyspark_range_example(master: str) -> None:
    out = await run_stream(
        lambda s: s.window(1.5, 0.5).count(),
        [list(range(k)) for k in range(1, 6)],
        num_batches=7,
        batch_interval=0.5,
        master=master,
    )
    assert out == [[1], [3], [6], [9], [12], [9], [5]]


# ---- window(): more shapes ---------------------------------------------------------------


@pytest.mark.anyio
async def test_tumbling_window() -> None:
    out = await run_stream(lambda s: s.window(2, 2), [[1], [2], [3], [4], [5]], num_batches=6)
    assert sort_batches(out) == [[1, 2], [3, 4], [5]]


@pytest.mark.anyio
async def test_sliding_window_defaults_to_the_batch_slide() -> None:
    out = await run_stream(lambda s: s.window(3), [[1], [2], [3], [4]], num_batches=5)
    assert sort_batches(out) == [[1], [1, 2], [1, 2, 3], [2, 3, 4], [3, 4]]


@pytest.mark.anyio
async def test_window_over_empty_batches_counts_zero() -> None:
    out = await run_stream(lambda s: s.window(2).count(), [[], [1], [], []], num_batches=5)
    assert out == [[0], [1], [1], [0], [0]]


@pytest.mark.anyio
async def test_window_of_a_window() -> None:
    out = await run_stream(
        lambda s: s.window(2, 2).window(4, 4), [[1], [2], [3], [4], [5]], num_batches=8
    )
    assert sort_batches(out) == [[1, 2, 3, 4], [5]]


@pytest.mark.anyio
async def test_window_stream_shape() -> None:
    seen: list[WindowedDStream] = []

    def build(s: DStream) -> DStream:
        w = s.window(4, 2)
        assert isinstance(w, WindowedDStream)
        seen.append(w)
        return w

    await run_stream(build, ONE_PER_BATCH)
    (w,) = seen
    assert w.window_ms == 4000 and w.slide_ms == 2000 and w.slide_duration == 2.0
    assert w.parent_remember_ms == 4000
    assert w.dependencies[0].remember_ms >= 4000 + 2000  # remember() propagated W
    assert not w.requires_checkpoint


# ---- durations ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (lambda s: s.window(1.5), r"window duration \(1\.5 s\).*batch interval \(1 s\)"),
        (lambda s: s.window(2, 0.5), r"slide duration \(0\.5 s\).*batch interval \(1 s\)"),
        (
            lambda s: s.reduce_by_key_and_window(add, sub, 2.5, 1),
            r"reduce_by_key_and_window: window duration \(2\.5 s\).*batch interval \(1 s\)",
        ),
        (lambda s: s.count_by_window(3, 1.5), r"slide duration \(1\.5 s\).*batch interval"),
        (lambda s: s.count_by_value_and_window(0.3, 1), r"window duration \(0\.3 s\)"),
        (lambda s: s.group_by_key_and_window(3, 2.2), r"slide duration \(2\.2 s\)"),
        (lambda s: s.reduce_by_window(add, None, 7, 0.1), r"slide duration \(0\.1 s\)"),
        (lambda s: s.window(2, 2).window(3, 2), r"window duration \(3 s\).*slide duration of "
         r"window \(2 s\)"),
    ],
)
async def test_durations_must_be_multiples_of_the_batch(
    build: Callable[[DStream], DStream], pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern):
        await run_stream(build, [[1]])


# ---- reduce_by_key_and_window ------------------------------------------------------------

KEYED = [
    [("a", 1), ("b", 2)],
    [("a", 3)],
    [],
    [("b", 1), ("c", 5)],
    [],
    [("a", 2)],
    [],
]

# Sum over the last 3 batches, keys with a zero sum absent.
W3_S1 = [
    [("a", 1), ("b", 2)],
    [("a", 4), ("b", 2)],
    [("a", 4), ("b", 2)],
    [("a", 3), ("b", 1), ("c", 5)],
    [("b", 1), ("c", 5)],
    [("a", 2), ("b", 1), ("c", 5)],
    [("a", 2)],
    [("a", 2)],
    [],
]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_reduce_by_key_and_window_with_and_without_inverse(master: str) -> None:
    naive = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, None, 3, 1), KEYED, num_batches=9, master=master
    )
    inverse = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, sub, 3, 1, filter_func=nonzero),
        KEYED,
        num_batches=9,
        master=master,
    )
    naive_filtered = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, None, 3, 1, None, nonzero),
        KEYED,
        num_batches=9,
        master=master,
    )
    assert naive == inverse == naive_filtered == W3_S1


@pytest.mark.anyio
async def test_inverse_without_filter_keeps_keys_at_zero() -> None:
    """Spark's rule: without filter_func a key whose value returns to zero stays."""
    out = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, sub, 3, 1), KEYED, num_batches=9
    )
    assert out == [
        [("a", 1), ("b", 2)],
        [("a", 4), ("b", 2)],
        [("a", 4), ("b", 2)],
        [("a", 3), ("b", 1), ("c", 5)],
        [("a", 0), ("b", 1), ("c", 5)],
        [("a", 2), ("b", 1), ("c", 5)],
        [("a", 2), ("b", 0), ("c", 0)],
        [("a", 2), ("b", 0), ("c", 0)],
        [("a", 0), ("b", 0), ("c", 0)],
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("inv", [None, sub])
async def test_sliding_by_two(inv: Any) -> None:
    out = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, inv, 4, 2, 2, nonzero), KEYED, num_batches=10
    )
    assert out == [
        [("a", 4), ("b", 2)],
        [("a", 4), ("b", 3), ("c", 5)],
        [("a", 2), ("b", 1), ("c", 5)],
        [("a", 2)],
        [],
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("inv", [None, sub])
@pytest.mark.parametrize(
    ("window", "slide", "expected"),
    [
        (1, 2, [[("a", 3)], [("b", 1), ("c", 5)], [("a", 2)], []]),
        (2, 3, [[("a", 3)], [("a", 2)], []]),
    ],
)
async def test_slide_larger_than_window(
    inv: Any, window: int, slide: int, expected: list[list[Any]]
) -> None:
    out = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, inv, window, slide, None, nonzero),
        KEYED,
        num_batches=9,
    )
    assert out == expected


@pytest.mark.anyio
async def test_a_key_leaves_the_window() -> None:
    data = [[("x", 1), ("y", 1)], [("y", 1)], [], [], []]
    naive = await run_windowed(lambda s: s.reduce_by_key_and_window(add, None, 2, 1), data)
    filtered = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, sub, 2, 1, filter_func=nonzero), data
    )
    kept = await run_windowed(lambda s: s.reduce_by_key_and_window(add, sub, 2, 1), data)
    assert naive == filtered == [[("x", 1), ("y", 1)], [("x", 1), ("y", 2)], [("y", 1)], [], []]
    assert kept == [
        [("x", 1), ("y", 1)],
        [("x", 1), ("y", 2)],
        [("x", 0), ("y", 1)],
        [("x", 0), ("y", 0)],
        [("x", 0), ("y", 0)],
    ]


@pytest.mark.anyio
async def test_a_filtered_out_key_comes_back() -> None:
    """A key dropped by filter_func has no previous value: it takes its new values only."""
    data = [[("k", 1)], [], [("k", 5)], [("k", 2)], []]
    out = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, sub, 2, 1, filter_func=nonzero), data
    )
    assert out == [[("k", 1)], [("k", 1)], [("k", 5)], [("k", 7)], [("k", 2)]]


@pytest.mark.anyio
async def test_empty_batches_only() -> None:
    for inv in (None, sub):
        out = await run_windowed(
            lambda s, inv=inv: s.reduce_by_key_and_window(add, inv, 2, 1), [[], [], []]
        )
        assert out == [[], [], []]


@pytest.mark.anyio
async def test_non_numeric_values_with_an_inverse() -> None:
    """Multisets as values: Counter addition and subtraction invert each other."""
    from collections import Counter

    data = [[("k", Counter("ab"))], [("k", Counter("b"))], [], []]
    out = await run_windowed(
        lambda s: s.reduce_by_key_and_window(
            add, sub, 2, 1, filter_func=lambda kv: bool(kv[1])
        ).map_values(lambda c: "".join(sorted(c.elements()))),
        data,
    )
    assert out == [[("k", "ab")], [("k", "abb")], [("k", "b")], []]


# ---- derived operations ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_reduce_by_window() -> None:
    data = [[1, 2], [3], [], []]
    with_inverse = await run_windowed(lambda s: s.reduce_by_window(add, sub, 2, 1), data)
    without = await run_stream(lambda s: s.reduce_by_window(add, None, 2, 1), data)
    assert with_inverse == [[3], [6], [3], [0]]
    assert without == [[3], [6], [3], []]  # nothing to reduce in an empty window


@pytest.mark.anyio
async def test_count_by_window_emits_zero_for_an_empty_window() -> None:
    out = await run_windowed(
        lambda s: s.count_by_window(2, 1), [[1], [2, 3], [], [], []], num_batches=6
    )
    assert out == [[1], [3], [2], [0], [0], [0]]


@pytest.mark.anyio
async def test_count_by_window_before_the_first_record() -> None:
    """Spark's derivation (reduce_by_window with an inverse): before any record has been
    seen there is no count to bring down to zero, so those windows emit nothing."""
    out = await run_windowed(lambda s: s.count_by_window(2, 1), [[], [7], [], [], []])
    assert out == [[], [1], [1], [0], [0]]


@pytest.mark.anyio
@pytest.mark.parametrize("master", MASTERS, indirect=True)
async def test_count_by_value_and_window_drops_zero_counts(master: str) -> None:
    out = await run_windowed(
        lambda s: s.count_by_value_and_window(2, 1),
        [["a", "b"], ["a"], [], ["c"], []],
        num_batches=6,
        master=master,
    )
    assert out == [
        [("a", 1), ("b", 1)],
        [("a", 2), ("b", 1)],
        [("a", 1)],
        [("c", 1)],
        [("c", 1)],
        [],
    ]


@pytest.mark.anyio
async def test_group_by_key_and_window() -> None:
    out = await run_stream(
        lambda s: s.group_by_key_and_window(2, 1).map_values(sorted),
        [[("a", 1), ("b", 2)], [("a", 3)], [("b", 4)], []],
    )
    assert sort_batches(out) == [
        [("a", [1]), ("b", [2])],
        [("a", [1, 3]), ("b", [2])],
        [("a", [3]), ("b", [4])],
        [("b", [4])],
    ]


@pytest.mark.anyio
async def test_camel_case_aliases() -> None:
    data = [[("a", 1)], [("a", 2)], []]
    out = await run_windowed(
        lambda s: s.reduceByKeyAndWindow(add, sub, 2, 1, None, nonzero).union(
            s.map(lambda kv: kv[1]).reduceByWindow(add, sub, 2, 1).map(lambda v: ("sum", v))
        ).union(s.countByWindow(2, 1).map(lambda v: ("count", v)))
        .union(s.map(lambda kv: kv[0]).countByValueAndWindow(2, 1))
        .union(s.groupByKeyAndWindow(2, 1).map_values(sorted)),
        data,
    )
    assert out == [
        [("a", 1), ("a", 1), ("a", [1]), ("count", 1), ("sum", 1)],
        [("a", 2), ("a", 3), ("a", [1, 2]), ("count", 2), ("sum", 3)],
        [("a", 1), ("a", 2), ("a", [2]), ("count", 1), ("sum", 2)],
    ]


# ---- the inverse path's bookkeeping -----------------------------------------------------------


@pytest.mark.anyio
async def test_intermediates_are_dropped_as_they_leave() -> None:
    streams: list[ReducedWindowedDStream] = []
    sizes: list[tuple[int, int]] = []

    def build(s: DStream) -> DStream:
        w = s.reduce_by_key_and_window(add, sub, 3, 1, name="sums")
        assert isinstance(w, ReducedWindowedDStream)
        streams.append(w)

        def record(rdd: Any) -> Any:
            sizes.append((len(w._batches), len(w._windows)))
            return rdd

        return w.transform(record)

    data = [[(i % 4, 1)] for i in range(20)]
    out = await run_windowed(build, data)
    assert out[-1] == [(0, 0), (1, 1), (2, 1), (3, 1)]  # no filter_func: key 0 stays at 0
    (w,) = streams
    assert w.requires_checkpoint and w.state_name == "sums"
    assert w.parent_remember_ms == 0  # it keeps the span itself, as computed partitions
    assert max(b for b, _ in sizes) <= 4 and max(n for _, n in sizes) <= 2
    assert len(w._batches) <= 3 and len(w._windows) == 1


@pytest.mark.anyio
async def test_checkpoint_data_round_trip() -> None:
    captured: dict[str, Any] = {}

    def build(s: DStream) -> DStream:
        w = s.reduce_by_key_and_window(add, sub, 3, 2, filter_func=nonzero)
        assert isinstance(w, ReducedWindowedDStream)
        captured["stream"] = w

        async def snapshot(time: float, rdd: Any) -> None:
            if time == 4.0:
                captured["data"] = await w.checkpoint_data()
                captured["explicit"] = await w.checkpoint_data(4000)

        w.foreach_rdd(snapshot)
        return w

    await run_windowed(build, KEYED)
    data = captured["data"]
    assert data == captured["explicit"]
    assert pickle.loads(pickle.dumps(data)) == data
    assert data["time_ms"] == 4000 and data["window_ms"] == 3000 and data["slide_ms"] == 2000
    assert list(data["window"]) == [4000]  # the window of batch 4
    assert sorted(kv for part in data["window"][4000] for kv in part) == [
        ("a", 3), ("b", 1), ("c", 5)
    ]
    assert sorted(data["batches"]) == [2000, 3000, 4000]  # the batches still in the window
    assert sorted(kv for part in data["batches"][4000] for kv in part) == [("b", 1), ("c", 5)]

    async with StreamingContext(1.0, clock=ManualClock(0.0)) as ssc:
        source = ssc.queue_stream([])
        fresh = source.reduce_by_key_and_window(add, sub, 3, 2, filter_func=nonzero)
        assert isinstance(fresh, ReducedWindowedDStream)
        fresh.restore_checkpoint_data(data)
        assert await fresh.checkpoint_data(4000) == data
        with pytest.raises(ValueError, match="cannot restore"):
            fresh.restore_checkpoint_data({**data, "operator": "update_state_by_key"})


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("first", "then"), [("local", "local"), ("local[2]", "local[2]"), ("local", "local[2]")]
)
async def test_recovery_resumes_the_window(
    first: str, then: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop after 5 batches, get_or_create, run on: the same outputs as a run that never
    stopped (the state checkpoint is every 2 batches, so batch 5 is replayed silently).
    From one partition to two, the restored window and batches are re-partitioned by the
    slide (a cogroup) instead of being merged partition by partition."""
    restored: list[Any] = []
    original = ReducedWindowedDStream.restore_checkpoint_data

    def restore(self: ReducedWindowedDStream, data: Any) -> None:
        restored.append(data)
        original(self, data)

    monkeypatch.setattr(ReducedWindowedDStream, "restore_checkpoint_data", restore)
    data = [[(k, i) for k in "abc"[: 1 + i % 3]] for i in range(1, 11)]

    def setup(directory: Any, outputs: list[Any], master: str) -> Callable[[], StreamingContext]:
        def build() -> StreamingContext:
            ssc = StreamingContext(
                1.0, master=master, clock=ManualClock(0.0), conf={"checkpoint_interval": 2.0}
            )
            ssc.checkpoint(str(directory))
            source = ssc.queue_stream([ssc.spark_context.parallelize(b) for b in data])
            windowed = source.reduce_by_key_and_window(add, sub, 3, 1, filter_func=nonzero)
            outputs.append(collect_batches(windowed))
            return ssc

        return build

    expected: list[Any] = []
    async with setup(tmp_path / "reference", expected, first)() as ssc:
        await ssc.start()
        await advance_batches(ssc, 10)
        await ssc.stop()
    assert not ssc.errors

    got: list[Any] = []
    async with setup(tmp_path / "run", got, first)() as ssc:
        await ssc.start()
        await advance_batches(ssc, 5)
        await ssc.stop()
    ssc = StreamingContext.get_or_create(
        str(tmp_path / "run"), setup(tmp_path / "run", got, then)
    )
    async with ssc:
        await ssc.start()
        await advance_batches(ssc, 5)
        await ssc.stop()
    assert not ssc.errors

    def flat(runs: list[Any]) -> list[Any]:
        return [(t, sorted(r)) for run in runs for t, r in run]

    assert flat(got) == flat(expected)
    assert len(flat(expected)) == 10
    assert [(d["time_ms"], sorted(d["window"]), sorted(d["batches"])) for d in restored] == [
        (4000, [4000], [2000, 3000, 4000])
    ]


# ---- checked inverse ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("name", [None, "sums"])
async def test_checked_inverse_catches_a_wrong_inverse(name: str | None) -> None:
    with pytest.raises(JobFailedError) as caught:
        await run_windowed(
            lambda s: s.reduce_by_key_and_window(add, add, 3, 1, filter_func=nonzero, name=name),
            [[("a", 1)], [("a", 1)], [], [], []],
            conf={"window_check_interval": 1},
        )
    error = caught.value.cause
    assert isinstance(error, WindowCheckError)
    assert caught.value.batch_time == 4.0  # the first slide where a batch left the window
    assert error.operator == (name or "reduce_by_key_and_window")
    assert str(error).startswith(f"{name or 'reduce_by_key_and_window'}: the incremental window at 4 s")
    assert "key 'a': incremental 3, recomputed 1" in str(error)
    assert "inv_func(func(a, b), b) == a" in str(error)
    assert error.differing == {"a": (3, 1)}
    assert pickle.loads(pickle.dumps(error)).differing == {"a": (3, 1)}


@pytest.mark.anyio
async def test_checked_inverse_names_a_key_that_never_goes_away() -> None:
    with pytest.raises(JobFailedError, match="without filter_func a key whose value returns"):
        await run_windowed(
            lambda s: s.reduce_by_key_and_window(add, sub, 2, 1),
            [[("gone", 1)], [], [], []],
            conf={"window_check_interval": 1},
        )


@pytest.mark.anyio
async def test_checked_inverse_every_other_slide_passes_a_right_inverse() -> None:
    out = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, sub, 3, 1, filter_func=nonzero),
        KEYED,
        num_batches=9,
        conf={"window_check_interval": 2},
    )
    assert out == W3_S1


@pytest.mark.anyio
async def test_checked_inverse_stops_the_context_at_the_first_wrong_slide() -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with StreamingContext(
            1.0, clock=ManualClock(0.0), conf={"window_check_interval": 3}
        ) as ssc:
            ssc.checkpoint(directory)
            windowed = ssc.queue_stream([[("a", 1)]] * 8).reduce_by_key_and_window(add, add, 2, 1)
            outputs = collect_batches(windowed)
            await ssc.start()
            with pytest.raises(JobFailedError) as failed:
                await advance_batches(ssc, 8)
            with pytest.raises(JobFailedError, match="differs"):  # stop() raises it too
                await ssc.stop()
    assert failed.value.batch_time == 3.0 and isinstance(failed.value.cause, WindowCheckError)
    assert [(t, r) for t, r in outputs] == [(1.0, [("a", 1)]), (2.0, [("a", 2)])]


@pytest.mark.anyio
async def test_checked_inverse_with_retries_replaces_every_wrong_slide_by_its_recomputation() -> None:
    """output_failure_policy="retry": a wrong slide fails once; its retry outputs the window
    recomputed from scratch, and the sums go on from it."""
    failures: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        conf = {"window_check_interval": 3, "output_failure_policy": "retry",
                "output_retry_backoff": 0.25}
        async with StreamingContext(1.0, clock=ManualClock(0.0), conf=conf) as ssc:
            ssc.checkpoint(directory)
            windowed = ssc.queue_stream([[("a", 1)]] * 8).reduce_by_key_and_window(add, add, 2, 1)
            outputs = collect_batches(windowed)
            await ssc.start()
            for time_ms in range(1000, 9000, 1000):
                ssc.clock.set_time(time_ms / 1000)  # type: ignore[attr-defined]
                if time_ms in (3000, 6000):
                    with anyio.fail_after(30):
                        while ssc._job_scheduler.output_failures == len(failures):
                            await anyio.lowlevel.checkpoint()
                    failures.append(time_ms / 1000)
                    ssc.clock.advance(0.25)  # type: ignore[attr-defined]
                await ssc._job_scheduler.wait_for_batch(time_ms)
            await ssc.stop()
    assert ssc.errors == [] and failures == [3.0, 6.0]
    assert [(t, r) for t, r in outputs] == [
        (1.0, [("a", 1)]), (2.0, [("a", 2)]), (3.0, [("a", 2)]), (4.0, [("a", 4)]),
        (5.0, [("a", 6)]), (6.0, [("a", 2)]), (7.0, [("a", 4)]), (8.0, [("a", 6)]),
    ]


# ---- property: the inverse path equals the naive path ----------------------------------------------


@st.composite
def windowed_runs(draw: st.DrawFn) -> tuple[list[list[tuple[str, int]]], int, int, int]:
    batches = draw(
        st.lists(
            st.lists(st.tuples(st.sampled_from("abcde"), st.integers(1, 9)), max_size=6),
            min_size=1,
            max_size=8,
        )
    )
    window = draw(st.integers(1, 4))
    slide = draw(st.integers(1, 3))
    extra = draw(st.integers(0, window + slide))
    return batches, window, slide, extra


async def both_paths(
    batches: list[list[Any]], window: int, slide: int, extra: int, master: str
) -> tuple[list[list[Any]], list[list[Any]]]:
    num_batches = len(batches) + extra
    naive = await run_stream(
        lambda s: s.reduce_by_key_and_window(add, None, window, slide, 2),
        batches,
        num_batches=num_batches,
        master=master,
    )
    inverse = await run_windowed(
        lambda s: s.reduce_by_key_and_window(add, sub, window, slide, 2, nonzero),
        batches,
        num_batches=num_batches,
        master=master,
        conf={"window_check_interval": 1},
    )
    return sort_batches(naive), inverse


@settings(max_examples=40, deadline=None)
@given(windowed_runs())
def test_property_inverse_equals_naive(run: tuple[list[list[Any]], int, int, int]) -> None:
    batches, window, slide, extra = run
    naive, inverse = anyio.run(both_paths, batches, window, slide, extra, "local")
    assert inverse == naive
    expected_slides = (len(batches) + extra) // slide
    assert len(naive) == expected_slides


@settings(max_examples=5, deadline=None)
@given(windowed_runs())
def test_property_inverse_equals_naive_on_processes(
    run: tuple[list[list[Any]], int, int, int],
) -> None:
    batches, window, slide, extra = run
    naive, inverse = anyio.run(both_paths, batches, window, slide, extra, "local[2]")
    assert inverse == naive
