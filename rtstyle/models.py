"""The CycleGAN ResNet generator, built exactly like the reference implementation.

`ResnetGenerator` reproduces `networks.ResnetGenerator` of junyanz/pytorch-CycleGAN-and-pix2pix
(Zhu et al., ICCV 2017, appendix 7.2 "c7s1-64, d128, d256, R256 x n, u128, u64, c7s1-3"): the same layers
in the same `nn.Sequential` order, so that its `state_dict` keys and shapes are the reference's
(`model.1.weight`, `model.10.conv_block.1.weight`, ... `model.26.bias`) and official weights load
without renaming. It is a pure module: `forward(x) -> y`, no losses, no state.

Beyond the reference, `GeneratorConfig(upsample="resize")` replaces each `ConvTranspose2d(k3, s2)` by a
resize-convolution (Odena, Dumoulin and Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016):
nearest-neighbour x2, then a stride-1 3x3 convolution. A stride-2 transposed convolution with a 3x3 kernel
gives even and odd output pixels different numbers of taps (4, 2, 2, 1 per 2x2 phase), which is the
checkerboard texture of short runs; after a nearest x2 every output pixel sees the same 3x3 footprint.
`ResizeConv2d` is one module at the transposed convolution's index, so the state-dict keys keep the
reference's numbering (`model.19.weight`, only its shape is (cout, cin, 3, 3) instead of (cin, cout, 3, 3)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instance", "batch", "none")
UPSAMPLES = ("deconv", "resize")  # reference ConvTranspose2d, or nearest x2 + conv3x3 (Odena et al. 2016)


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a ResNet generator; saved with the weights so loading needs no flags."""

    ngf: int = 64  # filters in the first conv layer
    n_blocks: int = 9  # residual blocks at the bottleneck (reference: 9 for 256 px, 6 for 128 px)
    norm: str = "instance"  # "instance" (CycleGAN), "batch" or "none"
    dropout: bool = False  # dropout(0.5) inside each residual block (reference: --no_dropout off)
    input_nc: int = 3
    output_nc: int = 3
    upsample: str = "deconv"  # "deconv" (reference ConvTranspose2d) or "resize" (ResizeConv2d)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {self.upsample!r}")
        if self.ngf < 1 or self.n_blocks < 0:
            raise ValueError(f"ngf must be >= 1 and n_blocks >= 0, got ngf={self.ngf} n_blocks={self.n_blocks}")

    def to_dict(self) -> dict:
        # The reference layout is written without the `upsample` key, so its metadata stays byte-identical to
        # what earlier rtstyle versions wrote and read; a resize generator carries it, and an rtstyle that
        # predates it refuses the file ("unknown generator config keys") instead of building the wrong net.
        d = asdict(self)
        if d["upsample"] == "deconv":
            del d["upsample"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown generator config keys {unknown}; expected {sorted(cls.__dataclass_fields__)}")
        return cls(**known)


def norm_layer(kind: str, channels: int) -> nn.Module:
    # Reference get_norm_layer: instance norm has no affine parameters and no running statistics, so
    # it normalises with the statistics of each image, at training and at test time alike.
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "none":  # reference: Identity(), so the layer indices (and state-dict keys) stay the same
        return nn.Identity()
    return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)


class ResnetBlock(nn.Module):
    """x + conv_block(x); conv_block = pad, conv3x3, norm, relu, [dropout], pad, conv3x3, norm.

    No ReLU after the addition (reference; He et al. without the final activation).
    """

    def __init__(self, dim: int, norm: str, dropout: bool, use_bias: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
            norm_layer(norm, dim),
            nn.ReLU(True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
            norm_layer(norm, dim),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResizeConv2d(nn.Conv2d):
    """Nearest x2, reflection pad 1, conv3x3: (b, cin, h, w) -> (b, cout, 2h, 2w), like the ConvTranspose2d it replaces.

    Reflection, not zero, padding: the generator pads every other stride-1 convolution by reflection to keep
    borders free of artefacts; after a nearest x2 it repeats the edge pixel, so the border sees no false
    black frame (zero padding darkens a one-pixel rim that the next layers spread). It is a Conv2d subclass so
    the reference init (`train.networks.init_weights`: every "Conv" module) and parameter names apply as is.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, stride=1, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (b, cin, 2h, 2w)
        return super().forward(F.pad(x, (1, 1, 1, 1), mode="reflect"))


def upsample_layer(kind: str, cin: int, cout: int, bias: bool) -> nn.Module:
    """The x2 upsampling convolution of a decoder stage: the reference's ConvTranspose2d or a ResizeConv2d."""
    if kind == "resize":
        return ResizeConv2d(cin, cout, bias=bias)
    return nn.ConvTranspose2d(cin, cout, kernel_size=3, stride=2, padding=1, output_padding=1, bias=bias)


class ResnetGenerator(nn.Module):
    """ResNet generator: (b, 3, h, w) in [-1, 1] -> (b, 3, h, w) in [-1, 1] (tanh output).

    h and w must be multiples of 4 (two stride-2 downsamplings undone by two
    ConvTranspose2d(k3, s2, p1, output_padding=1), or two ResizeConv2d); `rtstyle.transforms` pads or resizes
    to that.
    """

    def __init__(self, config: GeneratorConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config or GeneratorConfig(**overrides)
        self.config = config
        ngf, norm = config.ngf, config.norm
        # Reference: use_bias = norm_layer == InstanceNorm2d (batch norm has its own shift).
        use_bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(config.input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        n_down = 2
        for i in range(n_down):  # (b, ngf*2^i, h/2^i, w/2^i) -> (b, ngf*2^(i+1), h/2^(i+1), w/2^(i+1))
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                norm_layer(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**n_down
        layers += [ResnetBlock(ngf * mult, norm, config.dropout, use_bias) for _ in range(config.n_blocks)]
        for i in range(n_down):
            mult = 2 ** (n_down - i)
            layers += [
                upsample_layer(config.upsample, ngf * mult, ngf * mult // 2, use_bias),
                norm_layer(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        # The last conv always has a bias in the reference (it is not followed by a norm).
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, config.output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) -> (b, 3, h, w)
        return self.model(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
