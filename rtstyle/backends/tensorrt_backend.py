"""TensorRT inference backend: an rtstyle `.engine` run on a CUDA stream with torch-owned device buffers.

Inputs and outputs are bound by tensor name (`set_tensor_address`, TensorRT 10 has no binding indices);
the buffers are torch CUDA tensors, so a pipeline that already holds frames on the GPU passes them
without a copy (`infer_device`) unless they are misaligned (TensorRT wants 256-byte aligned addresses; a
view such as `batch[1:]` is not) or of another dtype. The side stream waits for the caller's stream before
reading the input, and the output is recorded on it so the caching allocator does not hand its memory out
while the caller still uses it. The execution context is created with user-managed memory, sized for the
shapes actually run (`update_device_memory_size_for_shapes`) rather than for the profile's largest shape
(several GB at 8x3x1080x1920). Everything runs under `torch.cuda.device(N)` of the engine's GPU. Engines are
found, built and cached by `rtstyle.formats.tensorrt`. UNTESTED ON REAL HARDWARE: no TensorRT has run this.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..formats.metadata import INPUT_NAME, OUTPUT_NAME, ArtifactError
from ..formats.tensorrt import EngineKey, device_key_fields, import_tensorrt, read_engine, stale_reason, trt_logger
from .base import Backend, BackendUnavailable

ALIGNMENT = 256  # bytes; TensorRT 10's requirement for tensor addresses passed to set_tensor_address


def needs_copy(data_ptr: int, contiguous: bool, dtype: torch.dtype, wanted: torch.dtype) -> bool:
    """Whether a CUDA input must be copied before TensorRT reads it: wrong dtype, strided, or misaligned."""
    return dtype != wanted or not contiguous or data_ptr % ALIGNMENT != 0


def grown_size(current: int, needed: int) -> int | None:
    """The new size of the context's scratch memory when `needed` bytes do not fit in `current`, else None.

    The buffer only grows (shrinking would reallocate on every size change of a live source); 0 bytes
    needed still gets a 1-byte buffer, since TensorRT rejects a null device memory pointer.
    """
    return max(needed, 1) if needed > current or current == 0 else None


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, engine_path: Path, device: str = "cuda") -> None:
        meta, key, plan = read_engine(engine_path)
        super().__init__(meta.info)
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise BackendUnavailable("the tensorrt backend needs a CUDA GPU; none is usable here")
        self.device = torch.device(device)
        self.index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.device = torch.device("cuda", self.index)
        here = device_key_fields(self.index)
        reason = stale_reason(key, EngineKey(precision=key.precision, profile=key.profile,
                                             source_sha256=key.source_sha256, recipe_version=key.recipe_version,
                                             **here))
        if reason:  # prepare_engine rebuilds these; a direct caller must not get a foreign plan loaded
            raise ArtifactError(f"{engine_path}: stale engine ({reason})")
        self.meta, self.key, self.path = meta, key, Path(engine_path)
        with torch.cuda.device(self.index):  # the engine's memory and kernels belong to cuda:N, not cuda:0
            self.runtime = trt.Runtime(trt_logger())
            self.engine = self.runtime.deserialize_cuda_engine(plan)
            if self.engine is None:
                raise ArtifactError(f"{engine_path}: TensorRT could not deserialise the engine plan")
            self.context = self.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
            if self.context is None:  # TensorRT returns None (and logs why) when it cannot make a context
                raise RuntimeError(f"{engine_path}: TensorRT could not create an execution context "
                                   "(out of GPU memory? see the TensorRT messages above)")
            self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if sorted(names) != sorted([INPUT_NAME, OUTPUT_NAME]):
            raise ArtifactError(f"{engine_path}: engine tensors {names}, expected {INPUT_NAME!r} and {OUTPUT_NAME!r}")
        self.input_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(INPUT_NAME))
        self.output_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(OUTPUT_NAME))
        self._shape: tuple[int, ...] | None = None
        self.scratch = torch.empty(0, dtype=torch.uint8, device=self.device)  # the context's activation memory

    def describe(self) -> str:
        return f"tensorrt {self.key.precision} on {self.key.gpu_name} (cuda:{self.index}, {self.path.name})"

    @property
    def device_memory_bytes(self) -> int:
        """Activation memory the context holds now (the benchmark adds it to torch's peak)."""
        return self.scratch.numel()

    def infer_device(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, h, w) on any device -> (b, 3, h, w) CUDA tensor in the engine's output dtype."""
        shape = tuple(x.shape)
        self.meta.check_input(shape)
        if not self.key.profile.contains(shape):
            raise ArtifactError(f"input {shape} is outside the engine's shape profile ({self.key.profile.describe()}): "
                                "use a smaller --size, or export an engine for this size with --size HxW")
        caller = torch.cuda.current_stream(self.device)
        with torch.cuda.device(self.index), torch.cuda.stream(self.stream):
            # x may have been written on the caller's stream: TensorRT's stream must not read it before that.
            self.stream.wait_stream(caller)
            x = x.to(self.device, non_blocking=True)
            if needs_copy(x.data_ptr(), x.is_contiguous(), x.dtype, self.input_dtype):
                x = torch.empty(shape, dtype=self.input_dtype, device=self.device).copy_(x)
            if shape != self._shape:  # a new size selects new kernels: set it only when it changes
                if not self.context.set_input_shape(INPUT_NAME, shape):
                    raise ArtifactError(f"TensorRT refused input shape {shape}")
                self._shape = shape
                size = grown_size(self.scratch.numel(), self.context.update_device_memory_size_for_shapes())
                if size is not None:
                    self.stream.synchronize()  # the old buffer may still be in use by a previous execution
                    self.scratch = torch.empty(size, dtype=torch.uint8, device=self.device)
                    self.context.set_device_memory(self.scratch.data_ptr(), size)
            out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), dtype=self.output_dtype,
                              device=self.device)
            self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
            self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed (see the TensorRT messages above)")
            x.record_stream(self.stream)  # keep the input alive until the stream is done with it
        # The caller uses `out` on its own stream: order it after TensorRT's work, and tell the allocator.
        caller.wait_stream(self.stream)
        out.record_stream(caller)
        return out

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return self.infer_device(x).float().cpu()


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16}
    if dtype not in table:
        raise ArtifactError(f"unsupported engine tensor type {dtype}")
    return table[dtype]


def create(ref, choice, options, log) -> TensorRTBackend:
    """The registry's entry point: the current engine for weights / ONNX / an engine, built under cuda:N."""
    from ..formats.tensorrt import prepare_engine

    engine = prepare_engine(ref.path, precision=choice.precision, log=log, device=choice.device, kind=ref.kind)
    return TensorRTBackend(engine, device=choice.device)
