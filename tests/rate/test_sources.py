"""What a lower bound does at each source: the excess waits at the source (devices, the
directory, the TCP peer), not in the engine. ManualClock; real files and sockets."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import aiomqtt
import anyio
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.sources.simulator import SensorSimulator
from aiostream_engine.testing import advance_batches, collect_batches
from tests.brokers import Mosquitto
from tests.rate.sim import settle

pytestmark = pytest.mark.anyio

# A job that takes no clock time gives no estimate: the initial rate stays the bound.
BOUNDED = {"spark.streaming.backpressure.enabled": "true"}


def bounded(rate: float) -> dict[str, str]:
    return {**BOUNDED, "spark.streaming.backpressure.initialRate": str(rate)}


async def test_a_bounded_simulator_sends_slower_and_the_rest_waits_on_the_devices() -> None:
    simulator = SensorSimulator(num_devices=5, rate=1000, seed=1)
    async with StreamingContext(1.0, master="local", clock=ManualClock(), conf=bounded(100)) as ssc:
        out = collect_batches(ssc.receiver_stream(simulator))
        await ssc.start()
        await settle()
        infos = await advance_batches(ssc, 5)
        stored = ssc._receiver_tracker.generators[0].records_stored
    counts = [i.num_records for i in infos]
    assert all(90 <= n <= 110 for n in counts), counts  # 100/s, not the 1000/s offered
    # Nothing was generated to wait in the engine: what was emitted was stored.
    assert simulator.emitted - stored <= 110
    readings = [json.loads(line) for _, batch in out for line in batch]
    assert [r["seq"] for r in readings] == list(range(len(readings)))  # none lost, in order
    # Each reading is stamped when it was due: the last ones waited on the devices.
    assert readings[-1]["ts"] == pytest.approx(len(readings) / 1000, abs=0.01)
    assert readings[-1]["ts"] < 1.0


def move_in(directory: Path, name: str, lines: int) -> None:
    temporary = directory / f".{name}.tmp"
    temporary.write_text("".join(f"{name}:{i}\n" for i in range(lines)))
    os.rename(temporary, directory / name)


async def test_a_bounded_file_stream_takes_fewer_files_and_the_rest_later(tmp_path: Path) -> None:
    """5 records/s with 1 s batches: each batch takes files until they hold 5 lines; the
    others wait in the directory and go first in the next batches."""
    async with StreamingContext(1.0, master="local", clock=ManualClock(), conf=bounded(5)) as ssc:
        stream = ssc.text_file_stream(str(tmp_path))
        out = collect_batches(stream.glom())
        await ssc.start()
        for name in ("a", "b", "c", "d", "e"):
            move_in(tmp_path, name, 3)
        infos = await advance_batches(ssc, 1)
        assert stream.waiting_files == 3
        move_in(tmp_path, "0-new", 2)  # sorts first, but arrived later: waits its turn
        (tmp_path / "d").unlink()  # a waiting file that vanished is forgotten
        infos += await advance_batches(ssc, 3)
    files = [[part[0].split(":")[0] for part in parts] for _, parts in out]
    assert files == [["a", "b"], ["c", "e"], ["0-new"], []]
    assert [i.stream_id_to_num_records[stream.id] for i in infos] == [6, 6, 2, 0]
    assert [i.stream_id_to_input_info[stream.id].metadata["rate_bound"] for i in infos] == [5.0] * 4
    assert stream.waiting_files == 0


async def test_without_a_bound_the_file_stream_takes_every_new_file(tmp_path: Path) -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock(), conf=BOUNDED) as ssc:
        stream = ssc.text_file_stream(str(tmp_path))
        out = collect_batches(stream)
        await ssc.start()
        for name in ("a", "b", "c"):
            move_in(tmp_path, name, 3)
        await advance_batches(ssc, 1)
    assert len(out[0][1]) == 9


LINE = b"x" * 99 + b"\n"


async def test_a_bounded_socket_stream_reads_less_and_tcp_holds_the_rest() -> None:
    """The peer writes 40 MB as fast as it can; at 1000 lines/s the receiver takes about
    that, and the peer is blocked by TCP flow control with most of its data unsent."""
    total_lines = 400_000
    sent = 0

    async def serve(client: anyio.abc.SocketStream) -> None:
        nonlocal sent
        chunk = LINE * 655
        async with client:
            try:
                for _ in range(total_lines // 655):
                    await client.send(chunk)
                    sent += len(chunk)
            except anyio.BrokenResourceError:
                pass  # the receiver stopped with our data unread: its kernel resets us

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as server:
        server.start_soon(listener.serve, serve)
        clock = ManualClock()
        async with StreamingContext(1.0, master="local", clock=clock, conf=bounded(1000)) as ssc:
            stream = ssc.socket_text_stream("127.0.0.1", port)
            out = collect_batches(stream)
            await ssc.start()
            for _ in range(3):
                await anyio.sleep(0.2)  # real time for the peer to fill every buffer
                await advance_batches(ssc, 1)
            await anyio.sleep(0.2)
            assert sent < 0.5 * total_lines * len(LINE)  # blocked: the rest waits at the peer
            # Each read takes about 50 ms of the bound's lines (100 bytes each), not 64 KiB.
            assert stream.receiver._read_size() == 1000 * 0.05 * len(LINE)  # type: ignore[attr-defined]
        server.cancel_scope.cancel()
    counts = [len(batch) for _, batch in out]
    # 3 s of clock at 1000 lines/s, plus at most 1 s of burst; some of it arrives in the
    # batch after the one whose clock second allowed it (the clock jumps at batch time).
    assert all(n <= 2000 for n in counts) and 1000 <= sum(counts) <= 4000, counts
    assert all(line == LINE[:-1].decode() for _, batch in out for line in batch)


async def queue_for_session(broker: Mosquitto, client_id: str, payloads: list[bytes]) -> None:
    """Subscribe ``client_id`` to "load" at QoS 1 with a persistent session, then publish
    ``payloads`` for it to wait at the broker."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    async with aiomqtt.Client(broker.host, broker.port, identifier=client_id, clean_start=False,
                              protocol=aiomqtt.ProtocolVersion.V5, properties=properties) as session:
        await session.subscribe("load", qos=1)
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as publisher:
        for first in range(0, len(payloads), 100):  # 100 in flight at a time
            async with anyio.create_task_group() as tg:
                for payload in payloads[first:first + 100]:
                    tg.start_soon(partial(publisher.publish, "load", payload, qos=1))


async def test_a_bounded_mqtt_receiver_reads_less_and_the_broker_keeps_the_rest(
    quiet_mosquitto: Mosquitto,
) -> None:
    """QoS 1: 3000 messages of 1 KB wait for the session at the broker. At 100 messages/s
    the receiver stores about that and stops reading its socket once about a block interval
    of the bound waits in its client (plus one read, 256 KiB): TCP flow control holds the
    rest at the broker. (mosquitto 2.0.11 honours the Receive Maximum only for the first
    window of a session's queue: the socket is what holds the rest.) Nothing is lost or
    repeated."""
    broker = quiet_mosquitto
    client_id = "bounded-receiver"
    await queue_for_session(broker, client_id, [f"{n} ".encode().ljust(1000, b"x") for n in range(3000)])
    async with StreamingContext(1.0, master="local", clock=ManualClock(), conf=bounded(100)) as ssc:
        stream = ssc.mqtt_stream(broker.host, broker.port, "load", qos=1, client_id=client_id,
                                 clean_start=False, decoder="text", max_inflight=200)
        out = collect_batches(stream.map(lambda record: int(record.payload.split(" ", 1)[0])))
        await ssc.start()
        receiver = stream.receiver  # type: ignore[union-attr]
        for _ in range(3):
            await anyio.sleep(0.5)  # real time for the broker to send all it can
            # At most its first window of unacknowledged messages (200), a block interval
            # of the bound (or 100) and one read of 1 KB messages (256 KiB) beyond what it
            # stored; of 3000.
            assert receiver.messages_received <= receiver.messages_stored + 200 + 100 + 262
            await advance_batches(ssc, 1)
        stored = receiver.messages_stored
    assert 100 <= stored <= 500  # 3 s at 100/s, plus at most 1 s of burst and one flush
    records = [n for _, batch in out for n in batch]
    assert records == list(range(len(records)))


async def test_a_bounded_mqtt_receiver_cuts_small_messages_into_blocks_of_the_bound(
    quiet_mosquitto: Mosquitto,
) -> None:
    """Small messages arrive hundreds per read (the broker sends its whole window at once):
    under a bound of 100/s every block holds at most a block interval of it (20), so each
    is stored when the rate allows it and batches take an even share. (The receive loop
    framed 512 packets per step before it looked at the block: blocks of about 500 were
    stored at once after waiting 5 s for the rate, and batches took 0 or 500.)"""
    broker = quiet_mosquitto
    await queue_for_session(broker, "small-messages", [f"{n}".encode() for n in range(2000)])
    async with StreamingContext(1.0, master="local", clock=ManualClock(), conf=bounded(100)) as ssc:
        stream = ssc.mqtt_stream(broker.host, broker.port, "load", qos=1, client_id="small-messages",
                                 clean_start=False, decoder="text")
        sizes = collect_batches(stream.glom().map(len))
        out = collect_batches(stream.map(lambda record: int(record.payload)))
        await ssc.start()
        await anyio.sleep(0.5)  # real time to connect and for the broker to send its window
        for _ in range(4):
            await advance_batches(ssc, 1)
            await anyio.sleep(0.2)  # real time for the stores the clock allowed
    blocks = [n for _, batch in sizes for n in batch]
    assert blocks and max(blocks) <= 20, blocks
    per_batch = [len(batch) for _, batch in out]
    # At most 1 s of burst and 1 s of the bound in a batch, and blocks from the broker's
    # first window (1000 messages) went on being stored batch after batch.
    assert all(n <= 220 for n in per_batch) and sum(per_batch) >= 200, per_batch
    records = [n for _, batch in out for n in batch]
    assert records == list(range(len(records)))


async def test_an_mqtt_stream_with_n_receivers_has_one_bound_split_over_them() -> None:
    ssc = StreamingContext(1.0, master="local", clock=ManualClock(), conf=BOUNDED)
    stream = ssc.mqtt_stream("127.0.0.1", 1883, "load", num_receivers=3, shared_group="g")
    parts = stream.parts  # type: ignore[union-attr]
    controller = parts[0].rate_controller
    assert all(p.rate_controller is controller for p in parts)
    assert controller.stream_ids == tuple(p.id for p in parts)
    assert controller.num_receivers == 3
