"""OpenVINO inference backend: an rtstyle IR (or ONNX, or weights converted once and cached) on the CPU.

Precision is OpenVINO's `INFERENCE_PRECISION_HINT`: bf16 where the CPU has native bf16 (AVX512_BF16 or
AMX: OpenVINO lists "BF16" among the CPU's optimisation capabilities), f32 elsewhere; weights stay f32 in
the IR, so one artifact serves both. bf16 keeps f32's exponent (no overflow in InstanceNorm) with an
8-bit mantissa: on the full generator outputs moved by up to 0.11 max abs, 6e-3 mean (under one uint8
level) against fp32 here, at 3.4x the speed of eager torch fp32. openvino is imported only here and in
`rtstyle.convert`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..artifacts import INPUT_NAME, ArtifactError, artifact_kind, openvino_xml
from .base import Backend, BackendUnavailable

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def import_openvino():
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailable(f"the openvino backend needs OpenVINO ({e}); install it with "
                                 "`pip install -e '.[openvino]'`") from None
    return openvino


def cpu_capabilities() -> set[str]:
    """OpenVINO's CPU optimisation capabilities, e.g. {'FP32', 'BF16', 'INT8'}; empty without openvino."""
    try:
        ov = import_openvino()
    except BackendUnavailable:
        return set()
    return set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def resolve_precision(precision: str, capabilities: set[str]) -> str:
    """'auto' -> bf16 where the CPU has it, else fp32; an explicit precision the CPU lacks is an error."""
    if precision == "auto":
        return "bf16" if "BF16" in capabilities else "fp32"
    wanted = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}[precision]
    if wanted not in capabilities:
        raise BackendUnavailable(f"--precision {precision}: this CPU has no native {precision} for OpenVINO "
                                 f"(capabilities {sorted(capabilities)}); use --precision fp32 or auto")
    return precision


def load_openvino_model(model_path: Path, log: Callable[[str], None] | None = None):
    """(openvino.Model, ArtifactMeta) for an IR, an ONNX file or weights (converted once, then cached)."""
    from ..convert import cached_openvino, read_onnx_meta, read_openvino_meta

    ov = import_openvino()
    kind = artifact_kind(model_path)
    if kind == "openvino":
        xml = openvino_xml(model_path)
        model = ov.Core().read_model(str(xml))
        return model, read_openvino_meta(model, str(xml))
    if kind == "onnx":
        import onnx

        meta = read_onnx_meta(onnx.load(str(model_path), load_external_data=False), str(model_path))
        return ov.Core().read_model(str(model_path)), meta
    if kind == "weights":
        xml = cached_openvino(Path(model_path), log)
        model = ov.Core().read_model(str(xml))
        return model, read_openvino_meta(model, str(xml))
    raise ArtifactError(f"{model_path}: OpenVINO cannot run a {kind} artifact; use --backend {kind}")


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, model_path: Path, precision: str = "auto", threads: int | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        ov = import_openvino()
        model, meta = load_openvino_model(Path(model_path), log)
        super().__init__(meta.info)
        self.meta, self.path = meta, Path(model_path)
        core = ov.Core()
        self.precision = resolve_precision(precision, set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")))
        config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[self.precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(0)

    def describe(self) -> str:
        return f"openvino {self.precision} on CPU ({self.path.name}, {self.meta.size_policy})"

    def infer(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) float32 -> same
        self.meta.check_input(tuple(x.shape))
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        result = self.request.infer({INPUT_NAME: array})
        return torch.from_numpy(np.array(result[self.output], dtype=np.float32, copy=True))
