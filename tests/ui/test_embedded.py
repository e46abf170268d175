"""``ssc.ui_app()`` mounted under /streaming in a user's own Starlette app, served by the
user's server: the page, the API and /metrics answer under the prefix."""

from __future__ import annotations

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.testing import advance_batches
from aiostream_engine.ui.server import UIServer

pytestmark = pytest.mark.anyio


async def test_ui_app_mounted_under_a_prefix() -> None:
    clock = ManualClock(0.0)
    async with StreamingContext(1.0, master="local", clock=clock, conf={"ui_enabled": False}) as ssc:
        ssc.queue_stream([[1, 2, 3], [4]]).foreach_rdd(lambda rdd: None)

        async def hello(request: object) -> PlainTextResponse:
            return PlainTextResponse("the service")

        service = Starlette(routes=[Route("/", hello), Mount("/streaming", app=ssc.ui_app())])
        server = UIServer(service, "127.0.0.1", 0, 0)
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            await ssc.start()
            assert ssc.ui_url is None  # the engine serves nothing itself
            infos = await advance_batches(ssc, 2)
            assert ssc._ui is not None
            await ssc._ui.status.wait_for_batch(infos[-1].batch_time)
            async with httpx.AsyncClient(base_url=server.url) as client:
                assert (await client.get("/")).text == "the service"
                page = await client.get("/streaming/")
                batch_page = await client.get("/streaming/batch", params={"id": 2000})
                (app,) = (await client.get("/streaming/api/v1/applications")).json()
                batches = (await client.get(
                    f"/streaming/api/v1/applications/{app['id']}/streaming/batches"
                )).json()
                metrics = (await client.get("/streaming/metrics")).text
                script = await client.get("/streaming/static/app.js")
            await server.stop()
            tg.cancel_scope.cancel()
    assert page.status_code == 200 and '<base href="/streaming/">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert batch_page.status_code == 200 and '<base href="/streaming/">' in batch_page.text
    assert [b["batchId"] for b in batches] == [2000, 1000]
    assert [b["inputSize"] for b in batches] == [1, 3]
    assert "aiostream_batches_completed_total 2.0" in metrics
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
