"""Publishing many QoS 1 messages fast, for overload tests: pre-encoded MQTT 3.1.1 PUBLISH
packets written to a raw socket in large writes (aiomqtt publishes a few thousand a second;
the broker takes tens of thousands), then every PUBACK awaited, so when it returns the
broker holds every message. Blocking: run it in a thread."""

from __future__ import annotations

import socket

from aiostream_engine.sources.mqtt_protocol import encode_connect, encode_publish

CHUNK = 1000


def publish_qos1(host: str, port: int, messages: list[tuple[str, bytes]], timeout: float = 120.0) -> None:
    """Publish ``(topic, payload)`` pairs with QoS 1; returns once all are acknowledged."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(encode_connect("overload-publisher", protocol="3.1.1", keepalive=0))
        if sock.recv(4)[:2] != b"\x20\x02":
            raise ConnectionError("no CONNACK from the broker")
        acked = 0  # bytes of PUBACKs (4 each) read
        for start in range(0, len(messages), CHUNK):
            batch = messages[start:start + CHUNK]
            sock.sendall(b"".join(
                encode_publish(topic, payload, qos=1, packet_id=(start + i) % 65535 + 1,
                               protocol="3.1.1")
                for i, (topic, payload) in enumerate(batch)
            ))
            # At most two chunks unacknowledged: packet ids are never reused in flight.
            while acked < 4 * (start + len(batch) - CHUNK):
                acked += _received(sock)
        while acked < 4 * len(messages):
            acked += _received(sock)
        sock.sendall(b"\xe0\x00")


def _received(sock: socket.socket) -> int:
    data = sock.recv(1 << 16)
    if not data:
        raise ConnectionError("the broker closed the connection")
    return len(data)
