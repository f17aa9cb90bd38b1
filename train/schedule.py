"""The learning-rate policies of the reference (`--lr-policy`), as pure functions of the epochs completed.

junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py` `get_scheduler` builds one torch scheduler per
optimiser and `BaseModel.update_learning_rate` steps it once at the end of every epoch:

    linear   LambdaLR: 1 for the first n_epochs, then down by 1 / (n_epochs_decay + 1) per epoch
    step     StepLR(step_size=lr_decay_iters, gamma=0.1): x0.1 every lr_decay_iters epochs
    plateau  ReduceLROnPlateau(mode='min', factor=0.2, threshold=0.01, patience=5), stepped with
             `self.metric`, which BaseModel sets to 0 and CycleGAN never changes: so the "metric" never
             improves after the first epoch and the lr drops x0.2 after every 6 epochs
    cosine   CosineAnnealingLR(T_max=n_epochs, eta_min=0): half a cosine to 0 over n_epochs; torch's
             schedule is periodic, so during n_epochs_decay it rises again (as in the reference)

Here the lr is computed from `epochs_done` (the scheduler's `last_epoch`) rather than kept in a scheduler
object, so that it follows the config even when `--epochs`/`--epochs-decay` change on `--resume`.
"""

from __future__ import annotations

import math

LR_POLICIES = ("linear", "step", "plateau", "cosine")

STEP_GAMMA = 0.1  # StepLR gamma in get_scheduler
PLATEAU_FACTOR, PLATEAU_THRESHOLD, PLATEAU_PATIENCE = 0.2, 0.01, 5  # ReduceLROnPlateau arguments there
PLATEAU_EPS = 1e-8  # torch ReduceLROnPlateau's default eps: smaller reductions are skipped
REFERENCE_METRIC = 0.0  # BaseModel.metric, the value update_learning_rate passes to the plateau scheduler


def lr_factor(epoch: int, epochs: int, epochs_decay: int, epoch_count: int = 1) -> float:
    """The reference's 'linear' policy (networks.get_scheduler): the lr multiplier after `epoch` scheduler
    steps, i.e. during the (epoch + 1)-th epoch; 1 for the first `epochs` epochs, then down by
    1 / (epochs_decay + 1) per epoch."""
    return 1.0 - max(0, epoch + epoch_count - epochs) / float(epochs_decay + 1)


def step_lr(lr: float, epoch: int, step_size: int) -> float:
    """StepLR after `epoch` steps, multiplied step by step like torch's recursive form (same rounding)."""
    for _ in range(epoch // step_size):
        lr *= STEP_GAMMA
    return lr


def plateau_lr(lr: float, epoch: int, metrics: list[float] | None = None) -> float:
    """ReduceLROnPlateau('min', factor 0.2, threshold 0.01 'rel', patience 5, cooldown 0) after `epoch` steps
    with `metrics` (default: the reference's constant 0)."""
    best, bad = math.inf, 0
    for i in range(epoch):
        metric = REFERENCE_METRIC if metrics is None else metrics[i]
        if metric < best * (1.0 - PLATEAU_THRESHOLD):
            best, bad = metric, 0
        else:
            bad += 1
        if bad > PLATEAU_PATIENCE:
            reduced = lr * PLATEAU_FACTOR
            if lr - reduced > PLATEAU_EPS:
                lr = reduced
            bad = 0
    return lr


def cosine_lr(lr: float, epoch: int, t_max: int) -> float:
    """CosineAnnealingLR's closed form with eta_min 0 (torch steps a recursion equal to it up to rounding)."""
    return lr * (1.0 + math.cos(math.pi * epoch / t_max)) / 2.0


def scheduled_lr(policy: str, lr: float, epoch: int, epochs: int, epochs_decay: int, lr_decay_iters: int) -> float:
    """The lr during the (epoch + 1)-th epoch of a run with initial lr `lr` under `policy`."""
    if policy == "linear":
        return lr * lr_factor(epoch, epochs, epochs_decay)
    if policy == "step":
        return step_lr(lr, epoch, lr_decay_iters)
    if policy == "plateau":
        return plateau_lr(lr, epoch)
    if policy == "cosine":
        return cosine_lr(lr, epoch, epochs)  # reference: T_max = opt.n_epochs
    raise ValueError(f"--lr-policy must be one of {', '.join(LR_POLICIES)}, got {policy!r}")
