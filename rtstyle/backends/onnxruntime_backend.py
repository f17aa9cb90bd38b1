"""ONNX Runtime inference backend: an rtstyle ONNX graph on the CPU or CUDA execution provider.

The graph's metadata_props say what it is (generator config, direction, fixed or dynamic size), so the
backend needs no flags. A .safetensors model is exported once to a cached ONNX (`rtstyle.formats.onnx`).
The CUDA provider is used when `device` is cuda and the installed onnxruntime has it (the
`onnxruntime-gpu` wheel); asking for it without one, or a session that fell back to the CPU because the
provider's libraries did not load, is an error, not a silent CPU run.
onnxruntime is imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import BackendUnavailable
from ..formats.metadata import INPUT_NAME, OUTPUT_NAME, ArtifactError, artifact_kind
from .base import Backend


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable(f"the onnxruntime backend needs onnxruntime ({e}); install it with "
                                 "`pip install -e '.[onnx]'` (or onnxruntime-gpu for CUDA)") from None
    return onnxruntime


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnx

        from ..formats.onnx import read_onnx_meta

        ort = import_onnxruntime()
        model = onnx.load(str(onnx_path))
        self.meta = read_onnx_meta(model, str(onnx_path))
        super().__init__(self.meta.info)
        self.path = Path(onnx_path)
        self.device = torch.device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable("onnxruntime has no CUDA execution provider here: install onnxruntime-gpu, "
                                         "or run with --device cpu")
            providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}), "CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        check_providers(self.session, self.device.type)
        names = ([i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()])
        if names != ([INPUT_NAME], [OUTPUT_NAME]):
            raise ArtifactError(f"{onnx_path}: graph inputs/outputs {names}, "
                                f"expected {INPUT_NAME!r} -> {OUTPUT_NAME!r}")

    def describe(self) -> str:
        where = "CUDA" if self.device.type == "cuda" else "CPU"
        return f"onnxruntime fp32 on {where} ({self.path.name}, {self.meta.size_policy})"

    def infer(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) float32 -> same
        self.meta.check_input(tuple(x.shape))
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        (y,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(y)


def check_providers(session, device: str) -> None:
    """Raise unless a session asked for CUDA really runs on it.

    onnxruntime-gpu lists CUDAExecutionProvider even when its CUDA/cuDNN libraries fail to load, then builds
    the session on the CPU provider with only a log line: a "CUDA" run that is really a CPU one.
    """
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise BackendUnavailable(f"onnxruntime fell back to the CPU (session providers {session.get_providers()}): "
                                 "its CUDA provider could not load (CUDA/cuDNN libraries of the version this "
                                 "onnxruntime-gpu needs?); fix that, or run with --device cpu")


def onnx_source(model_path: Path, log: Callable[[str], None] | None = None, kind: str | None = None) -> Path:
    """The ONNX file to run for `model_path`: itself, or the cached export of a weights file (`kind`: the
    artifact kind when the caller resolved it already, `ModelRef.kind`)."""
    from ..formats.onnx import cached_onnx

    kind = kind or artifact_kind(model_path)
    if kind == "onnx":
        return Path(model_path)
    if kind == "weights":
        return cached_onnx(Path(model_path), log)
    raise ArtifactError(f"{model_path}: onnxruntime runs .onnx files (or weights, exported on the fly), not {kind} "
                        f"artifacts; use --backend {kind}")


def create(ref, choice, options, log) -> OnnxRuntimeBackend:
    """The registry's entry point: an ONNX file, or the cached export of a weights file."""
    return OnnxRuntimeBackend(onnx_source(ref.path, log, ref.kind), device=choice.device)
