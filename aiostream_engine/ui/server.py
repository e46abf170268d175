"""Serves the UI's ASGI app with uvicorn on the engine's own event loop (no thread).

The listening socket is bound here, before the server starts, so the address is known
(and printed) at once: ``ui_port``, else the next free port (up to ``ui_port_retries``
more, as Spark's ``spark.port.maxRetries``), or any free port for 0. Uvicorn's own signal
handling is switched off: Ctrl-C belongs to whoever runs the engine.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus

log = logging.getLogger("aiostream_engine.ui")


def bind(host: str, port: int, retries: int) -> socket.socket:
    """A listening TCP socket on ``host``: ``port`` or the next free one; 0: any."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    candidates = [0] if port == 0 else range(port, min(port + retries, 65535) + 1)
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, candidate))
            sock.listen(128)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            last = exc
    raise OSError(
        errno.EADDRINUSE,
        f"no free port for the UI on {host} in {port}..{port + retries} ({last})",
    )


def url_of(sock: socket.socket) -> str:
    """The http URL of a listening socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the engine's owner handles signals


class UIServer:
    """One uvicorn server of the UI app, run as a task of the engine."""

    def __init__(self, app: Any, host: str, port: int, retries: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._retries = retries
        self._server: _EmbeddedServer | None = None
        self._done = anyio.Event()
        self.url: str | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind, report started (``url`` is set), then serve until ``stop()``. A UI that
        cannot bind or fails is logged: it never stops the streaming job."""
        try:
            sock = bind(self._host, self._port, self._retries)
        except OSError as exc:
            log.warning("web UI not started: %s", exc)
            self._done.set()
            task_status.started()
            return
        self.url = url_of(sock)
        config = uvicorn.Config(
            self._app, lifespan="off", log_config=None, access_log=False,
            timeout_graceful_shutdown=1, ws="none",
        )
        self._server = _EmbeddedServer(config)
        task_status.started()
        try:
            await self._server.serve(sockets=[sock])
        except Exception:  # the UI failing must not take the job down
            log.exception("web UI failed")
        finally:
            for server in getattr(self._server, "servers", []):
                server.close()
            sock.close()
            self._done.set()

    async def stop(self, timeout: float = 2.0) -> None:
        """Ask the server to exit and wait (at most ``timeout`` s) until it has."""
        if self._server is not None:
            self._server.should_exit = True
        with anyio.move_on_after(timeout):
            await self._done.wait()
