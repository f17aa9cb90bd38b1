"""TensorRT inference backend: an rtstyle `.engine` run on a CUDA stream with torch-owned device buffers.

Inputs and outputs are bound by tensor name (`set_tensor_address`, TensorRT 10 has no binding indices);
the buffers are torch CUDA tensors, so a pipeline that already holds frames on the GPU passes them
without a copy (`infer_device`); the input shape is set on the execution context whenever the frame size
changes (the engine's optimisation profile must contain it). `prepare_engine` finds or builds the engine
for a weights file, an ONNX file or an existing engine: cached engines are keyed by GPU, compute
capability, TensorRT version, precision, shape profile and source hash (`rtstyle.engine_file`), and a
stale or foreign engine is rebuilt from its source, never loaded. tensorrt is imported only here and in
`tensorrt_build`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..artifacts import INPUT_NAME, OUTPUT_NAME, ArtifactError, artifact_kind, sha256_file
from ..engine_file import (EngineKey, Profile, engine_cache_path, read_engine, read_engine_header, stale_reason,
                           write_engine)
from .base import Backend, BackendUnavailable
from .tensorrt_build import DEFAULT_WORKSPACE_GB, build_engine, device_key_fields, engine_key, import_tensorrt

Log = Callable[[str], None]


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, engine_path: Path, device: str = "cuda") -> None:
        meta, key, plan = read_engine(engine_path)
        super().__init__(meta.info)
        trt = import_tensorrt()
        reason = stale_reason(key, EngineKey(precision=key.precision, profile=key.profile,
                                             source_sha256=key.source_sha256, **device_key_fields()))
        if reason:  # prepare_engine rebuilds these; a direct caller must not get a foreign plan loaded
            raise ArtifactError(f"{engine_path}: stale engine ({reason})")
        self.meta, self.key, self.path = meta, key, Path(engine_path)
        self.device = torch.device(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise ArtifactError(f"{engine_path}: TensorRT could not deserialise the engine plan")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if sorted(names) != sorted([INPUT_NAME, OUTPUT_NAME]):
            raise ArtifactError(f"{engine_path}: engine tensors {names}, expected {INPUT_NAME!r} and {OUTPUT_NAME!r}")
        self.input_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(INPUT_NAME))
        self.output_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(OUTPUT_NAME))
        self.stream = torch.cuda.Stream(self.device)
        self._shape: tuple[int, ...] | None = None

    def describe(self) -> str:
        return f"tensorrt {self.key.precision} on {self.key.gpu_name} ({self.path.name})"

    def infer_device(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, h, w) on any device -> (b, 3, h, w) CUDA tensor in the engine's output dtype."""
        shape = tuple(x.shape)
        self.meta.check_input(shape)
        if not self.key.profile.contains(shape):
            raise ArtifactError(f"input {shape} is outside the engine's shape profile ({self.key.profile.describe()}): "
                                "use a smaller --size, or export an engine for this size with --size HxW")
        with torch.cuda.stream(self.stream):
            x = x.to(self.device, self.input_dtype, non_blocking=True).contiguous()
            if shape != self._shape:  # a new size selects new kernels: set it only when it changes
                if not self.context.set_input_shape(INPUT_NAME, shape):
                    raise ArtifactError(f"TensorRT refused input shape {shape}")
                self._shape = shape
            out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), dtype=self.output_dtype,
                              device=self.device)
            self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
            self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed (see the TensorRT messages above)")
            x.record_stream(self.stream)  # keep the input alive until the stream is done with it
        self.stream.synchronize()
        return out

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return self.infer_device(x).float().cpu()


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16}
    if dtype not in table:
        raise ArtifactError(f"unsupported engine tensor type {dtype}")
    return table[dtype]


def prepare_engine(source: Path, precision: str = "fp16", profile: Profile | None = None, out: Path | None = None,
                   workspace_gb: float = DEFAULT_WORKSPACE_GB, log: Log | None = None, onnx_model=None) -> Path:
    """Path of a current engine for `source` (weights, ONNX or an existing .engine), building it if needed.

    Without `out`, engines of weights/ONNX go to the cache; an existing .engine that is stale is rebuilt in
    place from the source recorded in its header (when that file still exists with the same content).
    `onnx_model` (an already checked ModelProto of `source`, from `export`) replaces the cached ONNX.
    """
    from ..convert import cached_onnx, read_onnx_meta
    from ..store import cache_dir

    log = log or (lambda message: None)
    source = Path(source)
    kind = artifact_kind(source)
    if kind == "tensorrt":
        meta, key, _ = read_engine_header(source)
        wanted = engine_key(key.source_sha256, key.precision, key.profile)
        reason = stale_reason(key, wanted)
        if reason is None:
            return source
        origin = Path(meta.extra.get("source", ""))
        if not origin.is_file() or sha256_file(origin) != key.source_sha256:
            raise ArtifactError(f"{source} cannot be used here: {reason}; its source {origin or '(unknown)'} is gone "
                                "or changed, so rebuild it: `python cli.py export --format tensorrt --model SOURCE`")
        log(f"{source.name} is stale ({reason}): rebuilding it from {origin}")
        return prepare_engine(origin, key.precision, key.profile, out=source, workspace_gb=workspace_gb, log=log)
    if kind not in ("weights", "onnx"):
        raise ArtifactError(f"{source}: a TensorRT engine is built from weights or ONNX, not from {kind}")

    import onnx

    digest = sha256_file(source)
    if onnx_model is None:
        onnx_path = cached_onnx(source, log) if kind == "weights" else source
        onnx_model = onnx.load(str(onnx_path))
    model = onnx_model
    meta = read_onnx_meta(model, str(source))
    if profile is None:
        opt = (meta.info.train_size, meta.info.train_size) if meta.dynamic else (meta.height, meta.width)
        profile = Profile.for_shapes(meta.info.config.input_nc, opt, meta.dynamic)
    key = engine_key(digest, precision, profile)
    target = out or engine_cache_path(source.stem, key)
    if out is None and target.is_file():
        try:
            if stale_reason(read_engine_header(target)[1], key) is None:
                return target
        except ArtifactError as e:
            log(f"ignoring unreadable cached engine {target.name}: {e}")
    # The timing cache is only valid for one GPU model and TensorRT version, like the engines themselves.
    device = f"{_slug(key.gpu_name)}-sm{key.compute_capability}-trt{key.tensorrt_version}"
    timing_cache = cache_dir() / "tensorrt" / f"timing-{device}.cache"
    plan = build_engine(model.SerializeToString(), meta, key, workspace_gb=workspace_gb, timing_cache=timing_cache,
                        log=log)
    engine_meta = meta.with_format("tensorrt", precision=precision, source_sha256=digest,
                                   extra={"source": str(source.resolve()), "profile": profile.to_dict()})
    write_engine(target, plan, engine_meta, key)
    log(f"engine written to {target}")
    return target


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def cuda_ready() -> str | None:
    """None when tensorrt can run here, else why not (for `--backend auto`)."""
    try:
        import_tensorrt()
    except BackendUnavailable as e:
        return str(e).split(";")[0]
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None
