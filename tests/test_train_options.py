"""Training options beyond the defaults (issue 16): each against an independent computation from the reference.

For --gan-mode, --netd, --n-layers-d and --norm one training step is compared with the reference's
`CycleGANModel.optimize_parameters` written out here, on networks written out here from the reference's
`networks.py` (loaded with the trainer's initial weights, strictly, so their layouts must agree): vanilla is
BCE-with-logits by its formula, wgangp is -mean / +mean with `cal_gradient_penalty`'s penalty. The lr
policies are checked over epochs against both their formulas and the torch schedulers the reference steps;
the inits by their statistics; --direction by the swapped data and the saved generators' directions. Tiny
networks (ngf 4-8), 32 px, CPU.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from rtstyle.config import add_dataclass_args
from rtstyle.models import GeneratorConfig
from rtstyle.weights import ModelInfo, load_model, save_generator
from test_train import make_photo_dataset, one_thread  # noqa: F401 (one_thread: an autouse fixture)
from train.config import TrainConfig
from train.data import UnalignedDataset, load_domains
from train.loop import train
from train.networks import PixelDiscriminator, build_discriminator, build_generator
from train.schedule import lr_factor
from train.trainer import GAN_LOSSES, LOSS_KEYS, CycleGANTrainer

TINY = dict(ngf=4, n_blocks=1, ndf=4, load_size=40, crop_size=32, num_workers=0, precision="fp32")


# --- the reference's networks, written out (models/networks.py) -------------------------------------------
def ref_norm_layer(norm: str):  # get_norm_layer
    return {"instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
            "batch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True),
            "none": lambda channels: nn.Identity()}[norm]


class Holder(nn.Module):
    """A module whose only child is `name` (the reference's `self.model` / `self.net`)."""

    def __init__(self, name: str, seq: nn.Sequential):
        super().__init__()
        self.name = name
        setattr(self, name, seq)

    def forward(self, x):
        return getattr(self, self.name)(x)


def ref_generator(ngf: int, n_blocks: int, norm: str) -> nn.Module:
    """ResnetGenerator: use_bias only with InstanceNorm (the 'none' norm layer is a function, not the class)."""
    norm_layer, use_bias = ref_norm_layer(norm), norm == "instance"

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.conv_block = nn.Sequential(
                nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm_layer(dim), nn.ReLU(True),
                nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm_layer(dim))

        def forward(self, x):
            return x + self.conv_block(x)

    layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=use_bias), norm_layer(ngf), nn.ReLU(True)]
    for mult in (1, 2):
        layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=use_bias), norm_layer(ngf * mult * 2),
                   nn.ReLU(True)]
    layers += [Block(ngf * 4) for _ in range(n_blocks)]
    for mult in (4, 2):
        layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=use_bias),
                   norm_layer(ngf * mult // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
    return Holder("model", nn.Sequential(*layers))


def ref_nlayer(ndf: int, n_layers: int, norm: str) -> nn.Module:
    """NLayerDiscriminator."""
    norm_layer, use_bias = ref_norm_layer(norm), norm == "instance"
    seq = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2**n, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=use_bias), norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True)]
    prev, mult = mult, min(2**n_layers, 8)
    seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=use_bias), norm_layer(ndf * mult),
            nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
    return Holder("model", nn.Sequential(*seq))


def ref_pixel(ndf: int, norm: str) -> nn.Module:
    """PixelDiscriminator: the last conv takes use_bias too."""
    norm_layer, use_bias = ref_norm_layer(norm), norm == "instance"
    return Holder("net", nn.Sequential(
        nn.Conv2d(3, ndf, 1, 1, 0), nn.LeakyReLU(0.2, True), nn.Conv2d(ndf, ndf * 2, 1, 1, 0, bias=use_bias),
        norm_layer(ndf * 2), nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * 2, 1, 1, 1, 0, bias=use_bias)))


# --- the reference's losses, from their formulas -----------------------------------------------------------
def ref_lsgan(x, real):
    return ((x - (1.0 if real else 0.0)) ** 2).mean()


def ref_vanilla(x, real):  # GANLoss('vanilla'): nn.BCEWithLogitsLoss against the label expanded to x's shape
    return nn.BCEWithLogitsLoss()(x, torch.tensor(1.0 if real else 0.0).expand_as(x))


def bce_with_logits_formula(x, real):  # the definition: max(x, 0) - x * y + log(1 + exp(-|x|))
    y = 1.0 if real else 0.0
    return (x.clamp(min=0) - x * y + torch.log1p(torch.exp(-x.abs()))).mean()


def ref_wgan(x, real):  # GANLoss('wgangp')
    return -x.mean() if real else x.mean()


def ref_gradient_penalty(net_d, real, fake, lambda_gp=10.0):  # cal_gradient_penalty(type='mixed', constant=1)
    b = real.shape[0]
    alpha = torch.rand(b, 1).expand(b, real.nelement() // b).contiguous().view(*real.shape)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = net_d(mixed)
    grads = torch.autograd.grad(out, mixed, torch.ones(out.size()), create_graph=True, retain_graph=True)[0]
    grads = grads.view(b, -1)
    return (((grads + 1e-16).norm(2, dim=1) - 1.0) ** 2).mean() * lambda_gp


def reference_step(G_A, G_B, D_A, D_B, real_A, real_B, criterion, lambda_gp=0.0, lam=(10.0, 7.0, 0.5)):
    """CycleGANModel.optimize_parameters (the pool is empty at the first step: fakes go to D as they are)."""
    lam_A, lam_B, lam_idt = lam
    opt_G = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    # The reference's order of calls and sums: biases followed by InstanceNorm get float-noise gradients,
    # which Adam turns into +-lr steps, so they agree only when the arithmetic is the same.
    fake_B = G_A(real_A)
    rec_A = G_B(fake_B)
    fake_A = G_B(real_B)
    rec_B = G_A(fake_A)
    for p in itertools.chain(D_A.parameters(), D_B.parameters()):
        p.requires_grad_(False)
    loss = {"idt_b": (G_A(real_B) - real_B).abs().mean() * lam_B * lam_idt,
            "idt_a": (G_B(real_A) - real_A).abs().mean() * lam_A * lam_idt}
    loss.update(gan_ab=criterion(D_A(fake_B), True), gan_ba=criterion(D_B(fake_A), True),
                cycle_a=(rec_A - real_A).abs().mean() * lam_A, cycle_b=(rec_B - real_B).abs().mean() * lam_B)
    (loss["gan_ab"] + loss["gan_ba"] + loss["cycle_a"] + loss["cycle_b"] + loss["idt_a"] + loss["idt_b"]).backward()
    opt_G.step()
    for p in itertools.chain(D_A.parameters(), D_B.parameters()):
        p.requires_grad_(True)
    for key, D, real, fake in (("disc_b", D_A, real_B, fake_B.detach()), ("disc_a", D_B, real_A, fake_A.detach())):
        loss[key] = 0.5 * (criterion(D(real), True) + criterion(D(fake), False))
        if lambda_gp:
            loss[key] = loss[key] + ref_gradient_penalty(D, real, fake, lambda_gp)
        loss[key].backward()  # backward_D_A, then backward_D_B
    opt_D.step()
    return {k: v.item() for k, v in loss.items()}


STEP_CASES = {
    "vanilla": (dict(gan_mode="vanilla"), ref_vanilla),
    "wgangp": (dict(gan_mode="wgangp"), ref_wgan),
    "wgangp-no-penalty": (dict(gan_mode="wgangp", lambda_gp=0.0), ref_wgan),
    "pixel": (dict(netd="pixel", norm="batch"), ref_lsgan),
    "n_layers-2": (dict(netd="n_layers", n_layers_d=2), ref_lsgan),
    "norm-none": (dict(norm="none"), ref_lsgan),
    "norm-batch": (dict(norm="batch"), ref_lsgan),
}


@pytest.mark.parametrize("case", list(STEP_CASES))
def test_one_step_equals_reference(case):
    options, criterion = STEP_CASES[case]
    cfg = TrainConfig(**{**TINY, "ngf": 8}, lambda_a=10.0, lambda_b=7.0, lambda_identity=0.5, **options)
    torch.manual_seed(0)
    trainer = CycleGANTrainer(cfg)
    G_A, G_B = (ref_generator(8, 1, cfg.norm) for _ in range(2))
    if cfg.netd == "pixel":
        D_A, D_B = ref_pixel(4, cfg.norm), ref_pixel(4, cfg.norm)
    else:
        D_A, D_B = (ref_nlayer(4, 3 if cfg.netd == "basic" else cfg.n_layers_d, cfg.norm) for _ in range(2))
    for ref, mine in ((G_A, trainer.gen_ab), (G_B, trainer.gen_ba), (D_A, trainer.disc_b), (D_B, trainer.disc_a)):
        ref.load_state_dict(mine.state_dict())  # strict: the layouts (keys, shapes, biases) are the reference's
    real_A, real_B = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1

    torch.manual_seed(5)  # the penalty's alphas: the global CPU generator, D_A's draw first
    losses = trainer.train_step(real_A.clone(), real_B.clone())
    torch.manual_seed(5)
    expected = reference_step(G_A, G_B, D_A, D_B, real_A, real_B, criterion,
                              lambda_gp=cfg.lambda_gp if cfg.gan_mode == "wgangp" else 0.0)
    assert list(losses) == list(LOSS_KEYS)
    for key in LOSS_KEYS:
        assert losses[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key
    for mine, ref in ((trainer.gen_ab, G_A), (trainer.gen_ba, G_B), (trainer.disc_b, D_A), (trainer.disc_a, D_B)):
        for (name, a), b in zip(mine.state_dict().items(), ref.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{case} {name}")
    if case == "wgangp":  # the penalty is in the discriminator losses: without it they are far smaller
        assert losses["disc_a"] > 1 and losses["disc_b"] > 1


def test_gan_losses_and_wgangp_under_mixed_precision():
    assert set(GAN_LOSSES) == {"lsgan", "vanilla", "wgangp"}
    x = torch.randn(2, 1, 5, 5)
    for mode, ref in (("lsgan", ref_lsgan), ("vanilla", bce_with_logits_formula), ("wgangp", ref_wgan)):
        for real in (True, False):
            torch.testing.assert_close(GAN_LOSSES[mode](x, real), ref(x, real))
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    for precision in ("bf16", "fp16"):
        trainer = CycleGANTrainer(TrainConfig(**{**TINY, "precision": precision}, gan_mode="wgangp",
                                              memory_format="channels_last"))
        # fp16: the scaler starts at 2^16 and halves on every overflowing step (skipped), as torch.amp does
        losses = [trainer.train_step(a, b) for _ in range(12 if precision == "fp16" else 1)][-1]
        assert all(np.isfinite(v) for v in losses.values()), (precision, losses)
    with pytest.raises(ValueError, match="DistributedDataParallel"):
        CycleGANTrainer(TrainConfig(**TINY, gan_mode="wgangp"), distributed=True)


# --- networks -----------------------------------------------------------------------------------------------
def test_pixel_and_n_layer_discriminators_layout():
    pixel = build_discriminator(ndf=8, norm="batch", netd="pixel")
    assert isinstance(pixel, PixelDiscriminator)
    assert list(pixel.state_dict()) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.3.weight", "net.3.bias",
                                        "net.3.running_mean", "net.3.running_var", "net.3.num_batches_tracked",
                                        "net.5.weight"]
    assert pixel(torch.zeros(1, 3, 20, 24)).shape == (1, 1, 20, 24)  # one score per pixel
    assert list(build_discriminator(ndf=8, netd="pixel").state_dict()) == [
        "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.5.weight", "net.5.bias"]
    four = build_discriminator(ndf=4, n_layers=4, netd="n_layers")
    assert four(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 2, 2)  # 64 / 16 = 4, then two k4 s1 p1 convs
    assert len(build_discriminator(ndf=4, n_layers=5, netd="basic").model) == 12  # basic ignores n_layers
    none = build_discriminator(ndf=4, norm="none")
    assert not any(isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)) for m in none.modules())
    assert none.model[2].bias is None and none.model[11].bias is not None


def test_norm_none_generator_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    config = GeneratorConfig(ngf=4, n_blocks=1, norm="none")
    gen = build_generator(config)
    convs = [m for m in gen.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [m.bias is not None for m in convs] == [False] * (len(convs) - 1) + [True]  # reference use_bias
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    save_generator(gen, tmp_path / "g.safetensors", ModelInfo(config=config))
    torch.save({f"module.{k}": v for k, v in gen.state_dict().items()}, tmp_path / "g.pth")
    for path in (tmp_path / "g.safetensors", tmp_path / "g.pth"):
        loaded, info = load_model(path)
        assert info.config.norm == "none", path
        torch.testing.assert_close(loaded(x), gen.eval()(x))


INIT_GAIN = 0.05  # not the default, so an init that ignored it would show


def fans(w: torch.Tensor) -> tuple[int, int]:
    """fan_in, fan_out as torch.nn.init computes them (dims 1 and 0 times the kernel size, transposed convs too)."""
    receptive = math.prod(w.shape[2:])
    return w.shape[1] * receptive, w.shape[0] * receptive


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_statistics(init_type):
    torch.manual_seed(0)
    cfg = TrainConfig(**{**TINY, "ngf": 8, "ndf": 16, "n_blocks": 2}, norm="batch", init_type=init_type,
                      init_gain=INIT_GAIN)
    trainer = CycleGANTrainer(cfg)
    checked = 0
    for net in (trainer.gen_ab, trainer.disc_a):
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert abs(m.weight.mean().item() - 1) < 4 * INIT_GAIN / m.weight.numel() ** 0.5 + 1e-3
                assert m.bias.abs().max() == 0
            if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            w = m.weight.detach()
            if m.bias is not None:
                assert m.bias.abs().max() == 0
            fan_in, fan_out = fans(w)
            if init_type == "orthogonal":  # rows (or columns) of the flattened weight orthonormal, times gain
                flat = w.reshape(w.shape[0], -1)
                gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
                torch.testing.assert_close(gram, INIT_GAIN**2 * torch.eye(gram.shape[0]), atol=1e-6, rtol=0)
                checked += 1
                continue
            if w.numel() < 2000:
                continue  # too few weights for a sharp estimate of the std
            std = {"normal": INIT_GAIN, "xavier": INIT_GAIN * math.sqrt(2.0 / (fan_in + fan_out)),
                   "kaiming": math.sqrt(2.0 / fan_in)}[init_type]  # kaiming_normal_(a=0, 'fan_in'): no gain
            assert abs(w.std().item() / std - 1) < 5 / math.sqrt(2 * w.numel()) + 0.01, (init_type, tuple(w.shape))
            assert abs(w.mean().item()) < 5 * std / math.sqrt(w.numel())
            checked += 1
    assert checked >= 6


# --- lr policies -------------------------------------------------------------------------------------------
def reference_lrs(policy: str, epochs: int, decay: int, decay_iters: int, n: int, epoch_count: int = 1) -> list:
    """The lr of each epoch from torch's schedulers, built and stepped as get_scheduler/update_learning_rate do."""
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=2e-4)
    scheduler = {
        "linear": lambda: torch.optim.lr_scheduler.LambdaLR(
            opt, lambda e: 1.0 - max(0, e + epoch_count - epochs) / float(decay + 1)),
        "step": lambda: torch.optim.lr_scheduler.StepLR(opt, step_size=decay_iters, gamma=0.1),
        "plateau": lambda: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.2, threshold=0.01,
                                                                      patience=5),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=0),
    }[policy]()
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step(0) if policy == "plateau" else scheduler.step()  # BaseModel.metric = 0
    return lrs


def formula_lr(policy: str, e: int, epochs: int, decay: int, decay_iters: int) -> float:
    """The same from the closed forms: the lr during epoch e + 1."""
    if policy == "linear":
        return 2e-4 * (1.0 - max(0, e + 1 - epochs) / (decay + 1))
    if policy == "step":
        return 2e-4 * 0.1 ** (e // decay_iters)
    if policy == "plateau":  # metric 0: best after the first step, then a drop after every 6 bad epochs
        return 2e-4 * 0.2 ** (max(0, e - 1) // 6)
    return 2e-4 * (1 + math.cos(math.pi * e / epochs)) / 2


@pytest.mark.parametrize("policy", ["linear", "step", "plateau", "cosine"])
def test_lr_policy_over_epochs(policy):
    epochs, decay, decay_iters = 12, 10, 4
    trainer = CycleGANTrainer(TrainConfig(**TINY, lr_policy=policy, epochs=epochs, epochs_decay=decay,
                                          lr_decay_iters=decay_iters))
    seen = []
    for _ in range(epochs + decay):
        seen.append(trainer.lr)
        assert trainer.opt_d.param_groups[0]["lr"] == trainer.lr
        trainer.end_epoch()
    torch_lrs = reference_lrs(policy, epochs, decay, decay_iters, epochs + decay)
    for e, (mine, ref) in enumerate(zip(seen, torch_lrs)):
        assert mine == pytest.approx(ref, rel=1e-12, abs=1e-18), (policy, e)
        assert mine == pytest.approx(formula_lr(policy, e, epochs, decay, decay_iters), rel=1e-12, abs=1e-18)
    if policy == "cosine":  # T_max = n_epochs: zero at the end of --epochs, back up during --epochs-decay
        assert seen[epochs] == pytest.approx(0, abs=1e-18) and seen[-1] > seen[epochs + 1]
    if policy == "plateau":
        assert seen[6] == 2e-4 and seen[7] == pytest.approx(4e-5) and seen[13] == pytest.approx(8e-6)


def test_epoch_count_continues_the_linear_schedule():
    epochs, decay, start = 5, 6, 8
    trainer = CycleGANTrainer(TrainConfig(**TINY, epochs=epochs, epochs_decay=decay, epoch_count=start))
    assert trainer.epochs_done == start - 1
    ref = reference_lrs("linear", epochs, decay, 0, decay + epochs - start + 1, epoch_count=start)  # a fresh
    for lr in ref:  # LambdaLR with --epoch_count, as the reference makes on --continue_train
        assert trainer.lr == pytest.approx(lr, rel=1e-12)
        trainer.end_epoch()
    assert lr_factor(start - 1, epochs, decay) == lr_factor(0, epochs, decay, epoch_count=start)


# --- direction ----------------------------------------------------------------------------------------------
def test_direction_btoa_swaps_domains_and_names_the_generators(tmp_path):
    root = make_photo_dataset(tmp_path / "photo2swapped", n_a=2, n_b=3, size=40)
    forward = TrainConfig(dataroot=str(root), **TINY)
    backward = TrainConfig(dataroot=str(root), **TINY, direction="BtoA")
    a, b = load_domains(forward)
    for key in ((0, 0), (1, 2), (3, 1)):  # the same draws, the pair swapped (reference set_input)
        x, y = UnalignedDataset(a.paths, b.paths, forward)[key]
        bx, by = UnalignedDataset(a.paths, b.paths, backward)[key]
        assert torch.equal(bx, y) and torch.equal(by, x)
    fx, fy = UnalignedDataset(a.paths, b.paths, forward).fixed_pair(1)
    bx, by = UnalignedDataset(a.paths, b.paths, backward).fixed_pair(1)  # the sample grids' pairs too
    assert torch.equal(bx, fy) and torch.equal(by, fx)
    assert forward.domain_names() == ("photo", "swapped") and backward.domain_names() == ("swapped", "photo")
    assert TrainConfig(names="x,y", direction="BtoA").domain_names() == ("y", "x")

    result = train(TrainConfig(**{**backward.to_dict(), "name": "b2a", "out": str(tmp_path / "runs"),
                                  "max_steps": 1, "sample_every": 0}))
    assert load_model(result.run_dir / "G_A.safetensors")[1].direction == "swapped->photo"
    assert load_model(result.run_dir / "G_B.safetensors")[1].direction == "photo->swapped"


# --- the typed config and bad input -------------------------------------------------------------------------
def test_reference_defaults_and_choices():
    cfg = TrainConfig()
    assert (cfg.gan_mode, cfg.lr_policy, cfg.lr_decay_iters, cfg.init_type, cfg.init_gain, cfg.norm) == (
        "lsgan", "linear", 50, "normal", 0.02, "instance")
    assert (cfg.direction, cfg.netd, cfg.n_layers_d, cfg.dropout, cfg.serial_batches, cfg.preprocess) == (
        "AtoB", "basic", 3, False, False, "resize_and_crop")
    assert (cfg.epoch_count, cfg.init_from_a, cfg.init_from_b, cfg.continue_from) == (1, None, None, None)
    for field, value, listed in (("gan_mode", "hinge", "lsgan, vanilla, wgangp"),
                                 ("lr_policy", "exp", "linear, step, plateau, cosine"),
                                 ("init_type", "uniform", "normal, xavier, kaiming, orthogonal"),
                                 ("norm", "group", "instance, batch, none"),
                                 ("netd", "unet", "basic, n_layers, pixel"),
                                 ("direction", "AB", "AtoB, BtoA"),
                                 ("preprocess", "scale", "resize_and_crop, crop, scale_width, scale_width_and_crop")):
        with pytest.raises(ValueError, match=f"--{field.replace('_', '-')} must be one of {listed}"):
            TrainConfig(**{field: value})
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, TrainConfig)
    args = parser.parse_args(["--gan-mode", "vanilla", "--lr-policy", "step", "--lr-decay-iters", "7", "--init-type",
                              "xavier", "--norm", "none", "--direction", "BtoA", "--netd", "n_layers",
                              "--n-layers-d", "4", "--dropout", "--serial-batches", "--preprocess", "crop",
                              "--init-from-a", "horse2zebra", "--epoch-count", "3", "--lambda-gp", "5"])
    assert (args.gan_mode, args.lr_policy, args.lr_decay_iters, args.init_type, args.norm, args.direction) == (
        "vanilla", "step", 7, "xavier", "none", "BtoA")
    assert (args.netd, args.n_layers_d, args.dropout, args.serial_batches, args.preprocess) == (
        "n_layers", 4, True, True, "crop")
    assert (args.init_from_a, args.epoch_count, args.lambda_gp) == ("horse2zebra", 3, 5.0)
    assert parser.parse_args(["--no-dropout"]).dropout is False


def test_unknown_option_value_lists_valid_ones(capsys):
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, TrainConfig)
    for flag, listed in (("--gan-mode", "'lsgan', 'vanilla', 'wgangp'"), ("--lr-policy", "'linear', 'step'"),
                         ("--netd", "'basic', 'n_layers', 'pixel'"), ("--init-type", "'normal', 'xavier'")):
        with pytest.raises(SystemExit) as e:
            parser.parse_args([flag, "bogus"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "invalid choice: 'bogus'" in err and listed in err, err


def test_refused_combinations():
    with pytest.raises(ValueError, match="--n-layers-d 4 needs --netd n_layers"):
        TrainConfig(n_layers_d=4)
    with pytest.raises(ValueError, match="cosine anneals over --epochs"):
        TrainConfig(lr_policy="cosine", epochs=0, epochs_decay=5)
    with pytest.raises(ValueError, match="cannot be combined"):
        TrainConfig(continue_from="checkpoints/x", init_from_a="horse2zebra")
    with pytest.raises(ValueError, match="--epoch-count 12 is past the schedule's last epoch"):
        TrainConfig(epochs=5, epochs_decay=6, epoch_count=12)
    with pytest.raises(ValueError, match="--lr-decay-iters must be >= 1"):
        TrainConfig(lr_decay_iters=0)


def test_configs_saved_before_these_options_keep_their_behaviour():
    old = {k: v for k, v in TrainConfig(**TINY).to_dict().items()
           if k not in ("gan_mode", "lambda_gp", "lr_policy", "lr_decay_iters", "init_type", "direction", "netd",
                        "init_from_a", "init_from_b", "continue_from", "epoch_count")}
    assert TrainConfig.from_dict(old) == TrainConfig(**TINY)
    deeper = TrainConfig.from_dict({**old, "n_layers_d": 4})  # a run made with --n-layers-d 4 before --netd
    assert (deeper.netd, deeper.n_layers_d) == ("n_layers", 4)
    model = CycleGANTrainer(deeper).disc_a.model
    assert len(model) == 15 and model[0].stride == (2, 2) and model[8].stride == (2, 2)  # four stride-2 convs



@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("options", [dict(gan_mode="wgangp"), dict(gan_mode="vanilla"), dict(netd="pixel")])
def test_cuda_step_matches_cpu(options):
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    losses = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        trainer = CycleGANTrainer(TrainConfig(**TINY, device=device, **options), device)
        torch.manual_seed(5)  # the penalty's alphas come from the CPU generator on either device
        losses[device] = trainer.train_step(a, b)
    for key in LOSS_KEYS:
        assert losses["cuda"][key] == pytest.approx(losses["cpu"][key], rel=1e-3, abs=1e-4), key
