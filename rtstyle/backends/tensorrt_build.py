"""Building a TensorRT engine from an rtstyle ONNX graph with the TensorRT 10 Python API.

Used by `export --format tensorrt` (engines/) and by the tensorrt backend on first use. The build:
ONNX parser with native InstanceNormalization (TensorRT's INormalizationLayer rather than the legacy
plugin); FP16 enabled when asked, but every normalisation layer pinned to FP32 (input, compute and
output), because InstanceNorm's variance in FP16 overflows or loses the small differences the generator
relies on (TensorRT's own warning about normalisation layers in FP16; NVIDIA/TensorRT issue 3941 shows
the precision has to be obeyed, not preferred); one optimisation profile (min/opt/max) for the input; a
workspace limit; a timing cache reused across builds so a rebuild for a new profile takes seconds. Written
against the documented TensorRT 10 API (weakly typed networks: removed in TensorRT 11, hence the
`tensorrt>=10,<11` extra). tensorrt is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..artifacts import INPUT_NAME, ArtifactMeta, norm_layer_count
from ..engine_file import EngineKey, Profile
from ..weights import atomic_write
from .base import BackendUnavailable

DEFAULT_WORKSPACE_GB = 4.0


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(
            f"the tensorrt backend needs the TensorRT Python package ({e}); install it with "
            "`pip install -e '.[tensorrt]'` on a machine with an NVIDIA GPU and CUDA") from None
    if not trt.__version__.startswith("10."):
        raise BackendUnavailable(f"TensorRT {trt.__version__} found; rtstyle's engine builder is written for "
                                 "TensorRT 10 (`pip install 'tensorrt>=10,<11'`)")
    return trt


def device_key_fields() -> dict[str, str]:
    """GPU name, compute capability and TensorRT version of this machine (parts of the EngineKey)."""
    import torch

    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise BackendUnavailable("the tensorrt backend needs a CUDA GPU; none is usable here")
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return {"gpu_name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}",
            "tensorrt_version": trt.__version__}


def engine_key(source_sha256: str, precision: str, profile: Profile) -> EngineKey:
    return EngineKey(precision=precision, profile=profile, source_sha256=source_sha256, **device_key_fields())


def build_engine(onnx_bytes: bytes, meta: ArtifactMeta, key: EngineKey, *, workspace_gb: float = DEFAULT_WORKSPACE_GB,
                 timing_cache: Path | None = None, log: Callable[[str], None] | None = None) -> bytes:
    """Serialised engine plan for `onnx_bytes` under `key` (precision, profile). Raises on parser errors."""
    trt = import_tensorrt()
    log = log or (lambda message: None)
    logger = trt.Logger(trt.Logger.WARNING)
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
    config.set_timing_cache(cache, ignore_mismatch=False)

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
