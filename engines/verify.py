"""Checking an exported artifact against the PyTorch generator it came from, on random and real frames.

Every export runs the artifact through its real runtime (ONNX Runtime, OpenVINO, TensorRT) next to the
eager fp32 generator and reports the max abs error per input set; the exporter fails above a tolerance.
The inputs are chosen to catch the known InstanceNorm pitfall (an exporter that substitutes batch
statistics or running statistics for per-image ones): a batch of two random images with very different
means and scales, plus two real frames (bundled in `rtstyle/assets/`, Intel sample videos, CC-BY 4.0,
see rtstyle/assets/ATTRIBUTION.md), at the export size, and for dynamic exports also at 360x640 and at each
frame's own aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from rtstyle.io.images import read_image
from rtstyle.models import ResnetGenerator
from rtstyle.transforms import frames_to_tensor, preprocess, resize_frames

from rtstyle.store import ASSETS_DIR as DATA_DIR

REAL_FRAMES = ("bottle.jpg", "webcam.jpg")
DYNAMIC_EXTRA_HW = (360, 640)  # a video frame's shape, not square: catches h/w mix-ups in dynamic graphs


@dataclass(frozen=True)
class Comparison:
    label: str  # "random 2x256x256", "real 2x256x256", ...
    shape: tuple[int, ...]
    max_abs_error: float
    mean_abs_error: float


def real_frames() -> list[np.ndarray]:
    """The bundled real frames, RGB uint8 (h, w, 3)."""
    return [read_image(DATA_DIR / name) for name in REAL_FRAMES]


def random_batch(channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(2, c, h, w) in [-1, 1]: one low-contrast dark image and one full-range image (different statistics)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(2, channels, height, width, generator=gen) * 2 - 1
    return torch.stack([noise[0] * 0.2 - 0.6, noise[1]]).clamp(-1, 1)


def verification_batches(channels: int, hw: tuple[int, int], dynamic: bool) -> list[tuple[str, torch.Tensor]]:
    """(label, (b, c, h, w)) input sets for an export at `hw` (fixed) or with `hw` as its main size (dynamic)."""
    frames = real_frames()
    batches = [(f"random 2x{hw[0]}x{hw[1]}", random_batch(channels, *hw))]
    same_size = np.stack([resize_frames(f[None], *hw)[0] for f in frames])  # (2, h, w, 3)
    batches.append((f"real 2x{hw[0]}x{hw[1]}", frames_to_tensor(same_size)))
    if dynamic:
        extra_h, extra_w = DYNAMIC_EXTRA_HW
        batches.append((f"random 2x{extra_h}x{extra_w}", random_batch(channels, extra_h, extra_w, seed=1)))
        for name, frame in zip(REAL_FRAMES, frames):
            x, _ = preprocess(frame, min(hw))  # own aspect ratio, short side min(hw), padded to a multiple of 4
            batches.append((f"real {name} 1x{x.shape[2]}x{x.shape[3]}", x))
    return batches


def compare(run: Callable[[torch.Tensor], torch.Tensor], generator: ResnetGenerator,
            batches: list[tuple[str, torch.Tensor]]) -> list[Comparison]:
    """Max/mean abs error of `run(x)` against the eager fp32 generator for each input set."""
    generator = generator.eval().float().cpu()
    results = []
    for label, x in batches:
        with torch.no_grad():
            expected = generator(x)
        got = run(x).float().cpu()
        if got.shape != expected.shape:
            raise AssertionError(f"{label}: artifact output {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
        diff = (got - expected).abs()
        results.append(Comparison(label, tuple(x.shape), float(diff.max()), float(diff.mean())))
    return results


def worst(results: list[Comparison]) -> float:
    return max(r.max_abs_error for r in results)


def describe(results: list[Comparison]) -> str:
    return "; ".join(f"{r.label}: max {r.max_abs_error:.2e} (mean {r.mean_abs_error:.1e})" for r in results)
