"""MQTT ingest: throughput against mosquitto's own ceiling, and event-loop lag (issue 14).

A private mosquitto (tests/brokers.py, state in memory) is fed by separate publisher
processes writing pre-encoded PUBLISH packets (MQTT 3.1.1, QoS 1, ~130-byte JSON readings
of 1,000 devices) to raw sockets; they cost a few percent of a core each, so the broker and
its subscriber are what is measured. Three parts, in one run:

1. mosquitto's ceiling here: ``mosquitto_sub -q 1`` to /dev/null receives ``total``
   messages the publishers send as fast as the broker takes them: messages/s from the first
   publish to the subscriber's exit.
2. The engine at full speed, the same way: ``mqtt_stream`` (QoS 1, write-ahead log on,
   fsync per block) -> parse (orjson) -> (device, (1, temp)) -> reduce_by_key_and_window
   (10 s, sliding 1 s, inverse function) -> FileSink (JSON lines, fsynced), local[2], 1 s
   batches: messages/s from the first publish to the completion of the batch that holds the
   last message, every message counted by the window's input (nothing lost).
3. Event-loop lag at a fixed offered 50,000 msg/s, QoS 0 and 1, WAL off and on (20 s
   each): a task sleeping 10 ms records how late it wakes; delays of the batches.

    python -m bench.mqtt_ingest [--quick]

Writes bench/results/mqtt_ingest.json and bench/results/mqtt_ingest.md.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiostream_engine import StreamingContext  # noqa: E402
from aiostream_engine.sinks import FileSink  # noqa: E402
from tests.brokers import Mosquitto  # noqa: E402

from .cost_cli import run_benchmark  # noqa: E402
from .cpu_share import CpuShare  # noqa: E402
from .loop_lag import LoopLagMonitor  # noqa: E402

TOPICS = "bench/#"
#: Receive Maximum of the engine's QoS 1 runs: a block is cut at half of it (10,000 messages).
INFLIGHT = 20_000
LAG_RATE = 50_000.0
LAG_TARGET_MS = 20.0
TARGET = 150_000.0
PUBLISHERS = 2

# Runs in its own process: publish ``total`` readings (``rate`` msg/s, 0 = as fast as the
# broker takes them), then print a summary. 65,535 distinct readings are encoded up front.
PUBLISHER = r"""
import json, socket, sys, threading, time
import orjson
from aiostream_engine.sources.mqtt_protocol import encode_connect, encode_publish

host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
total, qos, rate = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
packets, size = [], 0
for seq in range(65535):
    payload = orjson.dumps({"device": f"dev-{seq % 1000:04d}", "ts": round(1.7e9 + seq / 1e4, 3),
                            "temp": 20.0 + (seq % 97) / 10, "hum": 40.0 + (seq % 31),
                            "site": "plant-7", "line": seq % 8, "seq": seq,
                            "unit": "celsius", "fw": "2.4.1"})
    size += len(payload)
    packets.append(encode_publish(f"bench/plant-7/{seq % 8}", payload, qos=qos,
                                  packet_id=seq + 1, protocol="3.1.1"))
sock = socket.create_connection((host, port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
sock.sendall(encode_connect(name, protocol="3.1.1", keepalive=0))
assert sock.recv(4)[:2] == b"\x20\x02", "CONNACK"
acked = [0]
def drain():
    while data := sock.recv(1 << 16):
        acked[0] += len(data)
if qos:
    threading.Thread(target=drain, daemon=True).start()
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()  # go
start = time.time()
sent, chunk = 0, 2000
while sent < total:
    if rate:
        time.sleep(max(0.0, start + sent / rate - time.time()))
        due = min(total, int((time.time() - start) * rate) + int(rate * 0.01))
    else:
        due = min(total, sent + chunk)
    if due > sent:
        sock.sendall(b"".join([packets[i % 65535] for i in range(sent, due)]))
        sent = due
elapsed = time.time() - start
while qos and acked[0] < 4 * total and time.time() < start + elapsed + 30:
    time.sleep(0.01)
sock.sendall(b"\xe0\x00")
print(json.dumps({"sent": sent, "bytes_avg": size / 65535, "start": start, "seconds": elapsed,
                  "acked": acked[0] // 4}), flush=True)
"""


class Publishers:
    """``count`` publisher processes, started and connected before the clock starts."""

    def __init__(self, broker: Mosquitto, total: int, qos: int, rate: float, count: int) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, broker.host, str(broker.port), f"pub-{i}",
                 str(total // count), str(qos), str(rate / count)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for i in range(count)
        ]
        for process in self.processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def go(self) -> float:
        started = time.time()
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        return started

    def results(self) -> list[dict[str, Any]]:
        out = []
        for process in self.processes:
            stdout, _ = process.communicate(timeout=600)
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out


def in_memory_broker(workdir: Path) -> Mosquitto:
    broker = Mosquitto(workdir / "broker", persistent=False)
    broker.start()
    return broker


def ceiling(total: int) -> dict[str, Any]:
    """mosquitto_sub -q 1 to /dev/null: the broker's own delivery rate here."""
    workdir = Path(tempfile.mkdtemp(prefix="mqtt-ceiling-"))
    broker = in_memory_broker(workdir)
    try:
        subscriber = subprocess.Popen(
            [shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub", "-h", broker.host,
             "-p", str(broker.port), "-t", TOPICS, "-q", "1", "-C", str(total), "-i", "ceiling"],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # subscribed (its SUBACK is not visible from here)
        publishers = Publishers(broker, total, 1, 0.0, PUBLISHERS)
        cpu = CpuShare({"broker": [broker.pid or 0], "publishers": publishers.pids})
        started = publishers.go()
        subscriber.wait(timeout=600)
        ended = time.time()
        cpu_used = cpu.seconds()
        published = publishers.results()
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"total": total, "seconds": ended - started, "messages_per_s": total / (ended - started),
            "publishers": published, "cpu_seconds": cpu_used}


def add(a: tuple[int, float], b: tuple[int, float]) -> tuple[int, float]:
    return a[0] + b[0], a[1] + b[1]


def sub(a: tuple[int, float], b: tuple[int, float]) -> tuple[int, float]:
    return a[0] - b[0], a[1] - b[1]


def pair(record: Any) -> tuple[str, tuple[int, float]]:
    return record.payload["device"], (1, record.payload["temp"])


async def engine_run(
    total: int, qos: int, wal: bool, rate: float, warmup: float = 0.0
) -> dict[str, Any]:
    """The pipeline over ``total`` messages offered at ``rate`` (0: full speed)."""
    workdir = Path(tempfile.mkdtemp(prefix="mqtt-ingest-"))
    broker = in_memory_broker(workdir)
    conf: dict[str, Any] = {"receiver_wal_enable": wal, "receiver_wal_fsync": "block"}
    lag = LoopLagMonitor()
    try:
        async with StreamingContext(1.0, master="local[2]", conf=conf) as ssc:
            ssc.checkpoint(str(workdir / "checkpoint"))
            stream = ssc.mqtt_stream(broker.host, broker.port, TOPICS, qos=qos,
                                     client_id="bench-engine", max_inflight=INFLIGHT)
            window = stream.map(pair).reduce_by_key_and_window(add, sub, 10.0, 1.0)
            window.write_to(FileSink(workdir / "out", format="json"))
            await ssc.start()
            publishers = await anyio.to_thread.run_sync(
                Publishers, broker, total, 1 if qos else 0, rate, PUBLISHERS
            )
            cpu = CpuShare({"broker": [broker.pid or 0], "publishers": publishers.pids})
            async with anyio.create_task_group() as tg:
                tg.start_soon(lag.run)
                started = publishers.go()
                with anyio.fail_after(600):
                    while sum(b.stream_id_to_num_records.get(stream.id, 0)
                              for b in ssc.batch_history) < total:
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            cpu_used = cpu.seconds()
            published = await anyio.to_thread.run_sync(publishers.results)
            history = ssc.batch_history
            receiver = stream.receiver  # type: ignore[union-attr]
            await ssc.stop()
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    counted = 0
    done_at = None
    for info in history:
        counted += info.stream_id_to_num_records.get(stream.id, 0)
        if counted >= total and done_at is None:
            done_at = info.processing_end_time
    steady = [b for b in history if b.batch_time >= started + warmup and b.num_records]
    scheduling = [b.scheduling_delay or 0.0 for b in steady] or [0.0]
    processing = [b.processing_delay or 0.0 for b in steady] or [0.0]
    lag_summary = lag.summary()
    return {
        "qos": qos, "wal": wal, "offered_rate": rate or None, "total": total,
        "counted": counted, "published": sum(p["sent"] for p in published),
        "seconds": (done_at or time.time()) - started,
        "messages_per_s": total / ((done_at or time.time()) - started),
        "avg_payload_bytes": published[0]["bytes_avg"],
        "scheduling_delay_p50_s": statistics.median(scheduling),
        "scheduling_delay_max_s": max(scheduling),
        "processing_delay_p50_s": statistics.median(processing),
        "processing_delay_max_s": max(processing),
        "receiver_pauses": receiver.pauses,
        "cpu_seconds": cpu_used,
        **lag_summary,
    }


def run(quick: bool, say: Any = print) -> dict[str, Any]:
    total = 1_000_000 if quick else 3_000_000
    lag_seconds = 5.0 if quick else 20.0
    say(f"ceiling: mosquitto_sub, {total:,} messages ...")
    top = ceiling(total)
    say(f"  {top['messages_per_s']:,.0f} msg/s")
    say(f"engine: QoS 1, WAL on, {total:,} messages at full speed ...")
    engine = anyio.run(engine_run, total, 1, True, 0.0, backend_options={"use_uvloop": True})
    say(f"  {engine['messages_per_s']:,.0f} msg/s, loop lag p99 {engine['loop_lag_p99_ms']:.1f} ms")
    lag_runs = []
    for qos in (0, 1):
        for wal in (False, True):
            say(f"lag: QoS {qos}, WAL {'on' if wal else 'off'}, {LAG_RATE:,.0f} msg/s ...")
            result = anyio.run(engine_run, int(LAG_RATE * (lag_seconds + 3)), qos, wal, LAG_RATE, 2.0,
                               backend_options={"use_uvloop": True})
            say(f"  loop lag p99 {result['loop_lag_p99_ms']:.1f} ms")
            lag_runs.append(result)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": os.getloadavg(),
        "ceiling": top, "engine": engine, "lag": lag_runs,
    }


def table(r: dict[str, Any]) -> str:
    top, engine = r["ceiling"], r["engine"]
    share = engine["messages_per_s"] / top["messages_per_s"]
    top_mb = top["messages_per_s"] * engine["avg_payload_bytes"] / 1e6
    lines = [
        "# MQTT ingest (bench/mqtt_ingest.py)",
        "",
        f"{r['machine']}; load average at the end {r['load_average'][0]:.1f} (shared machine). "
        f"mosquitto 2.0 on loopback, state in memory; {PUBLISHERS} publisher processes writing "
        "pre-encoded MQTT 3.1.1 QoS 1 PUBLISH packets of ~"
        f"{engine['avg_payload_bytes']:.0f}-byte JSON readings. Engine: mqtt_stream (MQTT 5, "
        f"Receive Maximum {INFLIGHT:,}) -> orjson parse -> reduce_by_key_and_window(10 s, 1 s, "
        "inverse) -> FileSink (JSON lines, fsynced), local[2], 1 s batches.",
        "",
        "## Throughput at full speed (QoS 1)",
        "",
        "| subscriber | messages | seconds | msg/s | MB/s (payload) | share of mosquitto_sub "
        "| cores used: broker / publishers / engine driver / engine workers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| mosquitto_sub -q 1 > /dev/null | {top['total']:,} | {top['seconds']:.1f} | "
        f"{top['messages_per_s']:,.0f} | {top_mb:.1f} | 1.00 | "
        f"{_cores(top, 'broker', 'publishers')} / - / - |",
        f"| aiostream-engine, WAL on (fsync per block) | {engine['counted']:,} of {engine['published']:,} | "
        f"{engine['seconds']:.1f} | {engine['messages_per_s']:,.0f} | "
        f"{engine['messages_per_s'] * engine['avg_payload_bytes'] / 1e6:.1f} | {share:.2f} | "
        f"{_cores(engine, 'broker', 'publishers', 'driver', 'workers')} |",
        "",
        f"Target: {TARGET:,.0f} msg/s, or 0.90 of mosquitto's own ceiling here: "
        f"{_verdict(engine['messages_per_s'], top['messages_per_s'])}. Cores used: CPU seconds "
        "of each process over the run's seconds (mosquitto is one thread; the subscriber's "
        "own CPU is not sampled, it exits first). Engine run: "
        f"loop lag p50 / p99 {engine['loop_lag_p50_ms']:.1f} / {engine['loop_lag_p99_ms']:.1f} ms, "
        f"processing delay p50 {engine['processing_delay_p50_s']:.2f} s, scheduling delay max "
        f"{engine['scheduling_delay_max_s']:.2f} s.",
        "",
        f"## Event-loop lag at {LAG_RATE:,.0f} msg/s offered",
        "",
        f"Target: p99 under {LAG_TARGET_MS:.0f} ms.",
        "",
        "| QoS | WAL | msg/s | loop lag p50 / p99 / max (ms) | target | sched. delay p50 / max (s) "
        "| proc. delay p50 / max (s) | counted / sent | engine driver / workers (cores) |",
        "| --- | --- | ---: | --- | --- | --- | --- | ---: | --- |",
    ]
    for run in r["lag"]:
        lines.append(
            f"| {run['qos']} | {'on' if run['wal'] else 'off'} | {run['messages_per_s']:,.0f} | "
            f"{run['loop_lag_p50_ms']:.1f} / {run['loop_lag_p99_ms']:.1f} / {run['loop_lag_max_ms']:.1f} | "
            f"{'met' if run['loop_lag_p99_ms'] < LAG_TARGET_MS else 'missed'} | "
            f"{run['scheduling_delay_p50_s']:.3f} / {run['scheduling_delay_max_s']:.3f} | "
            f"{run['processing_delay_p50_s']:.3f} / {run['processing_delay_max_s']:.3f} | "
            f"{run['counted']:,} / {run['published']:,} | {_cores(run, 'driver', 'workers')} |"
        )
    return "\n".join(lines) + "\n"


def _cores(run: dict[str, Any], *roles: str) -> str:
    """CPU seconds of each role over the run's seconds."""
    return " / ".join(f"{run['cpu_seconds'][role] / run['seconds']:.2f}" for role in roles)


def _verdict(engine: float, ceiling: float) -> str:
    if engine >= TARGET:
        return "met"
    if engine >= 0.9 * ceiling:
        return (f"{TARGET:,.0f} not reached, mosquitto's own ceiling here is {ceiling:,.0f}; "
                f"the engine at {engine / ceiling:.2f} of it: met")
    return f"missed ({engine / ceiling:.2f} of mosquitto's ceiling)"


def main() -> None:
    run_benchmark("mqtt_ingest", __doc__.split("\n")[0], "short runs", run, table)


if __name__ == "__main__":
    main()
