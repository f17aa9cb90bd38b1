"""Multiply-accumulates of a generator at a given input size, counted from its layer shapes (no forward pass).

Convention (the one that gives GAN Compression's 56.8 GMACs for the full ngf-64, 9-block ResNet generator
at 256x256; Li et al., CVPR 2020, table 1, counted with torchprofile): every convolution costs
`out_h * out_w * out_channels * in_channels / groups * kh * kw`, transposed convolutions included, i.e. a
`ConvTranspose2d(k3, s2)` is charged its full kernel at every *output* pixel. Biases, normalisation,
activations, padding, resizing, the residual additions and tanh are not counted (together under 1% here).
That convention over-counts a stride-2 transposed convolution 4x: it really does `in_h * in_w * cin * cout * 9`
multiplies (each input pixel scatters one 3x3 kernel). `exact=True` counts those instead (49.6 GMACs for
the full generator). A `ResizeConv2d` (nearest x2, then a 3x3 conv at the output size) really costs what
the convention charges a transposed convolution, so with the default the two layouts count the same.

`layer_macs(module, c, h, w)` walks a module's layers in order, carrying the (channels, h, w) shape;
`generator_macs(config, h, w)` builds the generator on the meta device (no memory) and walks it.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import GeneratorConfig, ResnetBlock, ResnetGenerator
from .formats.int8.rewrites import SubPixelConvTranspose

SHAPE_FREE = (nn.InstanceNorm2d, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Dropout, nn.Identity)


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def layer_macs(module: nn.Module, c: int, h: int, w: int, exact: bool = False) -> tuple[int, tuple[int, int, int]]:
    """(MACs, (c, h, w) after it) of `module` applied to a (c, h, w) input; see the module docstring."""
    from .models import ResizeConv2d

    if isinstance(module, ResnetGenerator):
        return layer_macs(module.model, c, h, w, exact)
    if isinstance(module, nn.Sequential):
        total = 0
        for layer in module:
            macs, (c, h, w) = layer_macs(layer, c, h, w, exact)
            total += macs
        return total, (c, h, w)
    if isinstance(module, ResnetBlock):  # x + conv_block(x): the block keeps its input's shape
        macs, shape = layer_macs(module.conv_block, c, h, w, exact)
        if shape != (c, h, w):
            raise ValueError(f"residual block changes the shape {(c, h, w)} -> {shape}")
        return macs, shape
    if isinstance(module, ResizeConv2d):  # nearest x2, reflection pad 1, conv3x3 at the doubled size
        return _conv2d_macs(module, c, 2 * h + 2, 2 * w + 2)
    if isinstance(module, SubPixelConvTranspose):  # pad right/bottom 1, conv2x2, PixelShuffle(2)
        macs, (c4, h2, w2) = _conv2d_macs(module.conv, c, h + 1, w + 1)
        return macs, (c4 // 4, 2 * h2, 2 * w2)
    if isinstance(module, nn.Conv2d):
        return _conv2d_macs(module, c, h, w)
    if isinstance(module, nn.ConvTranspose2d):
        (kh, kw), (sh, sw), (ph, pw) = module.kernel_size, module.stride, module.padding
        (oph, opw), (dh, dw) = module.output_padding, module.dilation
        out_h = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
        out_w = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
        pixels = h * w if exact else out_h * out_w
        return pixels * module.out_channels * c // module.groups * kh * kw, (module.out_channels, out_h, out_w)
    if isinstance(module, nn.ReflectionPad2d | nn.ZeroPad2d | nn.ReplicationPad2d):
        left, right, top, bottom = module.padding
        return 0, (c, h + top + bottom, w + left + right)
    if isinstance(module, SHAPE_FREE):
        return 0, (c, h, w)
    raise ValueError(f"cannot count the MACs of a {type(module).__name__} layer (no rule for it in rtstyle.macs)")


def _conv2d_macs(conv: nn.Conv2d, c: int, h: int, w: int) -> tuple[int, tuple[int, int, int]]:
    if c != conv.in_channels:
        raise ValueError(f"{conv} gets {c} channels, expects {conv.in_channels}")
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    (ph, pw), (dh, dw) = conv.padding, conv.dilation  # type: ignore[misc]  (never the 'same' string here)
    out_h, out_w = _conv_out(h, kh, sh, ph, dh), _conv_out(w, kw, sw, pw, dw)
    macs = out_h * out_w * conv.out_channels * (c // conv.groups) * kh * kw
    return macs, (conv.out_channels, out_h, out_w)


def module_macs(generator: nn.Module, h: int, w: int, exact: bool = False) -> int:
    """MACs of one (1, input_nc, h, w) image through `generator` (a ResnetGenerator, or its sub-pixel rewrite)."""
    config = getattr(generator, "config", None)
    channels = config.input_nc if config is not None else 3
    return layer_macs(generator, channels, h, w, exact)[0]


def generator_macs(config: GeneratorConfig, h: int = 256, w: int = 256, exact: bool = False) -> int:
    """MACs of one (h, w) image through the generator `config` describes (batch 1)."""
    if h % 4 or w % 4 or h < 4 or w < 4:
        raise ValueError(f"generator input sides must be positive multiples of 4, got {h}x{w}")
    with torch.device("meta"):  # shapes only: the full generator's 11M parameters are never allocated
        generator = ResnetGenerator(config)
    return module_macs(generator, h, w, exact)


def format_macs(macs: int) -> str:
    """'56.80 GMACs', '2.87 GMACs', '310.4 MMACs'."""
    return f"{macs / 1e9:.2f} GMACs" if macs >= 1e9 else f"{macs / 1e6:.1f} MMACs"
