"""PyTorch inference backend: the generator eager or `torch.compile`d, channels_last, with autocast.

Precision policy (issue 4): `auto` picks fp16 autocast on CUDA (tensor cores), bf16 autocast on CPUs that
multiply bf16 natively (AMX `amx_bf16` or AVX-512 `avx512_bf16`, from `rtstyle.cpu`'s probe), fp32 elsewhere.
An explicit `--precision` is honoured even where it is slow (and said so); one the device cannot run at all
is refused. The reason for the choice is kept in `precision_reason` and shown by `describe()`, so nothing
is downgraded silently. On CUDA convolutions run in channels_last (NHWC), the layout cuDNN's tensor-core
kernels prefer; on CPU they stay contiguous, which measured faster here (channels_last 0.84-0.91x, BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import torch

from ..cpu import BF16_FLAGS, cpu_features
from ..errors import BackendUnavailable, UserError
from ..models import ResnetGenerator
from ..weights import ModelInfo
from .base import Backend

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def choose_precision(requested: str, device: torch.device, flags: set[str] | None = None,
                     cuda_bf16: bool | None = None) -> tuple[str, str]:
    """(precision, why) for `requested` ('auto', 'fp32', 'bf16', 'fp16') on `device`.

    `flags` (CPU flags) and `cuda_bf16` are probed when not given; tests pass them to cover other machines.
    """
    if requested not in ("auto", *DTYPES):
        raise UserError(f"unknown precision {requested!r}; choose auto, fp32, bf16 or fp16")
    kind = device.type
    if kind == "cpu":
        native = cpu_features().bf16 if flags is None else next((f for f in BF16_FLAGS if f in flags), None)
        if requested == "auto":
            if native:
                return "bf16", f"auto: this CPU has {native}, bf16 autocast runs natively"
            return "fp32", ("auto: this CPU lacks amx_bf16/avx512_bf16, so bf16 would be emulated "
                            "(slower than fp32); pass --precision bf16 to force it")
        if requested == "bf16" and not native:
            return "bf16", "requested; this CPU has no native bf16 (amx_bf16/avx512_bf16): expect it slower than fp32"
        if requested == "fp16":
            return "fp16", "requested; fp16 on a CPU is mostly emulated: expect it slower than bf16 or fp32"
        return requested, "requested"
    if kind == "cuda":
        if requested == "auto":
            return "fp16", "auto: CUDA GPU, fp16 autocast uses the tensor cores"
        if requested == "bf16":
            supported = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
            if not supported:
                raise BackendUnavailable("--precision bf16 asked for, but this GPU has no bf16 support "
                                         "(needs compute capability 8.0+); use --precision fp16")
        return requested, "requested"
    if requested == "auto":
        return "fp32", f"auto: no reduced-precision policy for device type {kind!r}"
    return requested, "requested"


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, generator: ResnetGenerator, info: ModelInfo, device: str = "cpu", precision: str = "auto",
                 compile: bool = False, channels_last: bool | None = None, cudnn_benchmark: bool = False) -> None:
        super().__init__(info)
        self.device = torch.device(device)
        self.precision, self.precision_reason = choose_precision(precision, self.device)
        if self.device.type == "cuda":
            # Process-wide switches, set for what this backend was asked: cuDNN runs fp32 convolutions in TF32
            # (10-bit mantissa) by default, which is not the fp32 an accuracy baseline means; and
            # cudnn.benchmark times the convolution algorithms once per input shape (slow first frame of each
            # size, faster after; `--cudnn-benchmark`).
            if self.precision == "fp32":
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.benchmark = cudnn_benchmark
        self.cudnn_benchmark = cudnn_benchmark
        self.dtype = DTYPES[self.precision]
        self.compiled = compile
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.generator = generator.to(self.device).eval().to(memory_format=self.memory_format)
        self._run = self._forward
        if compile:
            # Inductor builds one kernel set per input shape (a second shape makes it compile a dynamic one);
            # the first call of each shape therefore takes seconds, later calls are fast.
            self._run = torch.compile(self._forward)

    def describe(self) -> str:
        mode = "torch.compile" if self.compiled else "eager"
        autocast = f"{self.precision} autocast" if self.dtype is not None else "fp32"
        layout = ", channels_last" if self.channels_last else ""
        layout += ", cudnn.benchmark" if self.cudnn_benchmark and self.device.type == "cuda" else ""
        return f"torch {mode} {autocast} on {self.device}{layout} ({self.precision_reason})"

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.generator(x)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) float32 -> (b, 3, h, w) float32 on CPU
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        try:
            y = self._run(x)
        except Exception as e:
            if not self.compiled:
                raise
            # inductor needs a C++ compiler (and Triton on CUDA): say so rather than falling back to eager
            raise BackendUnavailable(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:300]}); "
                                     "run without --compile, or install a C++ compiler / Triton") from e
        return y.float().cpu()


def create(ref, choice, options, log) -> TorchBackend:
    """The registry's entry point: the generator of a resolved weights file (`ModelRef`) as `choice` says."""
    from ..weights import load_model

    generator, info = load_model(ref.path)
    return TorchBackend(generator, info, device=choice.device, precision=choice.precision, compile=options.compile,
                        cudnn_benchmark=options.cudnn_benchmark)
