"""ONNX: the generator as an ONNX graph carrying the artifact metadata, and reading that metadata back.

`generator_to_onnx` is the one exporter (torch.export-based, opset 18, dynamic batch and optionally any
size), `read_onnx_meta` reads what a graph says about itself, and `cached_onnx` is the on-the-fly export
of a weights file that `--backend onnxruntime` and the TensorRT build use (cached by the weights' sha256,
since an export takes seconds). `engines/onnx_export.py` adds the export checks and writes the file.
onnx is imported inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import require
from ..io.files import atomic_write
from ..models import ResnetGenerator
from ..transforms import MULTIPLE
from .metadata import INPUT_NAME, OUTPUT_NAME, ArtifactError, ArtifactMeta, cached_conversion, library_versions

# Opset 18: the lowest opset the torch.export-based exporter (torch >= 2.5, onnxscript) emits natively
# (lower ones go through the version converter), and one that every runtime here reads: ONNX Runtime
# >= 1.14, OpenVINO >= 2023.0, TensorRT 10 (whose parser maps InstanceNormalization onto its native
# INormalizationLayer). Nothing in the generator needs a newer op: Pad(reflect) is opset 11,
# InstanceNormalization opset 6, ConvTranspose with output_padding opset 1, Resize (nearest; the
# resize upsampler) opset 13.
OPSET = 18
# Largest side (in units of MULTIPLE) a dynamic export accepts: 4096 px covers 4K; torch.export needs a bound.
MAX_SIDE_UNITS = 1024
MAX_BATCH = 64


def generator_to_onnx(generator: ResnetGenerator, meta: ArtifactMeta):
    """The generator as an `onnx.ModelProto` with `meta` in its metadata_props.

    Batch is always dynamic; height and width are dynamic multiples of 4 when `meta.dynamic`, else fixed.
    InstanceNorm (affine=False, track_running_stats=False) is exported in eval mode, where it still uses
    each image's own statistics: the exporter emits InstanceNormalization nodes (checked by
    `engines.onnx_export.check_instance_norm`), not a BatchNormalization with running statistics.
    """
    onnx = require("onnx", "onnx")

    meta = replace(meta, opset=OPSET, versions={**library_versions("torch", "onnx", "onnxscript"), **meta.versions})
    generator = generator.eval().float().cpu()
    height, width = (meta.height, meta.width) if not meta.dynamic else (64, 64)
    # Batch 2 and sides that are not 1: torch.export specialises dimensions of size 0 or 1.
    example = torch.zeros(2, generator.config.input_nc, height, width)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dims: dict[int, object] = {0: batch}
    if meta.dynamic:
        # Derived dims: torch.export proves that any multiple of 4 works (needed for the stride-2 round trip).
        dims[2] = MULTIPLE * torch.export.Dim("height_div4", min=2, max=MAX_SIDE_UNITS)
        dims[3] = MULTIPLE * torch.export.Dim("width_div4", min=2, max=MAX_SIDE_UNITS)
    with torch.no_grad():
        program = torch.onnx.export(generator, (example,), dynamo=True, opset_version=OPSET,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes={"x": dims}, verbose=False)
    model = program.model_proto
    _rename_dims(model, {"batch": "batch", "4*height_div4": "height", "4*width_div4": "width"})
    del model.metadata_props[:]
    for key, value in meta.to_strings().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "rtstyle"
    onnx.checker.check_model(model)  # cheap structural check; engines runs the full one
    return model


# fp32 graph vs fp32 eager: only summation order differs. Measured ~2e-6 (tiny) to ~1e-5 (full 9-block
# generator) on this CPU; 1e-4 leaves a 10x margin and is still far below one uint8 level (1/127.5).
ONNX_TOLERANCE = 1e-4


def _rename_dims(model, names: dict[str, str]) -> None:
    """Readable symbolic dims ('height' rather than '4*height_div4') on the graph's inputs and outputs."""
    for value in list(model.graph.input) + list(model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def load_onnx(path: Path):
    """The `onnx.ModelProto` at `path` (weights left external), or an ArtifactError naming the file.

    A truncated or foreign file makes protobuf raise DecodeError (or onnx a ValueError): a user's file, not a bug.
    """
    onnx = require("onnx", "onnx")
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0]}); it is truncated or not "
                            "an ONNX file: export it again with `python cli.py export --format onnx`") from None


def read_onnx_meta(model, where: str = "ONNX model") -> ArtifactMeta:
    return ArtifactMeta.from_strings({p.key: p.value for p in model.metadata_props}, where)


def onnx_runner(path: Path):
    """`x -> y` through the ONNX file at `path` on the CPU (ONNX Runtime, else OpenVINO, which reads ONNX too)."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    from .openvino import compile_cpu, openvino_core

    compiled = compile_cpu(openvino_core().read_model(str(path)), "f32")
    return lambda x: torch.from_numpy(np.array(compiled({0: x.numpy()})[0], dtype=np.float32))


def cached_onnx(weights_path: Path, log: Callable[[str], None] | None = None) -> Path:
    """A dynamic ONNX export of a weights file, made once, checked against PyTorch, kept in the cache."""
    def make(target: Path, generator: ResnetGenerator, meta: ArtifactMeta) -> None:
        payload = generator_to_onnx(generator, meta).SerializeToString()
        atomic_write(target, lambda tmp: Path(tmp).write_bytes(payload))

    return cached_conversion(Path(weights_path), "onnx", f"-opset{OPSET}.onnx", make, log,
                             check=(onnx_runner, ONNX_TOLERANCE))


