"""Compiled artifacts (ONNX, TensorRT engine, OpenVINO IR): what kind a `--model` path is, and what it says.

Every artifact carries the same metadata as the safetensors weights it came from (style guide point 4:
a runtime reads it instead of flags): the generator config, direction and training size (`ModelInfo`),
plus how the graph must be fed: NCHW RGB float32 in [-1, 1], sides multiples of 4, and either a fixed
(h, w) or any size (`--dynamic`). `ArtifactMeta.to_strings()` gives a flat {str: str} map stored as ONNX
`metadata_props`, OpenVINO `rt_info` and the JSON header of an `.engine` file; `from_strings` reads it back.
`new_meta` is the one builder of a new artifact's metadata and `cached_conversion` the one cache of
on-the-fly conversions. No heavy import here: every format and backend module imports this one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from importlib import metadata as importlib_metadata
from pathlib import Path

from ..errors import UserError
from ..transforms import MULTIPLE
from ..weights import ModelInfo, WeightsError

ARTIFACT_VERSION = 1
INPUT_NAME = "input"  # (b, 3, h, w) float32, RGB, [-1, 1]
OUTPUT_NAME = "output"  # (b, 3, h, w) float32, RGB, [-1, 1] (tanh)
INPUT_RANGE = (-1.0, 1.0)  # reference transform: Normalize((0.5,) * 3, (0.5,) * 3)
PREFIX = "rtstyle."  # namespace of our keys inside metadata_props / rt_info

# Artifact kind of each --model suffix; "weights" are .safetensors / .pth files loaded into torch.
SUFFIX_KIND = {".safetensors": "weights", ".pth": "weights", ".pt": "weights", ".onnx": "onnx",
               ".engine": "tensorrt", ".xml": "openvino"}


class ArtifactError(WeightsError, UserError):
    """An artifact that cannot be used (no rtstyle metadata, wrong input size); the message says why."""


def artifact_kind(path: str | Path) -> str:
    """'weights', 'onnx', 'tensorrt' or 'openvino' for an existing path (an OpenVINO folder counts)."""
    path = Path(path)
    if path.is_dir():
        from .openvino import openvino_xml

        openvino_xml(path)  # raises with a clear message when the folder holds no IR
        return "openvino"
    kind = SUFFIX_KIND.get(path.suffix.lower())
    if kind is None:
        raise ArtifactError(f"{path}: unknown model format {path.suffix!r}; expected "
                            f"{', '.join(SUFFIX_KIND)} or an OpenVINO folder")
    return kind


@dataclass(frozen=True)
class ArtifactMeta:
    """What an exported artifact says about itself (stored as flat strings, see module docstring)."""

    info: ModelInfo
    format: str  # "onnx", "tensorrt" or "openvino"
    dynamic: bool  # any (h, w) that is a multiple of 4; else exactly `height` x `width`
    height: int | None = None
    width: int | None = None
    precision: str = "fp32"  # of the weights/engine: fp32 (onnx, openvino) or fp16/fp32 (tensorrt)
    opset: int | None = None
    source_sha256: str | None = None  # of the weights the artifact was made from: a stale cache is detectable
    versions: dict = field(default_factory=dict)  # torch, onnx, openvino, tensorrt, rtstyle at export time
    extra: dict = field(default_factory=dict)  # format-specific: TensorRT profile, cache key

    def __post_init__(self) -> None:
        if not self.dynamic and (self.height is None or self.width is None):
            raise ValueError("a fixed-size artifact needs height and width")

    @property
    def size_policy(self) -> str:
        return f"dynamic (any size, multiples of {MULTIPLE})" if self.dynamic else f"fixed {self.height}x{self.width}"

    def to_strings(self) -> dict[str, str]:
        return {
            PREFIX + "artifact_version": str(ARTIFACT_VERSION),
            PREFIX + "format": self.format,
            PREFIX + "model": self.info.to_json(),  # generator config, direction, train size, name
            PREFIX + "direction": self.info.direction or "",  # duplicated for humans reading Netron
            PREFIX + "input": json.dumps({"name": INPUT_NAME, "output": OUTPUT_NAME, "layout": "NCHW",
                                          "channels": "RGB", "dtype": "float32", "range": list(INPUT_RANGE),
                                          "multiple": MULTIPLE}),
            PREFIX + "size_policy": json.dumps({"dynamic": self.dynamic, "height": self.height,
                                                "width": self.width, "text": self.size_policy}),
            PREFIX + "precision": self.precision,
            PREFIX + "opset": "" if self.opset is None else str(self.opset),
            PREFIX + "source_sha256": self.source_sha256 or "",
            PREFIX + "versions": json.dumps(self.versions, sort_keys=True),
            PREFIX + "extra": json.dumps(self.extra, sort_keys=True),
        }

    @classmethod
    def from_strings(cls, strings: dict[str, str], where: str = "artifact") -> "ArtifactMeta":
        if PREFIX + "model" not in strings:
            raise ArtifactError(
                f"{where}: no rtstyle metadata (keys {sorted(strings)[:8]}); only artifacts written by "
                "`python cli.py export` can be run, since the metadata says how to feed them")
        try:
            version = int(strings.get(PREFIX + "artifact_version", "0"))
            if version > ARTIFACT_VERSION:
                raise ArtifactError(f"{where}: artifact version {version} is newer than this rtstyle "
                                    f"understands ({ARTIFACT_VERSION}); upgrade rtstyle")
            size = json.loads(strings[PREFIX + "size_policy"])
            opset = strings.get(PREFIX + "opset", "")
            return cls(
                info=ModelInfo.from_json(strings[PREFIX + "model"]),
                format=strings[PREFIX + "format"],
                dynamic=bool(size["dynamic"]),
                height=size.get("height"),
                width=size.get("width"),
                precision=strings.get(PREFIX + "precision", "fp32"),
                opset=int(opset) if opset else None,
                source_sha256=strings.get(PREFIX + "source_sha256") or None,
                versions=json.loads(strings.get(PREFIX + "versions", "{}")),
                extra=json.loads(strings.get(PREFIX + "extra", "{}")),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ArtifactError):
                raise
            raise ArtifactError(f"{where}: malformed rtstyle metadata: {e!r}") from e

    def with_format(self, fmt: str, **changes) -> "ArtifactMeta":
        return replace(self, format=fmt, **changes)

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise a clear error when a (b, 3, h, w) input cannot go through this artifact."""
        if len(shape) != 4 or shape[1] != self.info.config.input_nc:
            raise ArtifactError(f"expected input (b, {self.info.config.input_nc}, h, w), got {tuple(shape)}")
        h, w = shape[2], shape[3]
        if h % MULTIPLE or w % MULTIPLE:
            raise ArtifactError(f"input {h}x{w}: sides must be multiples of {MULTIPLE} (rtstyle.transforms pads)")
        if not self.dynamic and (h, w) != (self.height, self.width):
            raise ArtifactError(
                f"this {self.format} artifact was exported for fixed {self.height}x{self.width} inputs, got {h}x{w}: "
                f"export again with --dynamic (any size) or with --size {h}x{w}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (absent ones are skipped), plus rtstyle's."""
    from .. import __version__

    found = {"rtstyle": __version__}
    for name in names:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def norm_layer_count(info: ModelInfo) -> int:
    """InstanceNorm layers in a ResNet generator: c7s1, two downs, two per block, two ups."""
    return 5 + 2 * info.config.n_blocks


def new_meta(info: ModelInfo, fmt: str, dynamic: bool, height: int | None, width: int | None,
             source_sha256: str | None = None, **changes) -> ArtifactMeta:
    """The metadata of a new artifact of `fmt`; a fixed (h, w) is dropped for a dynamic one.

    Format-specific fields (ONNX opset, library versions, TensorRT profile) are set by the format's module.
    """
    return ArtifactMeta(info=info, format=fmt, dynamic=dynamic, height=None if dynamic else height,
                        width=None if dynamic else width, source_sha256=source_sha256, **changes)


def cached_conversion(weights_path: Path, kind: str, suffix: str, make, log, check=None) -> Path:
    """`make(target, generator, meta)` once per weights content, kept under `$RTSTYLE_HOME/cache/<kind>`.

    The on-the-fly artifacts `--backend onnxruntime/openvino/tensorrt` need for a weights file; each takes
    seconds to make, so they are keyed by the weights' sha256 and reused. `check = (runner, tolerance)`:
    before it is kept, `runner(target)` must reproduce eager fp32 PyTorch within `tolerance` max abs on two
    input sizes (the dynamic dims), as `export` checks the files it writes; else nothing is cached.
    """
    from ..store import cache_dir
    from ..weights import load_model

    digest = sha256_file(weights_path)
    target = cache_dir() / kind / f"{weights_path.stem}-{digest[:16]}{suffix}"
    if target.is_file():
        return target
    if log:
        log(f"converting {weights_path.name} to {kind} once (cached in {target.parent})")
    generator, info = load_model(weights_path)
    make(target, generator, new_meta(info, kind, True, None, None, source_sha256=digest))
    if check is not None:
        runner, tolerance = check
        error = conversion_error(runner(target), generator, info.config.input_nc)
        if error > tolerance:
            for made in (target, target.with_suffix(".bin")):
                made.unlink(missing_ok=True)
            raise ArtifactError(f"the {kind} conversion of {weights_path} differs from PyTorch by {error:.3g} max "
                                f"abs (> {tolerance:g}); nothing was cached. Run it with --backend torch, and "
                                "please report this model")
    return target


def conversion_error(run, generator, channels: int) -> float:
    """Max abs difference of `run(x)` from eager fp32 `generator(x)` on two fixed inputs of odd sizes."""
    import torch

    seeded = torch.Generator().manual_seed(0)
    worst = 0.0
    for hw in ((36, 44), (52, 28)):
        x = torch.rand(1, channels, *hw, generator=seeded) * 2 - 1
        with torch.no_grad():
            expected = generator.eval().float()(x)
        worst = max(worst, float((run(x).float() - expected).abs().max()))
    return worst
