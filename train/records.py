"""What a run leaves for people to look at: losses.csv, sample grids and the live progress display.

`losses.csv` has one row per logged step: `step` (optimisation steps from 1, counted across resumes),
`epoch`, `lr`, `elapsed_s` and the eight losses of `CycleGANTrainer.train_step`. On resume the rows written
after the checkpoint (by a run that was then killed) are dropped, so each step appears once. Sample grids
show, per row, real A | fake B | rec A | real B | fake A | rec B.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rtstyle.io.files import atomic_write
from rtstyle.io.images import write_image
from rtstyle.transforms import tensor_to_frames

from .trainer import LOSS_KEYS

COLUMNS = ("step", "epoch", "lr", "elapsed_s", *LOSS_KEYS)
GRID_ORDER = ("real_a", "fake_b", "rec_a", "real_b", "fake_a", "rec_b")


class LossLog:
    """Appends rows to losses.csv, flushing each one so that a killed run keeps what it logged.

    `keys`: the value columns after step, epoch, lr and elapsed_s (the CycleGAN losses by default; a
    distillation run logs its own losses, and its fidelity.csv the PSNR and SSIM, through the same class)."""

    def __init__(self, path: Path, keys: tuple[str, ...] = LOSS_KEYS) -> None:
        self.path = Path(path)
        self.keys = tuple(keys)
        self.columns = ("step", "epoch", "lr", "elapsed_s", *self.keys)

    def start(self, resume_step: int | None) -> None:
        """A fresh file (new run), or the existing one cut back to the rows up to `resume_step`."""
        rows = read_rows(self.path, self.keys) if resume_step is not None and self.path.exists() else []
        rows = [r for r in rows if int(r["step"]) <= (resume_step or 0)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(buf.getvalue()))

    def append(self, step: int, epoch: int, lr: float, elapsed_s: float, losses: dict[str, float]) -> None:
        row = [step, epoch, f"{lr:.8g}", f"{elapsed_s:.2f}", *(f"{losses[k]:.6g}" for k in self.keys)]
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)


def read_rows(path: Path, keys: tuple[str, ...] = LOSS_KEYS) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("step", *keys) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not an rtstyle losses.csv (missing columns {missing})")
        return list(reader)


def sample_grid(rows: list[dict[str, torch.Tensor]], order: tuple[str, ...] = GRID_ORDER) -> np.ndarray:
    """Rows of tensors (1, 3, h, w) in [-1, 1] keyed like `order` -> one uint8 (rows*H, len(order)*W, 3) image.

    Cells are as large as the largest image and smaller images sit top-left (sizes differ between rows
    with the aspect-keeping --preprocess modes)."""
    frames = [[tensor_to_frames(row[k])[0] for k in order] for row in rows]  # each (h, w, 3)
    cell_h = max(f.shape[0] for row in frames for f in row)
    cell_w = max(f.shape[1] for row in frames for f in row)
    grid = np.zeros((len(rows) * cell_h, len(order) * cell_w, 3), np.uint8)
    for r, row in enumerate(frames):
        for c, img in enumerate(row):
            grid[r * cell_h:r * cell_h + img.shape[0], c * cell_w:c * cell_w + img.shape[1]] = img
    return grid


def write_samples(path: Path, rows: list[dict[str, torch.Tensor]], order: tuple[str, ...] = GRID_ORDER) -> Path:
    return write_image(path, sample_grid(rows, order))


class Display:
    """Rich progress line: epoch, step of total, images/s, ETA and the current losses."""

    def __init__(self, console: Console, total_steps: int, done_steps: int, images_per_step: int,
                 enabled: bool = True) -> None:
        self.console, self.images_per_step, self.enabled = console, images_per_step, enabled
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"), console=console, disable=not enabled)
        self.task = self.progress.add_task("train", total=total_steps, completed=done_steps, epoch="-",
                                           speed="", losses="")
        self._last = time.monotonic()
        self._rate: float | None = None

    def __enter__(self) -> "Display":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, step: int, epoch_text: str, losses: dict[str, float] | None) -> None:
        now = time.monotonic()
        rate = self.images_per_step / max(now - self._last, 1e-9)
        self._rate = rate if self._rate is None else 0.9 * self._rate + 0.1 * rate  # smoothed images/s
        self._last = now
        fields = {"epoch": epoch_text, "speed": f"{self._rate:.2f} img/s"}
        if losses is not None:
            fields["losses"] = format_losses(losses)
        self.progress.update(self.task, completed=step, **fields)

    def print(self, text: str) -> None:
        self.console.print(text)  # above the live progress line when there is one


def format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in losses.items())
