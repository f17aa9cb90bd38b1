"""OpenVINO inference backend: an rtstyle IR (or ONNX, or weights converted once and cached) on the CPU.

Precision is OpenVINO's `INFERENCE_PRECISION_HINT`: bf16 where the CPU has native bf16 (AVX512_BF16 or
AMX: OpenVINO lists "BF16" among the CPU's optimisation capabilities), f32 elsewhere; weights stay f32 in
the IR, so one artifact serves both. bf16 keeps f32's exponent (no overflow in InstanceNorm) with an
8-bit mantissa: on the full generator outputs moved by up to 0.11 max abs, 6e-3 mean (under one uint8
level) against fp32 here, at 3.4x the speed of eager torch fp32. An int8 IR (`export --format openvino
--int8`, metadata precision "int8") runs its quantised convolutions in int8 and the rest in bf16/f32;
int8 straight from weights, built per input size on first use, is `openvino_int8_backend`. openvino is
imported only in the backends and in `rtstyle.convert` / `rtstyle.quantize`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..artifacts import INPUT_NAME, ArtifactError, artifact_kind, openvino_xml
from ..cpu import cpu_features
from .base import Backend, BackendUnavailable

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def import_openvino():
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailable(f"the openvino backend needs OpenVINO ({e}); install it with "
                                 "`pip install -e '.[openvino]'`") from None
    return openvino


@functools.cache
def openvino_core():
    """The process's one OpenVINO Core, created on first use and never released.

    OpenVINO's CPU plugin installs its own alternate signal stack on the thread that first compiles a model
    (usually the main thread) and unmaps it when the plugin unloads with the last Core, restoring the old
    one only on the thread that drops that Core. Dropped from another thread (a pipeline worker, the garbage
    collector), the main thread keeps a dangling alternate stack, and the next signal it handles, a Ctrl-C,
    kills the process with SIGSEGV instead of raising KeyboardInterrupt (tests/test_backends.py reproduces
    it). One Core for the process's lifetime keeps the plugin, and that stack, loaded.
    """
    return import_openvino().Core()


def cpu_capabilities() -> set[str]:
    """OpenVINO's CPU optimisation capabilities, e.g. {'FP32', 'BF16', 'INT8'}; empty without openvino.

    'BF16' counts only where `rtstyle.cpu`'s probe finds native bf16: OpenVINO reads CPUID itself and so
    ignores the probe's overrides (and lists BF16 under ONEDNN_MAX_CPU_ISA=AVX2, where no bf16 kernel runs).
    """
    try:
        core = openvino_core()
    except BackendUnavailable:
        return set()
    capabilities = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return capabilities if cpu_features().bf16 else capabilities - {"BF16"}


def resolve_precision(precision: str, capabilities: set[str]) -> str:
    """'auto' -> bf16 where the CPU has it, else fp32; an explicit precision the CPU lacks is an error."""
    if precision == "auto":
        return "bf16" if "BF16" in capabilities else "fp32"
    wanted = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}[precision]
    if wanted not in capabilities:
        raise BackendUnavailable(f"--precision {precision}: this CPU has no native {precision} for OpenVINO "
                                 f"(capabilities {sorted(capabilities)}); use --precision fp32 or auto")
    return precision


def compile_cpu(model, hint: str, shape: tuple[int, ...] | None = None, threads: int | None = None):
    """Compile for the CPU with the LATENCY hint (one stream, every thread on one request: batch-1 video).

    `hint` is OpenVINO's INFERENCE_PRECISION_HINT ("f32", "bf16"); `shape` reshapes a copy of the model to
    that static input shape first (faster kernels for int8 IRs; the IR on disk keeps its own shape).
    """
    core = openvino_core()
    if shape is not None:
        model = model.clone()
        model.reshape(list(shape))
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(model, "CPU", config)


def load_openvino_model(model_path: Path, log: Callable[[str], None] | None = None):
    """(openvino.Model, ArtifactMeta) for an IR, an ONNX file or weights (converted once, then cached)."""
    from ..convert import cached_openvino, read_onnx_meta, read_openvino_meta

    core = openvino_core()
    kind = artifact_kind(model_path)
    if kind == "openvino":
        xml = openvino_xml(model_path)
        model = core.read_model(str(xml))
        return model, read_openvino_meta(model, str(xml))
    if kind == "onnx":
        import onnx

        meta = read_onnx_meta(onnx.load(str(model_path), load_external_data=False), str(model_path))
        return core.read_model(str(model_path)), meta
    if kind == "weights":
        xml = cached_openvino(Path(model_path), log)
        model = core.read_model(str(xml))
        return model, read_openvino_meta(model, str(xml))
    raise ArtifactError(f"{model_path}: OpenVINO cannot run a {kind} artifact; use --backend {kind}")


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, model_path: Path, precision: str = "auto", threads: int | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        model, meta = load_openvino_model(Path(model_path), log)
        super().__init__(meta.info)
        self.meta, self.path = meta, Path(model_path)
        capabilities = cpu_capabilities()
        if meta.precision == "int8":  # the quantised convolutions are int8 whatever is asked; the rest:
            if precision not in ("auto", "int8", "bf16", "fp32"):
                raise BackendUnavailable(f"{model_path} is an int8 IR; --precision {precision} does not apply "
                                         "(auto/int8: the rest in bf16 where the CPU has it; fp32: the rest in f32)")
            rest = resolve_precision("fp32" if precision == "fp32" else "auto", capabilities)
            self.precision, hint = "int8", OV_PRECISION[rest]
            self.note = f"int8 convolutions, the rest {rest}; {_int8_summary(meta)}"
        else:
            if precision == "int8":
                raise BackendUnavailable(f"{model_path} is not an int8 IR (precision {meta.precision}): make one "
                                         "with `python cli.py export --format openvino --int8`, or pass the "
                                         "weights with --precision int8 to build it on first use")
            self.precision = resolve_precision(precision, capabilities)
            hint, self.note = OV_PRECISION[self.precision], meta.size_policy
        # A fixed-size IR is compiled for its static shape, once per batch size seen (faster kernels than a
        # dynamic compile: 15% for the int8 generator here); a dynamic IR is compiled once.
        self.model, self.hint, self.threads = model, hint, threads
        self.requests: dict[int | None, tuple] = {}
        self._request(None if meta.dynamic else 1)

    def _request(self, batch: int | None):
        if batch not in self.requests:
            shape = None if batch is None else (batch, self.meta.info.config.input_nc, self.meta.height,
                                                 self.meta.width)
            compiled = compile_cpu(self.model, self.hint, shape, self.threads)
            self.requests[batch] = (compiled.create_infer_request(), compiled.output(0))
        return self.requests[batch]

    def describe(self) -> str:
        return f"openvino {self.precision} on CPU ({self.path.name}, {self.note})"

    def infer(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) float32 -> same
        self.meta.check_input(tuple(x.shape))
        request, output = self._request(None if self.meta.dynamic else x.shape[0])
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        result = request.infer({INPUT_NAME: array})
        return torch.from_numpy(np.array(result[output], dtype=np.float32, copy=True))


def _int8_summary(meta) -> str:
    record = meta.extra.get("int8", {})
    if not record:
        return meta.size_policy
    return (f"{meta.size_policy}, {record.get('recipe')}: worst PSNR {record.get('psnr_min_db')} dB vs fp32 "
            f"on {len(record.get('heldout', []))} held-out frames")
