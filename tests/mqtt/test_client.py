"""The receiver on our MQTT client: 3.1.1, QoS 2, the timestamp property against a real
mosquitto; a broker that sends garbage, refuses a filter or the connection, or speaks TLS
(a fake one on a socket)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from aiostream_engine.sources.mqtt_protocol import SUBSCRIBE, decode_packet_id, encode_publish, split_packets
from aiostream_engine.testing import advance_batches, collect_batches
from tests.brokers import Mosquitto
from tests.mqtt.test_mqtt_stream import Events, context, ids_of, publish_readings, store_received, until

pytestmark = pytest.mark.anyio


async def test_mqtt_311_and_qos2_messages_arrive_once(mosquitto: Mosquitto) -> None:
    async with context() as ssc:
        stream = ssc.mqtt_stream(mosquitto.host, mosquitto.port, "q2/#", qos=2,
                                 client_id="q2", protocol="3.1.1")
        receiver = stream.receiver  # type: ignore[union-attr]
        out = collect_batches(stream)
        await ssc.start()
        await until(lambda: receiver.connections == 1, "the subscription")
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for i in range(50):
                await client.publish("q2/x", f'{{"i": {i}}}'.encode(), qos=2)
        await store_received(ssc, [receiver], 50)
        await advance_batches(ssc, 1)
        assert receiver.client is not None
        await receiver.client.subscribe("q2/barrier", qos=2)  # PUBRELs answered by now
    async with context() as ssc:  # the same session: nothing is delivered again
        stream = ssc.mqtt_stream(mosquitto.host, mosquitto.port, "q2/#", qos=2,
                                 client_id="q2", protocol="3.1.1")
        receiver = stream.receiver  # type: ignore[union-attr]
        collect_batches(stream)
        await ssc.start()
        await until(lambda: receiver.connections == 1, "the subscription")
        await receiver.client.subscribe("q2/barrier", qos=2)  # type: ignore[union-attr]
        assert receiver.messages_received == 0
    assert [r.qos for r in out[0][1]] == [2] * 50
    assert ids_of(out[0][1]) == list(range(50))


async def test_the_timestamp_user_property_is_the_broker_time(mosquitto: Mosquitto) -> None:
    async with context() as ssc:
        stream = ssc.mqtt_stream(mosquitto.host, mosquitto.port, "ts", client_id="ts")
        receiver = stream.receiver  # type: ignore[union-attr]
        out = collect_batches(stream)
        await ssc.start()
        await until(lambda: receiver.connections == 1, "the subscription")
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("site", "7"), ("timestamp", "1700000000.5")]
        async with aiomqtt.Client(mosquitto.host, mosquitto.port,
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.publish("ts", b'{"i": 0}', qos=1, properties=props)
        await publish_readings(mosquitto, range(1, 2), topic="ts")
        await store_received(ssc, [receiver], 2)
        await advance_batches(ssc, 1)
    assert [r.broker_time for r in out[0][1]] == [1700000000.5, None]


@asynccontextmanager
async def fake_broker(*sessions: list[bytes]) -> AsyncIterator[tuple[str, int]]:
    """A broker that answers CONNECT with CONNACK, SUBSCRIBE with the next session's first
    reply, then sends the rest of it; one session per connection, in order."""
    replies = iter(sessions)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = next(replies, [])
        rest = b""
        writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK, success, no properties
        while not reader.at_eof():
            packets, rest = split_packets(rest + await reader.read(65536))
            for kind, _, body in packets:
                if kind == SUBSCRIBE and script:
                    pid = decode_packet_id(body).to_bytes(2, "big")
                    writer.write(script[0].replace(b"PID", pid) + b"".join(script[1:]))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield "127.0.0.1", server.sockets[0].getsockname()[1]


GRANTED = b"\x90\x04PID\x00\x01"  # SUBACK: no properties, QoS 1 granted


async def test_a_malformed_packet_ends_the_connection_and_the_receiver_reconnects() -> None:
    good = encode_publish("t", b'{"i": 7}', qos=0)
    events = Events()
    async with fake_broker([GRANTED, b"\x30\x01\x00"], [GRANTED, good]) as (host, port):
        async with context() as ssc:
            ssc.add_streaming_listener(events)
            stream = ssc.mqtt_stream(host, port, "t", client_id="fake")
            receiver = stream.receiver  # type: ignore[union-attr]
            out = collect_batches(stream)
            await ssc.start()
            await until(lambda: len(events.events) == 2, "the protocol error reported")
            await advance_batches(ssc, 1)  # the restart delay passes: reconnect
            await store_received(ssc, [receiver], 1)
            await advance_batches(ssc, 1)
            restarts = ssc._receiver_tracker.supervisors[stream.id].restarts
    assert events.events[1].startswith("error: ProtocolError: malformed PUBLISH")
    assert restarts == 1
    assert [ids_of(records) for _, records in out] == [[], [7]]


async def test_a_refused_subscription_is_an_error() -> None:
    refused = b"\x90\x04PID\x00\x87"  # not authorized
    events = Events()
    async with fake_broker([refused]) as (host, port), context() as ssc:
        ssc.add_streaming_listener(events)
        collect_batches(ssc.mqtt_stream(host, port, "t", client_id="fake"))
        await ssc.start()
        await until(lambda: len(events.events) == 2, "the refusal reported")
    assert events.events[1] == "error: MqttError: subscription refused: [('t', '0x87')]"


async def test_a_refused_connection_and_no_broker_are_errors_the_receiver_retries() -> None:
    refusing = await asyncio.start_server(
        lambda r, w: w.write(b"\x20\x03\x00\x87\x00"), "127.0.0.1", 0
    )
    async with refusing:
        port = refusing.sockets[0].getsockname()[1]
        events = Events()
        async with context() as ssc:
            ssc.add_streaming_listener(events)
            collect_batches(ssc.mqtt_stream("127.0.0.1", port, "t", client_id="x"))
            await ssc.start()
            await until(lambda: len(events.events) == 2, "the refusal reported")
    assert events.events[1] == "error: MqttError: connection refused: 0x87 not authorized"
    events = Events()
    async with context() as ssc:  # nothing listens on that port any more
        ssc.add_streaming_listener(events)
        collect_batches(ssc.mqtt_stream("127.0.0.1", port, "t", client_id="x"))
        await ssc.start()
        await until(lambda: len(events.events) == 2, "the failure reported")
    assert events.events[1].startswith(f"error: MqttError: cannot connect to 127.0.0.1:{port}")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls(tmp_path: Path) -> None:
    """The client speaks MQTT through asyncio's ssl (a fake broker with a self-signed cert)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # CONNECT
        writer.write(b"\x20\x03\x00\x00\x00")
        rest = b""
        while not reader.at_eof():
            packets, rest = split_packets(rest + await reader.read(65536))
            for kind, _, body in packets:
                if kind == SUBSCRIBE:
                    pid = decode_packet_id(body).to_bytes(2, "big")
                    writer.write(GRANTED.replace(b"PID", pid)
                                 + encode_publish("t", b'{"i": 42}', qos=0))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    async with server, context() as ssc:
        port = server.sockets[0].getsockname()[1]
        stream = ssc.mqtt_stream("127.0.0.1", port, "t", client_id="tls",
                                 tls=ssl.create_default_context(cafile=str(cert)))
        out = collect_batches(stream)
        await ssc.start()
        await store_received(ssc, [stream.receiver], 1)  # type: ignore[union-attr]
        await advance_batches(ssc, 1)
    assert ids_of(out[0][1]) == [42]
