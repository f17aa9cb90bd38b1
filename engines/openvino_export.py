"""OpenVINO IR export: `openvino.convert_model` of the generator, checked, written as NAME.xml + NAME.bin.

The IR keeps f32 weights and the rtstyle metadata in its rt_info; the inference precision is a load-time
choice (bf16 on CPUs with native bf16, f32 elsewhere: `rtstyle.backends.openvino_backend`). The checks:
InstanceNorm must arrive as one MVN (per-image mean/variance normalisation) per norm layer with no
BatchNormInference; the compiled IR at f32 must match eager fp32 PyTorch within `OPENVINO_TOLERANCE` max
abs on random and real frames (the conversion check); the bf16 error, when this CPU runs bf16, is
measured and reported against its own, looser bound (`BF16_TOLERANCE`) since it is a property of the
precision, not of the export.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from rtstyle.formats.metadata import new_meta, norm_layer_count, sha256_file
from rtstyle.formats.openvino import (OPENVINO_TOLERANCE, compile_cpu, cpu_capabilities, generator_to_openvino,
                                      openvino_core, read_openvino_meta, save_openvino)
from rtstyle.models import ResnetGenerator
from rtstyle.weights import ModelInfo

from . import verify
from .options import ExportError, ExportOptions, ExportResult, Log

# bf16 keeps 8 significant bits (relative error ~4e-3 per op); through the full 9-block generator the
# output moved by up to 0.11 max abs (mean 6e-3, under one uint8 level) on real frames here. The bound
# catches a broken bf16 path (errors of order 1), not the expected rounding.
BF16_TOLERANCE = 0.25


def check_mvn(model, info: ModelInfo) -> str:
    ops = Counter(op.get_type_name() for op in model.get_ops())
    expected = norm_layer_count(info)
    if ops.get("BatchNormInference"):
        raise ExportError(f"the OpenVINO model has {ops['BatchNormInference']} BatchNormInference op(s): InstanceNorm "
                          "was converted with running statistics instead of per-image ones")
    if ops.get("MVN", 0) != expected:
        raise ExportError(f"expected {expected} MVN ops (one per InstanceNorm), found {ops.get('MVN', 0)}; "
                          f"ops {dict(ops)}")
    return f"{expected} MVN ops (per-image InstanceNorm), no BatchNormInference"


def export_openvino(generator: ResnetGenerator, info: ModelInfo, source: Path, target: Path, options: ExportOptions,
                    log: Log, *, overwrite: bool = False) -> ExportResult:
    hw = options.shape(info.train_size)
    meta = new_meta(info, "openvino", options.dynamic, *hw, source_sha256=sha256_file(source))
    log(f"converting to OpenVINO IR ({meta.size_policy})")
    model = generator_to_openvino(generator, meta)
    graph_note = check_mvn(model, info)
    log(f"graph: {graph_note}")
    batches = verify.verification_batches(info.config.input_nc, hw, options.dynamic)

    def runner(precision: str):  # compiled the way the backend compiles it, so the check is of what runs
        compiled = compile_cpu(model, precision)
        return lambda x: torch.from_numpy(np.array(compiled({0: x.numpy()})[0], dtype=np.float32))

    results = verify.compare(runner("f32"), generator, batches)
    tolerance = options.tolerance or OPENVINO_TOLERANCE
    result = ExportResult(path=target, format="openvino", tolerance=tolerance, comparisons=results, notes=[graph_note])
    log(f"OpenVINO f32 vs PyTorch fp32: {verify.describe(results)}")
    if verify.worst(results) > tolerance:
        raise ExportError(f"OpenVINO f32 output differs from PyTorch by {verify.worst(results):.3g} > tolerance "
                          f"{tolerance:g}; nothing was written")
    if "BF16" in cpu_capabilities():
        bf16 = verify.compare(runner("bf16"), generator, batches)
        note = f"bf16 (this CPU's default at run time): max abs {verify.worst(bf16):.3g} (bound {BF16_TOLERANCE})"
        log(f"OpenVINO bf16 vs PyTorch fp32: {verify.describe(bf16)}")
        if verify.worst(bf16) > BF16_TOLERANCE:
            note += ": ABOVE the bound, run with --precision fp32"
        result.notes.append(note)
    save_openvino(model, target, overwrite=overwrite)
    read_openvino_meta(openvino_core().read_model(str(target)), str(target))  # the metadata survived the round trip
    return result
