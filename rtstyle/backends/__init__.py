"""Registry of inference backends: one module per runtime, imported only when asked for.

`create_backend(model, options)` returns a `Backend` (see `base.py` for the call every backend answers).
Heavy optional libraries (onnxruntime, openvino, tensorrt) are imported inside their own module so
`import rtstyle` works without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..weights import load_model
from .base import Backend, BackendUnavailable

BACKENDS = ("auto", "torch")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class BackendOptions:
    """How to run a generator; shared by translate, video, webcam and benchmark."""

    backend: str = field(default="auto", metadata={"help": "inference backend", "choices": BACKENDS})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    precision: str = field(default="auto", metadata={"help": "numeric precision", "choices": PRECISIONS})
    compile: bool = field(default=False, metadata={"help": "torch backend: torch.compile the generator "
                                                           "(slow first frame per size, faster after)"})


def create_backend(model: str, options: BackendOptions = BackendOptions()) -> Backend:
    """Load `model` (path or store name) into the backend `options` ask for."""
    if options.backend not in BACKENDS:
        raise ValueError(f"unknown backend {options.backend!r}; choose one of {', '.join(BACKENDS)}")
    from .torch_backend import TorchBackend

    generator, info = load_model(model)
    return TorchBackend(generator, info, device=resolve_device(options.device), precision=options.precision,
                        compile=options.compile)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; explicit CUDA without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"--device {device} asked for, but no CUDA GPU is usable here; use --device cpu")
    return device


__all__ = ["BACKENDS", "Backend", "BackendOptions", "BackendUnavailable", "create_backend", "resolve_device"]
