"""`cli.py serve`: a page that sends the browser's camera over a WebSocket and shows it translated.

The page (`static/index.html`, `static/app.js`) captures the camera with getUserMedia, sends one JPEG at a
time over `/ws` and shows each translated frame next to the original with the fps and the round trip (sent
to shown); its controls change model, backend, processing size, side-by-side and stabilisation for that page.
Frames are checked (`decode_frame`: bytes, format, pixels) and decoded in a thread pool, translated by the
shared `TranslationQueue` (one model instance, fair between pages), encoded in the pool and sent back, so the
event loop only moves bytes. A server-side `--source` goes through the same queue and is viewed as MJPEG
(`/stream.mjpg`). Protocol: binary messages are JPEG frames both ways; text messages are JSON with a `type`:
`hello` (server: choices and limits), `settings` (page: changes), `result` (server: timings after a frame),
`error` and `warning` (server: what was refused and why; the connection stays open).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from aiohttp import WSMsgType, web
from PIL import Image, UnidentifiedImageError

from .queue import Client, ClientSettings, TranslationQueue
from .security import FrameLimits, auth_middleware, page_url, resolve_token
from .server import FrameHub, ServerThread, encode_jpeg, mjpeg_routes

STATIC = Path(__file__).parent / "static"
FORMATS = ("JPEG", "PNG", "WEBP")
MIN_SIDE = 16


class FrameError(ValueError):
    """A frame from a client that is refused; the message goes back to that client."""


def decode_frame(data: bytes, limits: FrameLimits) -> np.ndarray:
    """Encoded JPEG/PNG/WebP -> (h, w, 3) uint8 RGB, after checking its header against `limits`."""
    if len(data) > limits.max_bytes:
        raise FrameError(f"frame of {len(data)} bytes refused: the limit is {limits.max_bytes}")
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only: the size before any decoding
            fmt, (w, h) = img.format, img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise FrameError(f"not an image ({type(e).__name__}); send JPEG, PNG or WebP bytes") from None
    if fmt not in FORMATS:
        raise FrameError(f"{fmt} frames refused; send JPEG, PNG or WebP")
    if w * h > limits.max_pixels or max(w, h) > limits.max_side or min(w, h) < MIN_SIDE:
        raise FrameError(f"a {w}x{h} frame refused: at most {limits.max_pixels} pixels and {limits.max_side} px a "
                         f"side, at least {MIN_SIDE}; scale it down")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise FrameError(f"a {fmt} frame that does not decode (truncated or corrupt)")
    return np.ascontiguousarray(bgr[..., ::-1])  # (h, w, 3) RGB


class RateWindow:
    """At most `fps` frames a second over a 1 s window; `allow()` False for the rest."""

    def __init__(self, fps: float) -> None:
        self.fps, self.times = fps, []

    def allow(self) -> bool:
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < 1.0]
        if len(self.times) >= self.fps:
            return False
        self.times.append(now)
        return True


@dataclass(frozen=True)
class ServeOptions:
    """Serve a web page that sends the browser's camera to this machine and shows it translated next to the
    original, with fps and round trip; one model instance serves every open page fairly. Binds 127.0.0.1
    unless --host says otherwise.

    (The `serve` command's settings; the CLI maps onto those without `cli: False`.)"""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind; not loopback prints a warning and "
                                                             "needs a token"})
    port: int = field(default=8080, metadata={"help": "port (0: any free one)"})
    token: str | None = field(default=None, metadata={"help": "access token every request needs [generated when "
                                                              "--host is not loopback]"})
    source: str | None = field(default=None, metadata={"help": "also translate this server-side source (anything "
                                                               "webcam --source takes), viewed at /stream.mjpg",
                                                       "metavar": "SOURCE"})
    limits: FrameLimits = field(default=FrameLimits(), metadata={"cli": False})


class BrowserServer:
    """The `serve` app on its own thread: page, `/ws`, `/stats` and, with a source, `/stream.mjpg`."""

    def __init__(self, options: ServeOptions, settings: ClientSettings, load, models: list[str],
                 backends: list[str], log=print) -> None:
        self.options, self.log = options, log
        self.models, self.backends = models, backends
        self.token = resolve_token(options.host, options.token, log)
        self.queue = TranslationQueue(load, settings, log)
        self.queue.translator(settings.model, settings.backend)  # load now: a bad model fails at start
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jpeg")  # decode and encode
        self.hub = FrameHub()
        self.feeder: SourceFeeder | None = None
        self._names = itertools.count(1)
        app = web.Application(middlewares=[auth_middleware(self.token)])
        app.add_routes([web.get("/", self._page), web.get("/app.js", self._script), web.get("/ws", self._socket),
                        web.get("/stats", self._stats), *mjpeg_routes(self.hub)])
        self.queue.start()
        self.server = ServerThread(app, options.host, options.port).start()
        self.hub.attach(self.server.loop)
        self.url = page_url(options.host, self.server.port, self.token)

    def start_source(self, source) -> None:
        self.feeder = SourceFeeder(source, self.queue, self.hub, self.queue.default, self.log)
        self.feeder.start()

    def close(self) -> None:
        if self.feeder is not None:
            self.feeder.close()
        self.hub.close()
        self.server.close()
        self.queue.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- endpoints ------------------------------------------------------------------------------------------
    async def _page(self, request: web.Request) -> web.Response:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _script(self, request: web.Request) -> web.Response:
        return web.FileResponse(STATIC / "app.js", headers={"Cache-Control": "no-store"})

    def stats(self) -> dict:
        clients = [{"name": c.name, "translated": c.translated, "dropped": c.dropped,
                    "flooded": c.flooded, "translate_ms": round(1000 * c.last_translate_s, 1),
                    "settings": asdict(c.settings)} for c in list(self.queue.clients)]
        return {"model": self.queue.default.model, "backend": self.describe(), "clients": clients,
                "waiting": self.queue.waiting(), "translated": self.queue.translated,
                "loaded": [f"{m} ({b})" for m, b in self.queue.translators],
                "source": self.feeder.stats() if self.feeder else None, "limits": asdict(self.options.limits)}

    def describe(self) -> str:
        translator = self.queue.translators.get((self.queue.default.model, self.queue.default.backend))
        return translator.backend.describe() if translator else ""

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        limits = self.options.limits
        # aiohttp's own limit (closes with 1009) is the hard bound on what is buffered; below it, refusals are
        # messages and the connection stays open.
        ws = web.WebSocketResponse(max_msg_size=2 * limits.max_bytes, heartbeat=30)
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        latest: list = [None]

        def deliver(view, info) -> None:  # worker thread -> this connection's loop, newest result only
            def put() -> None:
                latest[0] = (view, info)
                ready.set()
            if not loop.is_closed():
                loop.call_soon_threadsafe(put)

        client = Client(f"browser {next(self._names)}", self.queue.default, deliver)
        self.queue.add(client)
        sender = asyncio.create_task(self._send_results(ws, ready, latest))
        rate, warned_at, decoding = RateWindow(limits.max_fps), 0.0, None
        await ws.send_json({"type": "hello", "name": client.name, "models": self.models, "backends": self.backends,
                            "settings": asdict(client.settings), "limits": asdict(limits),
                            "source": self.feeder is not None})
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    # One decode at a time per client, and at most max_fps a second: a frame that comes while
                    # the last one is still being decoded, or too soon, is dropped undecoded, so a flood costs
                    # the server reading it and nothing more.
                    busy = decoding is not None and not decoding.done()
                    if busy or (len(msg.data) <= limits.max_bytes and not rate.allow()):
                        client.flooded += 1
                        if time.monotonic() - warned_at > 1.0:
                            warned_at = time.monotonic()
                            await ws.send_json({"type": "warning", "message": f"frames arrive faster than they are "
                                                f"translated (or over {limits.max_fps:g}/s): {client.flooded} "
                                                "dropped so far; send one frame and await its result"})
                        continue
                    decoding = asyncio.ensure_future(self._decode_and_submit(ws, client, msg.data))
                elif msg.type == WSMsgType.TEXT:
                    try:
                        client.settings = self.apply_settings(client.settings, msg.data)
                        if self.feeder is not None and json.loads(msg.data).get("target") == "source":
                            self.feeder.client.settings = client.settings
                        await ws.send_json({"type": "settings", "settings": asdict(client.settings)})
                    except FrameError as e:
                        await ws.send_json({"type": "error", "message": str(e)})
        finally:
            self.queue.remove(client)
            sender.cancel()
        return ws

    async def _decode_and_submit(self, ws: web.WebSocketResponse, client: Client, data: bytes) -> None:
        try:
            rgb = await asyncio.get_running_loop().run_in_executor(self.pool, decode_frame, data,
                                                                   self.options.limits)
        except FrameError as e:
            if not ws.closed:
                await ws.send_json({"type": "error", "message": str(e)})
            return
        self.queue.submit(client, rgb)

    async def _send_results(self, ws: web.WebSocketResponse, ready: asyncio.Event, latest: list) -> None:
        loop = asyncio.get_running_loop()
        while not ws.closed:
            await ready.wait()
            ready.clear()
            view, info = latest[0]
            try:
                if view is None:
                    await ws.send_json({"type": "error", **info})
                    continue
                jpeg = await loop.run_in_executor(self.pool, encode_jpeg, view)
                await ws.send_bytes(jpeg)
                await ws.send_json({"type": "result", **info})
            except (ConnectionError, RuntimeError):
                return

    def apply_settings(self, settings: ClientSettings, text: str) -> ClientSettings:
        """A page's `settings` message -> new settings, or FrameError saying which value is wrong."""
        try:
            message = json.loads(text)
        except ValueError:
            raise FrameError("text messages must be JSON, e.g. {\"type\": \"settings\", \"size\": 256}") from None
        if not isinstance(message, dict) or message.get("type") != "settings":
            raise FrameError("unknown message; expected {\"type\": \"settings\", ...}")
        changes = {k: v for k, v in message.items() if k not in ("type", "target")}
        unknown = set(changes) - set(asdict(settings))
        if unknown:
            raise FrameError(f"unknown settings {sorted(unknown)}; known: {sorted(asdict(settings))}")
        if "model" in changes and changes["model"] not in self.models:
            raise FrameError(f"model {changes['model']!r} is not served here; choose one of {self.models}")
        if "backend" in changes and changes["backend"] not in self.backends:
            raise FrameError(f"backend {changes['backend']!r}: choose one of {self.backends}")
        size = changes.get("size", settings.size)
        if size is not None and (not isinstance(size, int) or not 64 <= size <= 2048):
            raise FrameError(f"size {size!r}: expected null (native) or an integer from 64 to 2048")
        strength = changes.get("stabilize", settings.stabilize)
        if strength is not None and (not isinstance(strength, (int, float)) or not 0 < strength < 1):
            raise FrameError(f"stabilize {strength!r}: expected null (off) or a strength in (0, 1)")
        if not isinstance(changes.get("side_by_side", False), bool):
            raise FrameError("side_by_side: expected true or false")
        return replace(settings, **changes)


class SourceFeeder(threading.Thread):
    """A server-side source through the shared queue, one frame in flight, into the MJPEG hub."""

    def __init__(self, source, queue: TranslationQueue, hub: FrameHub, settings: ClientSettings, log) -> None:
        super().__init__(name="source feeder", daemon=True)
        self.source, self.queue, self.hub, self.log = source, queue, hub, log
        self.done = threading.Event()
        self.stop = threading.Event()
        self.frames, self.started_at, self.ended = 0, time.monotonic(), None
        self.client = Client(f"source {source.name}", settings, self._deliver)
        queue.add(self.client)

    def _deliver(self, view, info) -> None:
        if view is not None:
            self.hub.publish(view)
            self.frames += 1
        self.done.set()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                item = self.source.read(timeout=10.0)
                if item is None:
                    self.ended = self.source.error or "source ended"
                    self.log(f"server source: {self.ended}")
                    return
                self.done.clear()
                self.queue.submit(self.client, item.rgb)
                while not self.done.wait(0.1) and not self.stop.is_set():
                    pass
        finally:
            self.queue.remove(self.client)

    def stats(self) -> dict:
        seconds = time.monotonic() - self.started_at
        return {"name": self.source.name, "frames": self.frames, "fps": round(self.frames / seconds, 2) if seconds else 0,
                "dropped": self.source.dropped, "ended": self.ended, "settings": asdict(self.client.settings)}

    def close(self) -> None:
        self.stop.set()
        self.join(11)
        self.source.close()


def run_server(server: BrowserServer, duration: float | None = None) -> None:
    """Serve until Ctrl-C (or `duration` seconds), then close everything."""
    try:
        end = None if duration is None else time.monotonic() + duration
        while end is None or time.monotonic() < end:
            time.sleep(0.2)
    except KeyboardInterrupt:
        server.log("interrupted")
    finally:
        server.close()


def serve(model: str, options: ServeOptions, backend_options, size: int | None = 256, *, log=print,
          duration: float | None = None) -> None:
    """The `serve` command: load `model`, start the page's server (and the server-side source), serve until
    Ctrl-C. The page may choose among the stored models and the registry's backends."""
    from ..backends import BACKENDS, create_backend
    from ..io.sources import open_source
    from ..store import stored_models

    def load(name: str, backend: str):
        return create_backend(name, replace(backend_options, backend=backend), log=log)

    models = [model, *(name for name in stored_models() if name != model)]  # what a page may choose
    settings = ClientSettings(model=model, backend=backend_options.backend, size=size)
    server = BrowserServer(options, settings, load, models, list(BACKENDS), log)
    try:
        if options.source is not None:
            server.start_source(open_source(options.source, realtime=True, log=log))
    except BaseException:
        server.close()
        raise
    log(f"serving {model} via {server.describe()}: open {server.url}")
    run_server(server, duration)
