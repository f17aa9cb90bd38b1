"""Two measurements beside the backend timings of `benchmark`: the live loop, and a busy core.

`live_record` runs the live loop (`live.run_live`, headless) on a source for a while and reports what a
user of `webcam` gets: fps, capture-to-display latency (median and p95), frames dropped by the newest-frame
hand-offs and frames skipped as similar, next to the bare backend fps at the same processing shape measured
just before and after it, so `live / bare` says what capture, hand-offs and composing cost (issue 13's goal:
>= 0.9); with `rounds` > 1 (`benchmark --live-rounds`) the median of that many such rounds.
A video file plays as fast as the loop takes it (every frame: the loop's throughput); with `realtime` it
plays at its own rate, as a camera would.

`BusyCores` keeps N processes spinning beside the timed one (issue 13: on a 2-core machine PyTorch with two
OpenMP threads was seen running ~10x slower while another process kept one core busy). `benchmark --busy N`
times alternate rounds with and without them, so each variant's busy/idle ratio comes from the same run.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from .backends import Backend
from .io.sources import open_source
from .live import LiveOptions, run_live
from .pipeline import FrameTranslator
from .transforms import preprocess, resize_to_plan

SPIN = "while True:\n    pass\n"  # one core kept busy, as a compile or a browser tab would


class BusyCores:
    """A context manager: `count` child processes that each keep a core busy until the block ends."""

    def __init__(self, count: int) -> None:
        self.count, self.procs = count, []

    def __enter__(self) -> BusyCores:
        self.procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(self.count)]
        time.sleep(0.05 * self.count)  # let them start spinning before the timed calls
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs = []


def bare_fps(call, x, seconds: float) -> float:
    """`call(x)` (`backend.infer` on a preprocessed (b, 3, h, w) batch, or `backend.infer_frames` on resized
    uint8 frames) for at least `seconds` and 3 calls: frames per second. The caller makes the shape's first
    call, which may compile."""
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < seconds:
        call(x)
        calls += 1
    return calls * x.shape[0] / (time.perf_counter() - start)


def bare_frames(backend: Backend, frames: np.ndarray, size: int | None, seconds: float) -> dict:
    """{"bare_frames_fps": fps} of `backend.infer_frames` on `frames` resized for `size`, for a backend that
    converts uint8 frames inside its graph (`Backend.fuses_frames`: what the pipeline runs); {} for others.

    The bare fps of a benchmark is the generator call on a ready tensor, as every figure is; this one, beside
    it, shows what the in-graph conversions cost or save."""
    if not backend.fuses_frames:
        return {}
    resized, _ = resize_to_plan(frames, size)
    backend.infer_frames(resized)  # this shape's first call may compile
    return {"bare_frames_fps": bare_fps(backend.infer_frames, resized, seconds)}


def median_round(fps: list[float], bares: list[float]) -> tuple[int, list[float], float]:
    """(index of the median round, every round's ratio, the median round's bare fps) for `fps[i]` measured
    between `bares[i]` and `bares[i + 1]`: each round against the mean of the two bare figures around it, so the
    ratio pairs what ran side by side while the machine's speed drifts (on this project's shared hosts, bare fps
    has moved 30% between calls seconds apart)."""
    around = [(bares[i] + bares[i + 1]) / 2 for i in range(len(fps))]
    ratios = [f / bare for f, bare in zip(fps, around)]
    middle = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    return middle, ratios, around[middle]


def live_record(backend: Backend, source: str, size: int | None, seconds: float = 10.0,
                bare_seconds: float = 5.0, realtime: bool = False, skip_similar: float | None = None,
                stabilize=None, log=lambda message: None, rounds: int = 1) -> dict:
    """The live loop on `source` for `seconds` (or until it ends) `rounds` times, each between two bare fps
    timings at its processing shape; the median round's figures are reported, with every round's ratio.

    One frame is read and translated first, untimed: that shape's first call may compile, or build an int8
    model (seconds), which would otherwise be counted as the loop's first frame.
    """
    probe = open_source(source, realtime=False, log=log)
    try:
        sample = probe.read(timeout=30.0)
    finally:
        probe.close()
    if sample is None:
        raise RuntimeError(f"--live {source}: no frame arrived ({probe.error or 'source ended'})")
    FrameTranslator(backend, size)(sample.rgb[None])
    x, _ = preprocess(sample.rgb[None], size)
    backend.infer(x)  # this shape's first call may compile
    bares, reports = [bare_fps(backend.infer, x, bare_seconds)], []
    for _ in range(max(1, rounds)):
        report = run_live(open_source(source, realtime=realtime, log=log), FrameTranslator(backend, size),
                          LiveOptions(size=size, show=False, duration=seconds, skip_similar=skip_similar), log=log,
                          stabilize=stabilize)
        if not report.frames:
            raise RuntimeError(f"--live {source}: no frame arrived ({report.ended})")
        reports.append(report)
        bares.append(bare_fps(backend.infer, x, bare_seconds))
    fps = [r.fps for r in reports]
    middle, ratios, bare = median_round(fps, bares)
    report = reports[middle]
    extra = bare_frames(backend, sample.rgb, size, bare_seconds)
    latencies_ms = 1000 * np.asarray(report.latencies)
    return {"source": source, "realtime": realtime, "frames": report.frames, "seconds": report.seconds,
            "live_fps": report.fps, "bare_fps": bare, "live_vs_bare": ratios[middle],
            "live_vs_bare_rounds": ratios, "bare_fps_rounds": bares, "live_fps_rounds": fps,
            "latency_median_ms": float(np.median(latencies_ms)), "latency_p95_ms": float(np.percentile(latencies_ms, 95)),
            "translate_ms": 1000.0 / bare, "dropped": report.dropped, "skipped": report.skipped,
            "stage_ms_per_frame": report.times.ms_per_frame(),
            "processing": "x".join(map(str, sample.rgb.shape[:2])) + (f" -> short side {size}" if size else ""),
            "ended": report.ended, **extra}
