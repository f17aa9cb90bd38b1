"""The streaming building blocks shared by file conversion and the live loop: timed stages and threads.

A frame travels source -> preprocess -> infer -> postprocess -> sink. `FrameTranslator` is the middle
three (the pure `transforms.preprocess`/`postprocess` around a backend), timing each into `StageTimes`;
for a backend that converts inside its graph (`Backend.fuses_frames`: OpenVINO) it only resizes around
`backend.submit_frames`, which takes and returns uint8 frames and runs asynchronously, so a caller can keep
one batch in flight while it hands on the last (`FrameTranslator.submit`).
`Worker` runs one stage in a thread between bounded queues, so decoding, translation and encoding overlap
(each stage keeps FIFO order, so frame order is kept) and a slow stage makes the others wait instead of
filling memory. Errors in a worker are re-raised in the thread that joins it.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .backends import Backend
from .backends.base import Pending
from .tiling import fits_at_once, guarded_infer
from .transforms import frames_to_tensor, pad_to_multiple, postprocess, resize_frames, resize_to_plan

STAGES = ("decode", "preprocess", "infer", "postprocess", "encode")
END = object()  # queue sentinel: no more items


@dataclass
class StageTimes:
    """Seconds spent per stage and frames through it; each stage is written by one thread only."""

    seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    frames: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STAGES})

    def add(self, stage: str, seconds: float, frames: int = 1) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.frames[stage] = self.frames.get(stage, 0) + frames

    def ms_per_frame(self) -> dict[str, float]:
        return {s: 1000.0 * self.seconds[s] / self.frames[s] for s in self.seconds if self.frames.get(s)}

    def summary(self) -> str:
        """'decode 2.1 | preprocess 1.3 | infer 250.0 | ... ms/frame' (stages that ran)."""
        return " | ".join(f"{s} {ms:.1f}" for s, ms in self.ms_per_frame().items()) + " ms/frame"


class timed:
    """`with timed(times, 'infer', n): ...` adds the block's duration for n frames."""

    def __init__(self, times: StageTimes | None, stage: str, frames: int = 1) -> None:
        self.times, self.stage, self.frames = times, stage, frames

    def __enter__(self) -> "timed":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.times is not None:
            self.times.add(self.stage, time.perf_counter() - self.start, self.frames)


class FrameTranslator:
    """uint8 RGB frames (b, h, w, 3) -> translated frames of the same shape, through `backend`.

    `size` is the processing-size policy of `transforms.plan_for` (None: native, N: short side N); it may be
    changed between calls (the live loop's +/- keys).
    """

    def __init__(self, backend: Backend, size: int | None, times: StageTimes | None = None) -> None:
        self.backend = backend
        self.size = size
        self.times = times if times is not None else StageTimes()
        self._done = 0.0  # when the last asynchronous result was collected (see `submit`)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.submit(frames)()

    def submit(self, frames: np.ndarray, parallel: int = 1) -> Pending:
        """Start translating `frames`; returns the `Pending` result. With a backend that infers asynchronously
        (`Backend.submit_frames`) this returns while the model runs (`Pending.running`), so the caller can hand
        on the previous result meanwhile (`video.convert_video`); the infer stage is timed from when the model
        could start it (submitted, and the one before done) to when its result was collected. `parallel` 2: the
        caller keeps two batches in flight for throughput, so they may run side by side (OpenVINO's streams)."""
        n = len(frames)
        with timed(self.times, "preprocess", n):
            resized, plan = resize_to_plan(frames, self.size)  # (b, H, W, 3) uint8
        h, w = plan.resized
        if self.backend.fuses_frames and plan.padded == plan.resized and fits_at_once(self.backend, n, h, w):
            # two batches side by side only where the memory of both fits (tiling's estimate)
            parallel = parallel if parallel > 1 and fits_at_once(self.backend, n * parallel, h, w) else 1
            submitted = time.perf_counter()
            pending = self.backend.submit_frames(resized, parallel)  # OpenVINO: uint8 frames in and out, in-graph

            def result(y: np.ndarray) -> np.ndarray:
                done = time.perf_counter()
                self.times.add("infer", done - max(submitted, self._done), n)
                self._done = done
                with timed(self.times, "postprocess", n):
                    return resize_frames(y, *plan.source)

            return pending.then(result)
        with timed(self.times, "preprocess", 0):  # the same frames: counted once above
            x, _ = pad_to_multiple(frames_to_tensor(resized))  # (b, 3, H, W) float32 in [-1, 1]
        with timed(self.times, "infer", n):
            y = guarded_infer(self.backend, x)  # (b, 3, H, W); tiled when too large for memory
        with timed(self.times, "postprocess", n):
            out = postprocess(y, plan)  # (b, h, w, 3) uint8 at the source size
        return Pending(lambda: out)


class Stopped(Exception):
    """Raised inside a worker's `put` when the pipeline is being stopped."""


class Worker(threading.Thread):
    """Runs `body(put, stop)` in a daemon thread; `put(item)` feeds the bounded `out` queue.

    `body` reads its own input (a decoder, or another queue). `END` is put when it returns, so the next
    stage sees the end; an exception is kept and re-raised by `join_checked`.
    """

    def __init__(self, name: str, body: Callable[[Callable[[Any], None], threading.Event], None],
                 out: queue.Queue | None, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.body, self.out, self.stop = body, out, stop
        self.error: BaseException | None = None

    def put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise Stopped

    def run(self) -> None:
        try:
            self.body(self.put, self.stop)
        except Stopped:
            pass
        except BaseException as e:  # handed to the joining thread
            self.error = e
        finally:
            while self.out is not None:
                try:
                    self.out.put(END, timeout=0.1)
                    break
                except queue.Full:
                    if self.stop.is_set():  # the consumer's `get` ends on `stop` by itself
                        break

    def join_checked(self, timeout: float | None = None) -> None:
        self.join(timeout)
        if self.error is not None:
            raise self.error


def get(q: queue.Queue, stop: threading.Event, poll: float = 0.1) -> Any:
    """Next item of `q`, waiting in short steps so Ctrl-C and `stop` are noticed; END when stopping."""
    while True:
        try:
            return q.get(timeout=poll)
        except queue.Empty:
            if stop.is_set():
                return END
