"""Starting a run from trained networks: generators to fine-tune, or a reference run to continue.

`--init-from-a MODEL` / `--init-from-b MODEL` start G_A (gen_ab) / G_B (gen_ba) from any generator that
`--model` accepts, read by `rtstyle.weights.load_model`: a native `.safetensors`, a reference `.pth` (also
with the InstanceNorm buffers of PyTorch < 0.4 and DataParallel `module.` prefixes), or a store name such as
horse2zebra. The discriminators start fresh: they have yet to learn the new pair of domains.

`--continue-from checkpoints/NAME` reads the four files the reference's `BaseModel.save_networks` writes,
as its `--continue_train --epoch latest` does: `latest_net_G_A.pth` and `latest_net_G_B.pth` are gen_ab and
gen_ba, `latest_net_D_A.pth` (D_A judges domain B) is disc_b and `latest_net_D_B.pth` disc_a. Optimisers
start fresh there too, as the reference saves none; `--epoch-count` says where its lr schedule stood.

The architecture comes from the files: ngf and n_blocks (and, from a checkpoint folder, ndf) left at their
defaults are taken from them, and anything else that differs from the run's config is refused, naming it.
The files are checked before any image is read, and only for a new run: a resumed one has them in last.pt.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rtstyle.models import GeneratorConfig
from rtstyle.weights import WeightsError, load_model

from .config import TrainConfig
from .networks import build_discriminator

# Reference file per network, in the reference's names (its D_A opposes G_A, so it judges domain B images).
REFERENCE_FILES = {"gen_ab": "latest_net_G_A.pth", "gen_ba": "latest_net_G_B.pth",
                   "disc_b": "latest_net_D_A.pth", "disc_a": "latest_net_D_B.pth"}
GENERATORS = {"gen_ab": ("--init-from-a", "G_A"), "gen_ba": ("--init-from-b", "G_B")}
LABELS = {"gen_ab": "G_A (A -> B)", "gen_ba": "G_B (B -> A)", "disc_a": "the discriminator of A (reference D_B)",
          "disc_b": "the discriminator of B (reference D_A)"}
ADOPTED = ("ngf", "n_blocks")  # generator fields taken from the model when left at their defaults
# Buffers a reference InstanceNorm layer had before PyTorch 0.4 (its __patch_instance_norm_state_dict drops them).
_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class InitialWeights:
    """What a new run starts from: its config (architecture adopted), and state dicts by network name."""

    config: TrainConfig
    states: dict[str, dict[str, torch.Tensor]]
    sources: dict[str, str]  # network name -> the file or model name it comes from

    def describe(self) -> list[str]:
        return [f"{LABELS[name]} starts from {source}" for name, source in self.sources.items()]


def starts_from_weights(config: TrainConfig) -> bool:
    return bool(config.init_from_a or config.init_from_b or config.continue_from)


def generator_origins(config: TrainConfig) -> dict[str, str | None]:
    """Where G_A and G_B ("A", "B") started, recorded in the saved generators' metadata (None: fresh)."""
    if config.continue_from:
        return {"A": str(Path(config.continue_from) / REFERENCE_FILES["gen_ab"]),
                "B": str(Path(config.continue_from) / REFERENCE_FILES["gen_ba"])}
    return {"A": config.init_from_a, "B": config.init_from_b}


def reference_checkpoint_files(folder: Path) -> dict[str, Path]:
    """The four files of a reference checkpoint folder, by network name; names every missing one."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--continue-from {folder}: not a folder (expected the reference's "
                                f"checkpoints/NAME holding {', '.join(REFERENCE_FILES.values())})")
    files = {name: folder / file for name, file in REFERENCE_FILES.items()}
    missing = [path.name for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"--continue-from {folder}: {', '.join(missing)} missing; a reference checkpoint "
                                f"folder holds {', '.join(REFERENCE_FILES.values())} (the reference's "
                                "train.py saves all four with --epoch latest)")
    return files


def load_initial_weights(config: TrainConfig) -> InitialWeights:
    """Read, check and adopt what `config` starts from (see the module docstring)."""
    if config.continue_from:
        folder = Path(config.continue_from).expanduser().resolve()
        files = reference_checkpoint_files(folder)
        specs = {name: str(files[name]) for name in GENERATORS}
        config = dataclasses.replace(config, continue_from=str(folder))
    else:
        files = {}
        specs = {name: spec for name, spec in (("gen_ab", config.init_from_a), ("gen_ba", config.init_from_b))
                 if spec}
    generators = {name: _read_generator(spec, GENERATORS[name][0]) for name, spec in specs.items()}
    discs = {name: _read_reference_state(files[name], config.norm) for name in ("disc_a", "disc_b") if files}

    config = _adopt(config, {name: g.config for name, (g, _) in generators.items()}, discs)
    for name, (generator, source) in generators.items():
        _check_generator(generator.config, config.generator, source, GENERATORS[name])
    for name, state in discs.items():
        _check_discriminator(state, config, files[name])
    states = {name: generator.state_dict() for name, (generator, _) in generators.items()}
    states.update(discs)
    sources = {name: source for name, (_, source) in generators.items()}
    sources.update({name: str(files[name]) for name in discs})
    return InitialWeights(config, states, sources)


def apply_initial_weights(trainer, initial: InitialWeights) -> None:
    """Load the checked states into the trainer's networks (strict: every tensor, same shapes)."""
    for name, state in initial.states.items():
        trainer.nets[name].load_state_dict(state)


def _read_generator(spec: str, flag: str):
    """(generator, source) of one --init-from-* value; a path is made absolute so the record stays valid."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / REFERENCE_FILES["gen_ab"]).is_file():
        raise ValueError(f"{flag} {spec} is a reference checkpoint folder: use --continue-from {spec} to load its "
                         f"four networks, or {flag} {path / REFERENCE_FILES['gen_ab']} for one generator")
    try:
        generator, _ = load_model(spec)
    except (WeightsError, FileNotFoundError) as e:
        raise type(e)(f"{flag}: {e}") from e
    return generator, str(path.resolve()) if path.exists() else spec


def _adopt(config: TrainConfig, generators: dict[str, GeneratorConfig], discs: dict[str, dict]) -> TrainConfig:
    """`config` with the fields left at their defaults taken from the loaded networks (when they agree)."""
    defaults = TrainConfig()
    changes: dict = {"init_from_a": _absolute(config.init_from_a), "init_from_b": _absolute(config.init_from_b)}
    for field in ADOPTED:
        found = {getattr(g, field) for g in generators.values()}
        if len(found) == 1 and getattr(config, field) == getattr(defaults, field):
            changes[field] = found.pop()
    ndfs = {int(_first_conv(state).shape[0]) for state in discs.values() if _first_conv(state) is not None}
    if len(ndfs) == 1 and config.ndf == defaults.ndf:
        changes["ndf"] = ndfs.pop()
    return dataclasses.replace(config, **changes)


def _absolute(spec: str | None) -> str | None:
    if spec and Path(spec).expanduser().exists():
        return str(Path(spec).expanduser().resolve())
    return spec


def _describe(g: GeneratorConfig) -> str:
    return (f"ngf {g.ngf}, n_blocks {g.n_blocks}, norm {g.norm}, dropout {'on' if g.dropout else 'off'}, "
            f"{g.input_nc} -> {g.output_nc} channels")


def _check_generator(model: GeneratorConfig, run: GeneratorConfig, source: str, names: tuple[str, str]) -> None:
    differ = [f"{f.name} {getattr(model, f.name)} (run: {getattr(run, f.name)})"
              for f in dataclasses.fields(GeneratorConfig) if getattr(model, f.name) != getattr(run, f.name)]
    if differ:
        flag, net = names
        raise WeightsError(f"{flag} {source}: its generator ({_describe(model)}) does not match this run's {net} "
                           f"({_describe(run)}); differs: {', '.join(differ)}. --ngf and --n-blocks left at "
                           "their defaults are taken from the model; set the others (--norm, --dropout) to match")


def _read_reference_state(path: Path, norm: str) -> dict[str, torch.Tensor]:
    """A reference discriminator .pth as a plain state dict (weights_only), legacy keys cleaned."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"{path}: not a readable PyTorch state dict ({detail})") from e
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), as the reference's save_networks writes")
    state = {}
    for key, value in raw.items():
        key = key.removeprefix("module.")  # saved from nn.DataParallel
        if norm == "instance" and key.endswith(_NORM_STATS):
            continue
        state[key] = value.float()
    return state


def _first_conv(state: dict[str, torch.Tensor]) -> torch.Tensor | None:
    return state.get("model.0.weight", state.get("net.0.weight"))  # NLayerDiscriminator / PixelDiscriminator


def _check_discriminator(state: dict[str, torch.Tensor], config: TrainConfig, path: Path) -> None:
    with torch.device("meta"):  # shapes only: no memory, no draws from the RNG
        expected: nn.Module = build_discriminator(config.ndf, config.n_layers_d, config.norm, netd=config.netd)
    want = {k: tuple(v.shape) for k, v in expected.state_dict().items()}
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    wrong = [f"{k} {tuple(state[k].shape)} (run: {shape})" for k, shape in want.items()
             if k in state and tuple(state[k].shape) != shape]
    if missing or unexpected or wrong:
        found = (("missing", missing), ("unexpected", unexpected), ("wrong shapes", wrong))
        parts = [f"{label} {items[:6]}{' ...' if len(items) > 6 else ''}" for label, items in found if items]
        raise WeightsError(f"{path}: does not match this run's discriminator (--netd {config.netd}, --ndf "
                           f"{config.ndf}, --n-layers-d {config.n_layers_d}, --norm {config.norm}): "
                           f"{'; '.join(parts)}. Set those to the reference run's")
