"""What the web UI adds to a batch (issue 15: less than 1 ms), measured two ways in one run.

1. *Listener work per batch*: the UI's three listeners (status, metrics, live feed) take
   one batch's events (submitted, started, an output operation started and completed per
   output, completed) with the full history retained (``retained_batches`` completed
   batches) and 0 or 10 pages following the live feed (each page's queue drained, as a
   connected page does). Median and p99 over many batches; this is all the UI does on the
   event loop for a batch.
2. *End to end*: the IoT demo pipeline at a 0.1 s batch interval on a real clock, the UI
   off and then on with 5 pages following the live feed over HTTP and /metrics scraped
   every second (by a separate process, as browsers and Prometheus are): the event
   loop's CPU time per batch (what the UI adds to the loop, whatever else the machine
   runs), the total delay's median and p99 and the loop's lag; the peer is the same job
   without the UI, runs alternated.

    flock /work/locks/bench.lock python -m bench.ui_overhead [--quick]

Writes bench/results/ui_overhead.json and .md (not with ``--quick``); prints a line per
step.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.demo import attach_demo
from aiostream_engine.scheduler.batch_info import BatchInfo, OutputOperationInfo, StreamInputInfo
from aiostream_engine.scheduler.listener import (
    BatchCompleted,
    BatchStarted,
    BatchSubmitted,
    OutputOperationCompleted,
    OutputOperationStarted,
)

from .loop_lag import LoopLagMonitor
from .method import percentile

RESULTS = Path(__file__).resolve().parent / "results"
#: Seconds of an end-to-end run before measuring (start-up, the pages connecting).
WARM_UP = 3.0


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- 1. listener work per batch ---------------------------------------------------------


def _batch(i: int, outputs: int) -> BatchInfo:
    t = 1.0 + i * 0.1
    info = BatchInfo(t, {0: StreamInputInfo(0, 200, {}), 1: StreamInputInfo(1, 3, {"rate_bound": 2000.0})}, t)
    info.processing_start_time = t + 0.001
    info.output_operation_infos = {
        k: OutputOperationInfo(t, k, f"foreach_rdd {k}", t + 0.001, t + 0.02) for k in range(outputs)
    }
    info.processing_end_time = t + 0.02
    return info


def _events(info: BatchInfo) -> list[Any]:
    ops = list(info.output_operation_infos.values())
    return [
        BatchSubmitted(info), BatchStarted(info),
        *[e for op in ops for e in (OutputOperationStarted(op), OutputOperationCompleted(op))],
        BatchCompleted(info),
    ]


def _deliver(listeners: list[Any], event: Any) -> None:
    from aiostream_engine.scheduler.listener import _HANDLERS

    snake, _ = _HANDLERS[type(event)]
    for listener in listeners:
        handler = getattr(listener, snake, None)
        if handler is not None:
            handler(event)


async def listener_cost(batches: int, clients: int, retained: int = 1000, outputs: int = 2) -> dict[str, Any]:
    conf = {"ui_enabled": False, "block_interval": 0.05}
    async with StreamingContext(0.1, master="local", clock=ManualClock(), conf=conf) as ssc:
        ssc.simulator_stream(num_devices=5, rate=10).foreach_rdd(lambda rdd: None)
        ssc.queue_stream([[1]]).foreach_rdd(lambda rdd: None)
        ui = ssc._ui_runtime()
        ui.graph_built()
        listeners = [ui.status, ui.metrics, ui.feed]
        for i in range(retained):  # a full history, as in a long run
            for event in _events(_batch(i, outputs)):
                _deliver(listeners, event)
        queues = [ui.feed.subscribe() for _ in range(clients)]
        per_batch = []
        for i in range(retained, retained + batches):
            events = _events(_batch(i, outputs))
            began = time.perf_counter()
            for event in events:
                _deliver(listeners, event)
            per_batch.append(time.perf_counter() - began)
            for queue in queues:  # the pages read what they were sent
                while True:
                    try:
                        queue.receive_nowait()
                    except anyio.WouldBlock:
                        break
        assert ui.feed.clients == clients, "a page was dropped while draining its queue"
    return {
        "clients": clients, "batches": batches, "retained": retained, "outputs": outputs,
        "median_us": percentile(per_batch, 50) * 1e6, "p99_us": percentile(per_batch, 99) * 1e6,
    }


# ---- 2. end to end ----------------------------------------------------------------------


async def _follow(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        async with client.stream("GET", "api/ui/events") as response:
            async for _ in response.aiter_lines():
                pass


async def _scrape(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        while True:
            (await client.get("metrics")).raise_for_status()
            (await client.get("api/ui/summary")).raise_for_status()
            await anyio.sleep(1.0)


async def pages_process(url: str, pages: int, seconds: float) -> None:
    """The browsers' side, in its own process (as browsers are): ``pages`` live feeds and
    a scrape of /metrics and the summary every second, for ``seconds``."""
    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            for _ in range(pages):
                tg.start_soon(_follow, url)
            tg.start_soon(_scrape, url)


async def end_to_end(ui: bool, seconds: float, pages: int = 5) -> dict[str, Any]:
    conf = {"ui_enabled": ui, "ui_port": 0, "block_interval": 0.05}
    lag = LoopLagMonitor()
    async with StreamingContext(0.1, master="local[2]", conf=conf) as ssc:
        readings = ssc.simulator_stream(num_devices=50, rate=5000, seed=1)
        attach_demo(ssc, readings, io.StringIO())
        await ssc.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lag.run)
            if ui:
                assert ssc.ui_url is not None
                command = [sys.executable, "-m", "bench.ui_overhead", "--pages",
                           ssc.ui_url, str(pages), str(seconds + WARM_UP + 5)]
                browsers = await anyio.open_process(command, cwd=Path(__file__).parent.parent)
            await anyio.sleep(WARM_UP)
            cpu_before, done_before = time.thread_time(), len(ssc.batch_history)
            await anyio.sleep(seconds)
            cpu = time.thread_time() - cpu_before  # this thread runs the event loop
            batches_in_window = len(ssc.batch_history) - done_before
            clients = ssc._ui.feed.clients if ssc._ui is not None else 0
            dropped = ssc._ui.feed.dropped if ssc._ui is not None else 0
            tg.cancel_scope.cancel()
        if ui:
            browsers.terminate()
            await browsers.wait()
        history = ssc.batch_history[-batches_in_window:]
        await ssc.stop()
    delays = [b.total_delay for b in history if b.total_delay is not None]
    return {
        "ui": ui, "pages": pages if ui else 0, "pages_following_at_end": clients,
        "pages_dropped": dropped, "batches": len(delays),
        "loop_cpu_per_batch_ms": cpu / max(1, batches_in_window) * 1e3,
        "total_delay_median_ms": percentile(delays, 50) * 1e3,
        "total_delay_p99_ms": percentile(delays, 99) * 1e3,
        **lag.summary(),
    }


# ---- the run ----------------------------------------------------------------------------


async def run(quick: bool) -> dict[str, Any]:
    batches = 300 if quick else 3000
    seconds = 5.0 if quick else 30.0
    listener = []
    for clients in (0, 10):
        say(f"listener work per batch, {clients} pages following, {batches} batches ...")
        listener.append(await listener_cost(batches, clients))
        say(f"  median {listener[-1]['median_us']:.0f} us, p99 {listener[-1]['p99_us']:.0f} us")
    runs = []
    for ui in (False, True, False, True):  # alternated: the machine's noise hits both
        say(f"end to end, UI {'on, 5 pages + scrapes' if ui else 'off'}, {seconds:g} s ...")
        runs.append(await end_to_end(ui, seconds))
        r = runs[-1]
        say(f"  loop CPU per batch {r['loop_cpu_per_batch_ms']:.2f} ms, total delay median "
            f"{r['total_delay_median_ms']:.1f} ms, p99 {r['total_delay_p99_ms']:.1f} ms")
    return {"quick": quick, "listener": listener, "end_to_end": runs}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Web UI overhead per batch (issue 15: < 1 ms)",
        "",
        "Listener work per batch (status + metrics + live feed; full history retained):",
        "",
        "| pages following | batches | median | p99 |",
        "| --- | --- | --- | --- |",
    ]
    for r in result["listener"]:
        lines.append(f"| {r['clients']} | {r['batches']} | {r['median_us']:.0f} us | {r['p99_us']:.0f} us |")
    lines += [
        "",
        "End to end (demo pipeline, 0.1 s batches, 5000 readings/s, local[2]; UI runs with 5",
        "pages on the live feed and /metrics + summary scraped every second):",
        "",
        "| UI | batches | loop CPU per batch | total delay median | p99 | loop lag p50 | p99 "
        "| pages dropped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["end_to_end"]:
        lines.append(
            f"| {'on' if r['ui'] else 'off'} | {r['batches']} | {r['loop_cpu_per_batch_ms']:.2f} ms "
            f"| {r['total_delay_median_ms']:.1f} ms "
            f"| {r['total_delay_p99_ms']:.1f} ms | {r['loop_lag_p50_ms']:.2f} ms "
            f"| {r['loop_lag_p99_ms']:.2f} ms | {r['pages_dropped']} |"
        )
    def mean(key: str, ui: bool) -> float:
        values = [r[key] for r in result["end_to_end"] if r["ui"] is ui]
        return sum(values) / len(values)

    added = mean("loop_cpu_per_batch_ms", True) - mean("loop_cpu_per_batch_ms", False)
    lines += [
        "",
        f"Event-loop CPU per batch, UI on - off: {added:.2f} ms (the UI's whole cost on the "
        "engine's loop: listeners, the live feed to 5 pages, the scrapes).",
        f"Median total delay, UI on / off: {mean('total_delay_median_ms', True):.1f} / "
        f"{mean('total_delay_median_ms', False):.1f} ms (the pages' process shares the 2 cores).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run; print only")
    parser.add_argument("--pages", nargs=3, metavar=("URL", "N", "SECONDS"),
                        help="(internal) be the browsers of an end-to-end run")
    args = parser.parse_args()
    if args.pages:
        url, pages, seconds = args.pages
        anyio.run(pages_process, url, int(pages), float(seconds))
        return
    result = anyio.run(run, args.quick)
    table = markdown(result)
    print(table)
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "ui_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "ui_overhead.md").write_text(table)


if __name__ == "__main__":
    main()
