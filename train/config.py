"""The training configuration: one typed dataclass the CLI maps onto (`rtstyle.config.add_dataclass_args`).

Defaults are the reference's CycleGAN defaults (junyanz/pytorch-CycleGAN-and-pix2pix `options/` with
`cycle_gan_model.modify_commandline_options`: no dropout, pool 50, lambda 10/10, identity 0.5, lr 2e-4,
beta1 0.5, 100 + 100 epochs, load 286 / crop 256, instance norm, lsgan, linear lr policy, normal init,
PatchGAN 'basic', AtoB). Fields named like a reference flag take its values (`--gan-mode` is `--gan_mode`).
The full config is written as JSON in the run folder and read back on `--resume`, where only the fields in
`RESUMABLE` may be changed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from rtstyle.devices import parse_device
from rtstyle.errors import UserError
from rtstyle.models import NORMS, UPSAMPLES, GeneratorConfig

from .networks import DISCRIMINATORS, INIT_TYPES
from .schedule import LR_POLICIES

PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
GAN_MODES = ("lsgan", "vanilla", "wgangp")  # reference networks.GANLoss
DIRECTIONS = ("AtoB", "BtoA")

# Fields a resumed run may change: its location, budgets, logging, hardware and the schedule's length.
# Everything else (architecture, losses, data pipeline, optimiser) is fixed by the checkpoint.
RESUMABLE = ("name", "out", "dataroot", "max_steps", "max_minutes", "save_every", "sample_every", "log_every",
             "num_workers", "device", "epochs", "epochs_decay")


def _f(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


class RunConfig:
    """What a run's typed config does beside holding options (TrainConfig, DistillConfig): it is written as JSON
    in the run folder and read back on `--resume`, where only the fields in the class's RESUMABLE may change."""

    KIND = "run"  # in messages: "training", "distillation"
    RESUMABLE: tuple = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def complete(cls, d: dict) -> dict:
        """A saved config brought up to this version's fields (keys older versions lacked get their old meaning)."""
        return d

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.KIND} config keys {unknown}; this rtstyle knows {sorted(known)}")
        return cls(**cls.complete(d))

    def save_json(self, path: Path) -> None:
        from rtstyle.io.files import atomic_write

        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load_json(cls, path: Path):
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"{path}: not a readable {cls.KIND} config ({e})") from e

    def resumed_with(self, changes: dict):
        """This (saved) config with `changes` from the command line; changing a fixed field is refused."""
        resumable = self.RESUMABLE
        fixed = {k: v for k, v in changes.items() if k not in resumable and getattr(self, k) != v}
        if fixed:
            listing = ", ".join(f"--{k.replace('_', '-')} {v} (run has {getattr(self, k)})" for k, v in fixed.items())
            raise ValueError(f"--resume keeps the run's saved config; these options differ from it: {listing}. "
                             f"Only {', '.join('--' + r.replace('_', '-') for r in resumable)} may change")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k in resumable})


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Learn G_A (A->B) and G_B (B->A) from DATAROOT/trainA and DATAROOT/trainB the way the reference CycleGAN
    does. Writes OUT/NAME/{last.pt, G_A.safetensors, G_B.safetensors, config.json, losses.csv, losses.png,
    samples/}. Several processes: torchrun --nproc-per-node N cli.py train ...

    (Everything that defines a training run; the module docstring says where the defaults come from.)"""

    KIND = "training"
    RESUMABLE = RESUMABLE

    # Run and data
    dataroot: str = _f("", "folder holding trainA/ and trainB/ (unpaired images of domains A and B)")
    name: str = _f("", "run name: checkpoints, samples and logs go to OUT/NAME")
    out: str = _f("runs", "parent folder of the run folders")
    names: str | None = _f(None, "names 'a,b' of the trainA and trainB domains, for the saved generators' "
                                 "directions (default: from a dataroot named like horse2zebra, else A,B)")
    direction: str = _f("AtoB", "BtoA: domain A is trainB and B is trainA, so G_A learns trainB -> trainA "
                                "(reference --direction)", choices=DIRECTIONS)
    load_size: int = _f(286, "resize images to this size (before cropping)")
    crop_size: int = _f(256, "then crop to this size (a multiple of 4)")
    preprocess: str = _f("resize_and_crop", "image preprocessing, as in the reference", choices=PREPROCESS)
    flip: bool = _f(True, "random horizontal flips (--no-flip to disable)")
    serial_batches: bool = _f(False, "pair image i of A with image i of B and keep file order "
                                     "(default: shuffled A, random B; reference --serial_batches)")
    max_dataset_size: int | None = _f(None, "use at most this many images of each domain")
    batch_size: int = _f(1, "images per step and per process")
    num_workers: int = _f(2, "data loading processes (0: load in the training process)")
    # Networks (reference: --ngf --ndf --netG resnet_9blocks --netD --n_layers_D --norm --init_type --init_gain)
    ngf: int = _f(64, "generator filters in the first conv layer (with --init-from-*/--continue-from left at "
                      "64: the model's)")
    n_blocks: int = _f(9, "generator residual blocks (reference: 9 at 256 px, 6 at 128 px; with "
                          "--init-from-*/--continue-from left at 9: the model's)")
    ndf: int = _f(64, "discriminator filters in the first conv layer (with --continue-from left at 64: the "
                      "checkpoint's)")
    netd: str = _f("basic", "discriminator: basic = the 70x70 PatchGAN, n_layers = PatchGAN with --n-layers-d, "
                            "pixel = 1x1 PixelGAN (reference --netD)", choices=DISCRIMINATORS)
    n_layers_d: int = _f(3, "PatchGAN stride-2 layers with --netd n_layers (basic is 3)")
    norm: str = _f("instance", "normalisation layers of all four networks", choices=NORMS)
    dropout: bool = _f(False, "dropout in the generator's residual blocks (CycleGAN: off; reference --no_dropout)",
                       negatable=True)  # --no-dropout is the reference's spelling
    upsample: str = _f("deconv", "generator upsampling: deconv (the reference's ConvTranspose2d) or resize "
                                 "(nearest x2 + conv3x3, no checkerboard texture; Odena et al. 2016)",
                       choices=UPSAMPLES)
    init_type: str = _f("normal", "weight init: normal N(0, gain), xavier or orthogonal with gain, kaiming "
                                  "(fan_in, ignores gain)", choices=INIT_TYPES)
    init_gain: float = _f(0.02, "scale of the normal, xavier and orthogonal weight inits")
    # Starting from pretrained networks (reference: --continue_train --epoch latest --epoch_count)
    init_from_a: str | None = _f(None, "start G_A (A -> B) from this generator: anything --model accepts (a "
                                       "reference .pth, .safetensors, a store name); discriminators start fresh",
                                 metavar="MODEL")
    init_from_b: str | None = _f(None, "start G_B (B -> A) from this generator, like --init-from-a",
                                 metavar="MODEL")
    continue_from: str | None = _f(None, "a reference checkpoint folder (checkpoints/NAME) whose "
                                         "latest_net_{G_A,G_B,D_A,D_B}.pth start all four networks",
                                   metavar="DIR")
    epoch_count: int = _f(1, "the epoch to start at, so the lr schedule continues a run (reference "
                             "--epoch_count: with --continue-from, the reference run's next epoch)")
    # Losses and optimisation
    gan_mode: str = _f("lsgan", "adversarial loss: lsgan (MSE), vanilla (BCE with logits), wgangp (critic "
                                "scores plus the gradient penalty) (reference --gan_mode)", choices=GAN_MODES)
    lambda_gp: float = _f(10.0, "weight of wgangp's gradient penalty (reference cal_gradient_penalty; 0: the "
                                "reference CycleGAN's wgangp, which never adds it)")
    lambda_a: float = _f(10.0, "weight of the cycle loss A -> B -> A")
    lambda_b: float = _f(10.0, "weight of the cycle loss B -> A -> B")
    lambda_identity: float = _f(0.5, "identity loss weight, relative to lambda-a / lambda-b (0: off)")
    pool_size: int = _f(50, "history of generated images the discriminators see (0: no pool)")
    lr: float = _f(2e-4, "initial Adam learning rate")
    beta1: float = _f(0.5, "Adam beta1")
    epochs: int = _f(100, "epochs at the initial learning rate")
    epochs_decay: int = _f(100, "epochs of linear decay to zero after those (with other --lr-policy values: "
                                "more epochs)")
    lr_policy: str = _f("linear", "lr schedule, stepped each epoch: linear (constant, then to zero over "
                                  "--epochs-decay), step (x0.1 every --lr-decay-iters epochs), plateau (as the "
                                  "reference: x0.2 every 6 epochs, its metric being constant), cosine (to 0 "
                                  "over --epochs, then back up) (reference --lr_policy)", choices=LR_POLICIES)
    lr_decay_iters: int = _f(50, "epochs between the x0.1 steps of --lr-policy step (reference --lr_decay_iters)")
    # Beyond the reference
    precision: str = _f("auto", "arithmetic: auto (bf16 autocast where the device has native bf16, else fp32), "
                                "fp32, bf16 autocast, or fp16 autocast with a grad scaler", choices=PRECISIONS)
    memory_format: str = _f("auto", "tensor layout: auto = channels_last on CUDA with bf16/fp16, else contiguous "
                                    "(channels_last measured no faster on CPU, see BENCHMARKS.md)",
                            choices=MEMORY_FORMATS)
    device: str = _f("auto", "auto, cpu, cuda or cuda:N (torchrun: each process takes cuda:LOCAL_RANK)")
    seed: int = _f(0, "seed for weights, data order, crops, flips and the image pools")
    max_steps: int | None = _f(None, "stop (with a checkpoint) after this many optimisation steps in total")
    max_minutes: float | None = _f(None, "stop (with a checkpoint) after this many minutes of this invocation")
    save_every: int = _f(500, "write last.pt and the generators every N steps (and at each epoch end)")
    sample_every: int = _f(400, "write a sample grid PNG every N steps (0: never)")
    log_every: int = _f(100, "append the losses to losses.csv every N steps")

    def __post_init__(self) -> None:
        problems = []
        try:
            parse_device(self.device)
        except UserError as e:
            problems.append(str(e))
        if self.crop_size < 4 or self.crop_size % 4:
            problems.append(f"--crop-size must be a positive multiple of 4 (the generator downsamples twice), "
                            f"got {self.crop_size}")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
            problems.append(f"--load-size {self.load_size} is smaller than --crop-size {self.crop_size}")
        for name in ("batch_size", "ngf", "ndf", "n_layers_d", "save_every", "log_every", "lr_decay_iters",
                     "epoch_count"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("n_blocks", "num_workers", "pool_size", "epochs", "epochs_decay", "sample_every",
                     "lambda_a", "lambda_b", "lambda_identity", "lr", "lambda_gp", "init_gain"):
            if getattr(self, name) < 0:
                problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.epochs + self.epochs_decay < 1:
            problems.append("--epochs plus --epochs-decay must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            problems.append(f"--max-minutes must be > 0, got {self.max_minutes}")
        if self.names is not None and len([n for n in self.names.split(",") if n.strip()]) != 2:
            problems.append(f"--names must be two names separated by a comma, like horse,zebra; got {self.names!r}")
        for name, choices in (("preprocess", PREPROCESS), ("precision", PRECISIONS), ("norm", NORMS),
                              ("memory_format", MEMORY_FORMATS), ("gan_mode", GAN_MODES), ("lr_policy", LR_POLICIES),
                              ("init_type", INIT_TYPES), ("netd", DISCRIMINATORS), ("direction", DIRECTIONS),
                              ("upsample", UPSAMPLES)):
            if getattr(self, name) not in choices:
                problems.append(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, "
                                f"got {getattr(self, name)!r}")
        # Combinations that would silently mean something else (the reference ignores or crashes on them).
        if self.netd == "basic" and self.n_layers_d != 3:
            problems.append(f"--n-layers-d {self.n_layers_d} needs --netd n_layers (basic is the 3-layer PatchGAN)")
        if self.lr_policy == "cosine" and self.epochs < 1:
            problems.append("--lr-policy cosine anneals over --epochs (the reference's T_max = n_epochs), "
                            "which must be >= 1")
        if self.continue_from and (self.init_from_a or self.init_from_b):
            problems.append("--continue-from loads all four networks; it cannot be combined with "
                            "--init-from-a/--init-from-b")
        if self.epoch_count > self.epochs + self.epochs_decay:
            problems.append(f"--epoch-count {self.epoch_count} is past the schedule's last epoch "
                            f"({self.epochs + self.epochs_decay} = --epochs + --epochs-decay)")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def complete(cls, d: dict) -> dict:
        """A config dict saved by an older rtstyle, with the fields added since at the values that keep its
        behaviour: their defaults, and --netd n_layers where it had a non-default --n-layers-d."""
        d = dict(d)
        if "netd" not in d and d.get("n_layers_d", 3) != 3:
            d["netd"] = "n_layers"
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        return {**{k: v for k, v in defaults.items() if k not in d}, **d}

    @property
    def generator(self) -> GeneratorConfig:
        return GeneratorConfig(ngf=self.ngf, n_blocks=self.n_blocks, norm=self.norm, dropout=self.dropout,
                               upsample=self.upsample)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay

    def domain_names(self) -> tuple[str, str]:
        """Names of the run's domains A and B (of real_a and real_b): those of trainA and trainB (--names, else
        a dataroot named X2Y like horse2zebra, else 'A', 'B'), swapped with --direction BtoA."""
        if self.names:
            a, b = (n.strip() for n in self.names.split(","))
        else:
            stem = Path(self.dataroot).resolve().name if self.dataroot else ""
            parts = stem.split("2")
            a, b = parts if len(parts) == 2 and all(parts) else ("A", "B")
        return (b, a) if self.direction == "BtoA" else (a, b)

