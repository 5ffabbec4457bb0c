"""The dashboard's web server: one page, its static files, the state as JSON and a server-sent-event stream.

Starlette serves it and uvicorn runs it (the ``dashboard`` extra; a device running ``join`` needs
neither). ``GET /api/stream`` sends the view's snapshot, then every patch as it happens
(docs/dashboard.md): a status an agent publishes reaches the page in one broker hop plus one SSE
write, no polling. A browser that cannot keep up (its queue past :data:`MAX_QUEUED`) gets a fresh
snapshot instead of an ever-growing backlog. Every response forbids loading anything from another
origin (``Content-Security-Policy``): the page works offline because everything ships in
``static/``. Beyond loopback the page is behind HTTP basic auth with the observer's account and TLS.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import UserError
from .view import LabView

STATIC = Path(__file__).with_name("static")
MAX_QUEUED = 2000  # patches waiting for one browser before it is sent a snapshot instead
PING_S = 15.0  # an SSE comment this often keeps proxies and the browser from timing the stream out
HEADERS = {"Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class BasicAuth:
    """The one account that may open the page (the lab's observer, when the dashboard is exposed)."""

    username: str
    password: str

    def allows(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.username) & secrets.compare_digest(password, self.password)


class _Guard:
    """ASGI middleware: the security headers on every response, and basic auth when configured."""

    def __init__(self, app: ASGIApp, auth: BasicAuth | None) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.auth is not None:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1") or None
            if not self.auth.allows(header):
                await Response("the lab's observer account is needed", 401,
                               {"WWW-Authenticate": 'Basic realm="edge-mcepl dashboard"', **HEADERS})(
                    scope, receive, send)
                return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *((k.lower().encode(), v.encode()) for k, v in HEADERS.items())]
            await send(message)

        await self.app(scope, receive, with_headers)


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def create_app(view: LabView, auth: BasicAuth | None = None) -> ASGIApp:
    """The ASGI app of one view."""

    async def page(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def state(_request: Request) -> Response:
        return JSONResponse(view.snapshot(), headers={"Cache-Control": "no-store"})

    async def stream(_request: Request) -> Response:
        return StreamingResponse(_events(view), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    app = Starlette(routes=[Route("/", page), Route("/api/state", state), Route("/api/stream", stream),
                            Mount("/static", StaticFiles(directory=STATIC), name="static")])
    return _Guard(app, auth)


async def _events(view: LabView) -> AsyncIterator[str]:
    """The snapshot, then each patch, for as long as the browser listens."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    overflow = threading.Event()

    def put(kind: str, data: dict[str, Any]) -> None:  # the source's thread
        if queue.qsize() >= MAX_QUEUED:
            overflow.set()
            return
        loop.call_soon_threadsafe(queue.put_nowait, (kind, data))

    unsubscribe = view.subscribe(put)
    try:  # a closed page ends this at the next write (a patch or the ping): send raises, finally unsubscribes
        while True:
            if overflow.is_set():
                overflow.clear()
                while not queue.empty():
                    queue.get_nowait()
                yield _sse("snapshot", view.snapshot())
                continue
            try:
                kind, data = await asyncio.wait_for(queue.get(), PING_S)
            except asyncio.TimeoutError:
                yield ": ping\n\n"
                continue
            yield _sse(kind, data)
    finally:
        unsubscribe()


@dataclass(frozen=True)
class Tls:
    cert_file: str
    key_file: str


class DashboardServer:
    """uvicorn on a socket bound here (so ``port 0`` works and a busy port is one line), in a thread or not."""

    def __init__(self, view: LabView, host: str, port: int, auth: BasicAuth | None = None,
                 tls: Tls | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
            self._socket.listen(128)  # now: a second dashboard on this port fails here, not in uvicorn's thread
        except OSError as exc:
            self._socket.close()
            raise UserError(f"dashboard: cannot listen on {host}:{port} ({exc.strerror}); choose --port") from None
        self.port = self._socket.getsockname()[1]
        self.host, self.tls = host, tls
        config = uvicorn.Config(create_app(view, auth), log_level="warning", access_log=False,
                                ssl_certfile=tls.cert_file if tls else None, ssl_keyfile=tls.key_file if tls else None)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def run(self) -> None:
        """Serve until interrupted (uvicorn handles SIGINT/SIGTERM in the main thread)."""
        self._server.run(sockets=[self._socket])

    def start(self) -> DashboardServer:
        """Serve from a daemon thread (``broker --dashboard``, ``lab --dashboard``, tests)."""
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="dashboard-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
