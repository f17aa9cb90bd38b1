"""Inputs too large for memory: the peak memory of one generator call, and exact tiled translation in a budget.

A ResNet generator's activations at full resolution dominate its memory: measured peaks of one call (the
extra resident memory over the loaded model, batch 1, the demo model ngf 16 and the tiny ngf 8, 512x512 to
2048x2048 inputs, AMD EPYC Zen 4) are 14-19 bytes per pixel and per first-layer filter (ngf) on torch fp32,
8-13 on OpenVINO, 26 on ONNX Runtime: about four full-resolution ngf-channel float tensors alive at once.
`estimate_bytes` uses those figures, rounded up. Where a call would need more than the budget (3/4 of the
memory available on the device when it starts, or `--max-memory`), `guarded_infer` splits the batch and
then translates each image in tiles.

Plain overlapping tiles blended together are not the untiled result: InstanceNorm normalises each tile by
its own statistics, and on real photos that moved pixels by 17-42 levels on average (demo model, 912x512,
tiles of 128-384 px; 14-25 for the tiny test model). So `tiled_generator_forward` is exact instead: every
InstanceNorm is given the whole image's per-channel mean and variance, found one norm layer at a time by
running the tiles (each with a halo wider than the network's receptive field) up to that layer and summing
over the tile cores; a last pass runs the tiles through the whole network and keeps their cores. That is
about (norm layers / 2 + 1) passes: ~10x the time of one call for 9 blocks, in a fraction of the memory.
It needs the generator itself, so it runs torch fp32 on the CPU from the weights; an exported artifact
without them, or a budget too small for even a small tile, is refused with the size that would fit.
"""

from __future__ import annotations

import copy
import math
import os
import re

import torch
from torch import nn

from .errors import UserError
from .transforms import MULTIPLE

# Bytes per pixel and per generator filter (ngf) at the peak of one call; see the module docstring.
BYTES_PER_PIXEL_FILTER = {"onnxruntime": 28, "openvino": 14}
DEFAULT_BYTES_PER_PIXEL_FILTER = 20
# Per pixel of the whole image beside the generator: float32 input and output (3 channels each) and the
# uint8 frames on both sides.
BYTES_PER_PIXEL_IMAGE = 32
BUDGET_FRACTION = 0.75  # of the memory available when the call starts: the rest is the system's and ours
MIN_CORE = 64  # smallest tile core worth running: below it the halos are most of the work


class _Stop(Exception):
    """Raised by the norm layer being measured: the rest of the network is not needed for its statistics."""


class _FixedStatNorm(nn.Module):
    """An InstanceNorm2d that normalises with given per-image, per-channel statistics (the whole image's), or,
    while `window` is set, adds its input's sums over that window (this layer's coordinates) and stops."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.mean = self.inv_std = None  # (b, c, 1, 1)
        self.window: tuple[int, ...] | None = None  # (crop h, crop w, core y0, y1, x0, x1) at the input's scale
        self.sums = None  # [sum, sum of squares, count], float64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.window is not None:
            crop_h, crop_w, y0, y1, x0, x1 = self.window
            sy, sx = x.shape[2] / crop_h, x.shape[3] / crop_w  # 1, 1/2 or 1/4: this layer's resolution
            core = x[:, :, int(y0 * sy):int(y1 * sy), int(x0 * sx):int(x1 * sx)].double()
            s, sq = core.sum((2, 3)), core.square().sum((2, 3))  # (b, c)
            n = core.shape[2] * core.shape[3]
            self.sums = [s, sq, n] if self.sums is None else [self.sums[0] + s, self.sums[1] + sq, self.sums[2] + n]
            raise _Stop
        return (x - self.mean) * self.inv_std

    def settle(self) -> None:
        """Turn the collected sums into the statistics (biased variance, as InstanceNorm2d uses)."""
        s, sq, n = self.sums
        mean = s / n
        var = (sq / n - mean.square()).clamp_min(0)
        self.mean = mean.float()[:, :, None, None]
        self.inv_std = torch.rsqrt(var + self.eps).float()[:, :, None, None]
        self.window, self.sums = None, None


def halo(n_blocks: int) -> int:
    """Pixels around a tile core that the network needs to compute the core exactly (its receptive-field
    radius at the input: 3 for each 7x7 conv, 1 and 2 for the stride-2 convs, 8 per residual block at 1/4
    resolution, 4 and 2 for the upsamplings), with a margin, a multiple of 4 so tiles stay aligned."""
    radius = 3 + 1 + 2 + 8 * n_blocks + 4 + 2 + 3
    return (radius + 8 + MULTIPLE - 1) // MULTIPLE * MULTIPLE


def _cores(length: int, core: int) -> list[tuple[int, int]]:
    """[start, end) cores of at most `core` px (multiples of 4) covering `length` (a multiple of 4)."""
    return [(s, min(s + core, length)) for s in range(0, length, core)]


def tiled_generator_forward(generator: nn.Module, x: torch.Tensor, core: int) -> torch.Tensor:
    """`generator(x)` for x (b, c, h, w) computed over tiles of `core` px plus a halo, exactly (see the module
    docstring); h, w and `core` multiples of 4. The generator is not modified."""
    net = copy.deepcopy(generator).eval().float()
    norms = []
    for name, child in list(net.named_modules()):  # depth first: the order the forward pass meets them
        if isinstance(child, nn.InstanceNorm2d):
            if child.affine or child.track_running_stats:
                raise ValueError("exact tiling supports InstanceNorm without affine or running statistics")
            parent_name, _, attr = name.rpartition(".")
            replacement = _FixedStatNorm(child.eps)
            setattr(net.get_submodule(parent_name), attr, replacement)
            norms.append(replacement)
    _, _, h, w = x.shape
    pad = halo(getattr(getattr(generator, "config", None), "n_blocks", 9))
    tiles = []
    for y0, y1 in _cores(h, core):
        for x0, x1 in _cores(w, core):
            cy0, cy1, cx0, cx1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
            tiles.append(((y0, y1, x0, x1), (cy0, cy1, cx0, cx1)))
    with torch.no_grad():
        for norm in norms:  # in forward order: each one's statistics need the earlier ones' fixed
            for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in tiles:
                crop = x[:, :, cy0:cy1, cx0:cx1]
                norm.window = (crop.shape[2], crop.shape[3], y0 - cy0, y1 - cy0, x0 - cx0, x1 - cx0)
                try:
                    net(crop)
                except _Stop:
                    pass
            norm.settle()
        out = None
        for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in tiles:
            y = net(x[:, :, cy0:cy1, cx0:cx1])
            if out is None:
                out = torch.empty(x.shape[0], y.shape[1], h, w)
            out[:, :, y0:y1, x0:x1] = y[:, :, y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
    return out


def parse_memory(text: str | None) -> int | None:
    """'auto' or None -> None (the default budget); '6G', '512M', '1.5GB', '800000000' -> bytes."""
    if text is None or str(text).strip().lower() in ("", "auto"):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"--max-memory must be auto or a size such as 6G, 512M or 1.5G, got {text!r}")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def available_bytes(device: str = "cpu") -> int:
    """Memory free for a call on `device` now: MemAvailable on Linux, the GPU's free memory for CUDA."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _per_pixel(ngf: int, backend: str) -> int:
    return BYTES_PER_PIXEL_FILTER.get(backend, DEFAULT_BYTES_PER_PIXEL_FILTER) * ngf + BYTES_PER_PIXEL_IMAGE


def estimate_bytes(ngf: int, backend: str, batch: int, height: int, width: int) -> int:
    """Peak bytes of one `backend` call on (batch, 3, height, width) by a generator with `ngf` filters."""
    return batch * height * width * _per_pixel(ngf, backend)


def size_text(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def core_for(budget: int, ngf: int, n_blocks: int, height: int, width: int) -> int | None:
    """The largest tile core (a multiple of 4) whose tile, halo included, fits in `budget` on torch beside the
    whole image's own buffers; None when not even a MIN_CORE one does."""
    room = budget - height * width * BYTES_PER_PIXEL_IMAGE
    if room <= 0:
        return None
    side = int(math.sqrt(room / _per_pixel(ngf, "torch")))
    core = (side - 2 * halo(n_blocks)) // MULTIPLE * MULTIPLE
    return core if core >= MIN_CORE else None


def budget_for(backend) -> int:
    """The bytes one call of `backend` may use: its `max_memory`, else BUDGET_FRACTION of what is available."""
    if getattr(backend, "max_memory", None):
        return backend.max_memory
    choice = getattr(backend, "choice", None)
    return int(BUDGET_FRACTION * available_bytes(choice.device if choice else "cpu"))


def fitting_side(budget: int, ngf: int, backend: str, height: int, width: int) -> int:
    """The short side (a multiple of 4) at which an image of this aspect ratio fits in `budget` at once."""
    pixels = budget / _per_pixel(ngf, backend)
    short, long = min(height, width), max(height, width)
    return max(MULTIPLE, int(math.sqrt(pixels * short / long)) // MULTIPLE * MULTIPLE)


def fits_at_once(backend, b: int, h: int, w: int) -> bool:
    """Whether `backend` may translate a (b, 3, h, w) batch in one call within its memory budget."""
    return estimate_bytes(backend.info.config.ngf, getattr(backend, "name", ""), b, h, w) <= budget_for(backend)


def guarded_infer(backend, x: torch.Tensor) -> torch.Tensor:
    """`backend.infer(x)`, or, when its estimate exceeds the budget, the batch split and each image translated
    by `tiled_generator_forward` (said once per input size through `backend.log`); a UserError with the size
    that fits at once when tiles cannot be used (no weights, a budget too small for a tile)."""
    b, _, h, w = x.shape
    config, name = backend.info.config, getattr(backend, "name", "")
    if fits_at_once(backend, b, h, w):
        return backend.infer(x)
    need, budget = estimate_bytes(config.ngf, name, b, h, w), budget_for(backend)
    if b > 1 and estimate_bytes(config.ngf, name, 1, h, w) <= budget:
        return torch.cat([backend.infer(x[i:i + 1]) for i in range(b)])
    ref = getattr(backend, "ref", None)
    core = core_for(budget, config.ngf, config.n_blocks, h, w)
    usable = ref is not None and ref.kind == "weights" and config.norm in ("instance", "none")
    if core is None or not usable:
        why = ("" if usable or ref is None else f"; this {ref.kind} artifact cannot be tiled (that needs the "
               "weights: pass the .safetensors or .pth it was exported from)")
        raise UserError(f"translating {w}x{h} at once needs about {size_text(need)} of memory, more than the "
                        f"{size_text(budget)} allowed here{why}; use --size "
                        f"{fitting_side(budget, config.ngf, name, h, w)} or less, or more --max-memory")
    said = backend.__dict__.setdefault("_tiling_said", set())
    generator = backend.__dict__.get("_tiling_generator")
    if generator is None:
        from .weights import load_model

        generator = backend.__dict__["_tiling_generator"] = load_model(ref.path)[0]
    if (h, w) not in said:
        said.add((h, w))
        log = getattr(backend, "log", None) or (lambda message: None)
        log(f"{w}x{h} at once would need about {size_text(need)} of memory, more than the {size_text(budget)} "
            f"allowed here (--max-memory): translating it exactly in tiles of {core} px (torch fp32 on the CPU, "
            "several passes: slower; a smaller --size is faster)")
    return torch.cat([tiled_generator_forward(generator, x[i:i + 1], core) for i in range(b)])
