"""mqtt_stream against a real mosquitto on 127.0.0.1, batches driven by a ManualClock.

Messages travel over real sockets, so arrival is awaited by polling a counter (bounded by
``anyio.fail_after``), never by sleeping; batch boundaries are exact because the clock only
moves when the test says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiomqtt
import anyio
import orjson
import pytest

from aiostream_engine import ManualClock, StreamingContext, StreamingListener
from aiostream_engine.sources.mqtt import (
    DeadLetter,
    MqttInputDStream,
    MqttReceiver,
    MqttRecord,
    MqttUnionDStream,
    resolve_decoder,
)
from aiostream_engine.testing import advance_batches, collect_batches
from tests.brokers import Mosquitto

pytestmark = pytest.mark.anyio

WAIT = 15.0  # seconds a test may wait for data to cross the real broker


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until ``condition()`` holds (bounded)."""
    try:
        with anyio.fail_after(WAIT):
            while not condition():
                await anyio.lowlevel.checkpoint()
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def store_received(ssc: StreamingContext, receivers: list[MqttReceiver], count: int) -> None:
    """Wait until the receivers have read ``count`` messages, then move the clock one block
    interval: they store what they hold (and acknowledge it) once per block interval."""
    await until(lambda: sum(r.messages_received for r in receivers) == count, f"{count} read")
    assert isinstance(ssc.clock, ManualClock)
    ssc.clock.advance(ssc.conf.block_interval)
    await until(lambda: sum(r.messages_stored for r in receivers) == count, f"{count} stored")


def context(**conf: object) -> StreamingContext:
    settings = {"receiver_restart_delay": 0.5, **conf}
    return StreamingContext(1.0, master="local", clock=ManualClock(0.0), conf=settings)


@asynccontextmanager
async def publisher(broker: Mosquitto) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        yield client


async def publish_readings(broker: Mosquitto, ids: range, topic: str = "sensors/a/t") -> None:
    """QoS 1: each publish returns once the broker has acknowledged it."""
    async with publisher(broker) as client:
        for i in ids:
            await client.publish(topic, orjson.dumps({"i": i}), qos=1)


def ids_of(records: list[MqttRecord]) -> list[int]:
    return sorted(r.payload["i"] for r in records)


class Events(StreamingListener):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_receiver_started(self, event):  # type: ignore[no-untyped-def]
        self.events.append("started")

    def on_receiver_error(self, event):  # type: ignore[no-untyped-def]
        self.events.append(f"error: {event.receiver_info.last_error}")

    def on_receiver_stopped(self, event):  # type: ignore[no-untyped-def]
        self.events.append("stopped")


def receiver_of(stream: MqttInputDStream) -> MqttReceiver:
    return stream.receiver


async def test_every_qos1_message_arrives_exactly_once_in_its_batch(mosquitto: Mosquitto) -> None:
    async with context() as ssc:
        stream = ssc.mqtt_stream(mosquitto.host, mosquitto.port, "sensors/+/t", client_id="exact")
        assert isinstance(stream, MqttInputDStream)
        receiver = receiver_of(stream)
        out = collect_batches(stream)
        await ssc.start()
        await until(lambda: receiver.connections == 1, "the subscription")
        await publish_readings(mosquitto, range(0, 300))
        await store_received(ssc, [receiver], 300)
        await advance_batches(ssc, 1)
        await publish_readings(mosquitto, range(300, 500), topic="sensors/b/t")
        await store_received(ssc, [receiver], 500)
        await advance_batches(ssc, 2)
    assert [len(records) for _, records in out] == [300, 200, 0]
    assert ids_of(out[0][1]) == list(range(300))
    assert ids_of(out[1][1]) == list(range(300, 500))
    assert {r.topic for r in out[1][1]} == {"sensors/b/t"}
    first = out[0][1][0]
    assert (first.qos, first.retain, first.broker_time, first.arrival_time) == (1, False, None, 0.0)
    assert out[1][1][0].arrival_time == 1.0
    assert ssc.batch_history[0].stream_id_to_num_records == {stream.id: 300}


async def test_messages_are_acknowledged_only_once_stored(mosquitto: Mosquitto) -> None:
    """With the block queue full, a message is received but not stored, so not
    acknowledged: the broker delivers it again to the next session with the same id."""
    async with context(block_queue_size=1) as ssc:
        stream = ssc.mqtt_stream(mosquitto.host, mosquitto.port, "acks", client_id="acker")
        receiver = receiver_of(stream)
        collect_batches(stream)
        await ssc.start()
        await until(lambda: receiver.connections == 1, "the subscription")
        async with publisher(mosquitto) as client:
            await client.publish("acks", b'{"i": 0}', qos=1)
            await store_received(ssc, [receiver], 1)  # the queue of one block is now full
            await client.publish("acks", b'{"i": 1}', qos=1)
        await until(lambda: receiver.messages_received == 2, "the second message read")
        ssc.clock.advance(ssc.conf.block_interval)  # type: ignore[attr-defined]
        await anyio.wait_all_tasks_blocked()
        assert receiver.messages_stored == 1  # the second waits for room, unacknowledged
        # (no batch ever ran: the context stops without processing anything)
    async with context() as ssc:
        stream = ssc.mqtt_stream(mosquitto.host, mosquitto.port, "acks", client_id="acker")
        receiver = receiver_of(stream)
        out = collect_batches(stream)
        await ssc.start()
        await store_received(ssc, [receiver], 1)  # the redelivered message
        await advance_batches(ssc, 1)
    assert [ids_of(records) for _, records in out] == [[1]]


async def test_broker_killed_and_restarted_loses_nothing(mosquitto: Mosquitto) -> None:
    events = Events()
    async with context() as ssc:
        ssc.add_streaming_listener(events)
        stream = ssc.mqtt_stream(mosquitto.host, mosquitto.port, "plant/#", client_id="survivor")
        receiver = receiver_of(stream)
        supervisor = None
        out = collect_batches(stream)
        await ssc.start()
        supervisor = ssc._receiver_tracker.supervisors[stream.id]
        await until(lambda: receiver.connections == 1, "the subscription")
        await publish_readings(mosquitto, range(0, 200), topic="plant/line1")
        await store_received(ssc, [receiver], 200)
        # A round trip on the receiver's connection: the broker has processed every
        # acknowledgement sent before it, so nothing acknowledged is redelivered.
        assert receiver.client is not None
        await receiver.client.subscribe("plant/barrier", qos=1)
        await advance_batches(ssc, 1)

        mosquitto.kill()
        await until(lambda: supervisor.errors >= 1, "the lost connection reported")
        mosquitto.start()
        # Published while the receiver waits out its backoff (the clock stands still):
        # the broker queues them in the receiver's persistent session.
        await publish_readings(mosquitto, range(200, 400), topic="plant/line2")
        assert receiver.messages_received == 200
        await advance_batches(ssc, 1)  # the backoff ends: the receiver reconnects
        # The messages sent while away: the broker resends them right after its CONNACK,
        # and they are stored as they come, whether the SUBACK has come yet or not.
        await store_received(ssc, [receiver], 400)
        await until(lambda: receiver.connections == 2, "the new subscription")
        await advance_batches(ssc, 1)
        assert ssc.state.value == "active"
        await ssc.stop(graceful=True)
    assert [len(records) for _, records in out] == [200, 0, 200]
    assert ids_of([r for _, records in out for r in records]) == list(range(400))
    assert [t for t, _ in out] == [1.0, 2.0, 3.0]  # a batch every interval throughout
    assert receiver.connections == 2
    assert events.events[0] == "started"
    assert events.events[1].startswith("error: MqttError: ")
    assert events.events[2:] == ["started", "stopped"]


async def test_malformed_payloads_go_to_dead_letters(mosquitto: Mosquitto) -> None:
    big = b"x" * (1 << 20)  # 1 MiB, not JSON
    garbage = bytes(range(256))
    sequence = [
        b'{"i": 0}', b"{not json", b'{"i": 1}', garbage, b'{"i": 2}', b"", b'{"i": 3}', big,
        b'{"i": 4}',
    ]
    events = Events()
    async with context() as ssc:
        ssc.add_streaming_listener(events)
        stream = ssc.mqtt_stream(mosquitto.host, mosquitto.port, "dev/+", client_id="dl")
        receiver = receiver_of(stream)
        good = collect_batches(stream)
        dead = collect_batches(stream.dead_letters())
        await ssc.start()
        await until(lambda: receiver.connections == 1, "the subscription")
        async with publisher(mosquitto) as client:
            for n, payload in enumerate(sequence):
                await client.publish(f"dev/{n}", payload, qos=1)
        await store_received(ssc, [receiver], len(sequence))
        infos = await advance_batches(ssc, 1)
    assert ids_of(good[0][1]) == [0, 1, 2, 3, 4]
    letters = sorted(dead[0][1], key=lambda d: d.topic)
    assert [(d.topic, d.payload) for d in letters] == [
        ("dev/1", b"{not json"), ("dev/3", garbage), ("dev/5", b""), ("dev/7", big)
    ]
    assert all(isinstance(d, DeadLetter) and d.error.startswith("JSONDecodeError") for d in letters)
    assert receiver.dead_letter_count == 4
    assert infos[0].stream_id_to_num_records == {stream.id: 5, stream.dead_letters().id: 4}  # type: ignore[attr-defined]
    # One report for the one block of dead letters; the receiver never restarted.
    assert len(events.events) == 3 and events.events[::2] == ["started", "stopped"]
    assert events.events[1].startswith(
        "error: 4 undecodable payload(s) sent to dead letters (first on dev/1: JSONDecodeError"
    )
    assert ssc._receiver_tracker.supervisors[stream.id].restarts == 0


async def test_shared_subscription_spreads_messages_over_receivers(mosquitto: Mosquitto) -> None:
    async with context() as ssc:
        stream = ssc.mqtt_stream(
            mosquitto.host, mosquitto.port, ["fleet/+/a", "fleet/+/b"], client_id="pool",
            num_receivers=2, shared_group="workers",
        )
        assert isinstance(stream, MqttUnionDStream)
        receivers = stream.receivers
        assert [r.client_id for r in receivers] == ["pool-0", "pool-1"]
        assert receivers[0].filters == ["$share/workers/fleet/+/a", "$share/workers/fleet/+/b"]
        out = collect_batches(stream)
        collect_batches(stream.dead_letters())
        await ssc.start()
        await until(lambda: all(r.connections == 1 for r in receivers), "both subscriptions")
        await publish_readings(mosquitto, range(0, 200), topic="fleet/7/a")
        await store_received(ssc, receivers, 200)
        await advance_batches(ssc, 1)
    assert ids_of(out[0][1]) == list(range(200))
    assert all(r.messages_received > 0 for r in receivers)


def test_decoders() -> None:
    assert resolve_decoder("json")(b'{"a": 1}') == {"a": 1}
    assert resolve_decoder("text")("café".encode()) == "café"
    assert resolve_decoder("raw")(b"\x00") == b"\x00"
    assert resolve_decoder(lambda b: len(b))(b"abc") == 3
    with pytest.raises(ValueError, match="decoder must be one of"):
        resolve_decoder("yaml")


def test_several_receivers_need_a_shared_group() -> None:
    ssc = context()
    with pytest.raises(ValueError, match="shared_group"):
        ssc.mqtt_stream("127.0.0.1", 1883, "a", num_receivers=2)
    with pytest.raises(ValueError, match="at least one topic"):
        ssc.mqtt_stream("127.0.0.1", 1883, [])
