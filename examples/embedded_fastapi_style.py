"""A streaming pipeline embedded in an async web service (plain asyncio, no extra deps).

The shape is the one a FastAPI or aiohttp app uses in its lifespan: the service opens the
StreamingContext with ``async with``, the pipeline's async ``foreach_rdd`` writes each
batch's per-device averages into an in-memory dict, and HTTP requests read that dict.
Here a tiny ``asyncio.start_server`` handler stands in for the web framework, and the
script queries itself a few times, then shuts down (the context stops gracefully).

    python examples/embedded_fastapi_style.py
"""

from __future__ import annotations

import asyncio
import json

import orjson

from aiostream_engine import StreamingContext

LATEST: dict[str, dict[str, float]] = {}  # device id -> {"temp": avg, "readings": n}
SERVED = {"batches": 0}


def parse(line: str) -> list[tuple[str, tuple[int, float]]]:
    try:
        reading = orjson.loads(line)
        return [(reading["device_id"], (1, reading["temp"]))]
    except (orjson.JSONDecodeError, KeyError):
        return []  # dropped


def add(a: tuple[int, float], b: tuple[int, float]) -> tuple[int, float]:
    return a[0] + b[0], a[1] + b[1]


async def publish(rdd) -> None:  # type: ignore[no-untyped-def]
    """Runs on the event loop: the awaitable action leaves it free for HTTP requests."""
    for device, (count, temp_sum) in await rdd.acollect():
        LATEST[device] = {"temp": round(temp_sum / count, 2), "readings": count}
    SERVED["batches"] += 1


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = (await reader.readline()).decode()
    while (await reader.readline()).strip():  # skip the headers
        pass
    path = request_line.split()[1] if len(request_line.split()) > 1 else "/"
    if path.startswith("/devices/"):
        device = path.removeprefix("/devices/")
        status, body = ("200 OK", LATEST[device]) if device in LATEST else ("404 Not Found", {})
    else:
        hottest = sorted(LATEST.items(), key=lambda kv: -kv[1]["temp"])[:3]
        status, body = "200 OK", {"batches": SERVED["batches"], "hottest": dict(hottest)}
    payload = orjson.dumps(body)
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def http_get(port: int, path: str) -> tuple[str, object]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), json.loads(body)


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, StreamingContext(0.5, master="local") as ssc:
        readings = ssc.simulator_stream(num_devices=10, rate=400, seed=7)
        readings.flat_map(parse).reduce_by_key(add).foreach_rdd(publish)
        await ssc.start()
        print(f"serving on http://127.0.0.1:{port}/ while the pipeline runs")
        for _ in range(4):
            await asyncio.sleep(0.75)
            status, body = await http_get(port, "/")
            print(f"GET /            -> {status} {body}")
        status, body = await http_get(port, "/devices/dev-0003")
        print(f"GET /devices/dev-0003 -> {status} {body}")
        await ssc.stop(graceful=True)
    print(f"stopped after {SERVED['batches']} batches")


if __name__ == "__main__":
    asyncio.run(main())
