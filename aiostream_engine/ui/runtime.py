"""The UI of one StreamingContext: status, metrics, live feed, the app and its server.

The context makes one when the UI is enabled or when the user asks for ``ui_app()`` or
``metrics_registry``; ``run`` is then one of the engine's tasks (the lag probe, and the
server when the UI is served), ``stop`` ends it before the engine's task group closes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry

from ..dstream.input import ReceiverInputDStream
from ..loop_lag import LoopLagProbe
from .engine_view import EngineView
from .live import LiveFeed
from .metrics import StreamingMetrics
from .server import UIServer
from .spark_api import Application
from .status import StreamingStatus

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..context import StreamingContext

_app_counter = 0


def _new_app_id() -> str:
    """Spark's form for a local run: ``local-<start epoch ms>``, unique in this process."""
    global _app_counter
    _app_counter += 1
    return f"local-{int(time.time() * 1000)}-{_app_counter:04d}"


class StreamingUI:
    """Everything the UI keeps for one context: its status, metrics registry, live feed,
    lag probe, the ASGI app (built on first use) and, when served, the web server."""

    def __init__(self, ssc: StreamingContext) -> None:
        from .. import __version__

        self._ssc = ssc
        self.lag = LoopLagProbe()
        self.view = EngineView(ssc, self.lag)
        self.status = StreamingStatus(ssc.clock, ssc.batch_interval, ssc.conf.retained_batches)
        self.registry = CollectorRegistry(auto_describe=True)
        self.feed = LiveFeed(self.status)
        self.metrics = StreamingMetrics(self.registry, self.status, self.view, self.feed)
        self.application = Application(_new_app_id(), ssc.conf.app_name, __version__)
        for listener in (self.status, self.metrics, self.feed):  # status first: others read it
            ssc.add_streaming_listener(listener)
        self._app: Starlette | None = None
        self._server: UIServer | None = None

    @property
    def app(self) -> Starlette:
        """The ASGI app (``ssc.ui_app()``)."""
        if self._app is None:
            from .app import build_app

            self._app = build_app(self)
        return self._app

    @property
    def url(self) -> str | None:
        """Where the server listens, once it has bound (``ssc.ui_url``)."""
        return self._server.url if self._server is not None else None

    def now(self) -> float:
        """The context's clock."""
        return self._ssc.clock.now()

    def graph_built(self) -> None:
        """The graph is final (the context is starting): learn its input streams."""
        inputs = self._ssc._inputs
        names = {s.id: s.name for s in inputs}
        self.status.set_inputs(names, sum(isinstance(s, ReceiverInputDStream) for s in inputs))
        self.metrics.set_inputs(names)

    async def run(self, serve: bool, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The probe, and with ``serve`` the web server on the configured host and port."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.lag.run, name="event-loop lag probe")
            tg.start_soon(self.feed.run, name="live feed")
            if serve:
                conf = self._ssc.conf
                self._server = UIServer(self.app, conf.ui_host, conf.ui_port, conf.ui_port_retries)
                await tg.start(self._server.run, name="web UI")
            task_status.started()
            await anyio.sleep_forever()

    async def stop(self) -> None:
        """Close the live feeds and stop serving (the caller then cancels ``run``)."""
        self.application.end_time = self.now()
        self.feed.close()
        if self._server is not None:
            await self._server.stop()
