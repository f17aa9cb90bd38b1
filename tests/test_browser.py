"""The `serve` page in a real browser (issue 14): headless Chromium (Debian's package, driven by playwright's
driver, no browser download) with a fake camera playing a real clip, translated frames shown on the page.

`.ci/run` installs chromium; the test is skipped, with the reason, only where no chromium exists."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import pytest

from conftest import start_cli
from media_helpers import REAL_CLIP

CHROMIUM = os.environ.get("RTSTYLE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = os.environ.get("RTSTYLE_SCREENSHOT")  # also save the screenshot here (for a person to look at)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (.ci/run installs Debian's `chromium`)")


def write_y4m(src: Path, dst: Path, width: int = 320, height: int = 240, rate: int = 15) -> Path:
    """The clip as the raw Y4M Chromium's fake camera plays (and loops): 320x240, yuv420p, every frame."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(inp.decode(video=0)):
            frame = frame.reformat(width, height, "yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return dst


def test_page_translates_the_browser_camera(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (the [dev] extra) is not installed")
    clip = write_y4m(REAL_CLIP, tmp_path / "clip.y4m")  # 30 frames: 2 s at 15 fps
    server = start_cli("serve", "--model", "demo", "--backend", "torch", "--size", 128, "--port", 0,
                       ready=r"open (http://\S+)")
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}"])
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 520})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(server.match.group(1))
                page.wait_for_function("Number(document.getElementById('frames').textContent) >= 8", timeout=90_000)
                fps = float(page.text_content("#fps"))
                rtt = float(page.text_content("#rtt"))
                size = page.evaluate("[document.getElementById('translated').naturalWidth, "
                                     "document.getElementById('translated').naturalHeight]")
                page.select_option("#size", "192")  # a control: the server answers with the new settings
                page.wait_for_function("document.getElementById('translate').textContent !== '-'")
                shot = page.screenshot(path=str(tmp_path / "serve.png"))
                if SCREENSHOT:
                    Path(SCREENSHOT).write_bytes(shot)
                message = page.text_content("#message")
            finally:
                browser.close()
    finally:
        log = server.stop()
    assert not errors, errors
    assert fps > 0 and rtt > 0, (fps, rtt)
    assert size == [320, 240]  # the camera's frame, translated at its own size
    assert message == "", message
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    assert "Traceback" not in log, log
