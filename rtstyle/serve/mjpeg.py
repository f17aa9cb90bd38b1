"""`webcam --serve [HOST:]PORT`: the live loop's view as an MJPEG stream, a snapshot and JSON stats over HTTP.

`MJPEGSink` is a live-loop sink: `write` hands the view to the `FrameHub` (newest only, encoded in its own
thread) and keeps the status for `/stats`, so the loop pays a reference swap per frame whatever the clients
do. The server starts when the sink is made, before the model loads, so a busy port fails at start.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
from aiohttp import web

from ..io.sinks import LiveStatus
from .security import auth_middleware, page_url, resolve_token
from .server import FrameHub, ServerThread, mjpeg_routes


class MJPEGSink:
    """Serves `/stream.mjpg`, `/snapshot.jpg` and `/stats` on `host:port` until `close()`."""

    def __init__(self, host: str, port: int, token: str | None = None, *, model: str = "", backend: str = "",
                 log=print) -> None:
        self.token = resolve_token(host, token, log)
        self.hub = FrameHub()
        self.status: LiveStatus | None = None
        self.model, self.backend = model, backend
        self.started_at = time.monotonic()
        app = web.Application(middlewares=[auth_middleware(self.token)])
        app.add_routes([*mjpeg_routes(self.hub), web.get("/stats", self._stats), web.get("/", self._index)])
        self.server = ServerThread(app, host, port).start()
        self.hub.attach(self.server.loop)
        self.url = page_url(host, self.server.port, self.token, "/stream.mjpg")
        log(f"MJPEG stream: {self.url}  (also /snapshot.jpg, /stats)")

    def started(self, source, backend) -> None:
        self.backend = backend.describe()

    def write(self, view: np.ndarray, status: LiveStatus) -> None:
        self.status = status
        self.hub.publish(view)

    def stats(self) -> dict:
        status = asdict(self.status) if self.status else {}
        latency = status.pop("latency_s", None)
        return {**status, "latency_ms": None if latency is None else round(1000 * latency, 1),
                "model": self.model, "backend": self.backend, "clients": self.hub.watchers,
                "jpeg_encode_ms": round(1000 * self.hub.encode_seconds, 2),
                "uptime_s": round(time.monotonic() - self.started_at, 1)}

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _index(self, request: web.Request) -> web.Response:
        suffix = f"?token={self.token}" if self.token else ""
        return web.Response(content_type="text/html", text=(
            f"<!doctype html><title>rtstyle</title><img src='/stream.mjpg{suffix}' alt='live view'>"))

    def close(self) -> None:
        self.hub.close()
        self.server.close()
