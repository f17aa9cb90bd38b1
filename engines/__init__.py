"""engines: compile a generator into deployable artifacts, one pure function per format, in one map.

`EXPORTERS[format](generator, info, source, target, options, log, overwrite=) -> ExportResult` writes one
artifact (never replacing a file that appeared meanwhile, unless `overwrite`) and
checks it against the eager fp32 generator through the artifact's own runtime (`engines.verify`);
`export_model` resolves `--model`, picks the output path (next to the weights, in the store for store
models, or `--out`) and refuses to overwrite without `overwrite=True`. Making and reading each artifact
lives in its module of `rtstyle.formats` (onnx, openvino, int8, tensorrt), because backends also make
them on the fly (`rtstyle` never imports `engines`); each exporter here is the checks and the write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rtstyle.errors import UserError
from rtstyle.formats import FORMATS as ARTIFACT_FORMATS
from rtstyle.formats.metadata import artifact_kind
from rtstyle.store import ASSETS_DIR, OPENVINO_DIR_SUFFIX, resolve_model, store_dir
from rtstyle.weights import load_model

from .onnx_export import export_onnx
from .openvino_export import export_openvino
from .openvino_int8_export import export_openvino_int8
from .options import ExportError, ExportOptions, ExportResult, Log, parse_hw
from .tensorrt_export import export_tensorrt

# --format's choices: rtstyle's formats but int8, which is `--format openvino --int8` (an OpenVINO IR)
FORMATS = tuple(name for name in ARTIFACT_FORMATS if name != "int8")
EXPORTERS: dict[str, Callable[..., ExportResult]] = {
    "onnx": export_onnx,
    "tensorrt": export_tensorrt,
    "openvino": export_openvino,
    "openvino-int8": export_openvino_int8,  # `--format openvino --int8`
}


def default_target(source: Path, fmt: str, options: ExportOptions, train_size: int) -> Path:
    """Next to the source weights: NAME.onnx, NAME-360x640.onnx, NAME-fp16.engine, NAME_openvino/NAME.xml.

    A model bundled with the package (`demo`) exports into the store instead: the installed package may be
    read-only, and is no place for a user's files (issue 15, item 6)."""
    if source.resolve().parent == ASSETS_DIR:
        source = store_dir() / source.name
    stem = source.stem
    if not options.dynamic:
        h, w = options.shape(train_size)
        stem = f"{stem}-{h}x{w}"
    if fmt == "openvino" and options.int8:
        stem = f"{stem}-int8"
    if fmt == "onnx":
        return source.with_name(f"{stem}.onnx")
    if fmt == "tensorrt":
        return source.with_name(f"{stem}-{'fp16' if options.half else 'fp32'}.engine")
    return source.parent / f"{stem}{OPENVINO_DIR_SUFFIX}" / f"{source.stem}.xml"


def export_model(model: str, fmt: str, options: ExportOptions = ExportOptions(), out: Path | None = None,
                 overwrite: bool = False, log: Log | None = None) -> ExportResult:
    """Export `model` (weights path or store name) to `fmt`; returns where it went and how close it is."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if options.half and fmt != "tensorrt":
        raise UserError("--half applies to --format tensorrt (FP16 engine); ONNX and OpenVINO artifacts keep fp32 "
                         "weights, and OpenVINO runs them in bf16 on CPUs that have it")
    if options.int8 and fmt != "openvino":
        raise UserError("--int8 applies to --format openvino (NNCF-quantised IR for the CPU)")
    log = log or (lambda message: None)
    source = resolve_model(model)
    if artifact_kind(source) != "weights":
        raise UserError(f"{source}: export starts from weights (.safetensors or .pth), not from an exported artifact")
    generator, info = load_model(source)
    target = Path(out) if out else default_target(source, fmt, options, info.train_size)
    if fmt == "openvino" and target.suffix != ".xml":  # --out names a folder
        target = target / f"{source.stem}.xml"
    expected_suffix = {"onnx": ".onnx", "tensorrt": ".engine", "openvino": ".xml"}[fmt]
    if target.suffix != expected_suffix:
        raise UserError(f"--out {target}: a {fmt} artifact is written as *{expected_suffix}")
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; pass --overwrite to replace it")
    # the exporter's final step refuses a target that appeared meanwhile, unless `overwrite` (io.files.publish)
    return EXPORTERS["openvino-int8" if options.int8 else fmt](generator, info, source, target, options, log,
                                                                overwrite=overwrite)


__all__ = ["EXPORTERS", "FORMATS", "ExportError", "ExportOptions", "ExportResult", "export_model", "parse_hw"]
