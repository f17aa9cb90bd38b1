"""Registry of inference backends: one module per runtime, imported only when asked for.

`create_backend(model, options)` returns a `Backend` (see `base.py` for the call every backend answers).
`model` is weights (.safetensors/.pth, or a store name) or an exported artifact (.onnx, .engine, an
OpenVINO .xml or folder); the artifact's own metadata says what it is. `--backend auto` is decided by
`select.choose_backend` and the reason is printed. Heavy optional libraries (onnxruntime, openvino,
tensorrt) are imported inside their own module so `import rtstyle` works without them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from ..artifacts import artifact_kind
from ..store import resolve_model
from .base import Backend, BackendUnavailable
from .select import Choice, choose_backend, probe

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")

Log = Callable[[str], None]


@dataclass(frozen=True)
class BackendOptions:
    """How to run a generator; shared by translate, video, webcam and benchmark."""

    backend: str = field(default="auto", metadata={"help": "inference backend", "choices": BACKENDS})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    precision: str = field(default="auto", metadata={
        "help": "numeric precision (int8: OpenVINO on the CPU, quantised and accuracy-checked per input size)",
        "choices": PRECISIONS})
    compile: bool = field(default=False, metadata={"help": "torch backend: torch.compile the generator "
                                                           "(slow first frame per size, faster after)"})


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def create_backend(model: str | Path, options: BackendOptions = BackendOptions(), log: Log | None = _stderr) -> Backend:
    """Load `model` (path or store name, weights or artifact) into the backend `options` ask for.

    `log` receives the auto-selection reason and progress (on-the-fly export, engine builds); stderr by default.
    """
    if options.backend not in BACKENDS:
        raise ValueError(f"unknown backend {options.backend!r}; choose one of {', '.join(BACKENDS)}")
    if options.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}")
    log = log or (lambda message: None)
    if options.compile and options.backend == "auto":
        log("--compile given: using the torch backend (torch.compile)")
        options = replace(options, backend="torch")
    path = resolve_model(model)
    kind = artifact_kind(path)
    choice = choose_backend(kind, options.backend, options.device, options.precision, probe())
    if options.backend == "auto":
        log(f"backend auto -> {choice.backend} ({choice.precision}, {choice.device}): {choice.reason}")
    if options.compile and choice.backend != "torch":
        raise ValueError(f"--compile applies to the torch backend only, not {choice.backend}")
    backend = _instantiate(choice, path, log, compile=options.compile, asked_int8=options.precision == "int8")
    backend.choice = choice
    if options.backend == "auto" and choice.device == "cpu" and kind == "weights":
        from ..students import speed_hint  # a full-size model below 5 fps: say that a student would be faster

        speed_hint(model, path, backend.info, choice.backend, choice.precision, log)
    return backend


def _instantiate(choice: Choice, path: Path, log: Log, compile: bool = False, asked_int8: bool = False) -> Backend:
    if choice.backend == "torch":
        from ..weights import load_model
        from .torch_backend import TorchBackend

        generator, info = load_model(path)
        return TorchBackend(generator, info, device=choice.device, precision=choice.precision, compile=compile)
    if choice.backend == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend, onnx_source

        return OnnxRuntimeBackend(onnx_source(path, log), device=choice.device)
    if choice.backend == "openvino":
        from .openvino_backend import OpenVinoBackend

        if choice.precision == "int8" and artifact_kind(path) == "weights":
            from .openvino_int8_backend import OpenVinoInt8Backend

            from .openvino_int8_backend import STREAM_BATCHES

            # Asked for: built on first use, waited for. Chosen by auto: built in the background once a size
            # makes a stream, bf16 meanwhile (see openvino_int8_backend).
            return OpenVinoInt8Backend(path, log=log, build_after=1 if asked_int8 else STREAM_BATCHES,
                                       background=not asked_int8)

        return OpenVinoBackend(path, precision=choice.precision, log=log)
    if choice.backend == "tensorrt":
        from .tensorrt_backend import TensorRTBackend, prepare_engine

        return TensorRTBackend(prepare_engine(path, precision=choice.precision, log=log), device=choice.device)
    raise ValueError(f"unknown backend {choice.backend!r}")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; explicit CUDA without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"--device {device} asked for, but no CUDA GPU is usable here; use --device cpu")
    return device


__all__ = ["BACKENDS", "Backend", "BackendOptions", "BackendUnavailable", "Choice", "create_backend", "resolve_device"]
