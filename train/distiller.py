"""The distillation state and its step: a frozen teacher, a student, 1x1 feature adapters, an optional PatchGAN.

`Distiller.train_step(real)` is GAN Compression's distillation objective (Li et al., CVPR 2020, section 3.1,
eq. 2-3; mit-han-lab/gan-compression `distillers/base_resnet_distiller.py`) for a paired teacher:

    l1   = lambda_l1   * |student(x) - teacher(x)|_1                        (their lambda_recon, 10)
    feat = lambda_feat * sum_t |adapter_t(student_t(x)) - teacher_t(x)|_2^2  (1x1 conv per matched stage)
    gan  = lambda_gan  * LSGAN(disc(student(x)), real)                       (optional; disc sees DIR/trainB)

Matched stages (`stage_pairs`) are theirs for the 9-block generator: the encoder's output (layer 9, after
the second downsampling) and the residual stream after one, two and three thirds of the blocks (9 + 3, 6,
9); a student with fewer blocks is tapped at the same fractions of its own. The teacher's outputs and
activations are made on the fly from the student's own crops, under no_grad.

`select_channels` initialises the student from the teacher, as GAN Compression initialises its students:
each layer keeps the teacher's output channels of largest L1 norm (the next layer keeps the matching input
channels). The residual stream is one channel set shared by every block (the additions tie them), scored by
the summed norms of every convolution that writes into it; the student's blocks come from teacher blocks
spread over its depth (dropping blocks of a residual network degrades it gracefully: Veit et al., NeurIPS
2016). When the upsampling layouts differ, a ConvTranspose2d kernel becomes the transposed, flipped
kernel of the resize conv (exact for stride 1; InstanceNorm right after removes the scale change).
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

from rtstyle.models import GeneratorConfig, ResnetBlock, ResnetGenerator

from .networks import build_discriminator, init_weights
from .trainer import AUTOCAST_DTYPES, lsgan_loss, resolve_precision, set_requires_grad

LOSS_KEYS = ("l1", "feat", "gan", "disc")
ENCODER_OUT = 9  # index in ResnetGenerator.model of the ReLU after the second downsampling
THIRDS = (1, 2, 3)  # taps after ceil(k * n_blocks / 3) blocks


def stage_pairs(student: GeneratorConfig, teacher: GeneratorConfig) -> list[tuple[int, int]]:
    """(student layer index, teacher layer index) of the activations matched by the feature loss."""
    pairs = [(ENCODER_OUT, ENCODER_OUT)]
    for k in THIRDS:
        if student.n_blocks and teacher.n_blocks:
            pairs.append((ENCODER_OUT + -(-k * student.n_blocks // 3), ENCODER_OUT + -(-k * teacher.n_blocks // 3)))
    return list(dict.fromkeys(pairs))


def run_layers(generator: ResnetGenerator, x: torch.Tensor, taps: list[int]) -> tuple[torch.Tensor, list]:
    """generator(x) and the activations after the layers `taps` (indices into `generator.model`), in order."""
    wanted, found = set(taps), {}
    for index, layer in enumerate(generator.model):
        x = layer(x)
        if index in wanted:
            found[index] = x
    return x, [found[i] for i in taps]


class Student(nn.Module):
    """The student generator with its feature adapters: x -> (y, [adapter_t(activation_t)])."""

    def __init__(self, generator: ResnetGenerator, pairs: list[tuple[int, int]], teacher_channels: list[int]) -> None:
        super().__init__()
        self.generator = generator
        self.taps = [s for s, _ in pairs]
        widths = [4 * generator.config.ngf] * len(pairs)  # every tapped stage is the residual stream's width
        self.adapters = nn.ModuleList(nn.Conv2d(cs, ct, 1) for cs, ct in zip(widths, teacher_channels))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        y, feats = run_layers(self.generator, x, self.taps if len(self.adapters) else [])
        return y, [adapter(f) for adapter, f in zip(self.adapters, feats)]


# --- channel selection ---------------------------------------------------------------------------------
def _out_scores(layer: nn.Module) -> torch.Tensor:
    """L1 norm of each output channel's filter (ConvTranspose2d weights are (cin, cout, kh, kw))."""
    w = layer.weight.detach()
    return w.abs().sum(dim=(0, 2, 3)) if isinstance(layer, nn.ConvTranspose2d) else w.abs().sum(dim=(1, 2, 3))


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores, k).indices).values  # kept in the teacher's order


def _as_conv_weight(layer: nn.Module) -> torch.Tensor:
    """(cout, cin, kh, kw) weights; a transposed conv's kernel transposed and flipped (its stride-1 equivalent)."""
    w = layer.weight.detach()
    return w.transpose(0, 1).flip(2, 3) if isinstance(layer, nn.ConvTranspose2d) else w


def _copy(src: nn.Module, dst: nn.Module, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> None:
    if isinstance(dst, nn.ConvTranspose2d):  # (cin, cout, kh, kw)
        w = src.weight.detach()
        if not isinstance(src, nn.ConvTranspose2d):  # a resize conv's kernel as a transposed conv's
            w = w.transpose(0, 1).flip(2, 3)
        w = w[:, out_idx] if in_idx is None else w[in_idx][:, out_idx]
    else:
        w = _as_conv_weight(src)[out_idx]
        w = w if in_idx is None else w[:, in_idx]
    dst.weight.data.copy_(w)
    if dst.bias is not None and src.bias is not None:
        dst.bias.data.copy_(src.bias.detach()[out_idx])


def _copy_norm(src: nn.Module, dst: nn.Module, idx: torch.Tensor) -> None:
    if isinstance(dst, nn.BatchNorm2d):
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, name).data.copy_(getattr(src, name).detach()[idx])


def select_channels(teacher: ResnetGenerator, config: GeneratorConfig, gain: float = 0.02) -> ResnetGenerator:
    """A student of `config` initialised from `teacher` by L1-norm channel selection (module docstring)."""
    t = teacher.config
    if config.ngf > t.ngf or config.n_blocks > t.n_blocks or config.norm != t.norm or config.dropout:
        raise ValueError(f"channel selection needs a student no wider or deeper than the teacher, with its norm and "
                         f"no dropout: student ngf {config.ngf}, {config.n_blocks} blocks, {config.norm}; teacher ngf "
                         f"{t.ngf}, {t.n_blocks} blocks, {t.norm}. Use --init normal, or a smaller student")
    student = init_weights(ResnetGenerator(config), gain=gain)
    ts, ss = teacher.model, student.model
    nt, ns = t.n_blocks, config.n_blocks
    blocks_t = [ts[10 + i] for i in range(nt)]
    blocks_s = [ss[10 + i] for i in range(ns)]
    with torch.no_grad():
        c1 = _top(_out_scores(ts[1]), config.ngf)  # c7s1-ngf
        _copy(ts[1], ss[1], c1, None)
        _copy_norm(ts[2], ss[2], c1)
        d1 = _top(_out_scores(ts[4]), 2 * config.ngf)  # d(2 ngf)
        _copy(ts[4], ss[4], d1, c1)
        _copy_norm(ts[5], ss[5], d1)
        # The residual stream: written by the second downsampling and by every block's second conv.
        stream_score = _out_scores(ts[7]).clone()
        for block in blocks_t:
            stream_score += _out_scores(_block_convs(block)[1])
        stream = _top(stream_score, 4 * config.ngf)
        _copy(ts[7], ss[7], stream, d1)
        _copy_norm(ts[8], ss[8], stream)
        chosen = [round((k + 0.5) * nt / ns - 0.5) for k in range(ns)] if ns else []
        for block_s, k in zip(blocks_s, chosen):
            (tc1, tc2), (sc1, sc2) = _block_convs(blocks_t[k]), _block_convs(block_s)
            inner = _top(_out_scores(tc1), 4 * config.ngf)
            _copy(tc1, sc1, inner, stream)
            _copy(tc2, sc2, stream, inner)
            norms_t = [m for m in blocks_t[k].conv_block if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]
            norms_s = [m for m in block_s.conv_block if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]
            _copy_norm(norms_t[0], norms_s[0], inner)
            _copy_norm(norms_t[1], norms_s[1], stream)
        up1_t, up1_s = ts[10 + nt], ss[10 + ns]
        u1 = _top(_out_scores(up1_t), 2 * config.ngf)
        _copy(up1_t, up1_s, u1, stream)
        _copy_norm(ts[11 + nt], ss[11 + ns], u1)
        up2_t, up2_s = ts[13 + nt], ss[13 + ns]
        u2 = _top(_out_scores(up2_t), config.ngf)
        _copy(up2_t, up2_s, u2, u1)
        _copy_norm(ts[14 + nt], ss[14 + ns], u2)
        last_t, last_s = ts[17 + nt], ss[17 + ns]  # c7s1-3 after the reflection pad
        _copy(last_t, last_s, torch.arange(config.output_nc), u2)
    return student


def _block_convs(block: ResnetBlock) -> list[nn.Conv2d]:
    return [m for m in block.conv_block if isinstance(m, nn.Conv2d)]


def build_student(teacher: ResnetGenerator, config: GeneratorConfig, init: str, gain: float) -> ResnetGenerator:
    if init == "select":
        return select_channels(teacher, config, gain)
    return init_weights(ResnetGenerator(config), gain=gain)


# --- the training state ----------------------------------------------------------------------------------
class Distiller:
    """Teacher (frozen), student + adapters, optional PatchGAN, optimisers and the step of one process."""

    def __init__(self, config, teacher: ResnetGenerator, student_config: GeneratorConfig,
                 device: str | torch.device = "cpu", distributed: bool = False) -> None:
        self.config = config
        self.device = torch.device(device)
        self.teacher = copy.deepcopy(teacher).to(self.device).eval()
        set_requires_grad([self.teacher], False)
        self.pairs = stage_pairs(student_config, teacher.config) if config.lambda_feat > 0 else []
        generator = build_student(self.teacher.cpu(), student_config, config.init, config.init_gain)
        self.teacher.to(self.device)
        self.student = Student(generator, self.pairs, [4 * teacher.config.ngf] * len(self.pairs)).to(self.device)
        self.student.train()
        self.disc = None
        betas = (config.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.student.parameters(), lr=config.lr, betas=betas)
        self.opt_d = None
        if config.lambda_gan > 0:
            self.disc = build_discriminator(config.ndf, config.n_layers_d, student_config.norm, config.init_gain)
            self.disc.to(self.device).train()
            self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=betas)
        self.precision, self.precision_reason = resolve_precision(config.precision, self.device)
        self.autocast_dtype = AUTOCAST_DTYPES.get(self.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self._run_student, self._run_disc = self.student, self.disc
        if distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._run_student = DDP(self.student, device_ids=ids)  # broadcasts rank 0's initial weights
            if self.disc is not None:
                self._run_disc = DDP(self.disc, device_ids=ids)

    @property
    def generator(self) -> ResnetGenerator:
        return self.student.generator

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with self._autocast():
            y, feats = run_layers(self.teacher, x, [t for _, t in self.pairs])
        return y.float(), [f.float() for f in feats]

    def train_step(self, real: torch.Tensor, real_b: torch.Tensor | None = None) -> dict[str, float]:
        """One step on crops `real` (b, 3, h, w) in [-1, 1] (and target-domain crops `real_b`); the losses."""
        cfg = self.config
        real = real.to(self.device, non_blocking=True)
        target, target_feats = self.teacher_outputs(real)  # (b, 3, h, w), teacher activations
        zero = torch.zeros((), device=self.device)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            fake, mapped = self._run_student(real)
            l1 = F.l1_loss(fake.float(), target) * cfg.lambda_l1
            feat = sum((F.mse_loss(m.float(), t) for m, t in zip(mapped, target_feats)), zero) * cfg.lambda_feat
            gan = zero
            if self.disc is not None:
                set_requires_grad([self.disc], False)
                gan = lsgan_loss(self.disc(fake), True) * cfg.lambda_gan
            loss = l1 + feat + gan
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt_g)
        disc = zero
        if self.disc is not None:
            set_requires_grad([self.disc], True)
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                disc = 0.5 * (lsgan_loss(self._run_disc(real_b.to(self.device)), True)
                              + lsgan_loss(self._run_disc(fake.detach()), False))
            self.scaler.scale(disc).backward()
            self.scaler.step(self.opt_d)
        self.scaler.update()
        values = torch.stack([v.detach().float() for v in (l1, feat, gan, disc)]).tolist()
        return dict(zip(LOSS_KEYS, values))

    @torch.no_grad()
    def translate(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """input | teacher | student for sample grids, in eval mode, touching no RNG."""
        self.student.eval()
        try:
            real = real.to(self.device)
            with self._autocast():
                out = {"input": real, "teacher": self.teacher(real), "student": self.generator(real)}
            return {k: v.float().cpu() for k, v in out.items()}
        finally:
            self.student.train()

    @torch.no_grad()
    def student_output(self, x: torch.Tensor) -> torch.Tensor:
        self.student.eval()
        try:
            return self.generator(x.to(self.device)).float().cpu()
        finally:
            self.student.train()

    def state_dict(self) -> dict:
        state = {"student": self.student.state_dict(), "opt_g": self.opt_g.state_dict(),
                 "scaler": self.scaler.state_dict()}
        if self.disc is not None:
            state.update(disc=self.disc.state_dict(), opt_d=self.opt_d.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])  # strict: raises on any missing or reshaped tensor
        self.opt_g.load_state_dict(state["opt_g"])
        if self.disc is not None:
            self.disc.load_state_dict(state["disc"])
            self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    @property
    def lr(self) -> float:
        return self.opt_g.param_groups[0]["lr"]

    def set_lr(self, lr: float) -> None:
        """The learning rate of the student's optimiser and, with --lambda-gan, the PatchGAN's."""
        for opt in (self.opt_g, self.opt_d):
            if opt is None:
                continue
            for group in opt.param_groups:
                group["lr"] = lr
