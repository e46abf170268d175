"""The per-stream rate controller: which streams have one, what feeds it, and how its bound
reaches the receivers, the batch metadata and the listeners (ManualClock, no sleeps)."""

from __future__ import annotations

import pytest

from aiostream_engine import ConfigurationError, ManualClock, StreamingConf, StreamingContext
from aiostream_engine.receiver.rate_limiter import RateLimiter
from aiostream_engine.scheduler.batch_info import BatchInfo, OutputOperationInfo, StreamInputInfo
from aiostream_engine.scheduler.rate import (
    PIDRateEstimator,
    RateController,
    receiver_rate,
    share_rate_controller,
)
from tests.rate.sim import Endless, RateEvents, SlowOutput, run_until
from tests.rate.test_pid_estimator import Formula

pytestmark = pytest.mark.anyio

# Headroom 0 and no rate window: the bound is the PID estimate itself, as in Spark (their
# own tests below).
ON = {"spark.streaming.backpressure.enabled": "true", "backpressure_headroom": "0",
      "backpressure_rate_window": "0"}


def _info(
    batch: float, records: dict[int, int], start: float, end: float, *, failed: bool = False
) -> BatchInfo:
    info = BatchInfo(batch, {i: StreamInputInfo(i, n) for i, n in records.items()}, batch, start, end)
    if failed:
        info.output_operation_infos = {0: OutputOperationInfo(batch, 0, "out", start, end, "boom")}
    return info


# ---- which streams have a controller ----------------------------------------------------


async def test_no_controller_unless_backpressure_is_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ssc = StreamingContext(1.0, master="local", clock=ManualClock())
    streams = [ssc.receiver_stream(Endless()), ssc.text_file_stream(str(tmp_path)),
               ssc.queue_stream([[1]])]
    assert [s.rate_controller for s in streams] == [None, None, None]  # type: ignore[attr-defined]


async def test_every_stream_that_can_read_less_has_one_with_backpressure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ssc = StreamingContext(1.0, master="local", clock=ManualClock(), conf=ON)
    receiver = ssc.receiver_stream(Endless())
    files = ssc.text_file_stream(str(tmp_path))
    simulator = ssc.simulator_stream(rate=10)
    queue = ssc.queue_stream([[1]])
    for stream in (receiver, files, simulator):
        controller = stream.rate_controller  # type: ignore[attr-defined]
        assert isinstance(controller, RateController)
        assert controller.stream_ids == (stream.id,)  # type: ignore[attr-defined]
        assert controller.latest_rate() is None  # no estimate, no initial rate
    assert queue.rate_controller is None  # type: ignore[attr-defined]  # its batches are given
    assert len({id(s.rate_controller) for s in (receiver, files, simulator)}) == 3  # type: ignore[attr-defined]


async def test_the_controller_uses_the_configured_estimator() -> None:
    conf = {**ON, "spark.streaming.backpressure.pid.integral": "0.5",
            "spark.streaming.backpressure.pid.minRate": "7"}
    ssc = StreamingContext(2.0, master="local", clock=ManualClock(), conf=conf)
    estimator = ssc.receiver_stream(Endless()).rate_controller.estimator  # type: ignore[attr-defined]
    assert isinstance(estimator, PIDRateEstimator)
    assert (estimator.batch_interval, estimator.integral, estimator.min_rate) == (2.0, 0.5, 7.0)


# ---- what feeds it -------------------------------------------------------------------------


def test_latest_rate_is_the_initial_rate_until_the_first_estimate() -> None:
    c = RateController("s", [3], PIDRateEstimator(1.0, min_rate=1.0), initial_rate=250.0)
    assert c.latest_rate() == 250.0
    assert c.on_batch_completed(_info(1.0, {3: 100}, 1.0, 1.5)) is None  # first: no estimate
    assert c.latest_rate() == 250.0
    rate = c.on_batch_completed(_info(2.0, {3: 100}, 2.0, 2.5))
    assert rate == pytest.approx(200.0) and c.latest_rate() == rate


def test_without_an_initial_rate_the_first_batch_bounds_until_the_first_estimate() -> None:
    """Spark's estimator gives nothing for the first batch; rather than leave the stream
    unbounded one more batch, the controller takes what that batch processed at."""
    c = RateController("s", [1], PIDRateEstimator(1.0, min_rate=1.0))
    assert c.latest_rate() is None
    assert c.on_batch_completed(_info(1.0, {1: 0}, 1.0, 1.2)) is None  # nothing to learn
    assert c.latest_rate() is None
    assert c.on_batch_completed(_info(2.0, {1: 600}, 2.0, 3.5)) == pytest.approx(400.0)
    assert c.latest_rate() == pytest.approx(400.0)
    assert c.updates == 1


def test_it_counts_its_own_streams_records_with_the_batchs_delays() -> None:
    """Records of other streams do not count; time is when processing ended; the delays are
    the BatchInfo's: the estimates are the formula's on exactly those numbers."""
    c = RateController("s", [1], PIDRateEstimator(1.0, 1.0, 0.2, 0.0, 1.0), initial_rate=50.0)
    ref = Formula(1.0, 1.0, 0.2, 0.0, 1.0)
    batches = [(1.0, 300, 1.0, 1.6), (2.0, 320, 2.1, 2.9), (3.0, 250, 3.3, 3.9), (4.0, 280, 4.0, 4.5)]
    for batch, records, start, end in batches:
        got = c.on_batch_completed(_info(batch, {0: 10_000, 1: records, 2: 5}, start, end))
        want = ref.step(end, records, end - start, start - batch)
        assert (got is None and want is None) or got == pytest.approx(want, rel=1e-12)
    assert c.updates == 3 and c.batches_seen == 4


def test_a_shared_controller_counts_every_receivers_records() -> None:
    c = RateController("s", [1, 2], PIDRateEstimator(1.0, min_rate=1.0))
    assert c.on_batch_completed(_info(1.0, {1: 100, 2: 300}, 1.0, 2.0)) == pytest.approx(400.0)
    assert c.on_batch_completed(_info(2.0, {1: 200, 2: 200}, 2.0, 3.0)) == pytest.approx(400.0)


def test_batches_without_its_stream_or_with_a_failed_output_are_skipped() -> None:
    c = RateController("s", [1], PIDRateEstimator(1.0, min_rate=1.0), initial_rate=10.0)
    c.on_batch_completed(_info(1.0, {1: 100}, 1.0, 2.0))
    assert c.on_batch_completed(_info(2.0, {0: 100}, 2.0, 3.0)) is None
    assert c.on_batch_completed(_info(3.0, {1: 100}, 3.0, 3.01, failed=True)) is None
    assert c.batches_seen == 1
    assert c.on_batch_completed(_info(4.0, {1: 200}, 4.0, 5.0)) == pytest.approx(200.0)


def test_the_bound_leaves_the_headroom_of_the_estimate() -> None:
    """The estimator runs Spark's formula untouched; the bound is (1 - headroom) x it."""
    c = RateController("s", [1], PIDRateEstimator(1.0, min_rate=1.0), headroom=0.25)
    ref = Formula(1.0, 1.0, 0.2, 0.0, 1.0)
    batches = [(1.0, 400, 1.0, 2.0), (2.0, 300, 2.2, 3.1), (3.0, 350, 3.1, 3.8)]
    for k, (batch, records, start, end) in enumerate(batches):
        want = ref.step(end, records, end - start, start - batch)
        got = c.on_batch_completed(_info(batch, {1: records}, start, end))
        if k == 0:  # provisional: the first batch's processing rate, less the headroom
            assert want is None and got == pytest.approx(0.75 * records / (end - start))
        else:
            assert got == pytest.approx(0.75 * want, rel=1e-12)  # type: ignore[operator]
        assert c.latest_rate() == got
    with pytest.raises(ValueError, match="headroom"):
        RateController("s", [1], PIDRateEstimator(1.0), headroom=1.0)


def test_the_processing_rate_of_the_last_batches_caps_the_estimate() -> None:
    """A batch that ran fast after slower ones: the estimate follows it (Spark's formula),
    the bound does not go above the rate of the window's batches, records over seconds."""
    c = RateController("s", [1], PIDRateEstimator(1.0, min_rate=1.0), headroom=0.1, rate_window=3)
    ref = Formula(1.0, 1.0, 0.2, 0.0, 1.0)
    # (batch, records, start, end): 500 rec/s, 400 rec/s, no records, 1000 rec/s, 900 rec/s.
    batches = [(1.0, 250, 1.0, 1.5), (2.0, 200, 2.0, 2.5), (3.0, 0, 3.0, 3.01),
               (4.0, 400, 4.0, 4.4), (5.0, 450, 5.0, 5.5)]
    got = [c.on_batch_completed(_info(b, {1: n}, s, e)) for b, n, s, e in batches]
    estimates = [ref.step(e, n, e - s, s - b) if n else None for b, n, s, e in batches]
    assert estimates[0] is None and estimates[2] is None
    # The first batch: provisional, its own rate. The second: the estimate (400), below
    # the window's rate (450 records in 1.0 s). The empty batch: no update, not counted.
    assert got[:3] == [pytest.approx(0.9 * 500), pytest.approx(0.9 * estimates[1]), None]
    assert estimates[1] == pytest.approx(400.0)
    # The fast batch: Spark would take its 1000 rec/s; the window's three batches give 850
    # records in 1.4 s.
    assert estimates[3] == pytest.approx(1000.0)
    assert got[3] == pytest.approx(0.9 * (250 + 200 + 400) / (0.5 + 0.5 + 0.4))
    # The window moves on: the oldest batch leaves it.
    window_rate = (200 + 400 + 450) / (0.5 + 0.4 + 0.5)
    assert window_rate < estimates[4]  # type: ignore[operator]
    assert got[4] == pytest.approx(0.9 * window_rate)
    assert c.latest_rate() == got[4]
    with pytest.raises(ValueError, match="rate_window"):
        RateController("s", [1], PIDRateEstimator(1.0), rate_window=-1)


async def test_headroom_and_rate_window_come_from_the_configuration() -> None:
    ssc = StreamingContext(1.0, master="local", clock=ManualClock(),
                           conf={"backpressure_enabled": True})
    controller = ssc.receiver_stream(Endless()).rate_controller  # type: ignore[attr-defined]
    assert (controller.headroom, controller.rate_window) == (0.1, 5)
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigurationError, match="backpressure_headroom"):
            StreamingConf(backpressure_headroom=bad)
    with pytest.raises(ConfigurationError, match="backpressure_rate_window"):
        StreamingConf(backpressure_rate_window=-1)


def test_listeners_hear_every_new_estimate() -> None:
    c = RateController("s", [1], PIDRateEstimator(1.0, min_rate=1.0))
    heard: list[float] = []
    c.subscribe(lambda controller, rate: heard.append(rate))
    for k in range(1, 5):
        c.on_batch_completed(_info(float(k), {1: 100 * k}, float(k), k + 0.5))
    assert heard == [pytest.approx(200.0 * k) for k in range(1, 5)]


@pytest.mark.parametrize(
    ("stream_rate", "receivers", "max_rate", "each"),
    [
        (None, 1, 0.0, 0.0),  # no bound, no cap: unlimited
        (None, 2, 40.0, 40.0),  # no estimate yet: the cap alone
        (300.0, 3, 0.0, 100.0),  # split evenly
        (300.0, 3, 50.0, 50.0),  # never above the cap
        (300.0, 3, 150.0, 100.0),
    ],
)
def test_receiver_rate_splits_the_bound_and_caps_it(stream_rate, receivers, max_rate, each) -> None:  # type: ignore[no-untyped-def]
    assert receiver_rate(stream_rate, receivers, max_rate) == each


# ---- the bound at the receivers, in BatchInfo and for listeners ------------------------------


async def test_the_bound_reaches_the_receiver_the_batch_metadata_and_the_listeners() -> None:
    """A job that takes 0.1 s + 4 ms per record (250 rec/s at most) under a source that
    offers without end: the first batch takes the initial rate, then every estimate the
    formula gives (from the very BatchInfos) is posted, bounds the receiver and is the
    bound the next batch records."""
    clock = ManualClock()
    conf = {**ON, "spark.streaming.backpressure.initialRate": "200",
            "spark.streaming.backpressure.pid.minRate": "10"}
    events = RateEvents()
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        stream = ssc.receiver_stream(Endless())
        out = SlowOutput(stream, clock, per_record=0.004, overhead=0.1)
        ssc.add_streaming_listener(events)
        await ssc.start()
        await run_until(ssc, 12, out)
        limiter: RateLimiter = ssc._receiver_tracker.generators[stream.id].rate_limiter  # type: ignore[attr-defined]
        history = ssc.batch_history
    controller = stream.rate_controller  # type: ignore[attr-defined]
    assert limiter.rate == controller.latest_rate() == events.events[-1].rate
    assert len(events.events) == controller.updates
    ref = Formula(1.0, 1.0, 0.2, 0.0, 10.0)
    expected = []
    for info in history:
        end, proc, sched = info.processing_end_time, info.processing_delay, info.scheduling_delay
        rate = ref.step(end, info.num_records, proc, sched)  # type: ignore[arg-type]
        if rate is not None:
            expected.append((info.batch_time, rate))
    assert [(e.batch_time, e.rate) for e in events.events] == [
        (t, pytest.approx(r, rel=1e-9)) for t, r in expected
    ]
    assert all(e.stream_ids == (stream.id,) for e in events.events)  # type: ignore[attr-defined]
    bounds = [info.stream_id_to_input_info[stream.id].metadata["rate_bound"] for info in history]  # type: ignore[attr-defined]
    assert bounds[0] == 200.0
    assert history[0].num_records <= 201
    # Every later batch records the initial rate or an estimate known when it was cut.
    posted = [200.0, *(r for _, r in expected)]
    for bound in bounds:
        assert any(bound == pytest.approx(r, rel=1e-12) for r in posted)
    for info, bound in zip(history, bounds, strict=True):
        assert info.num_records <= bound * 1.0 + bound  # one batch plus at most 1 s of burst


async def test_receiver_max_rate_caps_the_bound() -> None:
    clock = ManualClock()
    conf = {**ON, "spark.streaming.receiver.maxRate": "50",
            "spark.streaming.backpressure.initialRate": "1000"}
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        stream = ssc.receiver_stream(Endless())
        out = SlowOutput(stream, clock, per_record=0.001)  # 1000 rec/s: the estimate stays high
        await ssc.start()
        await run_until(ssc, 6, out)
        limiter = ssc._receiver_tracker.generators[stream.id].rate_limiter  # type: ignore[attr-defined]
        assert stream.rate_controller.latest_rate() > 50  # type: ignore[attr-defined]
        assert limiter.rate == 50.0
    history = ssc.batch_history
    assert [i.stream_id_to_input_info[stream.id].metadata["rate_bound"] for i in history] == [50.0] * 6  # type: ignore[attr-defined]
    assert all(i.num_records <= 51 for i in history)


async def test_receivers_sharing_a_bound_each_get_an_even_share() -> None:
    clock = ManualClock()
    conf = {**ON, "spark.streaming.backpressure.initialRate": "300",
            "spark.streaming.backpressure.pid.minRate": "10"}
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        parts = [ssc.receiver_stream(Endless(start=k * 10**6)) for k in range(3)]
        shared = share_rate_controller(parts, "three receivers")  # type: ignore[arg-type]
        assert shared is not None and all(p.rate_controller is shared for p in parts)  # type: ignore[attr-defined]
        out = SlowOutput(ssc.union(*parts), clock, per_record=0.005)  # 200 rec/s in all
        await ssc.start()
        limiters = [ssc._receiver_tracker.generators[p.id].rate_limiter for p in parts]  # type: ignore[attr-defined]
        assert [lim.rate for lim in limiters] == [100.0] * 3
        await run_until(ssc, 10, out)
        assert shared.updates >= 5
        assert [lim.rate for lim in limiters] == [pytest.approx(shared.latest_rate() / 3)] * 3  # type: ignore[operator]
    first = ssc.batch_history[0]
    assert sum(first.stream_id_to_num_records.values()) <= 303
    assert first.stream_id_to_input_info[parts[0].id].metadata["rate_bound"] == 300.0  # type: ignore[attr-defined]


async def test_without_backpressure_nothing_is_bounded_or_posted() -> None:
    clock = ManualClock()
    events = RateEvents()
    conf = {"spark.streaming.receiver.maxRate": "100"}
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        stream = ssc.receiver_stream(Endless())
        out = SlowOutput(stream, clock, per_record=0.001)
        ssc.add_streaming_listener(events)
        await ssc.start()
        await run_until(ssc, 3, out)
    assert events.events == []
    assert all("rate_bound" not in i.stream_id_to_input_info[0].metadata for i in ssc.batch_history)


async def test_a_decoded_streams_dead_letters_count_toward_its_bound() -> None:
    """The receiver took both the records that decoded and those that did not: the bound
    is on what it takes, so the dead letters count too (they have no bound of their own)."""
    ssc = StreamingContext(1.0, master="local", clock=ManualClock(), conf=ON)
    stream = ssc.mqtt_stream("127.0.0.1", 1883, "readings/#")
    dead = stream.dead_letters()
    assert dead.rate_controller is None
    controller = stream.rate_controller  # type: ignore[union-attr]
    assert controller is not None and controller.stream_ids == (stream.id,)  # type: ignore[union-attr]
    rate = controller.on_batch_completed(_info(1.0, {stream.id: 80, dead.id: 20}, 1.0, 2.0))  # type: ignore[union-attr]
    assert rate == pytest.approx(100.0)
