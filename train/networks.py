"""The networks training needs besides the generator: the reference's discriminators and weight init.

`NLayerDiscriminator` reproduces `networks.NLayerDiscriminator` of junyanz/pytorch-CycleGAN-and-pix2pix
(Isola et al., pix2pix, CVPR 2017; used unchanged by CycleGAN): with `n_layers=3` it is the 70x70 PatchGAN,
C64-C128-C256-C512 with 4x4 kernels and LeakyReLU(0.2), no norm on the first layer, then a 1-channel conv,
so it outputs a (b, 1, h/8 - 2, w/8 - 2) map of real/fake scores, each seeing a 70x70 receptive field. The
layers sit in one `nn.Sequential` in the reference order, so the state-dict keys are the reference's
(`model.0`, `model.2`, `model.5`, `model.8`, `model.11` for n_layers=3) and reference `latest_net_D_A.pth`
files load as they are. `PixelDiscriminator` is the reference's 1x1 PixelGAN (`--netD pixel`, keys
`net.0`, `net.2`, `net.3`, `net.5`). `init_weights` is the reference's `init_weights(net, init_type, gain)`.
"""

from __future__ import annotations

import torch
from torch import nn

from rtstyle.models import GeneratorConfig, ResnetGenerator, norm_layer


class NLayerDiscriminator(nn.Module):
    """PatchGAN: (b, input_nc, h, w) in [-1, 1] -> (b, 1, h', w') unbounded scores (LSGAN: MSE to 1 or 0)."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        # Reference: use_bias = norm_layer == InstanceNorm2d (batch norm has its own shift).
        use_bias = norm == "instance"
        kw, padw = 4, 1
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),  # no norm on the first layer
            nn.LeakyReLU(0.2, True),
        ]
        nf_mult = 1
        for n in range(1, n_layers):  # (b, ndf*m, h/2^n, w/2^n): filters double up to 8 * ndf
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw, bias=use_bias),
                norm_layer(norm, ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
        layers += [  # one stride-1 layer, then the 1-channel prediction map
            nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw, bias=use_bias),
            norm_layer(norm, ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) -> (b, 1, h/8 - 2, w/8 - 2)
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """PixelGAN: 1x1 convs, (b, input_nc, h, w) -> (b, 1, h, w) scores, one per pixel (reference --netD pixel:
    "encourages greater color diversity but has no effect on spatial statistics")."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, norm: str = "instance") -> None:
        super().__init__()
        use_bias = norm == "instance"  # reference: also the last conv, unlike NLayerDiscriminator's
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
            norm_layer(norm, ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) -> (b, 1, h, w)
        return self.net(x)


INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
DISCRIMINATORS = ("basic", "n_layers", "pixel")  # reference --netD


@torch.no_grad()
def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """The reference's init_weights(net, init_type, init_gain): every Conv*/Linear weight drawn by `init_type`
    (normal: N(0, gain); xavier: xavier_normal_ with gain; kaiming: kaiming_normal_(a=0, mode='fan_in'), which
    ignores gain; orthogonal: orthogonal_ with gain), biases 0; BatchNorm2d weight ~ N(1, gain), bias 0 for
    every init_type. Applied with `net.apply` (children before parents), as there."""
    if init_type not in INIT_TYPES:
        raise ValueError(f"init_type must be one of {', '.join(INIT_TYPES)}, got {init_type!r}")

    def init(m: nn.Module) -> None:
        classname = m.__class__.__name__
        if hasattr(m, "weight") and ("Conv" in classname or "Linear" in classname):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0.0)
        elif "BatchNorm2d" in classname:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.constant_(m.bias, 0.0)

    net.apply(init)
    return net


def build_generator(config: GeneratorConfig, gain: float = 0.02, init_type: str = "normal") -> ResnetGenerator:
    """A freshly initialised ResNet generator (the reference's define_G)."""
    return init_weights(ResnetGenerator(config), init_type, gain)


def build_discriminator(ndf: int = 64, n_layers: int = 3, norm: str = "instance", gain: float = 0.02,
                        input_nc: int = 3, netd: str = "n_layers", init_type: str = "normal") -> nn.Module:
    """A freshly initialised discriminator (the reference's define_D): 'basic' is the 3-layer PatchGAN,
    'n_layers' the PatchGAN with `n_layers`, 'pixel' the PixelGAN."""
    if netd == "pixel":
        net: nn.Module = PixelDiscriminator(input_nc, ndf, norm)
    elif netd in ("basic", "n_layers"):
        net = NLayerDiscriminator(input_nc, ndf, 3 if netd == "basic" else n_layers, norm)
    else:
        raise ValueError(f"netd must be one of {', '.join(DISCRIMINATORS)}, got {netd!r}")
    return init_weights(net, init_type, gain)
