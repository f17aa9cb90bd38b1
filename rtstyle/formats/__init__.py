"""Artifact formats: one module per format that makes and reads its artifact, and the map of them all.

`metadata` is what every artifact carries (the generator's `ModelInfo` plus how to feed the graph);
`onnx`, `openvino`, `int8` (NNCF quantisation, the exact sub-pixel rewrite and the calibration frames) and
`tensorrt` (engine file, cache rules, build) each make their artifact from a generator and read it back.
Backends only load and run what these produce; `engines/` adds the export checks and writes files.
`FORMATS` maps a format name to its functions, so the CLI's `--format` choices, `artifact_kind` and the
tests read one table; `open_model` resolves a `--model` value once into the `ModelRef` that flows down to
the backend. No format module imports `rtstyle.backends`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..weights import ModelInfo
from .metadata import ArtifactError, ArtifactMeta, sha256_file


@dataclass(frozen=True)
class Format:
    """One artifact format: the kind a `--model` path of it is, its suffixes, and its functions."""

    kind: str  # the artifact kind backends declare they run (registry.REGISTRY's `runs`)
    suffixes: tuple[str, ...]  # file suffixes of the artifact ("" for a folder: OpenVINO)
    extra: str | None  # the pip extra whose runtime reads it
    read_meta: Callable[[Path], ArtifactMeta]  # what an artifact of this format says about itself
    from_weights: Callable | None  # the on-the-fly conversion of a weights file (cached)


def _read_onnx(path: Path) -> ArtifactMeta:
    from .onnx import load_onnx, read_onnx_meta

    return read_onnx_meta(load_onnx(path), str(path))


def _read_openvino(path: Path) -> ArtifactMeta:
    from .openvino import openvino_xml, read_ir, read_openvino_meta

    xml = openvino_xml(path)
    return read_openvino_meta(read_ir(xml), str(xml))


def _read_engine(path: Path) -> ArtifactMeta:
    from .tensorrt import read_engine_header

    return read_engine_header(path)[0]


def _cached_onnx(path: Path, log=None) -> Path:
    from .onnx import cached_onnx

    return cached_onnx(path, log)


def _cached_openvino(path: Path, log=None) -> Path:
    from .openvino import cached_openvino

    return cached_openvino(path, log)


def _cached_engine(path: Path, log=None, precision: str = "fp16", device: str | None = None) -> Path:
    from .tensorrt import prepare_engine

    return prepare_engine(path, precision=precision, log=log, device=device)


def _cached_int8(path: Path, log=None, hw: tuple[int, int] = (256, 256)):
    from .int8.quantize import cached_int8

    return cached_int8(path, hw, log)  # an Int8Decision: the IR, or why this model stays bf16


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", (".onnx",), "onnx", _read_onnx, _cached_onnx),
    "openvino": Format("openvino", (".xml", ""), "openvino", _read_openvino, _cached_openvino),
    "int8": Format("openvino", (".xml", ""), "openvino", _read_openvino, _cached_int8),  # an int8 OpenVINO IR
    "tensorrt": Format("tensorrt", (".engine",), "tensorrt", _read_engine, _cached_engine),
}


@dataclass(frozen=True)
class ModelRef:
    """A `--model` value resolved once: where it is, what kind of artifact, what it says, its content hash."""

    path: Path
    kind: str  # "weights" or a Format.kind
    info: ModelInfo  # generator config, direction, training size
    meta: ArtifactMeta | None  # an artifact's own metadata; None for weights
    sha256: str

    @property
    def name(self) -> str:
        return self.path.stem


def open_model(spec: str | Path) -> ModelRef:
    """Resolve a path or store name, read what it says (weights header or artifact metadata) and hash it."""
    from ..store import resolve_model
    from ..weights import load_model, read_info
    from .metadata import artifact_kind

    path = resolve_model(spec)
    kind = artifact_kind(path)
    if kind == "weights":
        # A native file says what it is in its header; a reference .pth only through its tensors' shapes.
        meta, info = None, read_info(path) if path.suffix == ".safetensors" else load_model(path)[1]
    else:
        fmt = next(f for f in FORMATS.values() if f.kind == kind)
        meta = fmt.read_meta(path)
        info = meta.info
    if kind == "openvino":
        from .openvino import openvino_xml

        digest = sha256_file(openvino_xml(path))
    else:
        digest = sha256_file(path)
    return ModelRef(path=path, kind=kind, info=info, meta=meta, sha256=digest)


__all__ = ["FORMATS", "ArtifactError", "ArtifactMeta", "Format", "ModelRef", "open_model"]
