"""`cli.py webcam`: a real MJPEG stream over HTTP on 127.0.0.1, dropped-not-queued frames, lost streams, other
sources, bad input, and the window path under a virtual display (Xvfb)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import run_main
from media_helpers import (MJPEGServer, make_clip, one_torch_thread, pattern, probe, read_frames,  # noqa: F401
                           read_index, tiny_model, x264_options)
from rtstyle.backends import Backend, BackendOptions, create_backend
from rtstyle.io.images import read_image, write_image
from rtstyle.io.sources import StreamSource, open_source
from rtstyle.live import LiveOptions, run_live
from rtstyle.pipeline import FrameTranslator

ROOT = Path(__file__).resolve().parents[1]


def moving(i: int) -> np.ndarray:
    return pattern(i, 64, 96)  # 96 wide: room for the 12-bit frame index stamped in its top row


def test_records_a_translated_http_mjpeg_stream(tiny_model, tmp_path):
    out = tmp_path / "rec.mp4"
    with MJPEGServer(moving, fps=25) as server:
        assert run_main("webcam", "--model", tiny_model, "--source", server.url, "--no-show", "--record", out,
                       "--max-frames", 8, "--size", 32) == 0
    p = probe(out)
    assert (p.frames, p.width, p.height) == (8, 96, 64)
    recorded = read_frames(out)[-1].astype(int)
    assert np.abs(recorded - moving(0).astype(int)).mean() > 10  # the translation, not the camera picture
    assert "cabac=0" in x264_options(out)  # x264 ultrafast: `--preset auto`'s choice for a light model


class SlowBackend(Backend):
    """The real backend plus a fixed delay: translation slower than the stream."""

    name = "slow"

    def __init__(self, inner: Backend, delay: float) -> None:
        super().__init__(inner.info)
        self.inner, self.delay = inner, delay

    def infer(self, x):
        time.sleep(self.delay)
        return self.inner.infer(x)


def test_slow_translation_drops_frames_instead_of_queueing(tiny_model):
    backend = SlowBackend(create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu")), delay=0.2)
    lags = []
    with MJPEGServer(moving, fps=25) as server:
        source = open_source(server.url)

        def on_frame(item, translated, latency):
            lags.append(server.sent - read_index(item.rgb))  # frames the server sent after this one

        report = run_live(source, FrameTranslator(backend, 32), LiveOptions(show=False, max_frames=10),
                          on_frame=on_frame, log=lambda message: None)
    assert report.frames == 10
    # 25 fps and >= 0.2 s per translation: about 5 frames arrive per frame translated. Queued, the lag would
    # grow by ~4 frames per translation (to ~40 by the end); dropped, it stays about one translation long.
    assert report.dropped >= 20
    assert max(lags) <= 12, lags
    assert np.mean(lags[-3:]) <= np.mean(lags[:3]) + 4, lags
    assert max(report.latencies) < 1.0, report.latencies


def test_lost_stream_is_retried_then_ends_cleanly(tiny_model, tmp_path):
    messages = []
    out = tmp_path / "rec.mp4"
    with MJPEGServer(moving, fps=25, stop_after=12) as server:
        source = StreamSource(server.url, timeout=2, log=messages.append)
        source.retry_delay = 0.05
        source.start()
        backend = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu"))
        report = run_live(source, FrameTranslator(backend, 32), LiveOptions(show=False, record=out),
                          log=messages.append)
    assert report.error and "gave up after 3 reconnection attempts" in report.error
    assert any("reconnecting (1/3)" in m for m in messages), messages
    assert 1 <= report.frames <= 12
    assert report.recorded == out and probe(out).frames == report.frames  # the recording is complete


def test_unreachable_stream_is_a_clear_error(tiny_model, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run_main("webcam", "--model", tiny_model, "--source", f"http://127.0.0.1:{port}/stream.mjpg",
                   "--no-show") == 2
    err = capsys.readouterr().err
    assert f"could not open stream http://127.0.0.1:{port}/stream.mjpg" in err and "refused" in err.lower()


def test_missing_camera_says_what_to_try(tiny_model, capsys):
    assert run_main("webcam", "--model", tiny_model, "--source", "63", "--no-show") == 2
    err = capsys.readouterr().err
    assert "could not open camera 63" in err and "another index" in err


def test_missing_source_file(tiny_model, tmp_path, capsys):
    assert run_main("webcam", "--model", tiny_model, "--source", tmp_path / "nope.mp4", "--no-show") == 2
    assert "not found" in capsys.readouterr().err


def test_no_display_is_a_clear_error(tiny_model, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert run_main("webcam", "--model", tiny_model, "--source", "0") == 2
    err = capsys.readouterr().err
    assert "no display" in err and "--no-show" in err
    monkeypatch.setenv("DISPLAY", ":87")  # set, but no X server behind it
    assert run_main("webcam", "--model", tiny_model, "--source", "0") == 2
    assert "cannot connect to the X display" in capsys.readouterr().err


def test_existing_recording_needs_overwrite(tiny_model, tmp_path, capsys):
    out = tmp_path / "rec.mp4"
    out.write_bytes(b"keep")
    assert run_main("webcam", "--model", tiny_model, "--source", tmp_path, "--no-show", "--record", out) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep"


def test_video_file_source_translates_every_frame_with_its_timing(tiny_model, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=9, rate=Fraction(25, 2))
    out = tmp_path / "rec.mp4"
    assert run_main("webcam", "--model", tiny_model, "--source", clip, "--no-show", "--record", out,
                   "--size", 32) == 0
    p = probe(out)
    assert (p.frames, p.rate) == (9, Fraction(25, 2))


def test_image_folder_and_glob_sources(tiny_model, tmp_path):
    for i in range(3):
        write_image(tmp_path / f"im{i}.png", pattern(i, 40, 56))
    (tmp_path / "notes.txt").write_text("not an image")
    backend = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu"))
    for spec in (tmp_path, str(tmp_path / "im*.png")):
        seen = []
        report = run_live(open_source(str(spec)), FrameTranslator(backend, 32), LiveOptions(show=False),
                          on_frame=lambda item, out, lat: seen.append(out.shape), log=lambda m: None)
        assert report.ended == "source ended" and seen == [(40, 56, 3)] * 3


def test_recording_images_of_different_sizes_letterboxes_them(tiny_model, tmp_path):
    write_image(tmp_path / "a.png", pattern(0, 40, 56))
    write_image(tmp_path / "b.png", np.full((50, 20, 3), 200, np.uint8))  # tall: fitted into 40x56, bars beside
    out = tmp_path / "rec.mp4"
    backend = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu"))
    report = run_live(open_source(str(tmp_path)), FrameTranslator(backend, 32),
                      LiveOptions(show=False, record=out), log=lambda m: None)
    frames = read_frames(report.recorded)
    assert [f.shape for f in frames] == [(40, 56, 3)] * 2
    assert frames[1][:, :8].max() < 30  # black bar left of the narrower picture


# --- the window, under a virtual display --------------------------------------------------------------------
@pytest.fixture
def xvfb():
    missing = [tool for tool in ("Xvfb", "xdotool", "xwd") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install xvfb xdotool x11-apps): "
                    "the window test needs a virtual display")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            pass_fds=[write_fd], stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()  # Xvfb writes the display it chose once it accepts connections
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def read_xwd(path: Path) -> np.ndarray:
    """An `xwd` dump (ZPixmap, 24/32 bits per pixel, as Xvfb writes it) -> (h, w, 3) RGB."""
    data = path.read_bytes()
    header = np.frombuffer(data[:100], ">u4")
    header_size, width, height = int(header[0]), int(header[4]), int(header[5])
    byte_order, bits_per_pixel, bytes_per_line, ncolors = (int(header[i]) for i in (7, 11, 12, 19))
    assert bits_per_pixel == 32, f"unexpected xwd depth {bits_per_pixel}"
    pixels = np.frombuffer(data, np.uint8, count=bytes_per_line * height, offset=header_size + 12 * ncolors)
    pixels = pixels.reshape(height, bytes_per_line)[:, :width * 4].reshape(height, width, 4)
    return pixels[:, :, [2, 1, 0]] if byte_order == 0 else pixels[:, :, [1, 2, 3]]  # LSB first: B, G, R, X


def test_window_shows_the_translation_and_keys_work(xvfb, tiny_model, tmp_path):
    # A flat picture: instance norm makes the generator's output (nearly) flat too, about one colour whatever
    # the input's; the input gets black or white, whichever is farther, so a screenshot tells which is shown.
    # 320x240: larger than the smallest window a toolkit draws, so the window is exactly the picture.
    options = BackendOptions(backend="torch", device="cpu", precision="fp32")  # the same as the window's below
    translator = FrameTranslator(create_backend(str(tiny_model), options), 64)

    def quadrant(image: np.ndarray) -> np.ndarray:  # bottom right: away from the overlay (top left)
        h, w = image.shape[:2]
        return image[h // 2:, w // 2:].reshape(-1, 3).mean(axis=0)

    translated = quadrant(translator(np.full((1, 240, 320, 3), 128, np.uint8))[0])
    original = np.where(translated > 127, 0, 255).astype(np.uint8)
    translated = quadrant(translator(np.full((1, 240, 320, 3), original, np.uint8))[0])
    assert np.abs(original - translated).max() > 60
    env = {**os.environ, "DISPLAY": xvfb, "OMP_NUM_THREADS": "1"}

    def screenshot() -> np.ndarray:
        shot = tmp_path / "shot.xwd"
        subprocess.run(["xwd", "-silent", "-id", window, "-out", str(shot)], env=env, check=True, timeout=20)
        image = read_xwd(shot)
        assert image.shape[:2] == (240, 320), f"window of {image.shape[:2]}, not the picture's size"
        return quadrant(image)

    def wait_shown(expected: np.ndarray, failure: str) -> None:
        """Screenshots until the window shows `expected`: the first frame can take a while on a loaded machine
        (the window is black until then), so a fixed wait would be a guess."""
        deadline, why = time.monotonic() + 120, ""
        while True:
            try:
                shown = screenshot()
            except (subprocess.CalledProcessError, AssertionError) as e:  # not mapped yet (xwd: BadMatch), or
                shown, why = np.full(3, np.nan), str(e)  # not yet at the picture's size: look again
            if np.abs(shown - expected).max() < 12:
                return
            assert time.monotonic() < deadline, f"{failure} (shown {shown}, expected {expected}; {why})"
            time.sleep(0.3)

    def key(name: str) -> None:
        subprocess.run(["xdotool", "key", "--window", window, name], env=env, check=True, timeout=20)

    with MJPEGServer(lambda i: np.full((240, 320, 3), original, np.uint8), fps=15, stamp=False) as server:
        proc = subprocess.Popen([sys.executable, "cli.py", "webcam", "--model", str(tiny_model), "--source",
                                 server.url, "--size", "64", "--snapshot-dir", str(tmp_path), "--duration", "90",
                                 "--backend", "torch", "--precision", "fp32"],
                                cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        try:
            window, deadline = "", time.monotonic() + 300
            while not window and time.monotonic() < deadline and proc.poll() is None:
                found = subprocess.run(["xdotool", "search", "--name", "^rtstyle$"], env=env, capture_output=True,
                                       text=True)
                window = found.stdout.split()[0] if found.stdout.split() else ""
                time.sleep(0.2)
            assert window, f"no window appeared: {proc.stderr.read() if proc.poll() is not None else ''}"
            wait_shown(translated, "the window does not show the translation")
            key("s")
            deadline = time.monotonic() + 120
            while not list(tmp_path.glob("rtstyle-*.png")) and time.monotonic() < deadline:
                time.sleep(0.1)
            snapshot = read_image(next(tmp_path.glob("rtstyle-*.png")))
            assert snapshot.shape == (240, 320, 3) and np.abs(quadrant(snapshot) - translated).max() < 6
            key("space")
            wait_shown(original, "space did not switch to the original")
            key("plus")
            time.sleep(0.5)
            key("q")
            _, err = proc.communicate(timeout=300)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    for said in ("snapshot ->", "showing the original", "processing size 64 -> 96", "quit key"):
        assert said in err, err


def test_a_server_that_keeps_accepting_and_dropping_is_given_up_on(tiny_model):
    """Issue 15: each reconnection got a frame or two, which reset the count, so the log said "(1/3)" forever.
    The count now starts again only after the source stayed up for `stable_after` seconds."""
    messages = []
    with MJPEGServer(moving, fps=25, per_connection=2) as server:
        source = StreamSource(server.url, timeout=2, log=messages.append)
        source.retry_delay = 0.05
        source.start()
        frames = 0
        while frames < 40 and source.read(timeout=10) is not None:  # 40: retried for ever, the old behaviour
            frames += 1
        source.close()
    counts = [m.split("reconnecting ")[1] for m in messages if "reconnecting (" in m]
    assert counts == ["(1/3)", "(2/3)", "(3/3)"], messages
    assert source.error and "gave up after 3 reconnection attempts" in source.error
    assert server.connections == 4 and frames >= 1
