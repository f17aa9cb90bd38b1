"""MACs from layer shapes (issue 12): GAN Compression's 56.8 G for the full generator, the convention, and a
cross-check of the shape walk against the shapes a real forward pass produces, at off-square sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rtstyle.macs import format_macs, generator_macs, layer_macs, module_macs
from rtstyle.models import GeneratorConfig, ResizeConv2d, ResnetGenerator
from rtstyle.formats.int8.rewrites import SubPixelConvTranspose, subpixel_generator


def test_full_generator_is_gan_compressions_56_8_gmacs():
    # Li et al., GAN Compression (CVPR 2020), table 1: CycleGAN horse2zebra ResNet generator, 56.8 G MACs.
    assert round(generator_macs(GeneratorConfig(), 256, 256) / 1e9, 1) == 56.8
    # The true multiplies of the two stride-2 ConvTranspose2d are a quarter of what that convention charges.
    assert round(generator_macs(GeneratorConfig(), 256, 256, exact=True) / 1e9, 2) == 49.55
    # A resize conv really costs the full kernel at every output pixel: same count as the convention's deconv.
    assert generator_macs(GeneratorConfig(upsample="resize")) == generator_macs(GeneratorConfig())


def test_student_is_about_20x_cheaper_and_macs_scale_with_pixels():
    teacher, student = generator_macs(GeneratorConfig()), generator_macs(GeneratorConfig(ngf=16, n_blocks=6))
    assert format_macs(student) == "2.88 GMACs" and 19 < teacher / student < 21
    assert generator_macs(GeneratorConfig(ngf=16, n_blocks=6), 360, 640) == student * 360 * 640 // (256 * 256)


def hooked_macs(module: nn.Module, x: torch.Tensor, exact: bool = False) -> int:
    """The same convention counted from the shapes a real forward pass sees (hooks on every conv)."""
    total = 0

    def hook(layer, inputs, output):
        nonlocal total
        if isinstance(layer, nn.ConvTranspose2d):
            pixels = inputs[0].shape[2] * inputs[0].shape[3] if exact else output.shape[2] * output.shape[3]
            total += pixels * layer.in_channels * layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, nn.Conv2d):
            total += (output.shape[2] * output.shape[3] * layer.out_channels * layer.in_channels // layer.groups
                      * layer.kernel_size[0] * layer.kernel_size[1])

    convs = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    handles = [m.register_forward_hook(hook) for m in convs]
    with torch.no_grad():
        module(x)
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("config", [GeneratorConfig(ngf=4, n_blocks=2),
                                    GeneratorConfig(ngf=6, n_blocks=1, upsample="resize"),
                                    GeneratorConfig(ngf=4, n_blocks=3, norm="batch", dropout=True)])
@pytest.mark.parametrize("hw", [(36, 52), (64, 44)])
@pytest.mark.parametrize("exact", [False, True])
def test_shape_walk_equals_a_real_forward_pass(config, hw, exact):
    generator = ResnetGenerator(config).eval()
    x = torch.zeros(1, 3, *hw)
    assert generator_macs(config, *hw, exact=exact) == module_macs(generator, *hw, exact=exact) \
        == hooked_macs(generator, x, exact)
    rewritten = subpixel_generator(generator)  # what the int8 path runs: 2x2 convs at the input size
    assert module_macs(rewritten, *hw) == hooked_macs(rewritten, x)
    assert any(isinstance(m, SubPixelConvTranspose) for m in rewritten.modules()) == (config.upsample == "deconv")
    assert any(isinstance(m, ResizeConv2d) for m in generator.modules()) == (config.upsample == "resize")


def test_refusals_say_what_was_expected():
    with pytest.raises(ValueError, match="multiples of 4"):
        generator_macs(GeneratorConfig(ngf=4, n_blocks=1), 30, 32)
    with pytest.raises(ValueError, match="no rule for it"):
        layer_macs(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2)), 3, 8, 8)
    with pytest.raises(ValueError, match="gets 3 channels, expects 5"):
        layer_macs(nn.Conv2d(5, 4, 3), 3, 8, 8)
