"""The IoT demo behind ``aiostream-engine demo``: simulated sensors, per-device aggregates.

Pipeline (each batch)::

    simulator_stream -> parse JSON (broken readings are counted, then dropped)
                     -> key by device_id -> reduce_by_key to (count, temp sum, humidity sum)
                     -> print the hottest devices' averages

and a listener prints each completed batch's statistics (records, scheduling delay,
processing time) from its BatchInfo. ``aggregate_readings`` is the pipeline on its own, so
tests (and users) can run it on a ManualClock.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import anyio
import orjson

from .context import StreamingContext
from .dstream.base import DStream
from .scheduler.batch_info import BatchInfo
from .scheduler.listener import BatchCompleted, StreamingListener

#: Key under which a batch's unparsable readings are counted (no device id looks like it).
MALFORMED = "!malformed"

Aggregate = tuple[int, float, float]  # (readings, sum of temp, sum of humidity)


def parse_reading(line: str | bytes) -> tuple[str, Aggregate]:
    """``(device_id, (1, temp, humidity))``; ``(MALFORMED, (1, 0.0, 0.0))`` for a reading
    that is not valid JSON or lacks a field."""
    try:
        reading = orjson.loads(line)
        return reading["device_id"], (1, float(reading["temp"]), float(reading["humidity"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return MALFORMED, (1, 0.0, 0.0)


def add_aggregates(a: Aggregate, b: Aggregate) -> Aggregate:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def subtract_aggregates(a: Aggregate, b: Aggregate) -> Aggregate:
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


def has_readings(pair: tuple[str, Aggregate]) -> bool:
    return pair[1][0] > 0


def window_span(batch_interval: float, window: float, slide: float = 1.0) -> tuple[float, float]:
    """(window, slide) rounded to whole batches, as the window operations require."""
    slide_batches = max(1, round(slide / batch_interval))
    window_batches = max(slide_batches, round(window / (slide_batches * batch_interval)) * slide_batches)
    return window_batches * batch_interval, slide_batches * batch_interval


def windowed_averages(per_batch: DStream, window: float, slide: float) -> DStream:
    """Per device over the last ``window`` seconds, every ``slide``: (count, sums), kept
    incrementally (add what enters, subtract what leaves); devices gone quiet drop out."""
    return per_batch.filter(lambda kv: kv[0] != MALFORMED).reduce_by_key_and_window(
        add_aggregates, subtract_aggregates, window, slide, filter_func=has_readings,
        name="demo_window",
    )


def busy(microseconds: float, line: str | bytes) -> str | bytes:
    """Spend ``microseconds`` of CPU on a reading (the demo's stand-in for real work per
    record, so that a modest rate overloads the job), then pass it on."""
    deadline = time.process_time() + microseconds / 1e6
    while time.process_time() < deadline:
        pass
    return line


def aggregate_readings(readings: DStream, num_partitions: int | None = None) -> DStream:
    """Per batch: ``(device_id, (count, temp sum, humidity sum))`` for every device that
    reported, plus ``(MALFORMED, (count, 0.0, 0.0))`` when some readings did not parse."""
    return readings.map(parse_reading).reduce_by_key(add_aggregates, num_partitions)


@dataclass
class DemoTotals:
    batches: int = 0
    readings: int = 0
    malformed: int = 0
    processing: list[float] = field(default_factory=list)
    stats: BatchStatsPrinter | None = None


def format_batch_time(seconds: float) -> str:
    """``HH:MM:SS.mmm`` of a batch time (local time)."""
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S.%f")[:-3]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def format_results(time: float, aggregates: list[tuple[str, Aggregate]], top: int = 5) -> list[str]:
    """The lines printed for one batch: a summary, then the ``top`` hottest devices."""
    per_device = {key: value for key, value in aggregates if key != MALFORMED}
    malformed = dict(aggregates).get(MALFORMED, (0, 0.0, 0.0))[0]
    readings = sum(count for count, _, _ in per_device.values())
    lines = [
        f"== batch {format_batch_time(time)}: {readings} readings from {len(per_device)} "
        f"devices, {malformed} malformed (dropped)"
    ]
    hottest = sorted(per_device.items(), key=lambda kv: (-kv[1][1] / kv[1][0], kv[0]))[:top]
    if hottest:
        lines.append(f"   {'device':<10} {'readings':>8} {'avg temp':>9} {'avg hum':>8}")
        for device, (count, temp, humidity) in hottest:
            lines.append(f"   {device:<10} {count:>8} {temp / count:>9.2f} {humidity / count:>8.1f}")
    return lines


def format_window(window: float, aggregates: list[tuple[str, Aggregate]], top: int = 3) -> str:
    """One line per slide: the window's devices, mean temperature and hottest devices."""
    readings = sum(count for _, (count, _, _) in aggregates)
    if not readings:
        return f"   window {window:g} s: no readings"
    mean = sum(temp for _, (_, temp, _) in aggregates) / readings
    hottest = sorted(aggregates, key=lambda kv: (-kv[1][1] / kv[1][0], kv[0]))[:top]
    shown = ", ".join(f"{device} {temp / count:.2f}" for device, (count, temp, _) in hottest)
    return (
        f"   window {window:g} s: {readings} readings from {len(aggregates)} devices, "
        f"mean temp {mean:.2f}; hottest {shown}"
    )


def format_stats(info: BatchInfo, waiting: int | None = None) -> str:
    """A batch's statistics line; with backpressure also the rate bound its input was
    taken under and, given ``waiting``, the readings still waiting at the source."""
    line = (
        f"   stats {format_batch_time(info.batch_time)}: records {info.num_records}, "
        f"scheduling delay {_ms(info.scheduling_delay)}, "
        f"processing {_ms(info.processing_delay)}, total delay {_ms(info.total_delay)}"
    )
    bounds = [i.metadata["rate_bound"] for i in info.stream_id_to_input_info.values()
              if "rate_bound" in i.metadata]
    if bounds:
        shown = "none yet" if bounds[0] is None else f"{bounds[0]:.0f} records/s"
        line += f", rate bound {shown}"
    if waiting is not None:
        line += f", waiting at the devices {waiting}"
    return line


class BatchStatsPrinter(StreamingListener):
    """Prints a statistics line for every completed batch and keeps the totals."""

    def __init__(
        self,
        totals: DemoTotals,
        write: Callable[[str], Any],
        waiting: Callable[[], int] | None = None,
    ) -> None:
        self.totals = totals
        self._write = write
        self._waiting = waiting
        self.printed: set[float] = set()

    def on_batch_completed(self, event: BatchCompleted) -> None:
        self.show(event.batch_info)

    def show(self, info: BatchInfo) -> None:
        if info.batch_time in self.printed:
            return
        self.printed.add(info.batch_time)
        if info.processing_delay is not None:
            self.totals.processing.append(info.processing_delay)
        self._write(format_stats(info, self._waiting() if self._waiting else None))

    def catch_up(self, history: list[BatchInfo]) -> None:
        """Show batches whose completion event was not delivered (the engine stops its
        listener bus right after the last batch)."""
        for info in history:
            self.show(info)


def attach_demo(
    ssc: StreamingContext,
    readings: DStream,
    out: TextIO | None = None,
    top: int = 5,
    window: float | None = None,
    waiting: Callable[[], int] | None = None,
) -> DemoTotals:
    """Add the demo's output operations and statistics listener to ``ssc``; with
    ``window`` also a sliding view of the last ``window`` seconds, every second (it needs
    ``ssc.checkpoint(directory)``). Lines go to ``out`` (default: ``sys.stdout`` as it
    is when called); ``waiting`` gives the readings waiting at the source, for the
    statistics lines."""
    totals = DemoTotals()
    out = out or sys.stdout

    def write(line: str) -> None:
        print(line, file=out, flush=True)

    async def report(time: float, rdd: Any) -> None:
        aggregates = await rdd.acollect()
        totals.batches += 1
        totals.malformed += dict(aggregates).get(MALFORMED, (0, 0.0, 0.0))[0]
        totals.readings += sum(v[0] for k, v in aggregates if k != MALFORMED)
        for line in format_results(time, aggregates, top):
            write(line)

    per_batch = aggregate_readings(readings)
    per_batch.foreach_rdd(report)
    if window:
        span, slide = window_span(ssc.batch_interval, window)

        async def report_window(rdd: Any) -> None:
            write(format_window(span, await rdd.acollect()))

        windowed_averages(per_batch, span, slide).foreach_rdd(report_window)
    totals.stats = BatchStatsPrinter(totals, write, waiting)
    ssc.add_streaming_listener(totals.stats)
    return totals


def ui_line(ssc: StreamingContext) -> str:
    """Where the web UI is, or why there is none."""
    if ssc.ui_url is not None:
        return f"web UI: {ssc.ui_url} (Prometheus metrics at {ssc.ui_url}metrics)"
    from .ui import ui_available

    if not ui_available():
        return "web UI: off (install it with: pip install 'aiostream-engine[ui]')"
    return "web UI: off (ui_enabled is false)"


def format_summary(totals: DemoTotals) -> str:
    processing = totals.processing
    mean = sum(processing) / len(processing) if processing else math.nan
    return (
        f"stopped: {totals.batches} batches, {totals.readings} readings parsed, "
        f"{totals.malformed} malformed dropped, mean processing {mean * 1000:.1f} ms"
    )


def _waiting(devices: Any, ssc: StreamingContext) -> int:
    return int(devices.waiting(ssc.clock.now()))


async def run_demo(
    *,
    duration: float = 10.0,
    rate: float = 2000,
    devices: int = 50,
    batch_interval: float = 1.0,
    block_interval: float | None = None,
    master: str = "local[2]",
    seed: int = 0,
    malformed_fraction: float = 0.01,
    window: float = 30.0,
    checkpoint_dir: str | None = None,
    out: TextIO | None = None,
    handle_signals: bool = True,
    ui_port: int = 4040,
    source: str = "simulator",
    bootstrap: str | None = None,
    topic: str | None = None,
    backpressure: bool = False,
    work: float = 0.0,
    initial_rate: float = 0.0,
) -> DemoTotals:
    """Run the demo until ``duration`` seconds have passed (0: until Ctrl-C / SIGTERM),
    then stop gracefully: every reading received is processed and printed.

    ``source="kafka"``: the simulated readings go through a Kafka topic on ``bootstrap``
    (``sources.kafka_demo``) and the direct stream reads them.

    With ``backpressure`` the stream takes only what the job processes (set ``rate`` above
    that to see it, or give each reading ``work`` microseconds of CPU; ``initial_rate``
    bounds the first batches): each statistics line shows the bound, and with the
    simulator the readings waiting on the devices."""
    if source not in ("simulator", "kafka"):
        raise ValueError(f"source must be 'simulator' or 'kafka', got {source!r}")
    if source == "kafka" and not bootstrap:
        raise ValueError("the kafka source needs bootstrap servers (--bootstrap HOST:PORT)")
    out = out or sys.stdout
    print(
        f"aiostream-engine demo: {devices} devices, {rate:g} readings/s, batch "
        f"{batch_interval:g} s"
        + ("" if block_interval is None else f", blocks {block_interval:g} s")
        + f", master {master}"
        + (", backpressure on" if backpressure else "")
        + "; "
        + (f"running {duration:g} s" if duration else "running until Ctrl-C"),
        file=out,
        flush=True,
    )
    with contextlib.ExitStack() as cleanup:
        if window and checkpoint_dir is None:
            checkpoint_dir = cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="aiostream-demo-")
            )
        conf: dict[str, Any] = {
            "ui_port": ui_port,
            "backpressure_enabled": backpressure,
            "backpressure_initial_rate": initial_rate,
        }
        if block_interval is not None:
            conf["block_interval"] = block_interval
        async with StreamingContext(batch_interval, master=master, conf=conf) as ssc:
            if checkpoint_dir:
                ssc.checkpoint(checkpoint_dir)
            from .sources.simulator import SensorSimulator

            producer: Any = None
            if source == "kafka":
                from .sources import kafka_demo

                assert bootstrap is not None
                topic = topic or kafka_demo.DEMO_TOPIC
                await kafka_demo.ensure_topic(bootstrap, topic)
                readings = kafka_demo.demo_stream(ssc, bootstrap, topic)
                simulator = SensorSimulator(
                    num_devices=devices, rate=rate, seed=seed, malformed_fraction=malformed_fraction
                )
                producer = functools.partial(kafka_demo.produce_readings, bootstrap, topic, simulator)
            waiting: Callable[[], int] | None = None
            if source == "simulator":
                simulated = SensorSimulator(
                    num_devices=devices, rate=rate, seed=seed, malformed_fraction=malformed_fraction
                )
                readings = ssc.receiver_stream(simulated)
                if backpressure:
                    waiting = functools.partial(_waiting, simulated, ssc)
            if work:
                readings = readings.map(functools.partial(busy, work))
            totals = attach_demo(ssc, readings, out, window=window or None, waiting=waiting)
            await ssc.start()
            print(ui_line(ssc), file=out, flush=True)
            graceful = ssc.conf.stop_gracefully_on_shutdown

            async def stop(reason: str, graceful: bool) -> None:
                print(f"{reason}: stopping {'gracefully' if graceful else 'now'} ...", file=out,
                      flush=True)
                await ssc.stop(graceful=graceful)

            async def watch_signals(tg: Any) -> None:
                import signal

                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        tg.start_soon(stop, name, graceful)
                        break
                    async for _ in signals:  # a second signal: do not wait for the batches
                        tg.cancel_scope.cancel()

            async def stop_after(seconds: float) -> None:
                await anyio.sleep(seconds)
                await stop(f"{seconds:g} s elapsed", True)

            async with anyio.create_task_group() as tg:
                if producer is not None:
                    tg.start_soon(producer, name="kafka demo producer")
                if handle_signals:
                    tg.start_soon(watch_signals, tg)
                if duration:
                    tg.start_soon(stop_after, duration)
                await ssc.await_termination()
                tg.cancel_scope.cancel()
        assert totals.stats is not None
        totals.stats.catch_up(ssc.batch_history)
        print(format_summary(totals), file=out, flush=True)
        return totals
