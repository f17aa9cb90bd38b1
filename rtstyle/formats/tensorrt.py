"""TensorRT engines: the engine file (JSON header + plan), the cache rules, and the build from ONNX.

A serialised TensorRT plan only runs on the GPU model, TensorRT version and CUDA major that built it, at the
precision and shape profile it was built for, and only means something for the weights it came from. So an
`.engine` written by rtstyle is `MAGIC | uint32 header length | JSON header | plan`, where the header holds
the artifact metadata (`rtstyle.formats.metadata.ArtifactMeta`) and the `EngineKey` it was built under.
Before loading, the key of the running machine is compared with the header's (`stale_reason`); any
difference means rebuild (or, without the source, a clear error), never a deserialisation that may crash
or mislead. Engines built on the fly are cached under `$RTSTYLE_HOME/cache/tensorrt/` with the key's digest
(which includes the CUDA device index) in the name. `prepare_engine` finds or builds the engine for a
weights file, an ONNX file or an existing engine; `build_engine` is the TensorRT 10 build: ONNX parser with
native InstanceNormalization (INormalizationLayer rather than the legacy plugin); FP16 enabled when asked,
every normalisation layer pinned to FP32 (InstanceNorm's variance in FP16 overflows; NVIDIA/TensorRT issue
3941: the precision has to be obeyed, not preferred); one optimisation profile; a workspace limit; a
timing cache reused across builds. Written against the documented TensorRT 10 API (weakly typed networks
are removed in TensorRT 11, hence `SUPPORTED_MAJOR` and the `tensorrt-cu12>=10,<11` extra). Only
`import_tensorrt`, `build_engine` and the device probe import tensorrt or need a GPU; the rest is tested
on machines without one, including `parser_problems`, which checks a graph (both upsampler layouts) against
the ONNX parser's documented restrictions before a build. UNTESTED ON REAL HARDWARE: no TensorRT has run this code yet.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import struct
from dataclasses import asdict, dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Callable

from ..errors import BackendUnavailable
from ..io.files import atomic_write
from ..transforms import MULTIPLE
from .metadata import INPUT_NAME, ArtifactError, ArtifactMeta, artifact_kind, norm_layer_count, sha256_file

MAGIC = b"RTSTYLE-TRT\x00"
_LENGTH = struct.Struct("<I")
HEADER_VERSION = 1
# Default range of a dynamic engine: 16 px (the smallest side the generator keeps meaningful: 16/4 = 4 at
# the bottleneck, enough for its reflection pads) up to 1080p, batch 1 to 8.
DYNAMIC_MIN_SIDE = 16
DYNAMIC_MAX_HW = (1080, 1920)
DEFAULT_MAX_BATCH = 8
DEFAULT_WORKSPACE_GB = 4.0
SUPPORTED_MAJOR = 10  # the weakly typed network API build_engine uses is gone in TensorRT 11
# Bump when build_engine's recipe changes (flags, precision pins, profile rule): older cached engines rebuild.
BUILD_RECIPE_VERSION = 2

Log = Callable[[str], None]


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
        """Fixed: exactly opt_hw at batch 1..max_batch. Dynamic: DYNAMIC_MIN_SIDE .. a square of max_hw's larger
        side, tuned for opt_hw (the expected processing size)."""
        if not dynamic:
            return cls((1, channels, *opt_hw), (1, channels, *opt_hw), (max_batch, channels, *opt_hw))
        # Square at the larger side: a portrait video (1080x1920 turned) must fit as well as a landscape one.
        side = max(*max_hw, *opt_hw)
        max_hw = (side, side)
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
    cuda_major: str = ""  # of the TensorRT wheel (tensorrt-cu12 -> "12"): a plan is tied to it
    recipe_version: int = BUILD_RECIPE_VERSION
    device_index: int = 0  # cuda:N it was built on; part of the cache name, not of `stale_reason`

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = self.profile.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EngineKey":
        return cls(gpu_name=d["gpu_name"], compute_capability=d["compute_capability"],
                   tensorrt_version=d["tensorrt_version"], precision=d["precision"],
                   profile=Profile.from_dict(d["profile"]), source_sha256=d["source_sha256"],
                   # headers written before these fields existed read as stale (rebuilt), never as current
                   cuda_major=d.get("cuda_major", ""), recipe_version=int(d.get("recipe_version", 1)),
                   device_index=int(d.get("device_index", 0)))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def stale_reason(found: EngineKey, wanted: EngineKey) -> str | None:
    """Why an engine built under `found` must not be used where `wanted` holds; None when it may be used."""
    if (found.gpu_name, found.compute_capability) != (wanted.gpu_name, wanted.compute_capability):
        return (f"built for {found.gpu_name} (compute capability {found.compute_capability}), "
                f"this GPU is {wanted.gpu_name} ({wanted.compute_capability})")
    if found.tensorrt_version != wanted.tensorrt_version:
        return f"built with TensorRT {found.tensorrt_version}, this is TensorRT {wanted.tensorrt_version}"
    if found.cuda_major != wanted.cuda_major:
        return f"built with TensorRT for CUDA {found.cuda_major or '?'}, this TensorRT is for CUDA {wanted.cuda_major}"
    if found.recipe_version != wanted.recipe_version:
        return f"built by engine recipe {found.recipe_version}, this rtstyle builds recipe {wanted.recipe_version}"
    if found.precision != wanted.precision:
        return f"built for {found.precision}, {wanted.precision} asked for"
    if found.source_sha256 != wanted.source_sha256:
        return "built from other weights (the model file changed since)"
    if found.profile != wanted.profile:
        return f"built for shape profile {found.profile.describe()}, {wanted.profile.describe()} asked for"
    return None


def write_engine(path: Path, plan: bytes, meta: ArtifactMeta, key: EngineKey, *, overwrite: bool = True) -> Path:
    """Write header + plan atomically (a reader never sees a half-written engine); `overwrite=False` refuses a
    file that appeared since the caller checked (`io.files.OutputAppeared`)."""
    header = json.dumps({"header_version": HEADER_VERSION, "engine_key": key.to_dict(),
                         "metadata": meta.to_strings()}, sort_keys=True).encode()
    payload = MAGIC + _LENGTH.pack(len(header)) + header

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.write(plan)

    atomic_write(Path(path), write, overwrite=overwrite)
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
    from ..store import cache_dir

    return cache_dir() / "tensorrt" / f"{stem}-{key.precision}-{key.digest()[:16]}.engine"


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(
            f"the tensorrt backend needs the TensorRT Python package ({e}); install it with "
            "`pip install -e '.[tensorrt]'` on a machine with an NVIDIA GPU and CUDA") from None
    reason = version_problem(trt.__version__)
    if reason:
        raise BackendUnavailable(reason)
    return trt


def version_problem(version: str) -> str | None:
    """Why TensorRT `version` cannot run rtstyle's engines (None when it can): only 10.x is supported."""
    match = re.match(r"(\d+)\.", version)
    if match and int(match.group(1)) == SUPPORTED_MAJOR:
        return None
    return (f"TensorRT {version} found; rtstyle's engine builder is written for TensorRT {SUPPORTED_MAJOR} "
            "(a plain `pip install tensorrt` now brings 11, which removed the API it uses): "
            "`pip install -e '.[tensorrt]'` installs tensorrt-cu12 10.x")


def cuda_major_of(distributions: list[str]) -> str:
    """The CUDA major a TensorRT wheel is built for, from the installed distribution names ('' if unknown).

    NVIDIA ships one wheel per CUDA major (tensorrt-cu11, tensorrt-cu12, tensorrt-cu13 and their
    `_libs`/`_bindings` parts); an engine built under one must not be loaded under another.
    """
    majors = {m.group(1) for name in distributions if (m := re.fullmatch(r"tensorrt[-_]cu(\d+)(?:[-_].*)?",
                                                                        name.lower()))}
    return majors.pop() if len(majors) == 1 else ""


def _installed_cuda_major() -> str:
    return cuda_major_of([d.metadata["Name"] or "" for d in importlib_metadata.distributions()])


@functools.cache
def trt_logger():
    """The process's one TensorRT logger: TensorRT documents a single logger shared by builder and runtimes."""
    trt = import_tensorrt()
    return trt.Logger(trt.Logger.WARNING)


def device_index(device: str | None) -> int:
    """The CUDA index a --device value names: 'cuda:1' -> 1; 'cuda' / None -> the current device.

    Raises BackendUnavailable (with the install hint) first where tensorrt or a CUDA GPU is missing.
    """
    import torch

    import_tensorrt()
    if not torch.cuda.is_available():
        raise BackendUnavailable("the tensorrt backend needs a CUDA GPU; none is usable here")
    if device is not None and torch.device(device).index is not None:
        return torch.device(device).index
    return torch.cuda.current_device()


def device_key_fields(index: int | None = None) -> dict:
    """GPU name, compute capability, TensorRT version and CUDA major of cuda:`index` (parts of the EngineKey)."""
    import torch

    trt = import_tensorrt()
    index = device_index(None if index is None else f"cuda:{index}")
    major, minor = torch.cuda.get_device_capability(index)
    return {"gpu_name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}",
            "tensorrt_version": trt.__version__, "cuda_major": _installed_cuda_major(), "device_index": index}


def engine_key(source_sha256: str, precision: str, profile: Profile, index: int) -> EngineKey:
    return EngineKey(precision=precision, profile=profile, source_sha256=source_sha256, **device_key_fields(index))


# The ONNX-TensorRT parser's documented restrictions on the ops rtstyle's graphs hold (onnx/onnx-tensorrt,
# docs/operators.md): Resize only in these modes; Conv/ConvTranspose weights and InstanceNormalization's scale
# and bias only as initializers (constants), not computed tensors.
TRT_RESIZE_MODES = {"mode": {"nearest", "linear"},
                    "coordinate_transformation_mode": {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn",
                                                       "asymmetric", "align_corners"},
                    "nearest_mode": {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}}
ONNX_DEFAULTS = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                 "nearest_mode": "round_prefer_floor"}  # the ONNX spec's defaults for an absent attribute
_CONSTANT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "InstanceNormalization": (1, 2)}


def parser_problems(model) -> list[str]:
    """What in `model` (an onnx.ModelProto) the TensorRT ONNX parser documents it cannot take; [] when nothing.

    Checked before a build so that a graph TensorRT would reject (a Resize in cubic mode, say, or weights that
    are computed) fails on any machine with the reason, not minutes into a GPU build with a parser message.
    """
    from onnx import helper

    constants = {i.name for i in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    problems = []
    for node in model.graph.node:
        name = node.name or node.op_type
        if node.op_type == "Resize":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            for attr, allowed in TRT_RESIZE_MODES.items():
                value = attrs.get(attr, ONNX_DEFAULTS[attr])
                value = value.decode() if isinstance(value, bytes) else value
                if value not in allowed:
                    problems.append(f"{name}: Resize {attr}={value!r} (TensorRT takes {', '.join(sorted(allowed))})")
        for index in _CONSTANT_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and node.input[index] not in constants:
                problems.append(f"{name}: {node.op_type} input {index} ({node.input[index]}) is computed, and "
                                "TensorRT needs it as an initializer")
    return problems


def build_engine(onnx_bytes: bytes, meta: ArtifactMeta, key: EngineKey, *, workspace_gb: float = DEFAULT_WORKSPACE_GB,
                 timing_cache: Path | None = None, log: Callable[[str], None] | None = None) -> bytes:
    """Serialised engine plan for `onnx_bytes` under `key` (precision, profile). Raises on parser errors."""
    trt = import_tensorrt()
    log = log or (lambda message: None)
    logger = trt_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    parser.set_flag(trt.OnnxParserFlag.NATIVE_INSTANCENORM)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX graph: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if key.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = _pin_normalisation_fp32(trt, network)
        expected = norm_layer_count(meta.info)
        if pinned != expected:
            raise RuntimeError(f"expected {expected} InstanceNorm layers in the TensorRT network, found {pinned} "
                               "normalisation layers: the ONNX graph is not what rtstyle exports")
        log(f"FP16 engine; {pinned} InstanceNorm layers kept in FP32")
    else:
        # TensorRT allows TF32 (10-bit mantissa) for fp32 layers by default on Ampere and newer; an "fp32"
        # engine that is meant to match PyTorch fp32 must not use it.
        config.clear_flag(trt.BuilderFlag.TF32)

    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, key.profile.min, key.profile.opt, key.profile.max)
    config.add_optimization_profile(profile)

    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        # A cache from another TensorRT or GPU is rejected: build without it (slower), never with a wrong one.
        log(f"the timing cache {timing_cache} does not match this TensorRT/GPU; building without it")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    log(f"building the TensorRT engine ({key.precision}, profile {key.profile.describe()}) on {key.gpu_name}: "
        "this takes a minute or two the first time")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see the TensorRT messages above)")
    if timing_cache is not None:
        serialized = config.get_timing_cache().serialize()
        atomic_write(timing_cache, lambda tmp: Path(tmp).write_bytes(bytes(serialized)))
    return bytes(plan)


def _pin_normalisation_fp32(trt, network) -> int:
    """Force every normalisation layer (and its output) to FP32; returns how many there were."""
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type != trt.LayerType.NORMALIZATION:
            continue
        layer.precision = trt.float32
        layer.set_output_type(0, trt.float32)
        layer.__class__ = trt.INormalizationLayer  # TensorRT's Python idiom to reach the subclass attributes
        layer.compute_precision = trt.float32  # accumulate mean and variance in FP32 too
        count += 1
    return count


def prepare_engine(source: Path, precision: str = "fp16", profile: Profile | None = None, out: Path | None = None,
                   workspace_gb: float = DEFAULT_WORKSPACE_GB, log: Log | None = None, onnx_model=None,
                   device: str | None = None, overwrite: bool = True, kind: str | None = None) -> Path:
    """Path of a current engine for `source` (weights, ONNX or an existing .engine), building it if needed.

    Without `out`, engines of weights/ONNX go to the cache; an existing .engine that is stale is rebuilt in
    place from the source recorded in its header (when that file still exists with the same content).
    `onnx_model` (an already checked ModelProto of `source`, from `export`) replaces the cached ONNX.
    `device` (cuda[:N]) is the GPU the engine is keyed by and built on (TensorRT builds on the current device).
    `overwrite=False` (export to a new `out`): a file that appeared there meanwhile is not replaced.
    """
    import torch

    from ..store import cache_dir
    from .onnx import cached_onnx, read_onnx_meta

    log = log or (lambda message: None)
    source = Path(source)
    index = device_index(device)
    kind = kind or artifact_kind(source)  # `kind`: already resolved by the caller (ModelRef.kind)
    if kind == "tensorrt":
        meta, key, _ = read_engine_header(source)
        wanted = engine_key(key.source_sha256, key.precision, key.profile, index)
        reason = stale_reason(key, wanted)
        if reason is None:
            return source
        origin = Path(meta.extra.get("source", ""))
        if not origin.is_file() or sha256_file(origin) != key.source_sha256:
            raise ArtifactError(f"{source} cannot be used here: {reason}; its source {origin or '(unknown)'} is gone "
                                "or changed, so rebuild it: `python cli.py export --format tensorrt --model SOURCE`")
        log(f"{source.name} is stale ({reason}): rebuilding it from {origin}")
        return prepare_engine(origin, key.precision, key.profile, out=source, workspace_gb=workspace_gb, log=log,
                              device=f"cuda:{index}")
    if kind not in ("weights", "onnx"):
        raise ArtifactError(f"{source}: a TensorRT engine is built from weights or ONNX, not from {kind}")

    import onnx

    digest = sha256_file(source)
    if onnx_model is None:
        onnx_path = cached_onnx(source, log) if kind == "weights" else source
        onnx_model = onnx.load(str(onnx_path))
    model = onnx_model
    meta = read_onnx_meta(model, str(source))
    problems = parser_problems(model)
    if problems:
        raise ArtifactError(f"{source}: TensorRT's ONNX parser cannot take this graph: " + "; ".join(problems[:5]))
    if profile is None:
        opt = (meta.info.train_size, meta.info.train_size) if meta.dynamic else (meta.height, meta.width)
        profile = Profile.for_shapes(meta.info.config.input_nc, opt, meta.dynamic)
    key = engine_key(digest, precision, profile, index)
    target = out or engine_cache_path(source.stem, key)
    if out is None and target.is_file():
        try:
            if stale_reason(read_engine_header(target)[1], key) is None:
                return target
        except ArtifactError as e:
            log(f"ignoring unreadable cached engine {target.name}: {e}")
    # The timing cache is only valid for one GPU model and TensorRT version, like the engines themselves.
    machine = f"{_slug(key.gpu_name)}-sm{key.compute_capability}-trt{key.tensorrt_version}-cu{key.cuda_major}"
    timing_cache = cache_dir() / "tensorrt" / f"timing-{machine}.cache"
    with torch.cuda.device(index):  # TensorRT builds for the current device: make it the one keyed
        plan = build_engine(model.SerializeToString(), meta, key, workspace_gb=workspace_gb,
                            timing_cache=timing_cache, log=log)
    engine_meta = meta.with_format("tensorrt", precision=precision, source_sha256=digest,
                                   extra={"source": str(source.resolve()), "profile": profile.to_dict()})
    write_engine(target, plan, engine_meta, key, overwrite=overwrite)
    log(f"engine written to {target}")
    return target


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()
