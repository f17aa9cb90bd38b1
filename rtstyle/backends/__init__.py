"""Registry of inference backends: one module per runtime, imported only when asked for.

`create_backend(model, options)` returns a `Backend` (see `base.py` for the call every backend answers).
`model` is weights (.safetensors/.pth, or a store name) or an exported artifact (.onnx, .engine, an
OpenVINO .xml or folder); it is resolved once (`rtstyle.formats.open_model`) into a `ModelRef` whose
kind, metadata and hash travel down to the backend, which `registry.REGISTRY` names. `--backend auto` is decided by
`select.choose_backend` and the reason is printed. Heavy optional libraries (onnxruntime, openvino,
tensorrt) are imported inside their own module so `import rtstyle` works without them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from ..devices import HELP as DEVICE_HELP
from ..devices import parse_device
from ..errors import BackendUnavailable, UserError
from ..formats import open_model
from ..tiling import parse_memory
from .base import Backend
from .registry import REGISTRY
from .select import Choice, choose_backend, probe

BACKENDS = ("auto", *REGISTRY)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")

Log = Callable[[str], None]


@dataclass(frozen=True)
class BackendOptions:
    """How to run a generator; shared by translate, video, webcam and benchmark."""

    backend: str = field(default="auto", metadata={"help": "inference backend", "choices": BACKENDS})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP})
    precision: str = field(default="auto", metadata={
        "help": "numeric precision (int8: OpenVINO on the CPU, quantised and accuracy-checked per input size)",
        "choices": PRECISIONS})
    compile: bool = field(default=False, metadata={"help": "torch backend: torch.compile the generator "
                                                           "(slow first frame per size, faster after)"})
    cudnn_benchmark: bool = field(default=False, metadata={"help": "torch backend on CUDA: let cuDNN time its "
                                                                   "convolution algorithms per input size"})

    max_memory: str = field(default="auto", metadata={
        "help": "memory one translation may use: auto (3/4 of what is free on the device), or a size like 6G; "
                "a larger image is translated exactly in tiles (slower), or refused with the --size that fits"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", parse_device(self.device))  # frozen: the checked spelling
        parse_memory(self.max_memory)  # a misspelt size is an error before anything loads


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def create_backend(model: str | Path, options: BackendOptions = BackendOptions(), log: Log | None = _stderr) -> Backend:
    """Load `model` (path or store name, weights or artifact) into the backend `options` ask for.

    `log` receives the auto-selection reason and progress (on-the-fly export, engine builds); stderr by default.
    """
    if options.backend not in BACKENDS:
        raise UserError(f"unknown backend {options.backend!r}; choose one of {', '.join(BACKENDS)}")
    if options.precision not in PRECISIONS:
        raise UserError(f"unknown precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}")
    log = log or (lambda message: None)
    if options.compile and options.backend == "auto":
        log("--compile given: using the torch backend (torch.compile)")
        options = replace(options, backend="torch")
    ref = open_model(model)  # resolved once: path, kind, metadata and hash travel down from here
    choice = choose_backend(ref.kind, options.backend, options.device, options.precision, probe())
    if options.backend == "auto":
        log(f"backend auto -> {choice.backend} ({choice.precision}, {choice.device}): {choice.reason}")
    if options.compile and choice.backend != "torch":
        raise UserError(f"--compile applies to the torch backend only, not {choice.backend}")
    backend = REGISTRY[choice.backend].create()(ref, choice, options, log)
    backend.ref = ref  # what --model resolved to (path, kind, metadata, sha256)
    backend.choice = choice
    backend.max_memory = parse_memory(options.max_memory)  # read by rtstyle.tiling.guarded_infer
    backend.log = log
    if options.backend == "auto" and choice.device == "cpu" and ref.kind == "weights":
        from ..students import speed_hint  # a full-size model below 5 fps: say that a student would be faster

        speed_hint(model, ref.path, backend.info, choice.backend, choice.precision, log)
    return backend


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; explicit CUDA without a GPU is an error."""
    device = parse_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"--device {device} asked for, but no CUDA GPU is usable here; use --device cpu")
    if device.startswith("cuda"):
        from .select import check_gpu_index

        check_gpu_index(device, torch.cuda.device_count())
    return device


__all__ = ["BACKENDS", "Backend", "BackendOptions", "BackendUnavailable", "Choice", "create_backend", "resolve_device"]
