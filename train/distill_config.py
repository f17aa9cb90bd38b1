"""The distillation configuration: one typed dataclass that `cli.py distill` maps onto, like `TrainConfig`.

A student generator (default ngf 16, 6 blocks: 2.88 GMACs at 256x256, 1/19.8 of the full generator's 56.8)
learns to reproduce a teacher generator's outputs on crops of images from the teacher's input domain,
the paired setting of GAN Compression (Li et al., CVPR 2020, section 3.1): L1 to the teacher's output
(`lambda_l1`, their lambda_recon 10), intermediate-feature distillation through learnable 1x1 convolutions
(`lambda_feat`), and optionally an LSGAN term against real images of the target domain (`lambda_gan`, off
by default: with a teacher to copy, the adversarial term mostly adds noise on small budgets). Data
options (`load_size`, `crop_size`, `preprocess`, `flip`) mean what they mean for `train` and go through
the same `train.data.transform`. The config is saved as OUT/NAME/config.json and read back on `--resume`,
where only the fields in `RESUMABLE` may change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rtstyle.devices import parse_device
from rtstyle.errors import UserError
from rtstyle.models import UPSAMPLES

from .config import PRECISIONS, PREPROCESS, RunConfig

INITS = ("select", "normal")
RESUMABLE = ("name", "out", "dataroot", "max_steps", "max_minutes", "save_every", "sample_every", "log_every",
             "eval_every", "num_workers", "device", "install")


def _f(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class DistillConfig(RunConfig):
    """Train a small student generator (default ngf 16, 6 blocks: about 1/20 of the full generator's MACs) to
    reproduce --teacher's outputs on images (and video frames) of its input domain. Writes
    OUT/NAME/{student.safetensors, last.pt, config.json, losses.csv, fidelity.csv, losses.png, samples/} and
    installs the student in the store as NAME, so --model TEACHER --fast runs it.

    (Everything that defines a distillation run; see the module docstring.)"""

    KIND = "distillation"
    RESUMABLE = RESUMABLE

    # Teacher, data, run folder
    teacher: str = _f("", "the generator to distil: anything --model accepts that has weights "
                          "(a reference .pth, a .safetensors file, a store name)")
    dataroot: str = _f("", "images of the teacher's input domain: DIR/trainA (reference layout) or a folder of "
                           "images; video files in it are sampled too")
    name: str = _f("", "run name: checkpoints, samples and logs go to OUT/NAME, the student to "
                       "OUT/NAME/student.safetensors")
    out: str = _f("runs", "parent folder of the run folders")
    videos: str | None = _f(None, "comma-separated video files or folders whose frames are sampled as "
                                  "training images too")
    video_frames: int = _f(100, "frames sampled evenly from each video")
    holdout: int = _f(8, "images (and frames) kept out of training to measure fidelity to the teacher on")
    eval_size: int = _f(256, "short side of the held-out images when fidelity is measured (a multiple of 4)")
    max_dataset_size: int | None = _f(None, "use at most this many images of the folder")
    load_size: int = _f(286, "resize images to this size (before cropping)")
    crop_size: int = _f(256, "then crop to this size (a multiple of 4)")
    preprocess: str = _f("resize_and_crop", "image preprocessing, as in `train`", choices=PREPROCESS)
    flip: bool = _f(True, "random horizontal flips (--no-flip to disable)")
    serial_batches: bool = _f(False, "keep file order (default: shuffled)", cli=False)
    batch_size: int = _f(1, "crops per step and per process")
    num_workers: int = _f(2, "data loading processes (0: load in the distilling process)")
    # The student
    student_ngf: int = _f(16, "student filters in the first conv layer (teacher: usually 64)")
    student_blocks: int = _f(6, "student residual blocks (teacher: usually 9)")
    upsample: str | None = _f(None, "student upsampling: deconv or resize (default: the teacher's)",
                              choices=UPSAMPLES)
    init: str = _f("select", "student initialisation: select (the teacher's channels of largest L1 norm, GAN "
                             "Compression's channel selection) or normal (the reference init)", choices=INITS)
    init_gain: float = _f(0.02, "standard deviation of the normal init (layers selection cannot fill)")
    # Losses and optimisation
    lambda_l1: float = _f(10.0, "weight of L1(student(x), teacher(x)) (GAN Compression: lambda_recon 10)")
    lambda_feat: float = _f(1.0, "weight of the feature distillation: MSE of 1x1-mapped student activations to the "
                                 "teacher's at matching stages (0: off)")
    lambda_gan: float = _f(0.0, "weight of an LSGAN term from a fresh PatchGAN on DIR/trainB (0: off)")
    ndf: int = _f(64, "PatchGAN filters in the first conv layer (with --lambda-gan)")
    n_layers_d: int = _f(3, "PatchGAN stride-2 layers (3: the 70x70 PatchGAN)")
    lr: float = _f(2e-4, "Adam learning rate (constant unless --lr-decay-steps)")
    lr_decay_steps: int = _f(0, "decay the learning rate linearly to 0 over the last N steps of --max-steps, as "
                                "GAN Compression's distillation does (0: constant)")
    beta1: float = _f(0.5, "Adam beta1")
    # Run control
    precision: str = _f("auto", "arithmetic: auto (bf16 autocast where the device has native bf16, else fp32, as "
                                "train does), fp32, bf16 autocast, or fp16 autocast with a grad scaler",
                        choices=PRECISIONS)
    device: str = _f("auto", "auto, cpu, cuda or cuda:N (torchrun: each process takes cuda:LOCAL_RANK)")
    seed: int = _f(0, "seed for the student's init, data order, crops and flips")
    max_steps: int | None = _f(20000, "stop (with a checkpoint) after this many steps in total")
    max_minutes: float | None = _f(None, "stop (with a checkpoint) after this many minutes of this invocation")
    save_every: int = _f(500, "write last.pt and student.safetensors every N steps")
    sample_every: int = _f(400, "write an input | teacher | student grid every N steps (0: never)")
    log_every: int = _f(100, "append the losses to losses.csv every N steps")
    eval_every: int = _f(500, "measure fidelity on the held-out images every N steps (fidelity.csv; 0: at the end "
                              "only)")
    install: bool = _f(True, "also copy the student into the model store as NAME when the run stops, so "
                             "--model TEACHER --fast finds it")

    def __post_init__(self) -> None:
        problems = []
        try:
            parse_device(self.device)
        except UserError as e:
            problems.append(str(e))
        for name in ("crop_size", "eval_size"):
            value = getattr(self, name)
            if value < 4 or value % 4:
                problems.append(f"--{name.replace('_', '-')} must be a positive multiple of 4 (the generator "
                                f"downsamples twice), got {value}")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
            problems.append(f"--load-size {self.load_size} is smaller than --crop-size {self.crop_size}")
        for name in ("batch_size", "student_ngf", "ndf", "n_layers_d", "save_every", "log_every", "holdout",
                     "video_frames"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("student_blocks", "num_workers", "sample_every", "eval_every", "lambda_l1", "lambda_feat",
                     "lambda_gan", "lr"):
            if getattr(self, name) < 0:
                problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.lambda_l1 == self.lambda_feat == self.lambda_gan == 0:
            problems.append("every loss weight is 0 (--lambda-l1, --lambda-feat, --lambda-gan): nothing to learn")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.lr_decay_steps < 0 or (self.lr_decay_steps and (self.max_steps is None
                                                                or self.lr_decay_steps > self.max_steps)):
            problems.append(f"--lr-decay-steps must be between 0 and --max-steps ({self.max_steps}), got "
                            f"{self.lr_decay_steps}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            problems.append(f"--max-minutes must be > 0, got {self.max_minutes}")
        for name, choices in (("preprocess", PREPROCESS), ("precision", PRECISIONS), ("init", INITS)):
            if getattr(self, name) not in choices:
                problems.append(f"--{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.upsample is not None and self.upsample not in UPSAMPLES:
            problems.append(f"--upsample must be one of {', '.join(UPSAMPLES)}, got {self.upsample!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def lr_at(self, step: int) -> float:
        """The learning rate of the step after `step` steps: constant, then linear to 0 over the last
        `lr_decay_steps` of `max_steps` (a function of the step alone, so a resumed run follows it exactly)."""
        if not self.lr_decay_steps:
            return self.lr
        return self.lr * min(1.0, (self.max_steps - step) / self.lr_decay_steps)

    def video_list(self) -> list[str]:
        return [v.strip() for v in (self.videos or "").split(",") if v.strip()]

