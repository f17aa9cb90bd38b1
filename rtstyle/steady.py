"""One live frame at a time: translation with the optional similarity filter (`--skip-similar`) and stabiliser.

The similarity filter follows StreamDiffusion's "stochastic similarity filter" (Kodaira et al. 2023), made
deterministic: when the new input differs from the last *translated* input by less than a threshold (mean
absolute luma difference, 0..1, on a frame downscaled to a short side of 32, ~0.1 ms), the model is not run
and the last output is reused; with `--stabilize` the reused output is still moved along the input's flow.
Comparing against the last translated input, not the previous frame, means slow drift adds up and is
translated once it passes the threshold. A live source that stalls (no frame for `stall_seconds`) or changes
size starts the stabiliser over, so nothing is blended across the gap.

With the stabiliser, each frame's optical flow (input t-1 -> t, at the reduced size) is found in a flow
thread of its own while the model translates the same frame (issue 13: "flow ... in the pipeline's own
stage, so it overlaps with inference"); OpenCV's DIS and the backends release the GIL. That overlap is free
when inference runs on a GPU; on a 2-core CPU whose inference already fills both cores it gained nothing
(BENCHMARKS.md, the live loop). `close()` ends that thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .backends.base import Pending
from .pipeline import FrameTranslator, timed
from .stabilize import StabilizeOptions, Stabilizer
from .temporal import gray

SIMILARITY_SIZE = 32  # short side the similarity filter compares at
SKIP_SIMILAR = 0.0015  # the webcam's default --skip-similar threshold (measured safe: rtstyle/live.py)


@dataclass
class SimilarityFilter:
    """`skip(rgb)`: True when `rgb` is within `threshold` of the last frame passed to `remember`."""

    threshold: float
    skipped: int = 0
    checked: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"--skip-similar threshold must be in (0, 1), got {self.threshold}")
        self._last: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None

    def difference(self, rgb: np.ndarray) -> float:
        """Mean absolute luma difference (0..1) to the remembered frame; inf when there is none or sizes differ."""
        if self._last is None or self._shape != rgb.shape:
            return float("inf")
        small = gray(rgb, SIMILARITY_SIZE).astype(np.int16)
        return float(np.abs(small - self._last).mean()) / 255.0

    def skip(self, rgb: np.ndarray) -> bool:
        self.checked += 1
        if self.difference(rgb) < self.threshold:
            self.skipped += 1
            return True
        return False

    def remember(self, rgb: np.ndarray) -> None:
        self._last, self._shape = gray(rgb, SIMILARITY_SIZE).astype(np.int16), rgb.shape


class SteadyTranslator:
    """rgb (h, w, 3) uint8 -> output frame: `translator`, unless the filter skips it, then the stabiliser."""

    def __init__(self, translator: FrameTranslator, stabilize: StabilizeOptions | None = None,
                 skip_similar: float | None = None, stall_seconds: float = 1.0) -> None:
        self.translator = translator
        self.stabilizer = Stabilizer(stabilize) if stabilize else None
        self.similar = SimilarityFilter(skip_similar) if skip_similar else None
        self.stall_seconds = stall_seconds
        self.resets = 0  # stabiliser restarts after a stall
        self._last_out: np.ndarray | None = None
        self._translated = False  # a frame was started through the model (so a similar one may reuse its output)
        self._last_at: float | None = None
        self._flow: ThreadPoolExecutor | None = None  # the flow stage, started with the first translated frame

    @property
    def skipped(self) -> int:
        return self.similar.skipped if self.similar else 0

    def __call__(self, rgb: np.ndarray, captured_at: float | None = None) -> np.ndarray:
        return self.start(rgb, captured_at)()

    def start(self, rgb: np.ndarray, captured_at: float | None = None) -> Pending:
        """Start on `rgb`; the `Pending` output is `running` while an asynchronous backend translates it.

        Frames must be started, and their results collected, in order; the next frame may be started before
        the last one's result is collected, so the model runs while the last output is resized, blended and
        handed on (`benchmarks/live_overlap.py` measures that; `live_stages.TranslateStage` collects each at
        once). So everything that depends on the previous output (the blend, a skipped frame's reuse) happens
        when a result is collected, and every use of the input-side state (the flow, its reset after a stall)
        goes through the one flow thread in order.
        """
        stalled = (captured_at is not None and self._last_at is not None
                   and captured_at - self._last_at > self.stall_seconds)
        self._last_at = captured_at
        reset = stalled and self.stabilizer is not None
        if reset:  # the flow starts over, so the blend sees a cut and nothing is blended across the gap
            self.resets += 1
        if self.similar is not None and self._translated and not stalled and self.similar.skip(rgb):
            motion = self._start_flow(rgb, reset) if self.stabilizer is not None else None

            def reuse() -> np.ndarray:
                with timed(self.translator.times, "stabilize"):
                    out = self.stabilizer.blender.reuse(motion.result()) if motion is not None else None
                self._last_out = out if out is not None else self._last_out
                return self._last_out

            return Pending(reuse)  # not running: collected after the frame before it, it reuses that output
        motion = self._start_flow(rgb, reset) if self.stabilizer is not None else None
        translated = self.translator.submit(rgb[None])  # while the flow thread finds this frame's motion
        if self.similar is not None:
            self.similar.remember(rgb)
        self._translated = True

        def result(frames: np.ndarray) -> np.ndarray:
            out = frames[0]  # (h, w, 3)
            if motion is not None:
                with timed(self.translator.times, "stabilize"):  # what is left to wait for of the flow, + the blend
                    out = self.stabilizer.blender(out, motion.result())
            self._last_out = out
            return out

        return translated.then(result)

    def _start_flow(self, rgb: np.ndarray, reset: bool):
        if self._flow is None:
            self._flow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow")

        def flow():
            if reset:  # after a stall; the first motion after it is a cut, so the blend starts over too
                self.stabilizer.motion.reset()
            with timed(self.translator.times, "flow"):
                return self.stabilizer.motion(rgb)

        return self._flow.submit(flow)

    def close(self) -> None:
        """End the flow thread (a later call starts a new one)."""
        if self._flow is not None:
            self._flow.shutdown(wait=True)
            self._flow = None
