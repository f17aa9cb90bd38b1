"""Pure frame/tensor conversions shared by translation, video, webcam, training checks and exports.

Everything that turns pixels into generator input or back lives here, so the same frame gives the same
tensor everywhere: image normalisation (grayscale, RGBA, 16-bit -> RGB uint8), uint8 <-> float [-1, 1],
padding to a multiple of 4 and the processing-size policy (`native` or short side N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError

MULTIPLE = 4  # two stride-2 downsamplings: sizes must be multiples of 4 to come back unchanged
SIZE_HELP = ("processing size: N resizes the short side to N (a multiple of 4) and scales the result back; "
             "'native' pads to a multiple of 4 and crops back")  # what `parse_size` accepts, for every command
# Smallest side the generator runs at: its residual blocks reflection-pad by 1 at 1/4 resolution, which needs
# 2 px there. Smaller inputs (a 4 px strip, a 3x2 icon) are padded up to it, then cropped back.
MIN_SIDE = 8
# With --size N, an upscale stops where the long side reaches max(its own length, this x N): a 4x4000 strip at
# --size 128 would otherwise be processed at 128x128000 (4 GB) only to be scaled back to 4x4000 (issue 15).
MAX_UPSCALED_LONG = 4


def to_rgb_uint8(image: np.ndarray, bgr: bool = True) -> np.ndarray:
    """Any decoded image (gray, gray+alpha, BGR/RGB, BGRA/RGBA; uint8, uint16 or float) -> (h, w, 3) RGB uint8.

    `bgr` says whether colour input is in OpenCV's BGR order. Alpha is dropped (composited on nothing:
    the reference converts with PIL's `convert('RGB')`, which also discards it).
    """
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)  # 65535 -> 255 exactly
    elif img.dtype in (np.float32, np.float64):
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {img.dtype}; expected uint8, uint16 or float")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unsupported image shape {img.shape}; expected (h, w) or (h, w, 1-4)")
    channels = img.shape[2]
    if channels in (1, 2):  # gray or gray + alpha
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    img = img[:, :, :3]
    if bgr:
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def frames_to_tensor(frames: np.ndarray, bgr: bool = False) -> torch.Tensor:
    """uint8 (h, w, 3) or (b, h, w, 3) -> float32 (b, 3, h, w) in [-1, 1] (reference: Normalize(0.5, 0.5))."""
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(f"expected frames shaped (h, w, 3) or (b, h, w, 3), got {arr.shape}")
    if bgr:
        arr = arr[..., ::-1]
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)  # (b, 3, h, w) uint8
    return t.float().div_(127.5).sub_(1.0)


def tensor_to_frames(tensor: torch.Tensor, bgr: bool = False) -> np.ndarray:
    """float (b, 3, h, w) in [-1, 1] -> uint8 (b, h, w, 3).

    Rounds to nearest (the reference's tensor2im truncates, which biases every pixel down by half a level).
    """
    if tensor.ndim == 3:
        tensor = tensor[None]
    t = tensor.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round_().to(torch.uint8)
    arr = t.permute(0, 2, 3, 1).cpu().numpy()  # (b, h, w, 3)
    if bgr:
        arr = arr[..., ::-1]
    return np.ascontiguousarray(arr)


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflection-pad (b, c, h, w) on the bottom/right to multiples of `multiple` (and at least MIN_SIDE);
    returns (padded, (h, w))."""
    h, w = x.shape[-2:]
    ph, pw = max((-h) % multiple, MIN_SIDE - h), max((-w) % multiple, MIN_SIDE - w)
    if ph or pw:
        # Reflection needs the pad to be smaller than the side; tiny images fall back to edge replication.
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo `pad_to_multiple`: keep the top-left (h, w)."""
    h, w = size
    return x[..., :h, :w]


def parse_hw(text: str, option: str = "--size") -> tuple[int, int]:
    """'256' -> (256, 256); '360x640' -> (360, 640) (height x width): an exact input size, sides multiples of 4.

    The one parser of HxW sizes (export, benchmark, the int8 build); at least 16 px a side, the smallest the
    generator keeps meaningful (4 at its bottleneck). `option` names the flag in the error message.
    """
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        hw = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else None
    except ValueError:
        hw = None
    if hw is None or min(hw) < 4 * MULTIPLE:
        raise UserError(f"{option} must be N or HxW with sides of at least {4 * MULTIPLE}, got {text!r}")
    if hw[0] % MULTIPLE or hw[1] % MULTIPLE:
        raise UserError(f"{option} {text}: sides must be multiples of {MULTIPLE} (the generator downsamples twice)")
    return hw


def parse_size(value: str | int | None) -> int | None:
    """CLI size policy: 'native' -> None (pad to a multiple of 4), N -> short side N (rounded to a multiple of 4)."""
    if value is None or value == "native":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UserError(f"size must be 'native' or a positive integer, got {value!r}") from None
    if n < MULTIPLE:
        raise UserError(f"size must be at least {MULTIPLE}, got {n}")
    return round_to_multiple(n)


def round_to_multiple(n: float, multiple: int = MULTIPLE) -> int:
    return max(multiple, int(round(n / multiple)) * multiple)


def processing_shape(height: int, width: int, size: int | None) -> tuple[int, int]:
    """(h, w) the generator sees for a source of (height, width) under the size policy.

    N scales the short side to N, except that an upscale stops where the long side reaches
    max(its own length, MAX_UPSCALED_LONG x N) (extreme strips); native pads to a multiple of 4 (at least MIN_SIDE).
    """
    if size is None:
        return (max(MIN_SIDE, height + (-height) % MULTIPLE), max(MIN_SIDE, width + (-width) % MULTIPLE))
    scale = size / min(height, width)
    long = max(height, width)
    if scale > 1 and long * scale > max(long, MAX_UPSCALED_LONG * size):
        scale = max(1.0, MAX_UPSCALED_LONG * size / long)
    return round_to_multiple(height * scale), round_to_multiple(width * scale)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (b, h, w, 3) -> (b, height, width, 3): bicubic when growing, the area filter when shrinking."""
    if frames.shape[1:3] == (height, width):
        return frames
    shrink = height * width < frames.shape[1] * frames.shape[2]
    import cv2  # here, not at the top: the backends (and benchmarks/gpu_check.py) run without OpenCV

    if not shrink:
        return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in frames])
    if frames.shape[1] < 2 * height and frames.shape[2] < 2 * width:
        # Less than 2x smaller (640x360 -> 456x256 for --size 256): OpenCV's area filter at such a ratio takes
        # its slow general path, 1.47 ms of CPU for a 640x360 frame. Bilinear to twice the size, then the area
        # filter's exact 2x, is 0.79 ms, within 56-57 dB PSNR of it on the real clips, and averages a one-pixel
        # checkerboard flatter (plain bilinear, 0.23 ms, leaves it as a moire pattern). BENCHMARKS, "The live
        # loop's resize".
        return np.stack([cv2.resize(cv2.resize(f, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR),
                                    (width, height), interpolation=cv2.INTER_AREA) for f in frames])
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


@dataclass(frozen=True)
class Plan:
    """How frames of one source size are brought to the generator and back."""

    source: tuple[int, int]  # (h, w) of the frames given
    resized: tuple[int, int]  # (h, w) after resizing (== source for the native policy)
    padded: tuple[int, int]  # (h, w) the generator sees: multiples of 4


def plan_for(height: int, width: int, size: int | None) -> Plan:
    resized = (height, width) if size is None else processing_shape(height, width, size)
    padded = processing_shape(*resized, None)
    return Plan(source=(height, width), resized=resized, padded=padded)


def resize_to_plan(frames: np.ndarray, size: int | None) -> tuple[np.ndarray, Plan]:
    """uint8 frames (h, w, 3)/(b, h, w, 3) -> (b, H', W', 3) at the processing size of `size`, and the plan."""
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    plan = plan_for(arr.shape[1], arr.shape[2], size)
    return resize_frames(arr, *plan.resized), plan


def preprocess(frames: np.ndarray, size: int | None, bgr: bool = False) -> tuple[torch.Tensor, Plan]:
    """uint8 RGB (or BGR) frames (h, w, 3)/(b, h, w, 3) -> generator input (b, 3, H, W) in [-1, 1] and the plan."""
    arr, plan = resize_to_plan(frames, size)
    x, _ = pad_to_multiple(frames_to_tensor(arr, bgr=bgr))
    return x, plan


def postprocess(y: torch.Tensor, plan: Plan, bgr: bool = False) -> np.ndarray:
    """Generator output (b, 3, H, W) -> uint8 frames (b, h, w, 3) at the plan's source size."""
    out = tensor_to_frames(crop_to(y, plan.resized), bgr=bgr)
    return resize_frames(out, *plan.source)
