"""The CycleGAN training state and its step: four networks, two optimisers, two image pools, one method.

`CycleGANTrainer.train_step(real_a, real_b)` is the reference's `CycleGANModel.optimize_parameters`
(junyanz/pytorch-CycleGAN-and-pix2pix `models/cycle_gan_model.py`; Zhu et al. 2017 eq. 1-3 and section 4)
written top to bottom with names that state direction. Names here versus the reference:

    gen_ab = netG_A (A -> B)            gen_ba = netG_B (B -> A)
    disc_a = netD_B (judges A images)   disc_b = netD_A (judges B images)
    loss gan_ab  = G_A       gan_ba  = G_B       cycle_a = cycle_A    cycle_b = cycle_B
    loss idt_a   = idt_B     idt_b   = idt_A     disc_a  = D_B        disc_b  = D_A

(the reference names each discriminator after the generator it opposes, and the identity loss after the
generator measured; here both are named after the domain: idt_a is |gen_ba(a) - a|, kept in domain A).

The adversarial loss is the reference's `networks.GANLoss(gan_mode)`, one function per mode in `GAN_LOSSES`;
with 'wgangp' each discriminator loss also gets `gradient_penalty`, the reference's `cal_gradient_penalty`
(which the reference defines but its CycleGAN never calls; `--lambda-gp 0` gives that exact behaviour).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from rtstyle.cpu import cpu_features

from .config import TrainConfig
from .networks import build_discriminator, build_generator
from .pool import ImagePool
from .schedule import lr_factor, scheduled_lr

__all__ = ["AUTOCAST_DTYPES", "GAN_LOSSES", "LOSS_KEYS", "CycleGANTrainer", "gradient_penalty", "lr_factor",
           "resolve_precision"]

LOSS_KEYS = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "disc_a", "disc_b")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# `train --precision bf16` on a CPU without native bf16 (issue 10): every bf16 op is emulated, at a cost that
# depends on the vector unit doing it (`python -m train.bench_step --size 64 --ngf 16 --n-blocks 6
# --variants fp32,bf16 --rounds 5`, ngf 16, 6 blocks, 64 px): 13x as long as fp32 on an AVX2-only AMD Zen 3
# (4.44 s vs 0.33 s), 1.4x on an Intel AVX-512 Xeon without bf16 (0.632 s vs 0.438 s, oneDNN's avx512_core).
EMULATED_BF16_SLOWDOWN = {"avx512": "1.4x slower than fp32 (measured on an Intel AVX-512 Xeon without bf16)",
                          "avx2": "13x slower than fp32 (measured on an AVX2-only AMD Zen 3)"}


def resolve_precision(requested: str, device: torch.device, cpu_bf16: str | None = None,
                      cuda_bf16: bool | None = None) -> tuple[str, str]:
    """(precision, why) of a run: 'auto' is bf16 autocast where `device` has native bf16, else fp32.

    `cpu_bf16` (the CPU's native-bf16 flag, `rtstyle.cpu`) and `cuda_bf16` are probed when not given.
    An explicit bf16 on a CPU without native bf16 is honoured, with a warning in `why`.
    """
    device = torch.device(device)
    if device.type == "cpu":
        native = cpu_features().bf16 if cpu_bf16 is None else cpu_bf16 or None
        name = f"this CPU has native bf16 ({native})" if native else "this CPU has no native bf16 (AVX512_BF16/AMX)"
    elif device.type == "cuda":
        native = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        name = "this GPU has bf16" if native else "this GPU has no bf16 (compute capability below 8.0)"
    else:
        native, name = False, f"no bf16 policy for device type {device.type!r}"
    if requested == "auto":
        return ("bf16", f"auto: {name}, bf16 autocast") if native else ("fp32", f"auto: {name}, so fp32")
    if requested == "bf16" and not native and device.type == "cpu":
        slowdown = EMULATED_BF16_SLOWDOWN["avx512" if cpu_features().avx512 else "avx2"]
        return "bf16", (f"WARNING: {name}: bf16 is emulated there, about {slowdown}; "
                        "use --precision auto (or fp32) to train in fp32")
    return requested, "asked for"


def lsgan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """The reference's GANLoss('lsgan'): MSE against a 1 (real) or 0 (fake) target shaped like the patch map."""
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def vanilla_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """The reference's GANLoss('vanilla'): BCEWithLogitsLoss (the discriminator has no sigmoid) to 1 or 0."""
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.binary_cross_entropy_with_logits(prediction, target)


def wgan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """The reference's GANLoss('wgangp'): -mean score for 'real' targets, +mean for 'fake' (Arjovsky et al.)."""
    return -prediction.mean() if real else prediction.mean()


GAN_LOSSES = {"lsgan": lsgan_loss, "vanilla": vanilla_loss, "wgangp": wgan_loss}


def gradient_penalty(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor, lambda_gp: float,
                     scaler: torch.amp.GradScaler, constant: float = 1.0) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017) as the reference's cal_gradient_penalty(type='mixed'):
    lambda_gp * mean over the batch of (||d disc(x) / dx||_2 - constant)^2 at x = alpha * real + (1 - alpha)
    * fake, one alpha ~ U(0, 1) per image, drawn (like there) from the global CPU generator.

    The inner gradient is taken of the scaled scores and unscaled after (torch.amp's gradient-penalty
    recipe), so fp16 gradients do not underflow; with the scaler disabled both are no-ops."""
    b = real.shape[0]
    alpha = torch.rand(b, 1).expand(b, real.nelement() // b).contiguous().view(*real.shape).to(real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (b, 3, h, w)
    scores = scaler.scale(disc(mixed).float())  # scaled in fp32: an fp16 score times 2^16 would overflow
    (grads,) = torch.autograd.grad(outputs=scores, inputs=mixed, grad_outputs=torch.ones_like(scores),
                                   create_graph=True, retain_graph=True, only_inputs=True)
    grads = grads.float().reshape(b, -1) / scaler.get_scale()  # reshape: a channels_last gradient has no view
    return (((grads + 1e-16).norm(2, dim=1) - constant) ** 2).mean() * lambda_gp  # reference: "added eps"


def pick_memory_format(choice: str, precision: str, device: torch.device) -> torch.memory_format:
    """'auto': channels_last where it helps, i.e. CUDA tensor-core convolutions in bf16/fp16 (NHWC kernels);
    on CPU it measured slower in fp32 and no faster in bf16 (BENCHMARKS.md), so contiguous there."""
    if choice == "auto":
        choice = "channels_last" if device.type == "cuda" and precision != "fp32" else "contiguous"
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class CycleGANTrainer:
    """Networks, optimisers, lr schedule, pools and the training step of one process.

    `gen_ab`, `gen_ba`, `disc_a`, `disc_b` are always the plain modules (weights to load and save). With
    `distributed=True` (torch.distributed initialised) the step runs them through DistributedDataParallel
    wrappers, which average the gradients over the processes before each optimiser step.
    """

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu", distributed: bool = False,
                 pool_seed: str | int = 0) -> None:
        self.device = torch.device(device)
        self.precision, self.precision_reason = resolve_precision(config.precision, self.device)
        config = dataclasses.replace(config, precision=self.precision)
        self.config = config
        if distributed and config.gan_mode == "wgangp" and config.lambda_gp > 0:
            raise ValueError("--gan-mode wgangp's gradient penalty is a double backward, which "
                             "DistributedDataParallel does not support: train it in one process (or --lambda-gp 0)")
        self.gen_ab = build_generator(config.generator, config.init_gain, config.init_type)
        self.gen_ba = build_generator(config.generator, config.init_gain, config.init_type)
        d_args = dict(ndf=config.ndf, n_layers=config.n_layers_d, norm=config.norm, gain=config.init_gain,
                      netd=config.netd, init_type=config.init_type)
        self.disc_a = build_discriminator(**d_args)
        self.disc_b = build_discriminator(**d_args)
        self.gan_loss = GAN_LOSSES[config.gan_mode]
        self.penalised = config.gan_mode == "wgangp" and config.lambda_gp > 0
        self.memory_format = pick_memory_format(config.memory_format, config.precision, self.device)
        for net in self.nets.values():
            net.to(self.device, memory_format=self.memory_format).train()
        betas = (config.beta1, 0.999)
        self.opt_g = torch.optim.Adam(itertools.chain(self.gen_ab.parameters(), self.gen_ba.parameters()),
                                      lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(itertools.chain(self.disc_a.parameters(), self.disc_b.parameters()),
                                      lr=config.lr, betas=betas)
        self.epochs_done = config.epoch_count - 1  # lr schedule position: the reference scheduler's last_epoch
        self._apply_lr()
        self.pool_a = ImagePool(config.pool_size, seed=f"{pool_seed}-a")  # fakes of A for disc_a
        self.pool_b = ImagePool(config.pool_size, seed=f"{pool_seed}-b")  # fakes of B for disc_b
        self.autocast_dtype = AUTOCAST_DTYPES.get(config.precision)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self._run_gen_ab, self._run_gen_ba = self.gen_ab, self.gen_ba
        self._run_disc_a, self._run_disc_b = self.disc_a, self.disc_b
        if distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # Wrapping broadcasts rank 0's initial weights, so every process starts from the same networks.
            self._run_gen_ab, self._run_gen_ba, self._run_disc_a, self._run_disc_b = (
                DDP(net, device_ids=ids) for net in (self.gen_ab, self.gen_ba, self.disc_a, self.disc_b))

    @property
    def nets(self) -> dict[str, nn.Module]:
        return {"gen_ab": self.gen_ab, "gen_ba": self.gen_ba, "disc_a": self.disc_a, "disc_b": self.disc_b}

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def train_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One optimisation step on real_a (b, 3, h, w) and real_b (b, 3, h', w') in [-1, 1]; returns the losses."""
        cfg = self.config
        real_a, real_b = self._to_device(real_a), self._to_device(real_b)
        lambda_idt = cfg.lambda_identity
        gan_loss = self.gan_loss
        # Forward both cycles (reference forward()).
        with self._autocast():
            fake_b = self._run_gen_ab(real_a)  # (b, 3, h, w) G_A(A)
            rec_a = self._run_gen_ba(fake_b)  # G_B(G_A(A))
            fake_a = self._run_gen_ba(real_b)  # G_B(B)
            rec_b = self._run_gen_ab(fake_a)  # G_A(G_B(B))

        # Generator step with the discriminators frozen (reference backward_G). The frozen discriminators
        # are called unwrapped: their parameters get no gradient here, so there is nothing to synchronise.
        set_requires_grad([self.disc_a, self.disc_b], False)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            if lambda_idt > 0:  # identity (CycleGAN section 5.2): a generator should leave its target domain as is
                idt_b = F.l1_loss(self._run_gen_ab(real_b), real_b) * cfg.lambda_b * lambda_idt
                idt_a = F.l1_loss(self._run_gen_ba(real_a), real_a) * cfg.lambda_a * lambda_idt
            else:
                idt_a = idt_b = torch.zeros((), device=self.device)
            gan_ab = gan_loss(self.disc_b(fake_b), True)
            gan_ba = gan_loss(self.disc_a(fake_a), True)
            cycle_a = F.l1_loss(rec_a, real_a) * cfg.lambda_a
            cycle_b = F.l1_loss(rec_b, real_b) * cfg.lambda_b
            loss_g = gan_ab + gan_ba + cycle_a + cycle_b + idt_a + idt_b
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        set_requires_grad([self.disc_a, self.disc_b], True)

        # Discriminator step on real images vs fakes from the history pools (reference backward_D_A, _B).
        self.opt_d.zero_grad(set_to_none=True)
        pooled_b = self.pool_b.query(fake_b.detach().float())
        with self._autocast():
            disc_b = 0.5 * (gan_loss(self._run_disc_b(real_b), True) + gan_loss(self._run_disc_b(pooled_b), False))
            if self.penalised:
                disc_b = disc_b + gradient_penalty(self.disc_b, real_b, pooled_b, cfg.lambda_gp, self.scaler)
        self.scaler.scale(disc_b).backward()
        pooled_a = self.pool_a.query(fake_a.detach().float())
        with self._autocast():
            disc_a = 0.5 * (gan_loss(self._run_disc_a(real_a), True) + gan_loss(self._run_disc_a(pooled_a), False))
            if self.penalised:
                disc_a = disc_a + gradient_penalty(self.disc_a, real_a, pooled_a, cfg.lambda_gp, self.scaler)
        self.scaler.scale(disc_a).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()

        values = torch.stack([v.detach().float() for v in (gan_ab, gan_ba, cycle_a, cycle_b, idt_a, idt_b,
                                                           disc_a, disc_b)]).tolist()
        return dict(zip(LOSS_KEYS, values))

    def end_epoch(self) -> None:
        """Step the lr schedule (once per epoch, after the epoch's last batch, as the reference's train.py)."""
        self.epochs_done += 1
        self._apply_lr()

    def _apply_lr(self) -> None:
        # The value the reference's scheduler computes (train/schedule.py), set directly so that it follows
        # the config's schedule even when --epochs/--epochs-decay change on resume.
        cfg = self.config
        lr = scheduled_lr(cfg.lr_policy, cfg.lr, self.epochs_done, cfg.epochs, cfg.epochs_decay, cfg.lr_decay_iters)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    @property
    def lr(self) -> float:
        return self.opt_g.param_groups[0]["lr"]

    @torch.no_grad()
    def translate(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fakes and reconstructions for sample grids, in eval mode and without touching any RNG."""
        nets = list(self.nets.values())
        for net in nets:
            net.eval()
        try:
            real_a, real_b = self._to_device(real_a), self._to_device(real_b)
            with self._autocast():
                fake_b = self.gen_ab(real_a)
                fake_a = self.gen_ba(real_b)
                out = {"real_a": real_a, "fake_b": fake_b, "rec_a": self.gen_ba(fake_b),
                       "real_b": real_b, "fake_a": fake_a, "rec_b": self.gen_ab(fake_a)}
            return {k: v.float().cpu() for k, v in out.items()}
        finally:
            for net in nets:
                net.train()

    def state_dict(self) -> dict:
        """Everything shared by all processes: weights, optimisers, lr schedule position, grad scaler."""
        state = {name: net.state_dict() for name, net in self.nets.items()}
        state.update(opt_g=self.opt_g.state_dict(), opt_d=self.opt_d.state_dict(), epochs_done=self.epochs_done,
                     scaler=self.scaler.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(state[name])  # strict: raises on any missing, extra or reshaped tensor
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.epochs_done = int(state["epochs_done"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self._apply_lr()

    def pools_state(self) -> dict:
        return {"pool_a": self.pool_a.state_dict(), "pool_b": self.pool_b.state_dict()}

    def load_pools_state(self, state: dict) -> None:
        self.pool_a.load_state_dict(state["pool_a"], self.device)
        self.pool_b.load_state_dict(state["pool_b"], self.device)
