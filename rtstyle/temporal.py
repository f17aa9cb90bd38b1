"""Temporal consistency of a translated video: optical flow, occlusion masks, warping error and SSIM.

The warping error follows Lai et al., ECCV 2018 ("Learning Blind Video Temporal Consistency", eq. 9): frame
t-1 of a video is warped to frame t along the optical flow of the *source* frames, and the mean squared
difference to frame t is taken over the pixels the flow can be trusted on (a forward-backward consistency
mask, Sundaram et al. ECCV 2010 / Ruder et al. GCPR 2016, marks occluded and disoccluded pixels out). The same
error of the source itself is the floor a steady translation can reach (lighting, noise, flow error), so the
ratio translated / source is ~1 for a steady translation and grows with flicker. SSIM (Wang et al. 2004,
Gaussian window 11, sigma 1.5) of a stabilised video against the per-frame translation says how far a fix
moved away from what the model drew. Everything here is a pure function on uint8 RGB arrays (h, w, 3);
`rtstyle/stabilize.py` reuses the flow, mask and warp.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

FLOW_METHODS = ("dis", "farneback")


def gray(rgb: np.ndarray, short_side: int | None = None) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (h', w') uint8 luma, resized so its short side is `short_side` (None: as is)."""
    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if short_side is not None and min(g.shape) != short_side:
        scale = short_side / min(g.shape)
        size = (max(8, round(g.shape[1] * scale)), max(8, round(g.shape[0] * scale)))  # (w, h) for OpenCV
        g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
    return g


def make_flow(method: str = "dis", preset: int | None = None):
    """An optical-flow function (a, b) -> (h, w, 2) float32: for each pixel of `a`, its displacement to `b`.

    DIS (Kroeger et al., ECCV 2016) is OpenCV's fast dense flow; Farneback (SCIA 2003) the classic one.
    """
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM if preset is None else preset)
        return lambda a, b: dis.calc(a, b, None)
    if method == "farneback":
        return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"unknown flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y), each (h, w) float32; cached: a video asks for the same size every frame."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `image` at x + flow(x): with `flow` from frame t to frame t-1, frame t-1 moved onto frame t.

    `image` (h, w[, c]) of any dtype OpenCV remaps; `flow` (h, w, 2). Outside the frame the edge repeats.
    """
    x, y = _grid(*flow.shape[:2])
    return cv2.remap(image, x + flow[..., 0], y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistency_mask(flow_back: np.ndarray, flow_fwd: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels of frame t whose flow to t-1 (`flow_back`) is undone by the flow t-1 -> t (`flow_fwd`).

    Ruder et al. 2016, eq. 5: |w + w^(x + w)|^2 <= 0.01 (|w|^2 + |w^(x + w)|^2) + 0.5; pixels whose flow leaves
    the frame are out too. These are the pixels the warping error is taken over (Lai et al. 2018).
    """
    tx, ty = _targets(flow_back)
    fwd_at = cv2.remap(flow_fwd, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # (h, w, 2)
    round_trip = np.sum((flow_back + fwd_at) ** 2, axis=2)
    bound = 0.01 * (np.sum(flow_back ** 2, axis=2) + np.sum(fwd_at ** 2, axis=2)) + 0.5
    return (round_trip <= bound) & _within(tx, ty)


def inside(flow_back: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels whose flow lands inside the frame."""
    return _within(*_targets(flow_back))


def _targets(flow_back: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel's flow lands: (x + u, y + v), each (h, w) float32."""
    x, y = _grid(*flow_back.shape[:2])
    return x + flow_back[..., 0], y + flow_back[..., 1]


def _within(tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    h, w = tx.shape
    return (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)


def pair_flow(prev_gray: np.ndarray, cur_gray: np.ndarray, flow_fn) -> tuple[np.ndarray, np.ndarray]:
    """(flow t -> t-1, consistency mask at t) for two luma frames of the same size."""
    back = flow_fn(cur_gray, prev_gray)
    fwd = flow_fn(prev_gray, cur_gray)
    return back, consistency_mask(back, fwd)


def warping_error(prev: np.ndarray, cur: np.ndarray, flow_back: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference (RGB in [0, 1]) between `cur` and `prev` warped onto it, over `mask` (Lai 2018)."""
    if not mask.any():
        return float("nan")
    moved = warp(prev, flow_back).astype(np.float32)
    diff = (cur.astype(np.float32) - moved) / 255.0
    return float(np.mean(diff[mask] ** 2))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 images (h, w[, c]): Wang et al. 2004, Gaussian window (sigma 1.5), per channel."""
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of one size, got {a.shape} and {b.shape}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda im: cv2.GaussianBlur(im, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[5:-5, 5:-5].mean())  # the border, where the window leaves the image, is not scored


@dataclass
class TemporalScores:
    frames: int
    pairs: int  # frame pairs scored (pairs whose mask was empty, e.g. at a cut, are left out)
    source_error: float  # warping error of the source: the floor
    translated_error: float
    ratio: float  # translated / source; ~1 is steady
    masked_fraction: float  # mean share of pixels the consistency mask left out (occlusion, borders)
    ssim_vs_per_frame: float | None = None  # mean SSIM of the translated frames against a per-frame translation
    flow: str = "dis"

    def as_record(self) -> dict:
        return asdict(self)

    def columns(self) -> dict[str, str]:
        return {"frames": str(self.frames), "warp error source": f"{self.source_error:.6f}",
                "warp error translated": f"{self.translated_error:.6f}", "ratio": f"{self.ratio:.3f}",
                "masked": f"{self.masked_fraction:.1%}",
                "SSIM vs per-frame": "-" if self.ssim_vs_per_frame is None else f"{self.ssim_vs_per_frame:.4f}"}


def temporal_scores(source: Iterable[np.ndarray], translated: Iterable[np.ndarray],
                    per_frame: Iterable[np.ndarray] | None = None, flow: str = "dis") -> TemporalScores:
    """Warping errors of `translated` and `source` along the source's flow, their ratio, and SSIM vs `per_frame`.

    Frames are (h, w, 3) uint8 RGB; a translated frame of another size is resized to the source's. Raises
    ValueError when the videos have different frame counts or fewer than two frames.
    """
    flow_fn = make_flow(flow)
    src_errors, out_errors, masked, ssims = [], [], [], []
    prev_src = prev_out = prev_gray = None
    frames = 0
    per_frame_it: Iterator | None = iter(per_frame) if per_frame is not None else None
    for src, out in _zip_same_length(source, translated, "SOURCE", "TRANSLATED"):
        out = _fit(out, src.shape[:2])
        if per_frame_it is not None:
            ref = next(per_frame_it, None)
            if ref is None:
                raise ValueError(f"--per-frame has fewer frames than TRANSLATED ({frames + 1}+)")
            ssims.append(ssim(out, _fit(ref, src.shape[:2])))
        g = gray(src)
        if prev_gray is not None and prev_gray.shape == g.shape:
            back, mask = pair_flow(prev_gray, g, flow_fn)
            masked.append(1.0 - float(mask.mean()))
            if mask.any():
                src_errors.append(warping_error(prev_src, src, back, mask))
                out_errors.append(warping_error(prev_out, out, back, mask))
        prev_src, prev_out, prev_gray = src, out, g
        frames += 1
    if per_frame_it is not None and next(per_frame_it, None) is not None:
        raise ValueError(f"--per-frame has more frames than TRANSLATED ({frames})")
    if frames < 2:
        raise ValueError(f"the warping error needs at least 2 frames; the videos have {frames}")
    if not src_errors:
        raise ValueError("no frame pair had pixels the flow could be trusted on (every pair an occlusion or cut)")
    source_error, translated_error = float(np.mean(src_errors)), float(np.mean(out_errors))
    return TemporalScores(frames=frames, pairs=len(src_errors), source_error=source_error,
                          translated_error=translated_error, ratio=translated_error / max(source_error, 1e-12),
                          masked_fraction=float(np.mean(masked)),
                          ssim_vs_per_frame=float(np.mean(ssims)) if ssims else None, flow=flow)


def _zip_same_length(a: Iterable, b: Iterable, name_a: str, name_b: str) -> Iterator[tuple]:
    ia, ib = iter(a), iter(b)
    n = 0
    while True:
        x, y = next(ia, None), next(ib, None)
        if x is None and y is None:
            return
        if x is None or y is None:
            longer, shorter = (name_b, name_a) if x is None else (name_a, name_b)
            raise ValueError(f"{shorter} ends after {n} frames but {longer} goes on: "
                             "the videos must have the same frames (translate every frame)")
        n += 1
        yield x, y


def _fit(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == hw:
        return image
    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def video_frames(path: Path) -> Iterator[np.ndarray]:
    """The RGB frames (h, w, 3) of a video file, decoded one at a time."""
    from .io.video import VideoReader

    with VideoReader(Path(path)) as reader:
        for rgb, _ in reader:
            yield rgb


def score_videos(source: Path, translated: Path, per_frame: Path | None = None, flow: str = "dis") -> TemporalScores:
    """`temporal_scores` of video files (`cli.py evaluate --video`)."""
    for p in (source, translated, per_frame):
        if p is not None and not Path(p).is_file():
            raise FileNotFoundError(f"{p}: no such video file")
    return temporal_scores(video_frames(source), video_frames(translated),
                           video_frames(per_frame) if per_frame is not None else None, flow)
