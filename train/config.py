"""The training configuration: one typed dataclass the CLI maps onto (`rtstyle.config.add_dataclass_args`).

Defaults are the reference's CycleGAN defaults (junyanz/pytorch-CycleGAN-and-pix2pix `options/` with
`cycle_gan_model.modify_commandline_options`: no dropout, pool 50, lambda 10/10, identity 0.5, lr 2e-4,
beta1 0.5, 100 + 100 epochs, load 286 / crop 256, instance norm). The full config is written as JSON in the
run folder and read back on `--resume`, where only the fields in `RESUMABLE` may be changed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from rtstyle.models import UPSAMPLES, GeneratorConfig

PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
PRECISIONS = ("fp32", "bf16", "fp16")
NORMS = ("instance", "batch")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

# Fields a resumed run may change: its location, budgets, logging, hardware and the schedule's length.
# Everything else (architecture, losses, data pipeline, optimiser) is fixed by the checkpoint.
RESUMABLE = ("name", "out", "dataroot", "max_steps", "max_minutes", "save_every", "sample_every", "log_every",
             "num_workers", "device", "epochs", "epochs_decay")


def _f(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; see the module docstring for where the defaults come from."""

    # Run and data
    dataroot: str = _f("", "folder holding trainA/ and trainB/ (unpaired images of domains A and B)")
    name: str = _f("", "run name: checkpoints, samples and logs go to OUT/NAME")
    out: str = _f("runs", "parent folder of the run folders")
    names: str | None = _f(None, "domain names 'a,b' for the saved generators' directions "
                                 "(default: from a dataroot named like horse2zebra, else A,B)")
    load_size: int = _f(286, "resize images to this size (before cropping)")
    crop_size: int = _f(256, "then crop to this size (a multiple of 4)")
    preprocess: str = _f("resize_and_crop", "image preprocessing, as in the reference", choices=PREPROCESS)
    flip: bool = _f(True, "random horizontal flips (--no-flip to disable)")
    serial_batches: bool = _f(False, "pair image i of A with image i of B and keep file order "
                                     "(default: shuffled A, random B)")
    max_dataset_size: int | None = _f(None, "use at most this many images of each domain")
    batch_size: int = _f(1, "images per step and per process")
    num_workers: int = _f(2, "data loading processes (0: load in the training process)")
    # Networks (reference: --ngf --ndf --netG resnet_9blocks --netD basic --n_layers_D --norm --init_gain)
    ngf: int = _f(64, "generator filters in the first conv layer")
    n_blocks: int = _f(9, "generator residual blocks (reference: 9 at 256 px, 6 at 128 px)")
    ndf: int = _f(64, "discriminator filters in the first conv layer")
    n_layers_d: int = _f(3, "discriminator stride-2 layers (3: the 70x70 PatchGAN)")
    norm: str = _f("instance", "normalisation layers", choices=NORMS)
    dropout: bool = _f(False, "dropout in the generator's residual blocks (CycleGAN: off)")
    upsample: str = _f("deconv", "generator upsampling: deconv (the reference's ConvTranspose2d) or resize "
                                 "(nearest x2 + conv3x3, no checkerboard texture; Odena et al. 2016)",
                       choices=UPSAMPLES)
    init_gain: float = _f(0.02, "standard deviation of the normal weight init")
    # Losses and optimisation
    lambda_a: float = _f(10.0, "weight of the cycle loss A -> B -> A")
    lambda_b: float = _f(10.0, "weight of the cycle loss B -> A -> B")
    lambda_identity: float = _f(0.5, "identity loss weight, relative to lambda-a / lambda-b (0: off)")
    pool_size: int = _f(50, "history of generated images the discriminators see (0: no pool)")
    lr: float = _f(2e-4, "initial Adam learning rate")
    beta1: float = _f(0.5, "Adam beta1")
    epochs: int = _f(100, "epochs at the initial learning rate")
    epochs_decay: int = _f(100, "epochs of linear decay to zero after those")
    # Beyond the reference
    precision: str = _f("fp32", "arithmetic: fp32, bf16 autocast, or fp16 autocast with a grad scaler",
                        choices=PRECISIONS)
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
        if self.crop_size < 4 or self.crop_size % 4:
            problems.append(f"--crop-size must be a positive multiple of 4 (the generator downsamples twice), "
                            f"got {self.crop_size}")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
            problems.append(f"--load-size {self.load_size} is smaller than --crop-size {self.crop_size}")
        for name in ("batch_size", "ngf", "ndf", "n_layers_d", "save_every", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("n_blocks", "num_workers", "pool_size", "epochs", "epochs_decay", "sample_every",
                     "lambda_a", "lambda_b", "lambda_identity", "lr"):
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
                              ("memory_format", MEMORY_FORMATS), ("upsample", UPSAMPLES)):
            if getattr(self, name) not in choices:
                problems.append(f"--{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def generator(self) -> GeneratorConfig:
        return GeneratorConfig(ngf=self.ngf, n_blocks=self.n_blocks, norm=self.norm, dropout=self.dropout,
                               upsample=self.upsample)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay

    def domain_names(self) -> tuple[str, str]:
        """Names of domains A and B: --names, else a dataroot named X2Y (horse2zebra), else ('A', 'B')."""
        if self.names:
            a, b = (n.strip() for n in self.names.split(","))
            return a, b
        stem = Path(self.dataroot).resolve().name if self.dataroot else ""
        parts = stem.split("2")
        if len(parts) == 2 and all(parts):
            return parts[0], parts[1]
        return "A", "B"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; this rtstyle knows {sorted(known)}")
        return cls(**d)

    def save_json(self, path: Path) -> None:
        from rtstyle.weights import atomic_write

        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load_json(cls, path: Path) -> "TrainConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"{path}: not a readable training config ({e})") from e

    def resumed_with(self, changes: dict) -> "TrainConfig":
        """This (saved) config with `changes` from the command line; changing a fixed field is refused."""
        fixed = {k: v for k, v in changes.items() if k not in RESUMABLE and getattr(self, k) != v}
        if fixed:
            listing = ", ".join(f"--{k.replace('_', '-')} {v} (run has {getattr(self, k)})" for k, v in fixed.items())
            raise ValueError(f"--resume keeps the run's saved config; these options differ from it: {listing}. "
                             f"Only {', '.join('--' + r.replace('_', '-') for r in RESUMABLE)} may change")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k in RESUMABLE})
