"""Issue 14's overhead figures, on a real clip: the live loop with no output vs with the MJPEG server (one
client reading), and the browser path (one WebSocket client, one frame in flight, as the page does): round
trip vs translation time. Runs each variant `--rounds` times, interleaved (the machine may be shared), and
prints medians as a Markdown table.

    python scripts/bench_outputs.py --model demo --clip ../shared/media/bottle-640x360.mp4 [--frames 120]
    xvfb-run -a python scripts/bench_outputs.py --window ...   # also the window path (needs a display)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402, F401  before anything imports PyAV: PyAV first makes OpenCV's Qt window hang
import aiohttp  # noqa: E402

from rtstyle.backends import BackendOptions, create_backend  # noqa: E402
from rtstyle.io.sources import open_source  # noqa: E402
from rtstyle.live import LiveOptions, run_live  # noqa: E402
from rtstyle.pipeline import FrameTranslator  # noqa: E402
from rtstyle.serve.browser import BrowserServer, ServeOptions  # noqa: E402
from rtstyle.serve.mjpeg import MJPEGSink  # noqa: E402
from rtstyle.serve.queue import ClientSettings  # noqa: E402
from rtstyle.serve.server import encode_jpeg  # noqa: E402
import av  # noqa: E402

quiet = lambda message: None  # noqa: E731


def live_ms(backend, clip: str, frames: int, size: int, sinks=(), show: bool = False) -> float:
    """ms per frame of the live loop on every frame of `clip` (a file: nothing dropped), window if `show`."""
    report = run_live(open_source(clip), FrameTranslator(backend, size),
                      LiveOptions(size=size, show=show, max_frames=frames, duration=None), log=quiet, sinks=sinks)
    return 1000 * report.seconds / report.frames


def mjpeg_ms(backend, clip: str, frames: int, size: int) -> tuple[float, int, float]:
    """(ms per frame, JPEGs the client read, encode ms) with `webcam --serve`'s sink and one client reading."""
    sink = MJPEGSink("127.0.0.1", 0, model="bench", log=quiet)
    stop, read = threading.Event(), [0]

    def reader() -> None:
        with urllib.request.urlopen(sink.url, timeout=30) as response:
            while not stop.is_set():
                line = response.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    response.readline()
                    response.read(int(line.split(b":")[1]))
                    read[0] += 1

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.3)
    try:
        ms = live_ms(backend, clip, frames, size, sinks=[sink])  # closes the sink
    finally:
        stop.set()
    return ms, read[0], 1000 * sink.hub.encode_seconds


def browser_ms(backend, model: str, jpegs: list[bytes], size: int) -> tuple[float, float, float]:
    """(ms per frame, median round trip ms, median translation ms) for one WebSocket client, one in flight."""
    server = BrowserServer(ServeOptions(port=0), ClientSettings(model=model, size=size), lambda m, b: backend,
                           [model], ["auto"], quiet)

    async def client() -> tuple[list[float], list[float], float]:
        rtts, translate = [], []
        async with aiohttp.ClientSession() as session, session.ws_connect(server.url + "ws") as ws:
            await ws.receive_json()  # hello
            start = time.perf_counter()
            for data in jpegs:
                sent = time.perf_counter()
                await ws.send_bytes(data)
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                rtts.append(1000 * (time.perf_counter() - sent))
                translate.append(json.loads((await ws.receive()).data)["translate_ms"])
            return rtts, translate, 1000 * (time.perf_counter() - start) / len(jpegs)

    try:
        rtts, translate, per_frame = asyncio.run(client())
    finally:
        server.close()
    return per_frame, statistics.median(rtts), statistics.median(translate)


def chromium_ms(backend, model: str, clip: str, size: int, seconds: float, chromium: str) -> tuple[float, float, float]:
    """(fps, median round trip ms, median translation ms) shown by the real page in headless Chromium, its
    fake camera playing `clip` at 640x360 (a Y4M made from it), sampled every 0.25 s for `seconds`."""
    import tempfile

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_browser import write_y4m

    server = BrowserServer(ServeOptions(port=0), ClientSettings(model=model, size=size), lambda m, b: backend,
                           [model], ["auto"], quiet)
    with tempfile.TemporaryDirectory() as tmp:
        y4m = write_y4m(Path(clip), Path(tmp) / "clip.y4m", 640, 360, 30)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=[
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    f"--use-file-for-fake-video-capture={y4m}"])
                page = browser.new_page()
                page.goto(server.url)
                page.wait_for_function("Number(document.getElementById('frames').textContent) >= 10", timeout=120_000)
                rtts, translate, start = [], [], time.monotonic()
                first = int(page.text_content("#frames"))
                while time.monotonic() - start < seconds:
                    rtts.append(float(page.text_content("#rtt")))
                    translate.append(float(page.text_content("#translate")))
                    time.sleep(0.25)
                fps = (int(page.text_content("#frames")) - first) / (time.monotonic() - start)
                browser.close()
        finally:
            server.close()
    return fps, statistics.median(rtts), statistics.median(translate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--clip", default=str(Path(__file__).resolve().parents[2] / "shared/media/bottle-640x360.mp4"))
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--window", action="store_true", help="also time the window path (needs a display)")
    parser.add_argument("--chromium", help="also run the page in this headless Chromium (e.g. /usr/bin/chromium)")
    args = parser.parse_args()

    backend = create_backend(args.model, BackendOptions(backend=args.backend))
    with av.open(args.clip) as container:  # what a browser sends: the clip's frames as JPEG (quality 85)
        jpegs = [encode_jpeg(f.to_ndarray(format="rgb24"), 85)
                 for _, f in zip(range(args.frames), container.decode(video=0))]
    live_ms(backend, args.clip, 10, args.size)  # warm-up (first-call allocations, int8 cache)
    rows: dict[str, list] = {"none": [], "window": [], "mjpeg": [], "browser": []}
    for r in range(args.rounds):
        rows["none"].append(live_ms(backend, args.clip, args.frames, args.size))
        if args.window:
            rows["window"].append(live_ms(backend, args.clip, args.frames, args.size, show=True))
        rows["mjpeg"].append(mjpeg_ms(backend, args.clip, args.frames, args.size))
        rows["browser"].append(browser_ms(backend, args.model, jpegs, args.size))
        print(f"round {r + 1}: none {rows['none'][-1]:.1f}, window {rows['window'][-1:]}, mjpeg {rows['mjpeg'][-1]}, "
              f"browser {rows['browser'][-1]}", file=sys.stderr)
    none = statistics.median(rows["none"])
    mjpeg = statistics.median(m[0] for m in rows["mjpeg"])
    read = statistics.median(m[1] for m in rows["mjpeg"])
    encode = statistics.median(m[2] for m in rows["mjpeg"])
    browser = statistics.median(b[0] for b in rows["browser"])
    rtt = statistics.median(b[1] for b in rows["browser"])
    translate = statistics.median(b[2] for b in rows["browser"])
    print(f"{backend.describe()}, size {args.size}, {args.frames} frames of {Path(args.clip).name}, "
          f"{args.rounds} rounds (medians), {platform.processor() or platform.machine()}")
    window = statistics.median(rows["window"]) if rows["window"] else None
    vs = lambda ms: f"{ms / none:.2f}x | " + (f"{ms / window:.2f}x" if window else "not run")  # noqa: E731
    print("| path | ms per frame | vs no output | vs window |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| live loop, no output (--no-show) | {none:.1f} | {vs(none)} |")
    if window:
        print(f"| live loop, window with overlay | {window:.1f} | {vs(window)} |")
    print(f"| live loop + MJPEG server, 1 client reading ({read:.0f} JPEGs, encode {encode:.1f} ms in its thread) "
          f"| {mjpeg:.1f} | {vs(mjpeg)} |")
    print(f"| browser path, 1 client, one frame in flight | {browser:.1f} | {vs(browser)} |")
    if args.chromium:
        fps, page_rtt, page_translate = chromium_ms(backend, args.model, args.clip, args.size, 15, args.chromium)
        print(f"| the page in headless Chromium, fake camera 640x360 (15 s) | {1000 / fps:.1f} | {vs(1000 / fps)} |")
        print(f"Chromium page: round trip median {page_rtt:.0f} ms vs translation {page_translate:.0f} ms: "
              f"{page_rtt / page_translate:.2f}x")
    print(f"browser round trip median {rtt:.1f} ms vs translation {translate:.1f} ms in the queue: "
          f"{rtt / translate:.2f}x (vs the no-output loop's {none:.1f} ms/frame: {rtt / none:.2f}x)")


if __name__ == "__main__":
    main()
