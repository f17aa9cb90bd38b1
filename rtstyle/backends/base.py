"""The one call every inference backend answers: `backend(batch) -> translated`.

A backend wraps a compiled or eager generator. Subclasses implement `infer` on generator tensors
((b, 3, h, w) float32 in [-1, 1], h and w multiples of 4, on the CPU); `__call__` also accepts uint8 RGB
frames (b, h, w, 3) and returns uint8 frames, using the pure functions of `rtstyle.transforms`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..errors import BackendUnavailable
from ..transforms import frames_to_tensor, tensor_to_frames
from ..weights import ModelInfo

__all__ = ["Backend", "BackendUnavailable", "Pending"]


class Pending:
    """A result that may still be computing (`Backend.submit_frames`): calling it waits for it and returns it,
    `wait()` only waits. `running` is True where the work goes on in the background (OpenVINO's infer
    requests), so the caller can do something else meanwhile; False where it was done before the call returned.
    """

    def __init__(self, result: Callable[[], Any], wait: Callable[[], None] | None = None) -> None:
        self._result, self._wait = result, wait
        self.running = wait is not None

    def wait(self) -> None:
        if self._wait is not None:
            self._wait()

    def __call__(self) -> Any:
        return self._result()

    def then(self, finish: Callable[[Any], Any]) -> "Pending":
        """The `Pending` of `finish(this result)`: ready, and running, when this one is."""
        return Pending(lambda: finish(self()), self._wait)


class Backend:
    name = "base"
    # Set by `create_backend`: the memory budget of one call (None: a share of what is free, see
    # rtstyle.tiling) and where to say how a too-large input is handled.
    max_memory: int | None = None
    log = None
    # True where `infer_frames` converts inside the compiled model (OpenVINO's PrePostProcessor), so that
    # `pipeline.FrameTranslator` hands it uint8 frames rather than doing the conversions itself.
    fuses_frames = False

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def infer(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) -> (b, 3, h, w), float32 on CPU
        raise NotImplementedError

    def infer_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (b, h, w, 3), h and w multiples of 4 -> the translated uint8 frames, same shape."""
        return tensor_to_frames(self.infer(frames_to_tensor(frames)))

    def submit_frames(self, frames: np.ndarray, parallel: int = 1) -> Pending:
        """`infer_frames` in two halves: start it, and return the `Pending` result. A backend with
        asynchronous inference (OpenVINO's infer requests) returns at once, so the caller can hand over the
        previous result while this one runs; here it is computed before returning. At most two outstanding.
        `parallel` 2 says the caller keeps two in flight and wants throughput, not one frame's latency
        (OpenVINO then runs them side by side on two CPU streams)."""
        out = self.infer_frames(frames)
        return Pending(lambda: out)

    def describe(self) -> str:
        """One line for the console: backend, device, precision."""
        return self.name

    def __call__(self, batch: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        if isinstance(batch, torch.Tensor):
            return self.infer(batch)
        arr = np.asarray(batch)
        single = arr.ndim == 3
        out = tensor_to_frames(self.infer(frames_to_tensor(arr)))  # (b, h, w, 3) uint8
        return out[0] if single else out
