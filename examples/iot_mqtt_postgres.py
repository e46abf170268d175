"""IoT readings from MQTT, joined with device priorities from PostgreSQL, windowed per
device; high-priority alerts go back to MQTT, per-device statistics are upserted.

    readings  sensors/<device>/reading  {"device_id": "device-007", "temperature": 21.4, ...}
       |  mqtt_stream (QoS 1, persistent session), JSON decoded with orjson
       |  parse: keep well-formed readings, key by device
       +-- transform: join with the devices table (loaded once at start) -> high priority
       |   and above the threshold -> MqttSink  alerts/<device>
       +-- reduce_by_key_and_window (count, sum, sum of squares; incremental with the
           inverse) -> mean and standard deviation -> PostgresSink upsert on device_id

Run it against the machine's mosquitto and PostgreSQL (see ``--help`` for the options):

    python examples/iot_mqtt_postgres.py --duration 30 &
    python examples/publish_readings.py --count 3000 --rate 300
"""

from __future__ import annotations

import argparse
import math
import tempfile
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg

from aiostream_engine import RDD, DStream, StreamingContext
from aiostream_engine.sinks import MqttSink, PostgresSink

SETUP_SQL = """
CREATE TABLE IF NOT EXISTS devices (
    device_id text PRIMARY KEY,
    priority  text NOT NULL CHECK (priority IN ('high', 'normal', 'low'))
);
CREATE TABLE IF NOT EXISTS device_stats (
    device_id        text PRIMARY KEY,
    window_end       timestamptz NOT NULL,
    readings         integer NOT NULL,
    mean_temperature double precision NOT NULL,
    std_temperature  double precision NOT NULL
);
"""
STATS_COLUMNS = ["device_id", "window_end", "readings", "mean_temperature", "std_temperature"]


async def load_priorities(dsn: str, devices: int) -> list[tuple[str, str]]:
    """The device table; seeded (every fifth device high priority) when it is empty."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SETUP_SQL)
        if not await conn.fetchval("SELECT count(*) FROM devices"):
            await conn.executemany(
                "INSERT INTO devices VALUES ($1, $2)",
                [(f"device-{i:03d}", "high" if i % 5 == 0 else "normal") for i in range(devices)],
            )
        return [tuple(r) for r in await conn.fetch("SELECT device_id, priority FROM devices")]
    finally:
        await conn.close()


# ---- the pipeline's functions (module level: they travel to the workers) ----------------


def parse(message: Any) -> list[tuple[str, dict[str, Any]]]:
    """(device_id, reading) for a well-formed reading; nothing for anything else."""
    reading = message.payload
    if (
        isinstance(reading, dict)
        and isinstance(reading.get("device_id"), str)
        and isinstance(reading.get("temperature"), int | float)
    ):
        return [(reading["device_id"], reading)]
    return []


def moments(reading: dict[str, Any]) -> tuple[int, float, float]:
    t = float(reading["temperature"])
    return 1, t, t * t


def add(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def subtract(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


def has_readings(pair: tuple[str, tuple[int, float, float]]) -> bool:
    return pair[1][0] > 0


def stats_rows(time: float, rdd: RDD) -> RDD:
    """One device_stats row per device, stamped with the window's end (the batch time)."""
    window_end = datetime.fromtimestamp(time, tz=UTC)

    def row(pair: tuple[str, tuple[int, float, float]]) -> tuple[Any, ...]:
        device, (n, total, squares) = pair
        mean = total / n
        return device, window_end, n, mean, math.sqrt(max(squares / n - mean * mean, 0.0))

    return rdd.map(row)


def alert_of(threshold: float) -> Any:
    def alerts(pair: tuple[str, tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
        device, (reading, priority) = pair
        if priority == "high" and reading["temperature"] > threshold:
            return [{"device_id": device, "temperature": reading["temperature"],
                     "ts": reading.get("ts"), "priority": priority}]
        return []

    return alerts


def build(
    ssc: StreamingContext,
    args: argparse.Namespace,
    priorities: RDD,
    alerts: MqttSink,
    stats: PostgresSink,
) -> None:
    messages = ssc.mqtt_stream(
        args.mqtt_host, args.mqtt_port, "sensors/+/reading",
        qos=1, client_id="aiostream-iot-example", decoder="json",
    )
    readings: DStream = messages.flat_map(parse)

    joined = readings.transform(lambda rdd: rdd.join(priorities))
    joined.flat_map(alert_of(args.threshold)).write_to(alerts)

    windowed = readings.map_values(moments).reduce_by_key_and_window(
        add, subtract, args.window, args.slide, filter_func=has_readings, name="device-moments"
    )
    windowed.transform(stats_rows).write_to(stats)


async def main(args: argparse.Namespace) -> None:
    table = await load_priorities(args.dsn, args.devices)
    print(f"{len(table)} devices, {sum(p == 'high' for _, p in table)} of high priority")
    alerts = MqttSink(args.mqtt_host, args.mqtt_port, topic="alerts/{device_id}", qos=1)
    stats = PostgresSink(args.dsn, table="device_stats", columns=STATS_COLUMNS, key="device_id")
    async with alerts, stats, StreamingContext(args.batch, master=args.master) as ssc:
        ssc.checkpoint(args.checkpoint)  # the inverse window keeps state
        priorities = ssc.spark_context.parallelize(table, 1).cache()
        build(ssc, args, priorities, alerts, stats)
        await ssc.start()
        with anyio.move_on_after(args.duration):
            await ssc.await_termination()
        await ssc.stop(graceful=True)
    print(f"alerts published: {alerts.messages_published}")
    print(f"stats partitions written: {stats.statistics.partitions_written}, "
          f"rows upserted: {stats.statistics.rows_written}")
    conn = await asyncpg.connect(args.dsn)
    try:
        for row in await conn.fetch("SELECT * FROM device_stats ORDER BY device_id LIMIT 10"):
            print(dict(row))
    finally:
        await conn.close()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--batch", type=float, default=1.0, help="batch interval, seconds")
    parser.add_argument("--window", type=float, default=10.0, help="window length, seconds")
    parser.add_argument("--slide", type=float, default=2.0, help="window slide, seconds")
    parser.add_argument("--threshold", type=float, default=30.0, help="alert above, degrees")
    parser.add_argument("--devices", type=int, default=20, help="devices to seed the table with")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run")
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory")
    args = parser.parse_args()
    args.checkpoint = args.checkpoint or tempfile.mkdtemp(prefix="iot-checkpoint-")
    return args


if __name__ == "__main__":
    anyio.run(main, arguments())
