"""A distillation run from start to stop: teacher, data, budgets, signals, checkpoints, fidelity and the student.

`distill(config)` checks everything a user can get wrong before it writes anything (the teacher is a
generator's weights, the data folder has usable images or videos, the student can be built and, with
`--init select`, selected from the teacher), then runs `Distiller.train_step` over epochs of the training
images with `train`'s machinery: `train.loop`'s signals (Ctrl-C / SIGTERM save, then stop), budgets
(`--max-steps` in total, `--max-minutes` of this invocation), torchrun DDP and device choice;
`train.checkpoint`'s RNG capture and atomic writes (so `--resume` after `kill -9` continues bit for bit);
`train.records`' progress line, losses.csv and sample grids (input | teacher | student); `train.plot`.
Fidelity (PSNR and SSIM of the student's uint8 output against the teacher's on the held-out images, the
`evaluate` metrics) goes to fidelity.csv every `--eval-every` steps and at the end, and into the student's
metadata with `distilled_from` (teacher name and sha256) and both generators' MACs at 256x256. The student
is OUT/NAME/student.safetensors and, with `--install`, the store's NAME.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from rtstyle.formats.metadata import artifact_kind, sha256_file
from rtstyle.macs import generator_macs
from rtstyle.models import GeneratorConfig
from rtstyle.store import resolve_model, store_dir
from rtstyle.transforms import tensor_to_frames
from rtstyle.io.files import OutputAppeared, atomic_write, remove_stale_temps_in, writing
from rtstyle.weights import ModelInfo, WeightsError, load_model, read_info, save_generator

from .checkpoint import CheckpointError, Position, capture_rng, restore_rng
from .data import EpochSampler, make_loader, steps_per_epoch
from .distill_config import DistillConfig, RESUMABLE
from .distill_data import (DistillDataset, extract_frames, find_sources, fixed_crop, heldout_inputs, split)
from .distiller import LOSS_KEYS, Distiller
from .loop import Distributed, StopSignals, pick_device, seed_everything, stop_reason
from .records import Display, LossLog, format_losses, write_samples
from .trainer import resolve_precision

FORMAT = "rtstyle-distill-checkpoint"
VERSION = 1
GRID = ("input", "teacher", "student")
FIDELITY_KEYS = ("psnr_db", "ssim")
SAMPLES = 2


@dataclass(frozen=True)
class DistillFiles:
    root: Path

    last = property(lambda self: self.root / "last.pt")
    config = property(lambda self: self.root / "config.json")
    losses = property(lambda self: self.root / "losses.csv")
    fidelity = property(lambda self: self.root / "fidelity.csv")
    plot = property(lambda self: self.root / "losses.png")
    samples = property(lambda self: self.root / "samples")
    frames = property(lambda self: self.root / "frames")
    student = property(lambda self: self.root / "student.safetensors")


@dataclass
class DistillResult:
    run_dir: Path
    student: Path
    step: int
    stopped_by: str | None
    fidelity: dict
    installed: Path | None = None


@dataclass(frozen=True)
class Teacher:
    """The resolved --teacher: its generator, info, file, content hash and the name students refer to."""

    generator: torch.nn.Module
    info: ModelInfo
    path: Path
    sha256: str
    name: str


def load_teacher(spec: str) -> Teacher:
    """The teacher's weights as a generator; WeightsError with what was expected otherwise."""
    if not spec:
        raise ValueError("--teacher is required: the generator to distil (a .pth, .safetensors or store name)")
    path = resolve_model(spec)
    kind = artifact_kind(path)
    if kind != "weights":
        raise WeightsError(f"--teacher {spec}: a {kind} artifact has no trainable weights; distil from the "
                           ".safetensors or .pth it was exported from")
    generator, info = load_model(path)  # WeightsError when the file is not a ResNet generator
    # A store name as given; for a file, the name in its metadata (a trained run's "h2z_G_A"), else its stem.
    name = (info.name or path.stem) if ("/" in spec or "\\" in spec or Path(spec).suffix) else spec
    return Teacher(generator.float().eval(), info, path, sha256_file(path), name)


def student_config(config: DistillConfig, teacher: Teacher) -> GeneratorConfig:
    t = teacher.info.config
    try:
        student = GeneratorConfig(ngf=config.student_ngf, n_blocks=config.student_blocks, norm=t.norm,
                                  upsample=config.upsample or t.upsample, input_nc=t.input_nc, output_nc=t.output_nc)
    except ValueError as e:
        raise ValueError(f"student generator cannot be built: {e}") from None
    if config.init == "select" and (student.ngf > t.ngf or student.n_blocks > t.n_blocks):
        raise ValueError(f"--init select keeps a subset of the teacher's channels and blocks: a student with "
                         f"--student-ngf {student.ngf} and --student-blocks {student.n_blocks} does not fit in the "
                         f"teacher (ngf {t.ngf}, {t.n_blocks} blocks); make it smaller or use --init normal")
    return student


def resolve_config(options: dict, resume: bool, given: set[str] | None = None) -> DistillConfig:
    """A new run's config from `options`, or with `resume` the saved one with the RESUMABLE changes: the options
    in `given` (typed on the command line) or, without it, those that differ from the defaults."""
    if not resume:
        return DistillConfig(**options)
    defaults = DistillConfig()
    if not options.get("name"):
        raise ValueError("--resume needs --name (and --out if not the default) of the run to continue")
    files = DistillFiles(Path(options.get("out", defaults.out)) / options["name"])
    if not files.config.exists():
        raise CheckpointError(f"nothing to resume: {files.config} does not exist (is --name/--out right?)")
    if given is not None:  # from the command line: what the user typed is compared, default value or not
        changes = {name: options[name] for name in given if name in options}
    else:
        changes = {f.name: options[f.name] for f in fields(DistillConfig)
                   if f.name in options and options[f.name] != getattr(defaults, f.name)}
    return DistillConfig.load_json(files.config).resumed_with(changes)


def _install_target(config: DistillConfig, teacher: Teacher) -> Path | None:
    """Where --install puts the student; refused up front if that store name holds something else."""
    if not config.install:
        return None
    target = store_dir() / f"{config.name}.safetensors"
    if target.exists():
        if not _holds_student_of(target, teacher):
            raise FileExistsError(f"the store already holds a model named {config.name!r} ({target}) that is not a "
                                  "student of this teacher: choose another --name, or --no-install")
    return target


def _holds_student_of(target: Path, teacher: Teacher) -> bool:
    """Whether the stored model `target` was distilled from `teacher` (and so may be replaced by a new student)."""
    try:
        return read_info(target).extra.get("distilled_from", {}).get("sha256") == teacher.sha256
    except (WeightsError, OSError):
        return False


# --- last.pt ---------------------------------------------------------------------------------------------
def save_checkpoint(files: DistillFiles, config: DistillConfig, teacher: Teacher, distiller: Distiller,
                    position: Position, rank_states: list[dict], fidelity: dict) -> None:
    payload = {"format": FORMAT, "version": VERSION, "config": config.to_dict(), "teacher_sha256": teacher.sha256,
               "position": {"step": position.step, "epoch": position.epoch, "batch": position.batch,
                            "elapsed_s": position.elapsed_s},
               "world_size": len(rank_states), "distiller": distiller.state_dict(), "ranks": rank_states,
               "fidelity": fidelity}
    atomic_write(files.last, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, config: DistillConfig, teacher: Teacher, world_size: int) -> dict:
    keep = f"{path} is left untouched; start a new run with another --name, or move the file away"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint to resume: {path} does not exist") from None
    except Exception as e:  # unpickling, truncation and format errors come in many types
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({detail}); {keep}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rtstyle distillation checkpoint; {keep}")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload['version']}, newer than this rtstyle "
                              f"understands ({VERSION}); upgrade rtstyle")
    saved, current = payload.get("config", {}), config.to_dict()
    differ = sorted(k for k in current if k not in RESUMABLE and saved.get(k) != current[k])
    if differ:
        listing = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs run {current[k]!r}" for k in differ)
        raise CheckpointError(f"{path} does not belong to this run's config ({listing}); {keep}")
    if payload.get("teacher_sha256") != teacher.sha256:
        raise CheckpointError(f"--teacher {config.teacher} has changed since this run started (sha256 "
                              f"{teacher.sha256[:12]} vs {str(payload.get('teacher_sha256'))[:12]}); {keep}")
    if payload.get("world_size") != world_size:
        raise CheckpointError(f"{path} was written by {payload.get('world_size')} process(es); resume it with the "
                              f"same number, not {world_size}")
    return payload


# --- fidelity --------------------------------------------------------------------------------------------
def measure_fidelity(distiller: Distiller, inputs: list[torch.Tensor], targets: list[np.ndarray]) -> dict:
    """Mean PSNR (dB) and SSIM of the student's uint8 outputs against the teacher's on the held-out images."""
    from .evaluate import _metrics, _psnr

    psnr, ssim = _metrics()
    scores = []
    for x, target in zip(inputs, targets):
        out = tensor_to_frames(distiller.student_output(x))[0]
        scores.append((_psnr(psnr, target, out), ssim(target, out, channel_axis=2, data_range=255)))
    m = np.array(scores, dtype=np.float64).mean(axis=0)
    return {"psnr_db": round(float(m[0]), 3), "ssim": round(float(m[1]), 4), "images": len(inputs)}


def export_student(path: Path, config: DistillConfig, teacher: Teacher, distiller: Distiller, position: Position,
                   fidelity: dict) -> None:
    student = distiller.generator
    extra = {"trained_by": "rtstyle distill", "run": config.name, "step": position.step,
             "distilled_from": {"name": teacher.name, "sha256": teacher.sha256,
                                "config": teacher.info.config.to_dict()},
             "macs_256": {"teacher": generator_macs(teacher.info.config), "student": generator_macs(student.config)},
             "fidelity": fidelity}
    info = ModelInfo(config=student.config, direction=teacher.info.direction, train_size=teacher.info.train_size,
                     name=config.name, extra=extra)
    save_generator(student, path, info)


# --- the run ---------------------------------------------------------------------------------------------
def distill(config: DistillConfig, resume: bool = False, console: Console | None = None) -> DistillResult:
    """Run (or with `resume`, continue) the distillation `config` describes; see the module docstring."""
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    dist = Distributed()
    dist.init(pick_device(config.device, dist))
    try:
        return _distill(config, resume, console if dist.rank == 0 else Console(quiet=True), dist)
    finally:
        dist.close()


def _distill(config: DistillConfig, resume: bool, console: Console, dist: Distributed) -> DistillResult:
    if not config.name:
        raise ValueError("--name is required: the run folder is OUT/NAME")
    from .evaluate import _metrics

    _metrics()  # fidelity needs scikit-image: say so before any work
    files = DistillFiles(Path(config.out) / config.name)
    if not resume and files.last.exists():
        raise CheckpointError(f"{files.root} already holds a run (last.pt); continue it with --resume, "
                              "or choose another --name")
    teacher = load_teacher(config.teacher)
    student_cfg = student_config(config, teacher)
    payload = load_checkpoint(files.last, config, teacher, dist.world) if resume else None
    install = _install_target(config, teacher)
    sources = find_sources(config) if dist.rank == 0 else None
    sources = dist.broadcast(sources)
    for path, reason in sources.excluded:
        console.print(f"[yellow]excluded[/] {path}: {reason}")
    created = not files.root.exists()
    try:
        frames = extract_frames(sources.videos, files.frames, config.video_frames) if dist.rank == 0 else []
        frames = dist.broadcast(frames)
        train_paths, held_paths = split(sources.images + frames, config.holdout)
    except BaseException:
        if created and dist.rank == 0:
            shutil.rmtree(files.root, ignore_errors=True)  # bad input leaves nothing behind
        raise
    dataset = DistillDataset(train_paths, config, sources.domain_b)
    t = teacher.info.config
    console.print(f"teacher {teacher.name} (ngf {t.ngf}, {t.n_blocks} blocks, {generator_macs(t) / 1e9:.2f} GMACs at "
                  f"256x256) -> student ngf {student_cfg.ngf}, {student_cfg.n_blocks} blocks, {student_cfg.upsample} "
                  f"({generator_macs(student_cfg) / 1e9:.2f} GMACs), init {config.init}")
    console.print(f"data: {len(sources.images)} images in {sources.folder}"
                  + (f" + {len(frames)} frames of {len(sources.videos)} video(s)" if sources.videos else "")
                  + f"; {len(train_paths)} for training, {len(held_paths)} held out for fidelity")

    # Resolved before anything is saved, as train does: config.json records the precision that runs.
    precision, why = resolve_precision(config.precision, dist.device)
    config = replace(config, precision=precision)
    console.print(f"[yellow]{why}[/]" if why.startswith("WARNING") else f"precision {precision} ({why})")
    seed_everything(config.seed)
    distiller = Distiller(config, teacher.generator, student_cfg, dist.device, distributed=dist.active)
    seed_everything(config.seed + 7919 * dist.rank)
    position, fidelity = Position(), {}
    if payload:
        try:
            distiller.load_state_dict(payload["distiller"])
            restore_rng(payload["ranks"][dist.rank]["rng"])
            p = payload["position"]
            position = Position(int(p["step"]), int(p["epoch"]), int(p["batch"]), float(p["elapsed_s"]))
            fidelity = dict(payload.get("fidelity") or {})
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{files.last} does not match this run's networks ({e}); it is left untouched") from e
    log, fidelity_log = LossLog(files.losses, LOSS_KEYS), LossLog(files.fidelity, FIDELITY_KEYS)
    if dist.rank == 0:
        with writing(files.root):  # a read-only or unwritable --out: one line, not a traceback
            files.root.mkdir(parents=True, exist_ok=True)
        for note in remove_stale_temps_in(files.root):  # a 0-byte .last.pt.PID.*.tmp of a killed run
            console.print(f"note: {note}")
        config.save_json(files.config)
        log.start(position.step if resume else None)
        fidelity_log.start(position.step if resume else None)
    held_inputs = heldout_inputs(held_paths, config.eval_size) if dist.rank == 0 else []
    with torch.no_grad():  # the teacher in fp32 (no autocast): fidelity is against its real output
        held_targets = [tensor_to_frames(distiller.teacher(x.to(dist.device)).float().cpu())[0] for x in held_inputs]
    samples = [fixed_crop(p, config, i)[None] for i, p in enumerate(held_paths[:SAMPLES])] if dist.rank == 0 else []
    spe = steps_per_epoch(len(dataset), config.batch_size, dist.world)
    console.print(f"run {files.root}: {spe} steps/epoch, batch {config.batch_size} x {dist.world} process(es), "
                  f"{config.precision} on {dist.device}"
                  + (f", resuming at step {position.step}" if resume else ""))
    started = time.monotonic()

    def budget(signals: StopSignals) -> str:
        return stop_reason(signals, config, position.step, started)

    def evaluate() -> None:
        nonlocal fidelity
        if dist.rank == 0 and fidelity.get("step") != position.step:
            fidelity = measure_fidelity(distiller, held_inputs, held_targets) | {"step": position.step}
            fidelity_log.append(position.step, position.epoch + 1, distiller.lr, position.elapsed_s, fidelity)
            console.print(f"step {position.step}: fidelity to the teacher on {fidelity['images']} held-out images: "
                          f"PSNR {fidelity['psnr_db']:.2f} dB, SSIM {fidelity['ssim']:.4f}")

    def save() -> None:
        states = dist.gather({"rng": capture_rng()})
        if dist.rank == 0:
            save_checkpoint(files, config, teacher, distiller, position, states, fidelity)
            export_student(files.student, config, teacher, distiller, position, fidelity)

    with StopSignals() as signals, Display(console, config.max_steps, position.step, config.batch_size * dist.world,
                                           enabled=dist.rank == 0 and console.is_terminal) as display:
        stopped = dist.agree(budget(signals))
        while not stopped:
            sampler = EpochSampler(len(dataset), position.epoch, config.seed, not config.serial_batches,
                                   dist.rank, dist.world, start=position.batch * config.batch_size)
            loader = make_loader(dataset, sampler, config.batch_size, config.num_workers,
                                 pin_memory=dist.device.type == "cuda")
            tick = time.monotonic()
            for batch in loader:
                real, real_b = batch if isinstance(batch, (list, tuple)) else (batch, None)
                distiller.set_lr(config.lr_at(position.step))
                losses = distiller.train_step(real, real_b)
                position.elapsed_s += time.monotonic() - tick
                position.step += 1
                position.batch += 1
                logged = position.step == 1 or position.step % config.log_every == 0
                if logged:
                    losses = dist.mean(losses)
                    if dist.rank == 0:
                        log.append(position.step, position.epoch + 1, distiller.lr, position.elapsed_s, losses)
                        display.print(f"step {position.step} epoch {position.epoch + 1} {format_losses(losses)}")
                display.update(position.step, str(position.epoch + 1), losses if logged else None)
                if dist.rank == 0 and config.sample_every and position.step % config.sample_every == 0:
                    write_samples(files.samples / f"step_{position.step:07d}.png",
                                  [distiller.translate(x) for x in samples], GRID)
                if config.eval_every and position.step % config.eval_every == 0:
                    evaluate()
                stopped = dist.agree(budget(signals))
                if stopped or position.step % config.save_every == 0:
                    if stopped:
                        evaluate()  # the fidelity at the end, into the student's metadata
                    save()
                tick = time.monotonic()  # evaluation and saving are not training time
                if stopped:
                    break
            else:
                position.epoch += 1
                position.batch = 0
        if position.step and not files.student.exists() and dist.rank == 0:
            save()
    installed = None
    if dist.rank == 0:
        installed = _finish(files, console, config, teacher, position, stopped, fidelity, install)
    return DistillResult(files.root, files.student, position.step, stopped or None, fidelity, installed)


def _finish(files: DistillFiles, console: Console, config: DistillConfig, teacher: Teacher, position: Position,
            stopped: str, fidelity: dict, install: Path | None) -> Path | None:
    from .plot import plot_losses

    try:
        plot_losses(files.losses, files.plot)
    except Exception as e:  # the plot is a convenience; the run's results are already saved
        console.print(f"[yellow]losses.png not drawn:[/] {e}")
    if install is not None:
        data = files.student.read_bytes()
        try:  # a model that appeared under the name meanwhile is replaced only if it is this teacher's student too
            atomic_write(install, lambda tmp: Path(tmp).write_bytes(data),
                         overwrite=install.exists() and _holds_student_of(install, teacher))
        except OutputAppeared as e:
            console.print(f"[yellow]not installed:[/] {e}")
            install = None
    console.print(f"stopped by {stopped} at step {position.step}; student: {files.student}"
                  + (f", installed in the store as {config.name} ({install})" if install else "")
                  + (f"; fidelity to the teacher: PSNR {fidelity['psnr_db']:.2f} dB, SSIM {fidelity['ssim']:.4f}"
                     if fidelity else ""))
    console.print(f"run it: --model {config.name if install else files.student}"
                  + (f" (or --model {teacher.name} --fast)" if install else ""))
    more = " --max-steps N (a larger total)" if stopped == "max-steps" else ""
    console.print(f"continue with: python cli.py distill --name {config.name} --out {config.out} --resume{more}")
    return install
