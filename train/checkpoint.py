"""The run folder's files: the resumable `last.pt`, the exported generators and the saved config.

`last.pt` holds everything needed to continue bit for bit: the four networks, both optimisers, the lr
schedule's position, the grad scaler, and per process the two image pools and the torch / CUDA / numpy /
Python RNG states, plus the epoch, the batches done in it and the step count. It is written atomically (temporary
file, fsync, rename; `rtstyle.io.files.atomic_write`), so a `kill -9` at any moment leaves the previous
checkpoint intact, and read with `torch.load(weights_only=True)`: tensors and plain containers only.
`G_A.safetensors` (A -> B) and `G_B.safetensors` (B -> A) are the generators in the native weights format,
with their direction (and, for a fine-tuned or continued run, the model each started from under "init_from"),
which `--model` accepts directly.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rtstyle.io.files import atomic_write
from rtstyle.weights import ModelInfo, save_generator

from .config import RESUMABLE, TrainConfig
from .finetune import generator_origins
from .trainer import CycleGANTrainer

FORMAT = "rtstyle-train-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A last.pt that cannot be resumed from; the file is left as it is."""


@dataclass(frozen=True)
class RunFiles:
    """Paths inside one run folder (OUT/NAME)."""

    root: Path

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def losses(self) -> Path:
        return self.root / "losses.csv"

    @property
    def plot(self) -> Path:
        return self.root / "losses.png"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def generator(self, which: str) -> Path:  # which: "A" (A -> B) or "B" (B -> A), the reference's G_A / G_B
        return self.root / f"G_{which}.safetensors"


# --- RNG states ------------------------------------------------------------------------------------------
def capture_rng() -> dict:
    """This process's global RNG states, as tensors and plain Python values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --- last.pt ---------------------------------------------------------------------------------------------
@dataclass
class Position:
    """Where training stands: optimisation steps done, epochs completed, batches done in the current epoch."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    elapsed_s: float = 0.0  # training time over all invocations


def save_checkpoint(files: RunFiles, config: TrainConfig, trainer: CycleGANTrainer, position: Position,
                    rank_states: list[dict]) -> None:
    """Write last.pt atomically. `rank_states`: each process's pools and RNG states (rank order)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "position": {"step": position.step, "epoch": position.epoch, "batch": position.batch,
                     "elapsed_s": position.elapsed_s},
        "world_size": len(rank_states),
        "trainer": trainer.state_dict(),
        "ranks": rank_states,
    }
    atomic_write(files.last, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, config: TrainConfig, world_size: int) -> dict:
    """Read and check last.pt against the run's config and process count; CheckpointError if unusable."""
    keep = f"{path} is left untouched; start a new run with another --name, or move the file away"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint to resume: {path} does not exist") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError, KeyError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({detail}); {keep}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rtstyle training checkpoint; {keep}")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload['version']}, newer than this rtstyle "
                              f"understands ({VERSION}); upgrade rtstyle")
    saved = TrainConfig.complete(payload.get("config", {}))  # a checkpoint from before newer options
    current = config.to_dict()
    # A field the checkpoint predates (e.g. `upsample`) counts as its default, which is what that run used.
    defaults = TrainConfig().to_dict()
    differ = sorted(k for k in current if k not in RESUMABLE and saved.get(k, defaults[k]) != current[k])
    if differ:
        listing = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs run {current[k]!r}" for k in differ)
        raise CheckpointError(f"{path} does not belong to this run's config ({listing}); {keep}")
    if payload.get("world_size") != world_size:
        raise CheckpointError(f"{path} was written by {payload.get('world_size')} process(es); resume it with "
                              f"the same number (torchrun --nproc-per-node {payload.get('world_size')}), "
                              f"not {world_size}")
    return payload


def restore(payload: dict, trainer: CycleGANTrainer, rank: int, path: Path) -> Position:
    """Load a checked payload into the trainer and this process's RNGs; returns the saved position."""
    try:
        trainer.load_state_dict(payload["trainer"])
        mine = payload["ranks"][rank]
        trainer.load_pools_state(mine["pools"])
        restore_rng(mine["rng"])
        p = payload["position"]
        return Position(int(p["step"]), int(p["epoch"]), int(p["batch"]), float(p["elapsed_s"]))
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} does not match the networks of this run's config ({detail}); "
                              f"{path} is left untouched") from e


# --- exported generators ---------------------------------------------------------------------------------
def export_generators(files: RunFiles, config: TrainConfig, trainer: CycleGANTrainer, position: Position) -> None:
    """G_A.safetensors (A -> B) and G_B.safetensors (B -> A) in the native format, each written atomically."""
    name_a, name_b = config.domain_names()
    extra = {"trained_by": "rtstyle train", "run": config.name, "step": position.step, "epoch": position.epoch}
    origins = generator_origins(config)
    for which, gen, direction in (("A", trainer.gen_ab, f"{name_a}->{name_b}"),
                                  ("B", trainer.gen_ba, f"{name_b}->{name_a}")):
        origin = {"init_from": origins[which]} if origins[which] else {}
        info = ModelInfo(config=gen.config, direction=direction, train_size=config.crop_size,
                         name=f"{config.name}_G_{which}", extra={**extra, **origin})
        save_generator(gen, files.generator(which), info)
