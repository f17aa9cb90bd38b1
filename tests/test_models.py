"""Generator parity with an independent, reference-structured implementation; keys, shapes, parameter count."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from rtstyle import GeneratorConfig, ResnetGenerator
from rtstyle.models import count_parameters


# --- independent implementation, written from the reference networks.py structure -------------------------
class RefResnetBlock(nn.Module):
    def __init__(self, dim, norm_layer, use_dropout, use_bias):
        super().__init__()
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
                 norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            block += [nn.Dropout(0.5)]
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
                  norm_layer(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
    def __init__(self, input_nc=3, output_nc=3, ngf=64, use_dropout=False, n_blocks=9):
        super().__init__()
        norm_layer = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        use_bias = True
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
                 norm_layer(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                      norm_layer(ngf * mult * 2), nn.ReLU(True)]
        mult = 4
        for _ in range(n_blocks):
            model += [RefResnetBlock(ngf * mult, norm_layer, use_dropout, use_bias)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, int(ngf * mult / 2), kernel_size=3, stride=2, padding=1,
                                         output_padding=1, bias=use_bias),
                      norm_layer(int(ngf * mult / 2)), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


def test_default_generator_matches_reference_keys_shapes_and_count():
    ours, ref = ResnetGenerator(), RefResnetGenerator()
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert len(ours_sd) == 48
    assert list(ours_sd)[:2] == ["model.1.weight", "model.1.bias"]
    assert "model.10.conv_block.1.weight" in ours_sd and list(ours_sd)[-1] == "model.26.bias"
    assert all(ours_sd[k].shape == ref_sd[k].shape for k in ref_sd)
    assert count_parameters(ours) == 11_378_179


@pytest.mark.parametrize("ngf,n_blocks,dropout", [(8, 2, False), (8, 6, True), (16, 9, False)])
def test_same_weights_same_output_as_reference(ngf, n_blocks, dropout):
    torch.manual_seed(1)
    ref = RefResnetGenerator(ngf=ngf, n_blocks=n_blocks, use_dropout=dropout).eval()
    ours = ResnetGenerator(GeneratorConfig(ngf=ngf, n_blocks=n_blocks, dropout=dropout)).eval()
    ours.load_state_dict(ref.state_dict())  # strict: the keys must be identical
    x = torch.rand(2, 3, 36, 44) * 2 - 1
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))


def test_output_shape_and_range():
    g = ResnetGenerator(ngf=8, n_blocks=1).eval()
    with torch.no_grad():
        y = g(torch.rand(1, 3, 40, 48) * 2 - 1)
    assert y.shape == (1, 3, 40, 48)
    assert y.min() >= -1 and y.max() <= 1


def test_instance_norm_has_no_affine_and_no_running_stats_and_every_conv_has_bias():
    g = ResnetGenerator(ngf=8, n_blocks=2)
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(m.bias is not None for m in convs)
    ups = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.kernel_size, m.stride, m.padding, m.output_padding) for m in ups] == [((3, 3), (2, 2), (1, 1), (1, 1))] * 2


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="norm must be one of"):
        GeneratorConfig(norm="group")
