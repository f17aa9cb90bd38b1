"""An aiohttp app in its own thread, and the MJPEG fan-out every stream client reads from.

`ServerThread` runs the app's event loop in a daemon thread, so the live loop (or the `serve` command's
main thread) keeps its own; a port that cannot be bound fails at start as a UserError. `FrameHub` takes views
from any thread (`publish` keeps only the newest), encodes JPEG in its own thread, and only while someone
watches, and wakes every client coroutine; a client awaits the next sequence number after the one it sent, so
a slow client skips to the newest frame instead of queueing, and one that stalls blocks only its own write.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import cv2
import numpy as np
from aiohttp import web

from ..errors import UserError

BOUNDARY = "frame"
JPEG_QUALITY = 80


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])  # OpenCV wants BGR
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {rgb.shape}")
    return data.tobytes()


class ServerThread:
    """`start()` binds `host:port` (0: any free port, read `port` after) and serves `app` until `close()`."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name="http server", daemon=True)

    def start(self) -> "ServerThread":
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise UserError(f"cannot serve on {self.host}:{self.port}: {self._error}; choose another port "
                            "(or host)") from None
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._bind())
        except OSError as e:  # address in use, no such interface, permission
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    async def _bind(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def close(self) -> None:
        if self._thread.is_alive() and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


class FrameHub:
    """Newest view -> JPEG (its own thread, while watched) -> every waiting client, newest only."""

    def __init__(self, quality: int = JPEG_QUALITY) -> None:
        self.quality = quality
        self.seq = 0  # of the newest JPEG
        self.jpeg: bytes | None = None
        self.encoded_at = 0.0
        self.encode_seconds = 0.0  # of the last frame, for /stats
        self.watchers = 0
        self.loop: asyncio.AbstractEventLoop | None = None  # set by `attach` on the server's loop
        self._event: asyncio.Event | None = None
        self._cond = threading.Condition()
        self._view: np.ndarray | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._encode_loop, name="jpeg encoder", daemon=True)
        self._thread.start()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.call_soon_threadsafe(self._new_event)

    def _new_event(self) -> None:
        self._event = asyncio.Event()

    def publish(self, view: np.ndarray) -> None:
        """Any thread; never blocks: an unencoded older view is replaced."""
        with self._cond:
            self._view = view
            self._cond.notify_all()

    def _encode_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or (self._view is not None and self.watchers > 0))
                if self._closed:
                    return
                view, self._view = self._view, None
            start = time.perf_counter()
            jpeg = encode_jpeg(view, self.quality)
            self.encode_seconds = time.perf_counter() - start
            self.jpeg, self.seq, self.encoded_at = jpeg, self.seq + 1, time.monotonic()
            if self.loop is not None and not self.loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed in between
                    self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        if event is not None:
            event.set()

    @contextlib.contextmanager
    def watching(self):
        with self._cond:
            self.watchers += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self.watchers -= 1

    async def next(self, after: int) -> tuple[int, bytes] | None:
        """(seq, jpeg) of the first frame newer than `after`; None once closed. On the server's loop."""
        while not self._closed:
            if self.seq > after and self.jpeg is not None:
                return self.seq, self.jpeg
            if self._event is None:
                self._new_event()
            await self._event.wait()
        return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._wake)


def mjpeg_routes(hub: FrameHub) -> list[web.RouteDef]:
    """`/stream.mjpg` (multipart/x-mixed-replace, what OBS, VLC and browsers read) and `/snapshot.jpg`."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-store"})
        await response.prepare(request)
        seq = 0
        with hub.watching():
            while (got := await hub.next(seq)) is not None:
                seq, jpeg = got
                try:  # waits only for this client's socket: a stalled one holds up no one else
                    await response.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                except (ConnectionError, RuntimeError):  # gone: nothing to clean up but this coroutine
                    break
        return response

    async def snapshot(request: web.Request) -> web.Response:
        fresh = hub.jpeg is not None and time.monotonic() - hub.encoded_at < 1.0
        with hub.watching():  # not encoding while no one watches: ask for the next frame
            try:
                got = (hub.seq, hub.jpeg) if fresh else await asyncio.wait_for(hub.next(hub.seq), 10)
            except asyncio.TimeoutError:
                got = None
        if got is None:
            raise web.HTTPServiceUnavailable(text="no frame yet\n")
        return web.Response(body=got[1], content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    return [web.get("/stream.mjpg", stream), web.get("/snapshot.jpg", snapshot)]
