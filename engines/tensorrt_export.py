"""TensorRT export: a checked ONNX graph built into an FP16 (or FP32) engine file with an rtstyle header.

The default path is the TensorRT Python API from the ONNX that `onnx_export` verified (one graph shared
with ONNX Runtime and OpenVINO, a self-contained `.engine` whose runtime needs only tensorrt, and full
control over the FP32 InstanceNorm layers, the profile and the timing cache). torch-tensorrt would
compile from the module directly, but ties the artifact to a torch-tensorrt/torch version pair and a
TorchScript or ExportedProgram container, so it is not offered. The engine is verified on the GPU
against eager fp32 PyTorch on random and real frames before the command reports success; a failing
engine is deleted. Needs tensorrt and a CUDA GPU (checked first, with the install hint).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rtstyle.backends.tensorrt_backend import TensorRTBackend
from rtstyle.formats.tensorrt import Profile, device_key_fields, prepare_engine
from rtstyle.models import ResnetGenerator
from rtstyle.weights import ModelInfo

from . import verify
from .onnx_export import build_checked_onnx
from .options import ExportError, ExportOptions, ExportResult, Log

# FP16 convs with FP32 InstanceNorm: fp16 keeps 11 significant bits (relative error ~5e-4 per op); through
# 23 convs the output (in [-1, 1]) is expected within ~1e-2, and 5e-2 still means a few uint8 levels.
FP16_TOLERANCE = 5e-2
# FP32 engine with TF32 disabled: only kernel summation order differs from PyTorch.
FP32_TOLERANCE = 1e-3


def export_tensorrt(generator: ResnetGenerator, info: ModelInfo, source: Path, target: Path, options: ExportOptions,
                    log: Log, *, overwrite: bool = False) -> ExportResult:
    device = device_key_fields()  # fails early, with the install hint, where tensorrt or the GPU is missing
    model, onnx_result = build_checked_onnx(generator, info, source, options, log)
    hw = options.shape(info.train_size)
    profile = Profile.for_shapes(info.config.input_nc, hw, options.dynamic, options.max_batch)
    precision = "fp16" if options.half else "fp32"
    engine_path = prepare_engine(source, precision, profile, out=target, workspace_gb=options.workspace_gb, log=log,
                                 onnx_model=model, overwrite=overwrite)
    backend = TensorRTBackend(engine_path)

    def run(x: torch.Tensor) -> torch.Tensor:
        step = options.max_batch  # the profile's largest batch
        return torch.cat([backend.infer(x[i:i + step]) for i in range(0, len(x), step)])

    batches = [(label, x) for label, x in verify.verification_batches(info.config.input_nc, hw, options.dynamic)
               if profile.contains((min(len(x), options.max_batch), *x.shape[1:]))]
    results = verify.compare(run, generator, batches)
    tolerance = options.tolerance or (FP16_TOLERANCE if options.half else FP32_TOLERANCE)
    log(f"TensorRT {precision} on {device['gpu_name']} vs PyTorch fp32: {verify.describe(results)}")
    if verify.worst(results) > tolerance:
        Path(engine_path).unlink(missing_ok=True)
        raise ExportError(f"TensorRT {precision} output differs from PyTorch by {verify.worst(results):.3g} > "
                          f"tolerance {tolerance:g}; the engine was deleted")
    return ExportResult(path=engine_path, format="tensorrt", tolerance=tolerance, comparisons=results,
                        notes=onnx_result.notes + [f"profile {profile.describe()}",
                                                   f"ONNX Runtime check: max abs {onnx_result.max_abs_error:.2e}"])
