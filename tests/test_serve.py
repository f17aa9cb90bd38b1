"""The HTTP outputs (issue 14): `webcam --serve` read by real HTTP clients, and the `serve` server's safety
(token on every endpoint, oversized, malformed and flooding WebSocket clients, flat memory), with real
processes, a real clip and aiohttp's client."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import aiohttp
import cv2
import numpy as np
import pytest

from conftest import start_cli
from media_helpers import REAL_CLIP, MJPEGServer, one_torch_thread, read_frames, tiny_model  # noqa: F401
from rtstyle.errors import UserError
from rtstyle.serve.browser import FrameError, decode_frame
from rtstyle.serve.security import FrameLimits, is_loopback, parse_address, resolve_token

TOKEN = "test-token-123"


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    return read_frames(REAL_CLIP)  # 30 frames, 640x360


@pytest.fixture(scope="module")
def mjpeg_webcam(tiny_model, clip_frames):
    """`webcam --serve` on the real clip, fed live (looping) over HTTP MJPEG, as a camera would be."""
    with MJPEGServer(lambda i: clip_frames[i % len(clip_frames)], fps=30, stamp=False) as camera:
        started = start_cli("webcam", "--model", tiny_model, "--source", camera.url, "--no-show", "--size", 32,
                            "--backend", "torch", "--serve", "127.0.0.1:0", "--duration", 120,
                            ready=r"MJPEG stream: (http://\S+)")
        yield started.match.group(1).rsplit("/", 1)[0]
        started.stop()


def read_mjpeg(url: str, n: int, timeout: float = 60) -> list[np.ndarray]:
    """Read `n` JPEG parts of a multipart/x-mixed-replace stream and decode them (RGB)."""
    frames = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        while len(frames) < n:
            line = response.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                response.readline()  # the blank line before the body
                bgr = cv2.imdecode(np.frombuffer(response.read(length), np.uint8), cv2.IMREAD_COLOR)
                assert bgr is not None
                frames.append(bgr[..., ::-1])
    return frames


def test_mjpeg_stream_serves_decodable_translated_frames(mjpeg_webcam, clip_frames):
    frames = read_mjpeg(mjpeg_webcam + "/stream.mjpg", 5)
    assert all(f.shape == (360, 640, 3) for f in frames)  # the source's size
    closest = min(np.abs(frames[-1].astype(int) - c.astype(int)).mean() for c in clip_frames)
    assert closest > 10  # the translation (a random tiny generator), not the camera picture
    with urllib.request.urlopen(mjpeg_webcam + "/snapshot.jpg", timeout=30) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)


def test_mjpeg_two_clients_and_a_stalled_one(mjpeg_webcam):
    results: dict[str, float] = {}

    def timed_read(name: str) -> None:
        start = time.monotonic()
        read_mjpeg(mjpeg_webcam + "/stream.mjpg", 10)
        results[name] = time.monotonic() - start

    timed_read("alone")
    # A client that connects and never reads: its socket buffers fill, then the server's write to it waits.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", int(mjpeg_webcam.rsplit(":", 1)[1])))
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(2)  # long enough for ~20 frames of ~20 KB to fill its buffers
    threads = [threading.Thread(target=timed_read, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    stalled.close()
    assert set(results) == {"alone", "a", "b"}
    # Two readers at once and a stalled one cost each reader little: not a growing queue, not a blocked loop.
    assert max(results["a"], results["b"]) < 2.5 * results["alone"] + 1.0, results


def test_mjpeg_stats_is_json(mjpeg_webcam):
    read_mjpeg(mjpeg_webcam + "/stream.mjpg", 2)
    with urllib.request.urlopen(mjpeg_webcam + "/stats", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        stats = json.loads(response.read())
    for key in ("fps", "latency_ms", "backend", "model", "skipped", "dropped", "frames"):
        assert key in stats, stats
    assert stats["frames"] > 0 and stats["fps"] > 0 and "torch" in stats["backend"]
    deadline = time.monotonic() + 20  # clients that went away are forgotten: nothing kept for them
    while stats["clients"] and time.monotonic() < deadline:
        time.sleep(0.2)
        with urllib.request.urlopen(mjpeg_webcam + "/stats", timeout=30) as response:
            stats = json.loads(response.read())
    assert stats["clients"] == 0, stats


def test_webcam_serve_with_a_token_refuses_requests_without_it():
    from rtstyle.io.sinks import LiveStatus
    from rtstyle.serve.mjpeg import MJPEGSink

    sink = MJPEGSink("127.0.0.1", 0, TOKEN, model="m", log=lambda m: None)
    try:
        sink.write(np.zeros((48, 64, 3), np.uint8), LiveStatus(1, 1.0, 0.1, 0, 0, 256))
        base = sink.url.split("/stream.mjpg")[0]
        for path in ("/", "/stream.mjpg", "/snapshot.jpg", "/stats", "/other"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path, timeout=10)
            assert e.value.code == 401, path
        with urllib.request.urlopen(f"{base}/snapshot.jpg?token={TOKEN}", timeout=10) as r:
            assert cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    finally:
        sink.close()


# --- the serve command's safety -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_model, clip_frames):
    """`serve --token` with a server-side source too (the real clip, live over HTTP) sharing its queue."""
    with MJPEGServer(lambda i: clip_frames[i % len(clip_frames)], fps=15, stamp=False) as camera:
        started = start_cli("serve", "--model", tiny_model, "--backend", "torch", "--size", 64, "--port", 0,
                            "--token", TOKEN, "--source", camera.url, ready=r"open (http://\S+)")
        url = started.match.group(1).split("?")[0].rstrip("/")
        yield url, started.proc.pid
        started.stop()


def test_serve_shows_its_own_source_as_mjpeg(server):
    url, _ = server
    frames = read_mjpeg(f"{url}/stream.mjpg?token={TOKEN}", 3)
    assert all(f.shape == (360, 640, 3) for f in frames)
    with urllib.request.urlopen(f"{url}/stats?token={TOKEN}", timeout=30) as r:
        stats = json.loads(r.read())
    assert stats["source"]["frames"] >= 3 and stats["source"]["fps"] > 0


def jpeg(h: int = 120, w: int = 160, seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)
    return cv2.imencode(".jpg", rgb)[1].tobytes()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


async def session_do(url: str, body):
    async with aiohttp.ClientSession() as session:
        return await body(session)


async def expect_result(ws) -> dict:
    """The next translated frame (binary) and its `result` message; fails on an error message."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 60)
        if msg.type == aiohttp.WSMsgType.BINARY:
            assert cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR) is not None
            info = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
            assert info["type"] == "result"
            return info
        info = json.loads(msg.data)
        assert info["type"] not in ("error", "warning"), info


async def next_message(ws, kind: str) -> dict:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 30)
        if msg.type == aiohttp.WSMsgType.TEXT and (info := json.loads(msg.data))["type"] == kind:
            return info


ENDPOINTS = ["/", "/app.js", "/ws", "/stats", "/stream.mjpg", "/snapshot.jpg", "/no-such-page"]


@pytest.mark.parametrize("given", [None, "wrong-token"])
def test_every_endpoint_needs_the_token(server, given):
    url, _ = server

    async def body(session):
        statuses = {}
        for path in ENDPOINTS:
            headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} if path == "/ws" else {}
            params = {"token": given} if given else {}
            async with session.get(url + path, params=params, headers=headers) as r:
                statuses[path] = r.status
        return statuses

    assert asyncio.run(session_do(url, body)) == {path: 401 for path in ENDPOINTS}
    # ... and the right token opens them (the page, its script, the stats)
    for path in ("/", "/app.js", "/stats"):
        with urllib.request.urlopen(f"{url}{path}?token={TOKEN}", timeout=30) as r:
            assert r.status == 200
    request = urllib.request.Request(url + "/stats", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert json.loads(r.read())["model"]


def test_oversized_and_malformed_frames_get_a_message_and_others_keep_being_served(server):
    url, pid = server

    async def body(session):
        async with session.ws_connect(f"{url}/ws?token={TOKEN}") as bad, \
                session.ws_connect(f"{url}/ws?token={TOKEN}") as good:
            hello = await next_message(bad, "hello")
            await next_message(good, "hello")
            limits = FrameLimits(**hello["limits"])
            await bad.send_bytes(b"\x00" * (limits.max_bytes + 1))  # too many bytes
            too_many_bytes = await next_message(bad, "error")
            big = cv2.imencode(".jpg", np.zeros((2200, 2200, 3), np.uint8))[1].tobytes()  # few bytes, 4.8 Mpx
            await bad.send_bytes(big)
            too_many_pixels = await next_message(bad, "error")
            await bad.send_bytes(jpeg()[:300])  # a JPEG cut short
            truncated = await next_message(bad, "error")
            await bad.send_bytes(b"GIF89a not really")
            garbage = await next_message(bad, "error")
            await bad.send_str("{not json")
            bad_text = await next_message(bad, "error")
            await good.send_bytes(jpeg())
            served = await expect_result(good)
            await bad.send_bytes(jpeg(seed=1))  # the refused client itself is still served
            still = await expect_result(bad)
            return too_many_bytes, too_many_pixels, truncated, garbage, bad_text, served, still

    too_many_bytes, too_many_pixels, truncated, garbage, bad_text, served, still = asyncio.run(session_do(url, body))
    assert "bytes refused" in too_many_bytes["message"]
    assert "2200x2200" in too_many_pixels["message"] and "scale it down" in too_many_pixels["message"]
    assert "does not decode" in truncated["message"] or "not an image" in truncated["message"]
    assert "not an image" in garbage["message"] or "refused" in garbage["message"]
    assert "JSON" in bad_text["message"]
    assert served["translate_ms"] > 0 and still["translate_ms"] > 0


def test_a_flood_keeps_the_queue_bounded_and_memory_flat(server):
    url, pid = server
    frame = jpeg(240, 320, seed=2)  # ~230 KB of noise: a heavy frame to decode and hold

    async def body(session):
        async with session.ws_connect(f"{url}/ws?token={TOKEN}") as flood, \
                session.ws_connect(f"{url}/ws?token={TOKEN}") as other:
            await next_message(flood, "hello")
            await next_message(other, "hello")
            await other.send_bytes(jpeg())
            await expect_result(other)  # warmed up: the model and the pools exist
            before = rss_mb(pid)
            for _ in range(400):  # ~90 MB offered as fast as the socket takes it, no result awaited
                await flood.send_bytes(frame)
            warning = await next_message(flood, "warning")
            for _ in range(100):  # until the server has read all 400 (each one flooded, replaced or translated)
                async with session.get(f"{url}/stats?token={TOKEN}") as r:
                    stats = await r.json()
                flooder = max(stats["clients"], key=lambda c: c["flooded"])
                if flooder["flooded"] + flooder["dropped"] + flooder["translated"] >= 399:
                    break
                await asyncio.sleep(0.1)
            await other.send_bytes(jpeg(seed=3))
            served = await expect_result(other)  # the flood does not starve the other client
            after = rss_mb(pid)
        for _ in range(100):  # both gone: the server keeps nothing for them (the source's client stays)
            async with session.get(f"{url}/stats?token={TOKEN}") as r:
                left = [c["name"] for c in (await r.json())["clients"]]
            if not any(name.startswith("browser") for name in left):
                break
            await asyncio.sleep(0.1)
        return before, after, warning, stats, served, left

    before, after, warning, stats, served, left = asyncio.run(session_do(url, body))
    assert all(name.startswith("source") for name in left), left
    assert "faster than they are translated" in warning["message"]
    assert stats["waiting"] <= len(stats["clients"])  # one frame per client at most
    flooder = max(stats["clients"], key=lambda c: c["flooded"])
    assert flooder["flooded"] + flooder["dropped"] + flooder["translated"] >= 399  # one may still be decoding
    assert flooder["flooded"] > 300  # most never reached the decoder
    assert after - before < 40, f"server RSS grew {after - before:.0f} MB under a 90 MB flood"
    assert served["translate_ms"] > 0


def test_the_queue_serves_clients_in_turn(tiny_model, clip_frames):
    """A client that always has a frame waiting does not starve one that sends a frame at a time."""
    from rtstyle.backends import BackendOptions, create_backend
    from rtstyle.serve.queue import Client, ClientSettings, TranslationQueue

    backend = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu"))
    queue = TranslationQueue(lambda m, b: backend, ClientSettings(model="tiny", size=64), lambda m: None)
    order: list[str] = []
    done = threading.Event()
    a, b = clip_frames[0][:96, :128], clip_frames[1][:96, :128]
    greedy = Client("greedy", queue.default, lambda view, info: (order.append("greedy"),
                                                                  queue.submit(greedy, a)))
    polite = Client("polite", queue.default, lambda view, info: (order.append("polite"), done.set()))
    for client in (greedy, polite):
        queue.add(client)
    queue.start()
    try:
        queue.submit(greedy, a)
        while len(order) < 3:
            time.sleep(0.01)
        for _ in range(3):  # each time, the polite client's frame is next after at most one greedy one
            done.clear()
            seen = len(order)
            queue.submit(polite, b)
            assert done.wait(30)
            assert order[seen:].index("polite") <= 1, order[seen:]
        assert greedy.dropped == 0  # it never sent faster than it was served: nothing replaced
    finally:
        queue.close()


def test_decode_frame_checks_before_decoding():
    limits = FrameLimits(max_bytes=10_000, max_pixels=100 * 100, max_side=200)
    assert decode_frame(jpeg(50, 60), limits).shape == (50, 60, 3)
    flat = cv2.imencode(".jpg", np.zeros((120, 120, 3), np.uint8))[1].tobytes()  # few bytes, too many pixels
    for bad, words in [(flat, "pixels"), (b"\xff\xd8\xff" + b"\x00" * 20, "not an image"),
                       (b"x" * 10_001, "bytes")]:
        with pytest.raises(FrameError, match=words):
            decode_frame(bad, limits)


def test_address_and_token_rules():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:81") == ("::1", 81)
    with pytest.raises(UserError, match=r"\[HOST:\]PORT"):
        parse_address("localhost:http")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    said: list[str] = []
    assert resolve_token("127.0.0.1", None, said.append) is None and not said  # loopback: no token needed
    token = resolve_token("0.0.0.0", None, said.append)
    assert token and len(token) >= 16 and any(token in line for line in said)
    assert any("warning" in line and "not loopback" in line for line in said)
    assert resolve_token("192.168.1.5", "mine", said.append) == "mine"
