"""Graph conversions a runtime may need on the fly: generator -> ONNX, generator -> OpenVINO model.

`engines/` wraps these with the checks an export deserves (ONNX checker, graph inspection, comparison with
PyTorch) and writes files; the backends call them directly when `--model` is a .safetensors file and the
chosen backend needs a graph (`rtstyle` never imports `engines`). Those on-the-fly conversions are cached
under `$RTSTYLE_HOME/cache/{onnx,openvino}`, keyed by the weights' sha256, because each takes seconds.
torch, onnx and openvino are imported inside the functions that need them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch

from .artifacts import INPUT_NAME, MULTIPLE, OUTPUT_NAME, ArtifactMeta, library_versions, sha256_file
from .models import ResnetGenerator
from .weights import ModelInfo, atomic_write

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


def onnx_metadata(info: ModelInfo, fmt: str, dynamic: bool, height: int | None, width: int | None,
                  source_sha256: str | None = None, **changes) -> ArtifactMeta:
    return ArtifactMeta(info=info, format=fmt, dynamic=dynamic, height=None if dynamic else height,
                        width=None if dynamic else width, opset=OPSET, source_sha256=source_sha256,
                        versions=library_versions("torch", "onnx", "onnxscript"), **changes)


def generator_to_onnx(generator: ResnetGenerator, meta: ArtifactMeta):
    """The generator as an `onnx.ModelProto` with `meta` in its metadata_props.

    Batch is always dynamic; height and width are dynamic multiples of 4 when `meta.dynamic`, else fixed.
    InstanceNorm (affine=False, track_running_stats=False) is exported in eval mode, where it still uses
    each image's own statistics: the exporter emits InstanceNormalization nodes (checked by
    `engines.onnx_export.check_instance_norm`), not a BatchNormalization with running statistics.
    """
    import onnx

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


def _rename_dims(model, names: dict[str, str]) -> None:
    """Readable symbolic dims ('height' rather than '4*height_div4') on the graph's inputs and outputs."""
    for value in list(model.graph.input) + list(model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def read_onnx_meta(model, where: str = "ONNX model") -> ArtifactMeta:
    return ArtifactMeta.from_strings({p.key: p.value for p in model.metadata_props}, where)


def cached_onnx(weights_path: Path, log: Callable[[str], None] | None = None) -> Path:
    """A dynamic ONNX export of a weights file, made once and kept in the cache (keyed by content hash)."""
    def make(target: Path, generator: ResnetGenerator, meta: ArtifactMeta) -> None:
        payload = generator_to_onnx(generator, meta).SerializeToString()
        atomic_write(target, lambda tmp: Path(tmp).write_bytes(payload))

    return _cached(Path(weights_path), "onnx", f"-opset{OPSET}.onnx", make, log)


def cached_openvino(weights_path: Path, log: Callable[[str], None] | None = None) -> Path:
    """A dynamic OpenVINO IR (.xml + .bin) of a weights file, made once and kept in the cache."""
    def make(target: Path, generator: ResnetGenerator, meta: ArtifactMeta) -> None:
        save_openvino(generator_to_openvino(generator, meta), target)

    return _cached(Path(weights_path), "openvino", ".xml", make, log)


def _cached(weights_path: Path, kind: str, suffix: str, make, log) -> Path:
    from .store import cache_dir
    from .weights import load_model

    digest = sha256_file(weights_path)
    target = cache_dir() / kind / f"{weights_path.stem}-{digest[:16]}{suffix}"
    if target.is_file():
        return target
    if log:
        log(f"converting {weights_path.name} to {kind} once (cached in {target.parent})")
    generator, info = load_model(weights_path)
    make(target, generator, onnx_metadata(info, kind, True, None, None, source_sha256=digest))
    return target


def generator_to_openvino(generator: ResnetGenerator, meta: ArtifactMeta, batch: int | None = None):
    """The generator as an `openvino.Model` (converted from the torch module) with `meta` in its rt_info.

    `batch` fixes the batch size as well (with a fixed-size `meta`): the int8 path calibrates and compiles
    fully static graphs, the recipe measured for issue 6 (a static IR can still be reshaped to another batch
    size before compiling).

    OpenVINO's PyTorch frontend turns aten::instance_norm into MVN (per-image mean/variance), the
    inference semantics we want; `engines.openvino_export` checks the op counts.
    """
    import openvino as ov

    generator = generator.eval().float().cpu()
    h, w = (-1, -1) if meta.dynamic else (meta.height, meta.width)
    example = torch.zeros(1, generator.config.input_nc, 64 if meta.dynamic else h, 64 if meta.dynamic else w)
    # From the nn.Module (OpenVINO traces it): InstanceNorm becomes one MVN op. Converting a torch.export
    # program instead decomposes it into ReduceMean/Sub/Sqrt chains (slower); the ONNX route adds shape
    # subgraphs. torch.jit's deprecation warnings from that tracing are OpenVINO's business, not the user's.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = ov.convert_model(generator, example_input=example,
                                 input=[ov.PartialShape([batch or -1, generator.config.input_nc, h, w])])
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    meta = meta.with_format("openvino", opset=None,
                            versions=library_versions("torch", "openvino"))
    for key, value in meta.to_strings().items():
        model.set_rt_info(value, ["rtstyle", key[len("rtstyle."):]])
    return model


def read_openvino_meta(model, where: str = "OpenVINO model") -> ArtifactMeta:
    if not model.has_rt_info(["rtstyle", "model"]):
        return ArtifactMeta.from_strings({}, where)  # raises with the explanation
    rt = model.get_rt_info()["rtstyle"]
    strings = {f"rtstyle.{key}": model.get_rt_info(["rtstyle", key]).astype(str) for key in rt.keys()}
    return ArtifactMeta.from_strings(strings, where)


def save_openvino(model, xml_path: Path) -> Path:
    """Write an IR (.xml + .bin) so that a reader never sees half of it: both go to a temporary folder first.

    Weights stay f32 (`compress_to_fp16=False`, whose default would round them to fp16): the inference
    precision is chosen at load time from the CPU, and f32 weights keep the f32 path exact.
    """
    import os
    import shutil
    import tempfile

    import openvino as ov

    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.", dir=xml_path.parent))
    try:
        ov.save_model(model, str(tmp / xml_path.name), compress_to_fp16=False)
        bin_path = xml_path.with_suffix(".bin")
        os.replace(tmp / bin_path.name, bin_path)  # .bin first: an .xml never points at a missing .bin
        os.replace(tmp / xml_path.name, xml_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml_path
