"""The UI's ASGI app (Starlette): the page, Spark's REST API, /metrics, the live feed.

Every route is a GET: nothing here changes the running job. Pages are static HTML whose
script fills them from the JSON API with ``textContent`` (user text is never parsed as
HTML), under a Content-Security-Policy that allows only this app's own script and style.
All links are relative to a ``<base>`` carrying the mount path, so the app works at ``/``
on its own server and under any prefix in a user's app (``Mount("/streaming", ...)``).

The page's few small files are read once and served from memory: no file access on the
event loop and no worker thread per request (Starlette's ``StaticFiles`` uses both).
"""

from __future__ import annotations

import html
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from . import spark_api, views
from .live import event_stream

if TYPE_CHECKING:
    from .runtime import StreamingUI

STATIC = files("aiostream_engine.ui") / "static"
_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # Source metadata is shown as given; what JSON cannot hold is shown as its str().
        return orjson.dumps(content, default=str, option=orjson.OPT_NON_STR_KEYS)


def _read_assets() -> dict[str, tuple[bytes, str]]:
    """Every file of ``static/``: name -> (content, media type)."""
    assets = {}
    for entry in STATIC.iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if entry.is_file() and suffix in _TYPES:
            assets[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return assets


def _page(template: bytes, request: Request) -> HTMLResponse:
    base = html.escape(request.scope.get("root_path", "").rstrip("/") + "/", quote=True)
    text = template.decode("utf-8").replace("{{base}}", base)
    return HTMLResponse(text, headers=SECURITY_HEADERS)


def _int(request: Request, name: str) -> int:
    return int(request.path_params[name])


def build_app(ui: StreamingUI) -> Starlette:
    status = ui.status
    assets = _read_assets()

    def check_app(request: Request) -> None:
        app_id = request.path_params["app_id"]
        if app_id != ui.application.id:
            raise spark_api.NotFound(f"no such app: {app_id}")

    async def index(request: Request) -> Response:
        return _page(assets["index.html"][0], request)

    async def batch_page(request: Request) -> Response:
        return _page(assets["batch.html"][0], request)

    async def static(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            return PlainTextResponse("not found", status_code=404)
        content, media_type = found
        return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(ui.registry), media_type=CONTENT_TYPE_LATEST)

    async def applications(request: Request) -> Response:
        return JSON(spark_api.applications(ui.application, status, ui.now()))

    async def statistics(request: Request) -> Response:
        check_app(request)
        return JSON(spark_api.statistics(status))

    async def receivers(request: Request) -> Response:
        check_app(request)
        return JSON(spark_api.receivers(status))

    async def receiver(request: Request) -> Response:
        check_app(request)
        return JSON(spark_api.receiver(status, _int(request, "stream_id")))

    async def batches(request: Request) -> Response:
        check_app(request)
        wanted = spark_api.parse_statuses(request.query_params.getlist("status"))
        return JSON(spark_api.batches(status, wanted))

    async def batch(request: Request) -> Response:
        check_app(request)
        return JSON(spark_api.batch(status, spark_api.find_batch(status, _int(request, "batch_id"))))

    async def operations(request: Request) -> Response:
        check_app(request)
        return JSON(spark_api.operations(spark_api.find_batch(status, _int(request, "batch_id"))))

    async def operation(request: Request) -> Response:
        check_app(request)
        info = spark_api.find_batch(status, _int(request, "batch_id"))
        return JSON(spark_api.operation(spark_api.find_operation(info, _int(request, "op_id"))))

    async def ui_summary(request: Request) -> Response:
        return JSON(views.summary(status, ui.view, ui.application, ui.feed.clients))

    async def ui_batches(request: Request) -> Response:
        return JSON(views.batch_rows(status))

    async def ui_batch(request: Request) -> Response:
        info = spark_api.find_batch(status, _int(request, "batch_id"))
        return JSON(views.batch_detail(status, info))

    async def events(request: Request) -> Response:
        return StreamingResponse(
            event_stream(ui.feed),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=404)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=400)

    streaming = "/api/v1/applications/{app_id}/streaming"
    routes = [
        Route("/", index),
        Route("/batch", batch_page),
        Route("/metrics", metrics),
        Route("/api/v1/applications", applications),
        Route(f"{streaming}/statistics", statistics),
        Route(f"{streaming}/receivers", receivers),
        Route(streaming + "/receivers/{stream_id:int}", receiver),
        Route(f"{streaming}/batches", batches),
        Route(streaming + "/batches/{batch_id:int}", batch),
        Route(streaming + "/batches/{batch_id:int}/operations", operations),
        Route(streaming + "/batches/{batch_id:int}/operations/{op_id:int}", operation),
        Route("/api/ui/summary", ui_summary),
        Route("/api/ui/batches", ui_batches),
        Route("/api/ui/batches/{batch_id:int}", ui_batch),
        Route("/api/ui/events", events),
        Route("/static/{name}", static),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={spark_api.NotFound: not_found, spark_api.BadParameter: bad_request},
    )
