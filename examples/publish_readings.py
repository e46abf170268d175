"""Publishes JSON temperature readings to MQTT, as IoT devices would, at a steady rate.

    python examples/publish_readings.py --count 3000 --rate 300

Each message goes to ``sensors/<device_id>/reading`` with QoS 1; about ``--hot`` of the
readings are above 30 degrees, so high-priority devices raise alerts in
``iot_mqtt_postgres.py``.
"""

from __future__ import annotations

import argparse
import random
import time

import aiomqtt
import anyio
import orjson


def reading(rng: random.Random, devices: int, hot: float) -> dict[str, object]:
    device = f"device-{rng.randrange(devices):03d}"
    base = 35.0 if rng.random() < hot else 21.0
    return {
        "device_id": device,
        "temperature": round(rng.gauss(base, 1.5), 2),
        "humidity": round(rng.uniform(30, 60), 1),
        "battery": round(rng.uniform(3.3, 4.2), 2),
        "ts": round(time.time(), 3),
    }


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    interval = 1.0 / args.rate
    async with aiomqtt.Client(args.host, args.port, max_inflight_messages=100) as client:
        start = anyio.current_time()
        for i in range(args.count):
            payload = reading(rng, args.devices, args.hot)
            topic = f"sensors/{payload['device_id']}/reading"
            await client.publish(topic, orjson.dumps(payload), qos=args.qos)
            # Pace against the schedule, not per message, so the rate holds on average.
            delay = start + (i + 1) * interval - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
    elapsed = anyio.current_time() - start
    print(f"published {args.count} readings in {elapsed:.1f} s ({args.count / elapsed:.0f}/s)")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="messages per second")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--hot", type=float, default=0.05, help="share of hot readings")
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--seed", type=int, default=None)
    return parser.parse_args()


if __name__ == "__main__":
    anyio.run(main, arguments())
