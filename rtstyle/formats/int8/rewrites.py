"""Exact structural rewrites of the generator for compiled backends (same function, friendlier graph).

`subpixel_generator` replaces each of the generator's two `ConvTranspose2d(k3, s2, p1, output_padding=1)`
upsamplings by an equivalent sub-pixel convolution: zero-pad right/bottom by one, a 2x2 convolution with
4 * Cout channels (one group per output phase), then `PixelShuffle(2)` (Shi et al., CVPR 2016, "Real-Time
Single Image and Video Super-Resolution Using an Efficient Sub-Pixel CNN", which shows the equivalence).
Why: OpenVINO/NNCF leave a transposed convolution in f32 (7.6% of the int8 model's time, measured for
issue 6), while an ordinary convolution runs in int8. Derivation in one dimension, output index
o = 2i - 1 + k for input i and tap k: y[2m] = W[1] x[m] and y[2m + 1] = W[2] x[m] + W[0] x[m + 1], with
x[n] = 0 past the edge (hence the one-pixel zero pad). The result equals the original up to float
summation order: `rewrite_error` measures it and the int8 build refuses a rewrite above 1e-4.
A generator with the resize upsampler (`models.ResizeConv2d`) has no transposed convolution: it passes
through unchanged, and its nearest x2 + conv3x3 is quantised like every other convolution.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

# Which transposed-conv tap k feeds output phase a (0: even, 1: odd) through input offset d (x[m + d]).
_TAP = {(0, 0): 1, (0, 1): None, (1, 0): 2, (1, 1): 0}
EXACT_TOLERANCE = 1e-4  # max abs on outputs in [-1, 1]; float32 summation order gives ~1e-6


class SubPixelConvTranspose(nn.Module):
    """`ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)` as pad + conv2x2 + PixelShuffle."""

    def __init__(self, convt: nn.ConvTranspose2d) -> None:
        super().__init__()
        if not (convt.kernel_size == (3, 3) and convt.stride == (2, 2) and convt.padding == (1, 1)
                and convt.output_padding == (1, 1) and convt.groups == 1 and convt.dilation == (1, 1)):
            raise ValueError(f"only ConvTranspose2d(k3, s2, p1, output_padding=1) is rewritten, got {convt}")
        wt = convt.weight.detach()  # (cin, cout, 3, 3)
        cin, cout = wt.shape[:2]
        w = torch.zeros(cout, 2, 2, cin, 2, 2, dtype=wt.dtype)  # (cout, phase_y, phase_x, cin, dy, dx)
        for a in range(2):
            for b in range(2):
                for dy in range(2):
                    for dx in range(2):
                        ky, kx = _TAP[(a, dy)], _TAP[(b, dx)]
                        if ky is not None and kx is not None:
                            w[:, a, b, :, dy, dx] = wt[:, :, ky, kx].t()
        # Channel c * 4 + a * 2 + b is phase (a, b) of output channel c: PixelShuffle's order.
        self.conv = nn.Conv2d(cin, 4 * cout, 2, bias=convt.bias is not None)
        self.conv.weight.data = w.reshape(4 * cout, cin, 2, 2).contiguous()
        if convt.bias is not None:
            self.conv.bias.data = convt.bias.detach().repeat_interleave(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, cin, h, w) -> (b, cout, 2h, 2w)
        return F.pixel_shuffle(self.conv(F.pad(x, (0, 1, 0, 1))), 2)


def subpixel_generator(generator: nn.Module) -> nn.Module:
    """A copy of `generator` (eval mode) with every ConvTranspose2d of its `model` Sequential rewritten."""
    rewritten = copy.deepcopy(generator).eval()
    for index, layer in enumerate(rewritten.model):
        if isinstance(layer, nn.ConvTranspose2d):
            rewritten.model[index] = SubPixelConvTranspose(layer)
    return rewritten


@torch.no_grad()
def rewrite_error(original: nn.Module, rewritten: nn.Module, x: torch.Tensor) -> float:
    """Max abs difference of the two generators' outputs on `x` (b, 3, h, w) in [-1, 1]."""
    return float((original.eval()(x) - rewritten.eval()(x)).abs().max())
