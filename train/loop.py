"""A training run from start to stop: data, budgets, signals, checkpoints, progress and torchrun.

`train(config)` runs epochs of `CycleGANTrainer.train_step` in the reference's order (the lr schedule
stepped after each epoch), and stops when the schedule ends, at `--max-steps` (steps in total, across
resumes), at `--max-minutes` (of this invocation), or on SIGINT/SIGTERM; every stop writes `last.pt` and
the generators first. Under torchrun (WORLD_SIZE > 1) each process trains on its own shard of every epoch
and the gradients are averaged (DistributedDataParallel: gloo on CPU, nccl on GPU); the processes agree on
when to stop each step, and only rank 0 writes files, after gathering every rank's pools and RNG states.
A new run may start from trained networks (`--init-from-a/-b`, `--continue-from`: `finetune.py`), read and
checked before any image is.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from rtstyle.backends import resolve_device
from rtstyle.io.files import remove_stale_temps_in, writing

from .checkpoint import (CheckpointError, Position, RunFiles, capture_rng, export_generators, load_checkpoint,
                         restore, save_checkpoint)
from .config import TrainConfig
from .data import EpochSampler, UnalignedDataset, load_domains, make_loader, steps_per_epoch
from .finetune import apply_initial_weights, load_initial_weights, starts_from_weights
from .records import Display, LossLog, format_losses, write_samples
from .trainer import CycleGANTrainer, resolve_precision

STOP_REASONS = ("", "max-minutes", "max-steps", "SIGTERM", "SIGINT")  # index = priority when ranks differ
SAMPLE_PAIRS = 2


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    stopped_by: str | None  # None when the schedule ran to its end


class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun) and the collectives used."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        return self.world > 1

    def init(self, device: torch.device) -> None:
        self.device = device
        if self.active:
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        if not self.active:
            return values
        keys = list(values)  # the same keys in the same order on every rank (one train_step's dict)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return dict(zip(keys, (t / self.world).tolist()))

    def agree(self, reason: str) -> str:
        """The highest-priority stop reason any process has, so that all stop after the same step."""
        if not self.active:
            return reason
        t = torch.tensor([STOP_REASONS.index(reason)], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return STOP_REASONS[int(t)]

    def gather(self, obj) -> list | None:
        if not self.active:
            return [obj]
        out = [None] * self.world if self.rank == 0 else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj):
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


class StopSignals:
    """SIGINT/SIGTERM set a flag checked after each step; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.reason = ""
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.reason == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_config(options: dict, resume: bool, given: set[str] | None = None) -> TrainConfig:
    """The config of a new run from `options` (field -> value), or, with `resume`, the run's saved
    config.json with the options in `given` (those typed on the command line, `rtstyle.config.given_options`)
    or, without it, those that differ from the defaults; only RESUMABLE fields may change."""
    if not resume:
        return TrainConfig(**options)
    defaults = TrainConfig()
    files = RunFiles(Path(options.get("out", defaults.out)) / options.get("name", ""))
    if not options.get("name"):
        raise ValueError("--resume needs --name (and --out if not the default) of the run to continue")
    if not files.config.exists():
        raise CheckpointError(f"nothing to resume: {files.config} does not exist (is --name/--out right?)")
    if given is not None:  # from the command line: what the user typed is compared, default value or not
        changes = {name: options[name] for name in given if name in options}
    else:
        changes = {f.name: options[f.name] for f in fields(TrainConfig)
                   if f.name in options and options[f.name] != getattr(defaults, f.name)}
    return TrainConfig.load_json(files.config).resumed_with(changes)


def pick_device(spec: str, dist: Distributed) -> torch.device:
    device = resolve_device(spec)
    if device.startswith("cuda"):
        if dist.active and device == "cuda":
            device = f"cuda:{dist.local_rank}"  # torchrun: one GPU per process
        torch.cuda.set_device(device)
    return torch.device(device)


def stop_reason(signals: StopSignals, config, step: int, started: float) -> str:
    """Why a run (training or distillation) stops now, '' to go on: a signal, --max-steps, or --max-minutes of
    this invocation (counted from `started`, a time.monotonic())."""
    if signals.reason:
        return signals.reason
    if config.max_steps and step >= config.max_steps:
        return "max-steps"
    if config.max_minutes and time.monotonic() - started >= config.max_minutes * 60:
        return "max-minutes"
    return ""


def train(config: TrainConfig, resume: bool = False, console: Console | None = None) -> TrainResult:
    """Run (or with `resume`, continue) the training `config` describes; see the module docstring."""
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    dist = Distributed()
    dist.init(pick_device(config.device, dist))
    try:
        return _train(config, resume, console if dist.rank == 0 else Console(quiet=True), dist)
    finally:
        dist.close()


def _load_data(config: TrainConfig, dist: Distributed, console: Console) -> UnalignedDataset:
    """Rank 0 decodes every image once; the file lists (or the error) go to the other ranks."""
    found = None
    if dist.rank == 0:
        try:
            found = load_domains(config)
        except (ValueError, OSError) as e:
            found = e
    found = dist.broadcast(found)
    if isinstance(found, Exception):
        raise found
    for domain in found:
        for path, reason in domain.excluded:
            console.print(f"[yellow]excluded[/] {path}: {reason}")
        bad = f", [yellow]{len(domain.excluded)} excluded[/]" if domain.excluded else ""
        console.print(f"{domain.folder}: {len(domain.paths)} images{bad}")
    return UnalignedDataset(found[0].paths, found[1].paths, config)


def _train(config: TrainConfig, resume: bool, console: Console, dist: Distributed) -> TrainResult:
    if not config.name:
        raise ValueError("--name is required: the run folder is OUT/NAME")
    files = RunFiles(Path(config.out) / config.name)
    # Resolved before anything is saved: config.json records the precision that runs, and --resume keeps it.
    precision, why = resolve_precision(config.precision, dist.device)
    config = replace(config, precision=precision)
    console.print(f"[yellow]{why}[/]" if why.startswith("WARNING") else f"precision {precision} ({why})")
    payload = load_checkpoint(files.last, config, dist.world) if resume else None
    if not resume and files.last.exists():
        raise CheckpointError(f"{files.root} already holds a run (last.pt); continue it with --resume, "
                              "or choose another --name")
    initial = load_initial_weights(config) if starts_from_weights(config) and not resume else None
    if initial:
        config = initial.config  # with the architecture read from the files
        for line in initial.describe():
            console.print(line)
    dataset = _load_data(config, dist, console)
    seed_everything(config.seed)
    trainer = CycleGANTrainer(config, dist.device, distributed=dist.active, pool_seed=f"{config.seed}-{dist.rank}")
    seed_everything(config.seed + 7919 * dist.rank)  # dropout masks differ between processes
    if initial:
        apply_initial_weights(trainer, initial)
    start = Position(epoch=config.epoch_count - 1)  # reference --epoch_count: epochs before it count as done
    position = restore(payload, trainer, dist.rank, files.last) if payload else start
    log = LossLog(files.losses)
    if dist.rank == 0:
        with writing(files.root):  # a read-only or unwritable --out: one line, not a traceback
            files.root.mkdir(parents=True, exist_ok=True)
        for note in remove_stale_temps_in(files.root):  # a 0-byte .last.pt.PID.*.tmp of a killed run
            console.print(f"note: {note}")
        config.save_json(files.config)
        log.start(position.step if resume else None)
    spe = steps_per_epoch(len(dataset), config.batch_size, dist.world)
    total = (config.total_epochs - config.epoch_count + 1) * spe  # --epoch-count starts the run later
    if config.max_steps:
        total = min(total, config.max_steps)
    console.print(f"run {files.root}: {len(dataset)} pairs/epoch, {spe} steps/epoch, batch "
                  f"{config.batch_size} x {dist.world} process(es), {config.precision} on {dist.device}"
                  + (f", resuming at step {position.step} (epoch {position.epoch + 1})" if resume else ""))
    samples = [dataset.fixed_pair(i) for i in range(SAMPLE_PAIRS)] if dist.rank == 0 else []
    started = time.monotonic()

    def budget(signals: StopSignals) -> str:
        return stop_reason(signals, config, position.step, started)

    def save() -> None:
        states = dist.gather({"pools": trainer.pools_state(), "rng": capture_rng()})
        if dist.rank == 0:
            save_checkpoint(files, config, trainer, position, states)
            export_generators(files, config, trainer, position)

    images_per_step = config.batch_size * dist.world
    with StopSignals() as signals, Display(console, total, position.step, images_per_step,
                                           enabled=dist.rank == 0 and console.is_terminal) as display:
        stopped = dist.agree(budget(signals))
        while not stopped and position.epoch < config.total_epochs:
            epoch_text = f"{position.epoch + 1}/{config.total_epochs}"
            sampler = EpochSampler(len(dataset), position.epoch, config.seed, not config.serial_batches,
                                   dist.rank, dist.world, start=position.batch * config.batch_size)
            loader = make_loader(dataset, sampler, config.batch_size, config.num_workers,
                                 pin_memory=dist.device.type == "cuda")
            tick = time.monotonic()
            for real_a, real_b in loader:
                losses = trainer.train_step(real_a, real_b)
                position.elapsed_s += time.monotonic() - tick
                tick = time.monotonic()
                position.step += 1
                position.batch += 1
                logged = position.step == 1 or position.step % config.log_every == 0
                if logged:
                    losses = dist.mean(losses)
                    if dist.rank == 0:
                        log.append(position.step, position.epoch + 1, trainer.lr, position.elapsed_s, losses)
                        display.print(f"step {position.step} epoch {epoch_text} lr {trainer.lr:.3g} "
                                      f"{format_losses(losses)}")
                display.update(position.step, epoch_text, losses if logged else None)
                if dist.rank == 0 and config.sample_every and position.step % config.sample_every == 0:
                    rows = [trainer.translate(a[None], b[None]) for a, b in samples]
                    write_samples(files.samples / f"step_{position.step:07d}.png", rows)
                stopped = dist.agree(budget(signals))
                if stopped or position.step % config.save_every == 0:
                    save()
                if stopped:
                    break
            else:  # the epoch ran to its end: step the lr schedule (reference: once per epoch)
                trainer.end_epoch()
                position.epoch += 1
                position.batch = 0
                save()
    if dist.rank == 0:
        _finish(files, console, config, position, stopped)
    return TrainResult(files.root, position.step, position.epoch, stopped or None)


def _finish(files: RunFiles, console: Console, config: TrainConfig, position: Position, stopped: str) -> None:
    from .plot import plot_losses

    try:
        plot_losses(files.losses, files.plot)
    except Exception as e:  # the plot is a convenience; the run's results are already saved
        console.print(f"[yellow]losses.png not drawn:[/] {e}")
    how = f"stopped by {stopped}" if stopped else "finished"
    partial = f" and {position.batch} batch(es) of the next" if position.batch else ""
    console.print(f"{how} at step {position.step}: {position.epoch} epoch(s) complete{partial}; "
                  f"generators: {files.generator('A')}, {files.generator('B')}")
    if stopped and position.epoch < config.total_epochs:
        more = " --max-steps N (a larger total)" if stopped == "max-steps" else ""
        console.print(f"continue with: python cli.py train --name {config.name} --out {config.out} --resume{more}")
