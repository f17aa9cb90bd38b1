"""Registry of inference backends: one module per runtime, imported only when asked for.

`create_backend(name, model)` returns a `Backend`; heavy optional libraries (onnxruntime, openvino,
tensorrt) are imported inside their own module so `import rtstyle` works without them.
"""

from __future__ import annotations

import torch

from ..weights import load_model
from .base import Backend, BackendUnavailable

BACKENDS = ("torch",)


def create_backend(name: str, model: str, device: str = "cpu") -> Backend:
    """Load `model` (path or store name) into backend `name`."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "torch":
        from .torch_backend import TorchBackend

        generator, info = load_model(model)
        return TorchBackend(generator, info, device=resolve_device(device))
    raise AssertionError(name)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; explicit CUDA without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"--device {device} asked for, but no CUDA GPU is usable here; use --device cpu")
    return device


__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "create_backend", "resolve_device"]
