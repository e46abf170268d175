"""Where the UI listens and when it is on; the live feed's bounded per-client queues."""

from __future__ import annotations

import re
import socket
from typing import Any

import anyio
import anyio.to_thread
import httpx
import orjson
import pytest

from aiostream_engine import ManualClock, StreamingConf, StreamingContext
from aiostream_engine.ui import ENV_VAR, ui_available, ui_enabled
from aiostream_engine.ui.live import CLIENT_QUEUE_SIZE, MAX_BURST, RELOAD, LiveFeed
from aiostream_engine.ui.server import bind
from aiostream_engine.ui.status import StreamingStatus

from .scenario import Scenario

pytestmark = pytest.mark.anyio


def test_a_taken_port_moves_to_the_next_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sock = bind("127.0.0.1", port, retries=16)
        try:
            assert port < sock.getsockname()[1] <= port + 16
        finally:
            sock.close()
        with pytest.raises(OSError, match="no free port for the UI"):
            bind("127.0.0.1", port, retries=0)


async def test_context_on_a_taken_port_serves_on_the_next_and_loopback_only() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = {"ui_enabled": True, "ui_port": port}
        async with StreamingContext(1.0, master="local", clock=ManualClock(), conf=conf) as ssc:
            ssc.queue_stream([[1]]).foreach_rdd(lambda rdd: None)
            assert ssc.ui_url is None
            await ssc.start()
            url = ssc.ui_url
            assert url is not None and url.startswith("http://127.0.0.1:")
            assert int(url.rsplit(":", 1)[1].strip("/")) > port
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("api/v1/applications")).status_code == 200
        with pytest.raises(httpx.ConnectError):  # stopped with the context
            httpx.get(url)


def test_when_the_ui_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert ui_enabled(StreamingConf()) is ui_available() is True  # the dev extra has it
    assert ui_enabled(StreamingConf(ui_enabled=False)) is False
    monkeypatch.setenv(ENV_VAR, "false")
    assert ui_enabled(StreamingConf()) is False
    assert ui_enabled(StreamingConf.of({"spark.ui.enabled": "true"})) is True
    monkeypatch.setenv(ENV_VAR, "1")
    assert ui_enabled(StreamingConf()) is True


async def test_testing_helper_and_suite_default_serve_nothing() -> None:
    from aiostream_engine.testing import run_stream

    assert await run_stream(lambda s: s.map(lambda x: x + 1), [[1], [2]]) == [[2], [3]]
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        ssc.queue_stream([[1]]).foreach_rdd(lambda rdd: None)
        await ssc.start()
        assert ssc.ui_url is None and ssc._ui is None


def test_a_lagging_queue_is_dropped_and_the_others_keep_up() -> None:
    feed = LiveFeed(StreamingStatus(ManualClock(), 1.0, retained=10), queue_size=4)
    slow = feed.subscribe()  # never read
    fast = feed.subscribe()
    got: list[bytes] = []
    for i in range(10):
        feed.publish("batch", {"n": i})
        feed.publish("batch", {"n": -i})
        feed.flush()  # one burst; never waits
        got.append(fast.receive_nowait())
    assert feed.dropped == 1 and feed.clients == 1
    assert [data for burst in got for _, data in messages(burst)] == [
        {"n": s * i} for i in range(10) for s in (1, -1)
    ]
    assert len([slow.receive_nowait() for _ in range(4)]) == 4
    with pytest.raises(anyio.EndOfStream):  # its stream ended: the browser reconnects
        slow.receive_nowait()
    feed.unsubscribe(fast)  # the page went away: no longer counted
    assert feed.clients == 0


def test_a_flood_of_events_becomes_one_reload_message() -> None:
    feed = LiveFeed(StreamingStatus(ManualClock(), 1.0, retained=10))
    page = feed.subscribe()
    for i in range(MAX_BURST):
        feed.publish("batch", {"n": i})
    feed.flush()
    assert [data["n"] for _, data in messages(page.receive_nowait())] == list(range(MAX_BURST))
    for i in range(MAX_BURST + 1):
        feed.publish("batch", {"n": i})
    feed.flush()
    assert page.receive_nowait() == RELOAD
    feed.close()
    with pytest.raises(anyio.EndOfStream):
        page.receive_nowait()


def messages(burst: bytes) -> list[tuple[str, Any]]:
    """(event, data) of each server-sent event in a burst."""
    found = []
    for message in burst.split(b"\n\n"):
        if message:
            event, data = message.split(b"\n")
            found.append((event.removeprefix(b"event: ").decode(), orjson.loads(data[6:])))
    return found


async def test_a_page_that_stops_reading_is_dropped_and_a_reading_one_gets_everything() -> None:
    """Over real sockets: a page whose connection stops reading holds the server's writes
    (uvicorn waits for the socket), its queue fills and it is dropped, while a page that
    reads gets every message in order and batches go on."""
    pad = "x" * 65536
    async with Scenario() as run, httpx.AsyncClient(base_url=run.ssc.ui_url, timeout=10) as client:
        assert run.ssc._ui is not None
        feed = run.ssc._ui.feed
        assert run.ssc.ui_url is not None
        host, port = run.ssc.ui_url.removeprefix("http://").strip("/").rsplit(":", 1)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((host, int(port)))
        stalled.sendall(b"GET /api/ui/events HTTP/1.1\r\nHost: ui\r\n\r\n")
        try:
            async with client.stream("GET", "api/ui/events") as response:
                lines = response.aiter_lines()
                assert await anext(lines) == "retry: 2000"  # this page has subscribed
                with anyio.fail_after(10):  # and the stalled one, over its own socket
                    while feed.clients < 2:
                        await anyio.sleep(0.01)
                received = []
                with anyio.fail_after(20):
                    while feed.dropped == 0:
                        n = len(received)
                        feed.publish("batch", {"n": n, "pad": pad})
                        feed.flush()
                        while len(received) == n:  # the reading page reads it
                            line = await anext(lines)
                            if line.startswith("data: "):
                                received.append(orjson.loads(line[6:])["n"])
                assert received == list(range(len(received)))
                assert len(received) > CLIENT_QUEUE_SIZE  # the socket held some first
                assert feed.clients == 1 and feed.dropped == 1
                await run.first_batch_done()  # the clock was never held
        finally:
            stalled.close()


async def test_event_stream_pushes_each_batch() -> None:
    async with Scenario() as run, httpx.AsyncClient(base_url=run.ssc.ui_url, timeout=10) as client:
        async with client.stream("GET", "api/ui/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            assert await anext(lines) == "retry: 2000"
            await run.until(lambda: run.ssc._ui is not None and run.ssc._ui.feed.clients == 1)
            run.clock.set_time(1.0)
            events = []
            while len(events) < 3:
                line = await anext(lines)
                if line.startswith("data: "):
                    events.append(orjson.loads(line[6:]))
    assert [(e["id"], e["status"]) for e in events] == [
        (1000, "QUEUED"), (1000, "PROCESSING"), (1000, "COMPLETED")
    ]
    assert events[-1]["records"] == 3 and events[-1]["inputs"] == {"0": 3}


async def test_serving_the_ui_uses_no_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages, their files, the API and /metrics are answered on the engine's loop alone:
    no request hands work to a worker thread (Starlette's StaticFiles and FileResponse do,
    through ``anyio.to_thread``, which this test watches)."""
    handed: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def watched(func: Any, *args: Any, **kwargs: Any) -> Any:
        handed.append(getattr(func, "__qualname__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    async with Scenario() as run, httpx.AsyncClient(base_url=run.ssc.ui_url) as client:
        await run.first_batch_done()
        (app,) = (await client.get("api/v1/applications")).json()
        page = (await client.get("")).text
        files = re.findall(r'(?:src|href)="(static/[^"]+)"', page)
        assert len(files) == 4  # the icon, the style sheet and two scripts
        monkeypatch.setattr(anyio.to_thread, "run_sync", watched)
        for path in [
            "", "batch?id=1000", "metrics", "api/ui/summary", "api/ui/batches",
            "api/ui/batches/1000", f"api/v1/applications/{app['id']}/streaming/batches", *files,
        ]:
            response = await client.get(path)
            assert response.status_code == 200, path
        assert (await client.get("static/../app.py")).status_code == 404
        assert (await client.get("static/nope.js")).status_code == 404
        monkeypatch.undo()
    assert handed == []
