"""Saving and loading generators: the self-describing native format and the reference's `.pth` files.

Native format: safetensors whose header metadata key "rtstyle" holds JSON with the generator config, the
direction ("horse->zebra"), the training image size and a format version, so `load_generator(path)` needs
no flags (nanoGPT's checkpoint `model_args`, timm's `PretrainedCfg`). Reference `.pth` files (official
downloads, or `latest_net_G_A.pth` from the reference's training) are plain state dicts: they are read with
`torch.load(weights_only=True)` and their architecture is inferred from the tensor shapes.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .errors import UserError
from .io.files import atomic_write
from .models import GeneratorConfig, ResnetGenerator

FORMAT_VERSION = 1
METADATA_KEY = "rtstyle"


class WeightsError(UserError):
    """A weights file that cannot be loaded as a generator; the message says what was expected."""


@dataclass(frozen=True)
class ModelInfo:
    """What a weights file says about the generator inside it."""

    config: GeneratorConfig
    direction: str | None = None  # "horse->zebra"; None when unknown (imported without --direction)
    train_size: int = 256  # crop size the generator was trained at; the natural processing size
    name: str | None = None
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)  # free-form provenance (training command, source file)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": self.format_version,
                "generator": self.config.to_dict(),
                "direction": self.direction,
                "train_size": self.train_size,
                "name": self.name,
                "extra": self.extra,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> "ModelInfo":
        d = json.loads(text)
        version = int(d.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise WeightsError(
                f"weights format version {version} is newer than this rtstyle understands ({FORMAT_VERSION}); "
                "upgrade rtstyle"
            )
        return cls(
            config=GeneratorConfig.from_dict(d["generator"]),
            direction=d.get("direction"),
            train_size=int(d.get("train_size", 256)),
            name=d.get("name"),
            format_version=version,
            extra=d.get("extra") or {},
        )


def save_generator(generator: ResnetGenerator, path: str | Path, info: ModelInfo | None = None, *,
                   overwrite: bool = True) -> Path:
    """Write `generator` to `path` (.safetensors) with its metadata, atomically; `overwrite=False` for a name
    checked free at start (the store): a file that appeared meanwhile is then not replaced (`OutputAppeared`)."""
    from safetensors.torch import save_file

    path = Path(path)
    info = info or ModelInfo(config=generator.config)
    if info.config != generator.config:
        raise ValueError(f"info.config {info.config} does not describe this generator ({generator.config})")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in generator.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={METADATA_KEY: info.to_json()}),
                 overwrite=overwrite)
    return path


def read_info(path: str | Path) -> ModelInfo:
    """The metadata of a native weights file, without loading the tensors."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"{path}: not a readable safetensors file ({e}); was it fully written?") from e
    if METADATA_KEY not in meta:
        raise WeightsError(
            f"{path}: safetensors file without rtstyle metadata (keys {sorted(meta)}); "
            "convert the original .pth with `python cli.py import-weights FILE.pth --name NAME`"
        )
    try:
        return ModelInfo.from_json(meta[METADATA_KEY])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{path}: malformed rtstyle metadata: {e}") from e


def _load_native(path: Path) -> tuple[ResnetGenerator, ModelInfo]:
    from safetensors.torch import load_file

    info = read_info(path)
    try:
        state = load_file(str(path))
    except Exception as e:
        raise WeightsError(f"{path}: tensors could not be read ({e}); the file may be truncated") from e
    generator = ResnetGenerator(info.config)
    _load_state_checked(generator, state, path)
    return generator, info


# Keys an InstanceNorm layer carried in checkpoints saved by PyTorch < 0.4 (official files predate it);
# the reference strips them in __patch_instance_norm_state_dict.
_NORM_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.weight$")


def infer_config(state: dict[str, torch.Tensor]) -> GeneratorConfig:
    """The generator config a reference state dict was saved from, read off its keys and shapes."""
    first = state.get("model.1.weight")
    if first is None or first.ndim != 4 or tuple(first.shape[2:]) != (7, 7):
        raise WeightsError("no 'model.1.weight' 7x7 conv: this is not a ResNet generator state dict")
    blocks: set[int] = set()
    conv_indices: set[int] = set()
    for key in state:
        m = _BLOCK_KEY.match(key)
        if m:
            blocks.add(int(m.group(1)))
            conv_indices.add(int(m.group(2)))
    # conv_block layout: pad, conv(1), norm, relu, [dropout], pad, conv(5, or 6 with dropout), norm
    dropout = 6 in conv_indices
    # Only instance norm gives the convs a bias (reference use_bias); batch norm has affine weights, none nothing.
    norm = "instance" if "model.1.bias" in state else "batch" if "model.2.weight" in state else "none"
    return GeneratorConfig(
        ngf=int(first.shape[0]),
        n_blocks=len(blocks),
        norm=norm,
        dropout=dropout,
        input_nc=int(first.shape[1]),
        output_nc=_output_nc(state),
    )


def _output_nc(state: dict[str, torch.Tensor]) -> int:
    last = max((int(k.split(".")[1]) for k in state if re.match(r"^model\.\d+\.weight$", k)), default=None)
    return int(state[f"model.{last}.weight"].shape[0]) if last is not None else 3


def _clean_reference_state(state: dict, instance_norm: bool) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict):
        raise WeightsError(f"expected a state dict (name -> tensor), found a {type(state).__name__}")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    cleaned = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"entry {key!r} is a {type(value).__name__}, not a tensor: not a plain state dict")
        if key.startswith("module."):  # saved from nn.DataParallel
            key = key[len("module.") :]
        if instance_norm and key.endswith(_NORM_STAT_SUFFIXES):
            continue
        cleaned[key] = value
    return cleaned


def _describe(state: dict[str, torch.Tensor], limit: int = 6) -> str:
    items = list(state.items())
    head = ", ".join(f"{k} {tuple(v.shape)}" for k, v in items[:limit])
    more = f", ... ({len(items)} tensors)" if len(items) > limit else ""
    return head + more


def _load_state_checked(generator: ResnetGenerator, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = generator.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:4]}")
        raise WeightsError(
            f"{source}: does not match a ResNet generator {generator.config}: {'; '.join(parts)}. "
            f"The file holds: {_describe(state)}"
        )
    generator.load_state_dict({k: v.float() for k, v in state.items()})


# What a file torch.save wrote starts with: a zip archive (PyTorch >= 1.6) or a pickle (protocol 2+, older).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _torch_load_plain(path: Path):
    """`torch.load(weights_only=True)` of `path`, with errors that say what the file is.

    PyTorch's own message for a refused pickle advises retrying with `weights_only=False`, which would run
    the file's code; that advice is never passed on (the file is the user's, maybe from anywhere). Random
    bytes get the same UnpicklingError, so the file's first bytes tell a foreign file from a refused one.
    """
    if not path.is_file():
        raise WeightsError(f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(_TORCH_MAGIC):
        raise WeightsError(f"{path}: not a PyTorch file (it starts with {head!r}, not a zip archive or a pickle "
                           "as torch.save writes); expected a reference CycleGAN .pth such as latest_net_G_A.pth")
    try:
        # weights_only: tensors and plain containers only; a pickle that would run code is refused.
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _unpickling_reason(str(e))
        if "GLOBAL" in reason:
            raise WeightsError(f"{path}: refused to load: it holds Python objects other than tensors ({reason}); "
                               "only plain state dicts are accepted, and rtstyle never runs code from a weights "
                               "file") from None
        raise WeightsError(f"{path}: not a readable PyTorch file ({reason}); it is damaged or truncated") from None
    except (EOFError, RuntimeError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable PyTorch file ({e}); it may be truncated or not a .pth") from None


def _unpickling_reason(message: str) -> str:
    """The line of torch's weights_only error that says what was found, without its advice paragraphs."""
    advice = ("Weights only load failed", "Check the documentation", "Please file an issue", "weights_only")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(advice) and "weights_only" not in line]
    return "; ".join(kept)[:200] or "an unsupported pickle"


def load_reference_pth(path: str | Path) -> tuple[ResnetGenerator, ModelInfo]:
    """A reference CycleGAN `.pth` (plain state dict) -> generator, with its config inferred from the shapes."""
    path = Path(path)
    raw = _torch_load_plain(path)
    first_pass = _clean_reference_state(raw, instance_norm=False)
    try:
        config = infer_config(first_pass)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}. The file holds: {_describe(first_pass)}") from None
    state = _clean_reference_state(raw, instance_norm=config.norm == "instance")
    generator = ResnetGenerator(config)
    _load_state_checked(generator, state, path)
    return generator, ModelInfo(config=config, name=path.stem, extra={"imported_from": path.name})


def load_model(source: str | Path, device: str | torch.device = "cpu") -> tuple[ResnetGenerator, ModelInfo]:
    """A generator (eval mode) and its info from a path or a model-store name (see `rtstyle.store`)."""
    from .store import resolve_model

    path = resolve_model(source)
    if path.suffix == ".pth" or path.suffix == ".pt":
        generator, info = load_reference_pth(path)
        from .store import OFFICIAL_DIRECTIONS

        if info.direction is None and path.stem in OFFICIAL_DIRECTIONS:
            info = replace(info, direction=OFFICIAL_DIRECTIONS[path.stem])
    elif path.suffix == ".safetensors":
        generator, info = _load_native(path)
    else:
        raise WeightsError(f"{path}: unknown weights format {path.suffix!r}; expected .safetensors or .pth")
    return generator.to(device).eval(), info


def load_generator(source: str | Path, device: str | torch.device = "cpu") -> ResnetGenerator:
    """Rebuild the generator stored at `source` (path or store name) from the file alone; eval mode."""
    return load_model(source, device)[0]
