"""The CycleGAN ResNet generator, built exactly like the reference implementation.

`ResnetGenerator` reproduces `networks.ResnetGenerator` of junyanz/pytorch-CycleGAN-and-pix2pix
(Zhu et al., ICCV 2017, appendix 7.2 "c7s1-64, d128, d256, R256 x n, u128, u64, c7s1-3"): the same layers
in the same `nn.Sequential` order, so that its `state_dict` keys and shapes are the reference's
(`model.1.weight`, `model.10.conv_block.1.weight`, ... `model.26.bias`) and official weights load
without renaming. It is a pure module: `forward(x) -> y`, no losses, no state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

NORMS = ("instance", "batch", "none")


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a ResNet generator; saved with the weights so loading needs no flags."""

    ngf: int = 64  # filters in the first conv layer
    n_blocks: int = 9  # residual blocks at the bottleneck (reference: 9 for 256 px, 6 for 128 px)
    norm: str = "instance"  # "instance" (CycleGAN), "batch" or "none"
    dropout: bool = False  # dropout(0.5) inside each residual block (reference: --no_dropout off)
    input_nc: int = 3
    output_nc: int = 3

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.ngf < 1 or self.n_blocks < 0:
            raise ValueError(f"ngf must be >= 1 and n_blocks >= 0, got ngf={self.ngf} n_blocks={self.n_blocks}")

    def to_dict(self) -> dict:
        return asdict(self)

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


class ResnetGenerator(nn.Module):
    """ResNet generator: (b, 3, h, w) in [-1, 1] -> (b, 3, h, w) in [-1, 1] (tanh output).

    h and w must be multiples of 4 (two stride-2 downsamplings undone by two
    ConvTranspose2d(k3, s2, p1, output_padding=1)); `rtstyle.transforms` pads or resizes to that.
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
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
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
