"""A publisher process offering a fixed rate, for the overload tests and bench/backpressure.py.

    python -m bench.publisher socket --rate R --seconds S
    python -m bench.publisher mqtt --rate R --seconds S --port P --topic T

It publishes messages ``0, 1, 2, ...`` (as text lines ``"<seq> <padding>"``) at ``R`` per
second for ``S`` seconds. Message ``n`` is published at ``start + n / R`` whatever happens
downstream: what the consumer does not take waits at the source (in this process's queue
behind a full TCP connection, or in the MQTT broker). Then it sends what is still waiting.

``socket``: serves one TCP connection on a free loopback port (the engine's
socket_text_stream connects to it) and starts publishing once it is accepted.
``mqtt``: publishes at QoS 1 through paho (it waits for every PUBACK at the end).

Stdout gets JSON lines: ``{"ready": port}`` (socket) or ``{"ready": 0}``, then every 0.1 s
``{"t": seconds since start, "published": n, "sent": n}``, then ``{"done": total}`` once
everything published was sent (socket) or acknowledged by the broker (mqtt). The process
then waits for its stdin to close.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import threading
import time

PADDING = "x" * 48
REPORT_EVERY = 0.1


def line(seq: int) -> bytes:
    return f"{seq} {PADDING}\n".encode()


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Schedule:
    """How many messages are published by now: ``rate`` per second for ``seconds``."""

    def __init__(self, rate: float, seconds: float) -> None:
        self.rate = rate
        self.total = int(rate * seconds)
        self.start = time.monotonic()

    def published(self) -> int:
        return min(self.total, int((time.monotonic() - self.start) * self.rate))


def serve_socket(rate: float, seconds: float) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    say(ready=server.getsockname()[1])
    connection, _ = server.accept()
    schedule = Schedule(rate, seconds)
    sent = 0  # lines handed to the kernel
    pending = b""  # the rest of the chunk being sent
    next_report = 0.0
    while sent < schedule.total or pending:
        published = schedule.published()
        now = time.monotonic() - schedule.start
        if now >= next_report:
            say(t=round(now, 3), published=published, sent=sent)
            next_report = now + REPORT_EVERY
        if not pending and sent < published:
            upto = min(published, sent + 2000)
            pending = b"".join(line(n) for n in range(sent, upto))
            sent = upto
        if not pending:
            time.sleep(0.002)
            continue
        # Wait (briefly, to keep reporting) until TCP flow control lets more in: while it
        # does not, the published lines wait here.
        _, writable, _ = select.select([], [connection], [], REPORT_EVERY / 2)
        if writable:
            pending = pending[connection.send(pending):]
    say(t=round(time.monotonic() - schedule.start, 3), published=schedule.total, sent=sent)
    say(done=schedule.total)
    sys.stdin.read()
    connection.close()
    server.close()


def publish_mqtt(rate: float, seconds: float, port: int, topic: str) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    acked = 0
    lock = threading.Lock()

    def on_publish(*_: object) -> None:
        nonlocal acked
        with lock:
            acked += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    say(ready=0)
    schedule = Schedule(rate, seconds)
    sent = 0
    next_report = 0.0
    while sent < schedule.total or acked < schedule.total:
        published = schedule.published()
        now = time.monotonic() - schedule.start
        if now >= next_report:
            say(t=round(now, 3), published=published, sent=acked)
            next_report = now + REPORT_EVERY
        if sent < published:
            for n in range(sent, published):
                client.publish(topic, line(n)[:-1], qos=1)
            sent = published
        else:
            time.sleep(0.002)
    say(t=round(time.monotonic() - schedule.start, 3), published=schedule.total, sent=acked)
    say(done=schedule.total)
    sys.stdin.read()
    client.disconnect()
    client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["socket", "mqtt"])
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--topic", default="load")
    args = parser.parse_args()
    if args.kind == "socket":
        serve_socket(args.rate, args.seconds)
    else:
        publish_mqtt(args.rate, args.seconds, args.port, args.topic)


if __name__ == "__main__":
    main()
