"""The pipelined live loop (rtstyle/live_stages.py): one-slot hand-offs, stages that overlap, order and
timestamps kept, drops instead of queues, Ctrl-C leaving a playable recording."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from media_helpers import MJPEGServer, make_clip, one_torch_thread, probe, read_index, tiny_model  # noqa: F401
from rtstyle.backends import BackendOptions, create_backend
from rtstyle.live import LiveOptions, run_live
from rtstyle.live_stages import Handoff
from rtstyle.pipeline import FrameTranslator
from rtstyle.io.sources import open_source
from test_webcam import SlowBackend, moving

ROOT = Path(__file__).resolve().parents[1]


def test_handoff_keeps_the_newest_or_waits():
    stop = threading.Event()
    newest = Handoff(drop=True)
    for i in range(3):
        assert newest.put(i, stop)
    assert newest.take(0.1) == (True, 2) and newest.dropped == 2
    assert newest.take(0.05) == (False, None)

    every = Handoff(drop=False)
    every.put("a", stop)
    done = []
    t = threading.Thread(target=lambda: done.append(every.put("b", stop)))
    t.start()
    time.sleep(0.1)
    assert not done  # waits for the slot instead of replacing "a"
    assert every.take(0.1) == (True, "a")
    t.join(1)
    assert done == [True] and every.take(0.1) == (True, "b") and every.dropped == 0
    every.put("c", stop)
    stop.set()
    assert every.put("d", stop) is False  # a stopped pipeline does not wait forever
    every.close()
    assert every.take(0.1) == (True, "c") and every.closed


def test_translation_and_display_overlap(tiny_model):
    """0.1 s translation and 0.1 s display: serial ~5 fps, pipelined ~10 (set by the slowest stage)."""
    backend = SlowBackend(create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu")), delay=0.1)
    shown = []
    with MJPEGServer(moving, fps=25) as server:
        def on_frame(item, translated, latency):
            shown.append(read_index(item.rgb))
            time.sleep(0.1)  # a slow display / encoder

        report = run_live(open_source(server.url), FrameTranslator(backend, 32),
                          LiveOptions(show=False, max_frames=15), on_frame=on_frame, log=lambda m: None)
    assert report.frames == 15
    assert report.fps > 7.0, report.fps
    assert all(b > a for a, b in zip(shown, shown[1:])), shown  # newest first never means out of order
    assert np.median(report.latencies) < 0.5, report.latencies


def test_file_source_loses_no_frame_to_a_slow_display(tiny_model, tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=10, rate=Fraction(25, 2))
    out = tmp_path / "rec.mp4"
    backend = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu"))
    stamps = []

    def on_frame(item, translated, latency):
        stamps.append(item.pts)
        time.sleep(0.05)

    report = run_live(open_source(str(clip)), FrameTranslator(backend, 32),
                      LiveOptions(show=False, record=out), on_frame=on_frame, log=lambda m: None)
    assert report.frames == 10 and report.dropped == 0
    assert stamps == sorted(stamps) and len(set(stamps)) == 10
    p = probe(out)
    assert (p.frames, p.rate) == (10, Fraction(25, 2))


def test_ctrl_c_leaves_a_playable_recording(tiny_model, tmp_path):
    out = tmp_path / "rec.mp4"
    with MJPEGServer(moving, fps=25) as server:
        proc = subprocess.Popen([sys.executable, "cli.py", "webcam", "--model", str(tiny_model), "--source",
                                 server.url, "--no-show", "--record", str(out), "--size", "32", "--backend", "torch",
                                 "--stabilize"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 60
        while server.sent < 60 and time.monotonic() < deadline:  # running for a while
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err  # Ctrl-C exits 130 in every command (issue 15)
    assert "interrupted (Ctrl-C)" in err and "recorded ->" in err and "stabilize" in err
    p = probe(out)
    assert p.frames >= 3 and p.duration > 0, p
