"""TensorRT engine files: the JSON header, the cache key and the rule that a foreign engine is never loaded.

A serialised TensorRT plan only runs on the GPU model and TensorRT version that built it, at the precision
and shape profile it was built for, and only means something for the weights it came from. So an
`.engine` written by rtstyle is `MAGIC | uint32 header length | JSON header | plan`, where the header holds
the artifact metadata (`rtstyle.artifacts.ArtifactMeta`) and the `EngineKey` it was built under. Before
loading, the key of the running machine is compared with the header's (`stale_reason`); any difference
means rebuild (or, without the source, a clear error), never a deserialisation that may crash or mislead.
Engines built on the fly are cached under `$RTSTYLE_HOME/cache/tensorrt/` with the key's digest in the
name. Nothing here imports tensorrt, so all of it is tested on machines without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from .artifacts import ArtifactError, ArtifactMeta, MULTIPLE
from .weights import atomic_write

MAGIC = b"RTSTYLE-TRT\x00"
_LENGTH = struct.Struct("<I")
HEADER_VERSION = 1
# Default range of a dynamic engine: 16 px (the smallest side the generator keeps meaningful: 16/4 = 4 at
# the bottleneck, enough for its reflection pads) up to 1080p, batch 1 to 8.
DYNAMIC_MIN_SIDE = 16
DYNAMIC_MAX_HW = (1080, 1920)
DEFAULT_MAX_BATCH = 8


Shape = tuple[int, int, int, int]  # (b, c, h, w)


@dataclass(frozen=True)
class Profile:
    """A TensorRT optimisation profile for the single input: min, opt and max (b, c, h, w)."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if not 1 <= lo <= mid <= hi:
                raise ValueError(f"profile needs 1 <= min <= opt <= max per dimension, got {self}")
        if any(s % MULTIPLE for shape in (self.min, self.opt, self.max) for s in shape[2:]):
            raise ValueError(f"profile sides must be multiples of {MULTIPLE}, got {self}")

    @classmethod
    def for_shapes(cls, channels: int, opt_hw: tuple[int, int], dynamic: bool, max_batch: int = DEFAULT_MAX_BATCH,
                   max_hw: tuple[int, int] = DYNAMIC_MAX_HW) -> "Profile":
        """Fixed: exactly opt_hw at batch 1..max_batch. Dynamic: DYNAMIC_MIN_SIDE .. max_hw, tuned for opt_hw."""
        if not dynamic:
            return cls((1, channels, *opt_hw), (1, channels, *opt_hw), (max_batch, channels, *opt_hw))
        max_hw = (max(max_hw[0], opt_hw[0]), max(max_hw[1], opt_hw[1]))
        return cls((1, channels, DYNAMIC_MIN_SIDE, DYNAMIC_MIN_SIDE), (1, channels, *opt_hw),
                   (max_batch, channels, *max_hw))

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def to_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))  # type: ignore[arg-type]

    def describe(self) -> str:
        fmt = lambda s: f"{s[0]}x{s[1]}x{s[2]}x{s[3]}"  # noqa: E731
        return f"min {fmt(self.min)}, opt {fmt(self.opt)}, max {fmt(self.max)}"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine plan depends on; two engines with equal keys are interchangeable."""

    gpu_name: str
    compute_capability: str  # "9.0"
    tensorrt_version: str
    precision: str  # "fp16" or "fp32"
    profile: Profile
    source_sha256: str  # of the weights (or ONNX) the engine was built from

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = self.profile.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EngineKey":
        return cls(gpu_name=d["gpu_name"], compute_capability=d["compute_capability"],
                   tensorrt_version=d["tensorrt_version"], precision=d["precision"],
                   profile=Profile.from_dict(d["profile"]), source_sha256=d["source_sha256"])

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def stale_reason(found: EngineKey, wanted: EngineKey) -> str | None:
    """Why an engine built under `found` must not be used where `wanted` holds; None when it may be used."""
    if (found.gpu_name, found.compute_capability) != (wanted.gpu_name, wanted.compute_capability):
        return (f"built for {found.gpu_name} (compute capability {found.compute_capability}), "
                f"this GPU is {wanted.gpu_name} ({wanted.compute_capability})")
    if found.tensorrt_version != wanted.tensorrt_version:
        return f"built with TensorRT {found.tensorrt_version}, this is TensorRT {wanted.tensorrt_version}"
    if found.precision != wanted.precision:
        return f"built for {found.precision}, {wanted.precision} asked for"
    if found.source_sha256 != wanted.source_sha256:
        return "built from other weights (the model file changed since)"
    if found.profile != wanted.profile:
        return f"built for shape profile {found.profile.describe()}, {wanted.profile.describe()} asked for"
    return None


def write_engine(path: Path, plan: bytes, meta: ArtifactMeta, key: EngineKey) -> Path:
    """Write header + plan atomically (a reader never sees a half-written engine)."""
    header = json.dumps({"header_version": HEADER_VERSION, "engine_key": key.to_dict(),
                         "metadata": meta.to_strings()}, sort_keys=True).encode()
    payload = MAGIC + _LENGTH.pack(len(header)) + header

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.write(plan)

    atomic_write(Path(path), write)
    return Path(path)


def read_engine_header(path: Path) -> tuple[ArtifactMeta, EngineKey, int]:
    """(metadata, key, byte offset of the plan) of an rtstyle engine file, without reading the plan."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            raise ArtifactError(
                f"{path}: not an rtstyle TensorRT engine (no rtstyle header): a bare plan from trtexec or "
                "another tool carries no metadata; build it with `python cli.py export --format tensorrt`")
        raw_length = f.read(_LENGTH.size)
        if len(raw_length) != _LENGTH.size:
            raise ArtifactError(f"{path}: truncated engine header")
        (length,) = _LENGTH.unpack(raw_length)
        raw = f.read(length)
    if len(raw) != length:
        raise ArtifactError(f"{path}: truncated engine header ({len(raw)} of {length} bytes)")
    try:
        header = json.loads(raw)
        if int(header.get("header_version", 0)) > HEADER_VERSION:
            raise ArtifactError(f"{path}: engine header version {header['header_version']} is newer than this "
                                "rtstyle understands; upgrade rtstyle")
        key = EngineKey.from_dict(header["engine_key"])
        meta = ArtifactMeta.from_strings(header["metadata"], str(path))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ArtifactError):
            raise
        raise ArtifactError(f"{path}: malformed engine header: {e!r}") from e
    return meta, key, len(MAGIC) + _LENGTH.size + length


def read_engine(path: Path) -> tuple[ArtifactMeta, EngineKey, bytes]:
    meta, key, offset = read_engine_header(path)
    with open(path, "rb") as f:
        f.seek(offset)
        plan = f.read()
    if not plan:
        raise ArtifactError(f"{path}: the engine header is there but the plan is empty (truncated file?)")
    return meta, key, plan


def engine_cache_path(stem: str, key: EngineKey) -> Path:
    from .store import cache_dir

    return cache_dir() / "tensorrt" / f"{stem}-{key.precision}-{key.digest()[:16]}.engine"
