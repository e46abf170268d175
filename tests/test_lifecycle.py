"""The lifecycle calls, blocking (PySpark style) and async: how they surface job failures,
what they return, and that stopping twice is harmless.

The blocking tests run without an event loop of their own, as a PySpark script does: the
engine runs on its background loop thread and a real clock with 0.1 s batches (a manual
clock cannot be moved from another thread while the engine's loop runs). A hang shows as a
helper thread that does not finish, never as a test that waits forever.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from aiostream_engine import (
    ConfigurationError,
    JobFailedError,
    ManualClock,
    Receiver,
    StreamingConf,
    StreamingContext,
)
from aiostream_engine.testing import run_stream


def _within(seconds: float, call: Callable[[], Any]) -> tuple[Any, BaseException | None, float]:
    """Run ``call`` on a helper thread: (result, raised, elapsed); fails if it hangs."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        begin = time.monotonic()
        try:
            outcome["result"] = call()
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - begin

    helper = threading.Thread(target=target, daemon=True)
    helper.start()
    helper.join(seconds)
    assert not helper.is_alive(), f"the call did not return within {seconds} s"
    return outcome.get("result"), outcome.get("error"), outcome["elapsed"]


def _failing_context() -> StreamingContext:
    """Every batch of this context fails (its map divides by zero)."""
    ssc = StreamingContext(0.1, master="local")
    ssc.queue_stream([[0]], default=[0]).map(lambda x: 1 // x).foreach_rdd(lambda rdd: rdd.count())
    return ssc


# ---- blocking awaitTermination wakes on a failed job ------------------------------------------


def test_blocking_await_termination_raises_a_failed_job_at_once() -> None:
    ssc = _failing_context()
    ssc.start()
    try:
        _, raised, elapsed = _within(20, ssc.awaitTermination)
    finally:
        ssc.stop()
    assert isinstance(raised, JobFailedError) and "ZeroDivisionError" in str(raised)
    assert elapsed < 10


class _HeldStop(Receiver):
    """A receiver that stores nothing and, once asked to stop, stops only when released."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = threading.Event()
        self.release = threading.Event()

    async def on_start(self) -> None:
        await anyio.sleep_forever()

    async def on_stop(self) -> None:
        self.stopping.set()
        await anyio.to_thread.run_sync(self.release.wait)


def test_blocking_await_termination_raises_once_the_failed_context_has_stopped() -> None:
    """As the async call: a failed batch stops the context and awaitTermination raises
    once it has, so a batch in flight that fails too is reported before that, never
    raised by the stop() that follows (CI saw stop() raise batch t+0.1's failure after
    awaitTermination had raised batch t's)."""
    ssc = _failing_context()
    receiver = _HeldStop()
    ssc.receiver_stream(receiver).foreach_rdd(lambda rdd: None)
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            ssc.awaitTermination()
        except JobFailedError as exc:
            outcome["raised"], outcome["state"] = exc, ssc.state.value

    ssc.start()
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    try:
        assert receiver.stopping.wait(20), "the failed batch did not stop the context"
        waiter.join(1.0)  # it must still wait: the context is stopping, not stopped
        waited_for_the_stop = waiter.is_alive()
    finally:
        receiver.release.set()
        waiter.join(20)
        ssc.stop()  # raises nothing: the failure has been raised already
    assert waited_for_the_stop
    assert isinstance(outcome["raised"], JobFailedError) and outcome["state"] == "stopped"


def test_blocking_await_termination_with_timeout_raises_before_the_timeout() -> None:
    ssc = _failing_context()
    ssc.start()
    try:
        _, raised, elapsed = _within(20, lambda: ssc.awaitTermination(15))
    finally:
        ssc.stop()
    assert isinstance(raised, JobFailedError)
    assert elapsed < 10  # not the 15 s timeout


def test_any_reported_error_wakes_a_blocking_waiter() -> None:
    """Whatever reports an error to the context (a failed-output policy, a receiver
    supervisor) wakes awaitTermination, not only the job scheduler."""
    ssc = StreamingContext(0.1, master="local")
    ssc.queue_stream([[1]]).pprint()
    ssc.start()
    try:
        failure = RuntimeError("reported from elsewhere")
        threading.Timer(0.3, lambda: ssc._loop_thread.loop.call_soon_threadsafe(  # type: ignore[union-attr]
            ssc._report_error, failure
        )).start()
        _, raised, elapsed = _within(20, lambda: ssc.awaitTermination(15))
    finally:
        ssc.stop()
    assert raised is failure and elapsed < 10


def test_blocking_await_termination_returns_a_plain_bool() -> None:
    ssc = StreamingContext(0.1, master="local")
    ssc.queueStream([[1]]).pprint()
    ssc.start()
    running = ssc.awaitTermination(0.05)
    also_running = ssc.awaitTerminationOrTimeout(0.05)
    ssc.stop()
    stopped = ssc.awaitTermination(0.05)
    assert (type(running), running) == (bool, False)
    assert (type(also_running), also_running) == (bool, False)
    assert (type(stopped), stopped) == (bool, True)
    assert repr(stopped) == "True"


# ---- stop is idempotent ---------------------------------------------------------------------------


def _stop_without_noise(ssc: StreamingContext) -> None:
    """``ssc.stop()`` returns quietly: no error, no never-awaited coroutine warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ssc.stop()
        gc.collect()  # a coroutine never awaited warns when it is collected
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_second_blocking_stop_does_nothing() -> None:
    ssc = StreamingContext(0.1, master="local")
    ssc.queueStream([[1]]).pprint()
    ssc.start()
    ssc.stop()
    _stop_without_noise(ssc)
    ssc.stop(stopSparkContext=False, stopGraceFully=True)
    assert ssc.awaitTermination(0) is True


def test_blocking_stop_after_a_failed_start_does_nothing(tmp_path: Any) -> None:
    ssc = StreamingContext(0.1, master="local")
    ssc.textFileStream(str(tmp_path / "missing")).pprint()
    with pytest.raises(FileNotFoundError):
        ssc.start()
    _stop_without_noise(ssc)
    _stop_without_noise(ssc)


def test_blocking_stop_of_a_context_never_started_does_nothing() -> None:
    ssc = StreamingContext(0.1, master="local")
    ssc.queueStream([[1]]).pprint()
    _stop_without_noise(ssc)
    _stop_without_noise(ssc)


@pytest.mark.anyio
async def test_async_stop_twice_and_after_a_failed_start(tmp_path: Any) -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        ssc.text_file_stream(str(tmp_path / "missing")).pprint()
        with pytest.raises(FileNotFoundError):
            await ssc.start()
        await ssc.stop()
        await ssc.stop()
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        ssc.queue_stream([[1]]).pprint()
        await ssc.start()
        await ssc.stop()
        await ssc.stop(graceful=True)


# ---- a failure during a graceful stop is raised ---------------------------------------------


def _failing_during_stop(ssc: StreamingContext) -> threading.Event:
    """An output that holds its first batch until a stop has been asked for, then fails:
    the failure happens while the graceful stop finishes that batch. Returns the event set
    once that batch's output is running."""
    running = threading.Event()

    def write(rdd: Any) -> None:
        if rdd.isEmpty():
            return
        running.set()
        deadline = time.monotonic() + 10
        while not (ssc._stop_request and ssc._stop_request.is_set()) and time.monotonic() < deadline:
            time.sleep(0.01)
        raise OSError('relation "device_counts" does not exist')

    ssc.queue_stream([[1, 2]]).foreach_rdd(write)
    return running


def test_blocking_graceful_stop_raises_a_failure_of_the_batches_it_finishes() -> None:
    ssc = StreamingContext(0.1, master="local")
    running = _failing_during_stop(ssc)
    ssc.start()
    assert running.wait(10)  # the first batch's output waits for the stop
    assert ssc.errors == []
    with pytest.raises(JobFailedError, match="device_counts"):
        ssc.stop(stopGraceFully=True)
    ssc.stop()  # raised once; the second stop does nothing


@pytest.mark.anyio
async def test_async_graceful_stop_raises_a_failure_of_the_batches_it_finishes() -> None:
    clock = ManualClock()
    async with StreamingContext(1.0, master="local", clock=clock) as ssc:
        running = _failing_during_stop(ssc)
        await ssc.start()
        clock.set_time(1.0)
        assert await anyio.to_thread.run_sync(running.wait, 10)
        assert ssc.errors == []
        with pytest.raises(JobFailedError, match="device_counts"):
            await ssc.stop(graceful=True)


def test_stop_raises_a_failure_no_lifecycle_call_has_raised() -> None:
    """A script that never calls awaitTermination still sees the failure at stop()."""
    ssc = _failing_context()
    ssc.start()
    deadline = time.monotonic() + 10
    while not ssc.errors and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(JobFailedError, match="ZeroDivisionError"):
        ssc.stop()
    ssc.stop()


def test_stop_after_await_termination_raised_does_not_raise_the_same_failure_again() -> None:
    ssc = _failing_context()
    ssc.start()
    with pytest.raises(JobFailedError):
        ssc.awaitTermination(15)
    ssc.stop()  # not graceful: no batch runs during it, nothing new to raise


# ---- on master="local" collected results are snapshots ------------------------------------------


def _append_in_place(new_values: list[int], state: list[int] | None) -> list[int]:
    state = [] if state is None else state
    state.extend(new_values)  # mutates the previous state object, as PySpark code may
    return state


@pytest.mark.anyio
@pytest.mark.parametrize("master", ["local", "local[2]"])
async def test_collected_state_is_a_snapshot_on_every_master(master: str, tmp_path: Any) -> None:
    out = await run_stream(
        lambda s: s.update_state_by_key(_append_in_place),
        [[("k", i)] for i in range(5)],
        master=master,
        checkpoint_dir=str(tmp_path),
    )
    assert out == [[("k", list(range(i + 1)))] for i in range(5)]


@pytest.mark.anyio
async def test_state_reached_through_a_shuffle_is_a_snapshot_on_local(tmp_path: Any) -> None:
    """A join's reduce task reads the state's objects through the state task's shuffle
    buckets: those are copied too."""
    def joined(s: Any) -> Any:
        state = s.update_state_by_key(_append_in_place)
        return state.join(s.map(lambda kv: (kv[0], "new"))).map_values(lambda v: v[0])

    out = await run_stream(joined, [[("k", i)] for i in range(4)], checkpoint_dir=str(tmp_path))
    assert out == [[("k", list(range(i + 1)))] for i in range(4)]


def test_only_tasks_that_read_kept_partitions_are_copied_on_local() -> None:
    """Copying every task's records tripled a batch that collects 200,000 of them
    (bench/results/local_snapshot.md): records no kept partition holds are handed back."""
    from aiostream_engine.executor.local import execute_detached
    from aiostream_engine.rdd.tasks import RecordsInput, TaskPlan

    record = ["a"]
    assert execute_detached(TaskPlan(RecordsInput([record])), 0)[0] is record


def _count_into(key: str, value: Any, state: Any) -> tuple[str, dict[str, int]]:
    seen = state.get() if state.exists() else {"n": 0}
    seen["n"] += 1  # the same dict object, updated in place
    state.update(seen)
    return key, seen


@pytest.mark.anyio
async def test_map_with_state_outputs_and_snapshots_are_snapshots_on_local(tmp_path: Any) -> None:
    from aiostream_engine import StateSpec

    out = await run_stream(
        lambda s: s.map_with_state(StateSpec(_count_into)),
        [[("k", 1)], [("k", 2)], [("k", 3)]],
        checkpoint_dir=str(tmp_path),
    )
    snapshots = await run_stream(
        lambda s: s.map_with_state(StateSpec(_count_into)).state_snapshots(),
        [[("k", 1)], [("k", 2)], [("k", 3)]],
        checkpoint_dir=str(tmp_path / "snapshots"),
    )
    assert out == [[("k", {"n": 1})], [("k", {"n": 2})], [("k", {"n": 3})]]
    assert snapshots == [[("k", {"n": 1})], [("k", {"n": 2})], [("k", {"n": 3})]]


# ---- a short batch interval with the default block interval -------------------------------------


def test_batch_interval_below_the_default_block_interval_is_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="aiostream_engine"):
        ssc = StreamingContext(0.1, master="local")
    assert ssc.conf.block_interval == pytest.approx(0.1)
    assert "block_interval" in caplog.text and "0.1" in caplog.text
    assert "block_interval" not in ssc.conf.explicit_keys


def test_explicit_block_interval_that_cannot_work_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="block_interval .* larger than the batch"):
        StreamingContext(0.1, master="local", conf={"block_interval": 0.2})
    with pytest.raises(ConfigurationError, match="block_interval .* larger than the batch"):
        StreamingContext(0.1, master="local", conf=StreamingConf(block_interval=0.2))
    with pytest.raises(ConfigurationError, match="block_interval .* larger than the batch"):
        StreamingContext(0.1, master="local", conf={"spark.streaming.blockInterval": "200ms"})


def test_conf_knows_which_keys_were_set_explicitly() -> None:
    assert StreamingConf().explicit_keys == frozenset()
    assert StreamingConf(block_interval=0.2).explicit_keys == {"block_interval"}
    conf = StreamingConf.of({"spark.task.maxFailures": "2"}).set("concurrent_jobs", 1)
    assert conf.explicit_keys == {"task_max_failures", "concurrent_jobs"}
    assert StreamingConf.of(conf).explicit_keys == conf.explicit_keys  # a copy keeps them


def test_short_batches_run_with_a_receiver_and_the_derived_block_interval() -> None:
    """0.1 s batches (PySpark's own tests use them) with a receiver cutting 0.1 s blocks."""
    from aiostream_engine import Receiver

    class Counter(Receiver):
        async def on_start(self) -> None:
            for i in range(20):
                await self.store(i)

    ssc = StreamingContext(0.1, master="local")
    seen: list[int] = []
    ssc.receiverStream(Counter()).foreachRDD(lambda rdd: seen.extend(rdd.collect()))
    ssc.start()
    deadline = time.monotonic() + 10
    while len(seen) < 20 and time.monotonic() < deadline:
        ssc.awaitTermination(0.1)
    ssc.stop(stopGraceFully=True)
    assert sorted(seen) == list(range(20))


def test_cli_demo_takes_a_block_interval(capfd: pytest.CaptureFixture[str]) -> None:
    from aiostream_engine.cli import build_parser, main

    assert build_parser().parse_args(["demo"]).block_interval is None
    code = main(["demo", "--duration", "0.6", "--batch-interval", "0.1", "--block-interval",
                 "0.05", "--window", "0", "--master", "local", "--rate", "200"])
    out = capfd.readouterr().out
    assert code == 0
    assert "batch 0.1 s, blocks 0.05 s" in out and "== batch" in out and "stopped:" in out
