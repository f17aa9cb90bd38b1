"""The model store: where named models live and how a `--model` value becomes a file.

`--model` takes a path (.safetensors or .pth weights, or an exported .onnx, .engine, OpenVINO .xml or
OpenVINO folder) or a name. Names are looked up among the models bundled with the package
(`rtstyle/assets/`), then in the store directory: `$RTSTYLE_HOME/models`, by default
`~/.cache/rtstyle/models`. `python cli.py download NAME` and `import-weights` fill the store; `export`
writes artifacts next to a stored model (a bundled model's into the store, never into the package), so
`--model NAME.onnx` finds them by file name too and `models` lists them (`stored_artifacts`). Artifacts a
backend makes on the fly (ONNX of a weights file, TensorRT engines) live in `$RTSTYLE_HOME/cache`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

WEIGHT_SUFFIXES = (".safetensors", ".pth")
ARTIFACT_SUFFIXES = (".onnx", ".engine", ".xml")  # exported by engines/ (see rtstyle.formats.FORMATS)
MODEL_HELP = (  # what --model accepts: every form `resolve_model` and the backends take
              "a weights file (.safetensors, or a reference CycleGAN .pth), an exported artifact (.onnx, .engine, "
              "an OpenVINO .xml or its folder), or a name: demo (bundled), a model in the store ($RTSTYLE_HOME/models, "
              "default ~/.cache/rtstyle/models; `models` lists them), or an official name after `download NAME`")
OPENVINO_DIR_SUFFIX = "_openvino"  # `export --format openvino` writes NAME_openvino/NAME.xml + .bin
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEMO_CLIP = ASSETS_DIR / "demo_clip.mp4"  # 4 s of a real CC-BY clip: the demo's input, int8's calibration frames

# The 18 official CycleGAN pretrained generators (reference scripts/download_cyclegan_model.sh) and the
# translation each performs.
OFFICIAL_DIRECTIONS: dict[str, str] = {
    "apple2orange": "apple->orange",
    "orange2apple": "orange->apple",
    "summer2winter_yosemite": "summer->winter",
    "winter2summer_yosemite": "winter->summer",
    "horse2zebra": "horse->zebra",
    "zebra2horse": "zebra->horse",
    "monet2photo": "monet->photo",
    "style_monet": "photo->monet",
    "style_cezanne": "photo->cezanne",
    "style_ukiyoe": "photo->ukiyoe",
    "style_vangogh": "photo->vangogh",
    "sat2map": "satellite->map",
    "map2sat": "map->satellite",
    "cityscapes_photo2label": "photo->label",
    "cityscapes_label2photo": "label->photo",
    "facades_photo2label": "photo->label",
    "facades_label2photo": "label->photo",
    "iphone2dslr_flower": "iphone->dslr",
}


class ModelNotFound(UserError, FileNotFoundError):
    """A --model value that names no file and no stored model; the message says how to get one."""


def rtstyle_home() -> Path:
    return Path(os.environ.get("RTSTYLE_HOME") or Path.home() / ".cache" / "rtstyle")


def store_dir() -> Path:
    return rtstyle_home() / "models"


def cache_dir() -> Path:
    """Artifacts made on the fly from stored weights (ONNX exports, TensorRT engines); safe to delete."""
    return rtstyle_home() / "cache"


def stored_models() -> list[str]:
    """Names available to --model: bundled assets and everything in the store."""
    names = set()
    for folder in (ASSETS_DIR, store_dir()):
        if folder.is_dir():
            names.update(p.stem for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    return sorted(names)


def stored_artifacts() -> list[tuple[str, Path]]:
    """(--model value, path) of each artifact `export` wrote into the store: NAME-96x96.onnx, NAME-fp16.engine,
    NAME_openvino (its .xml)."""
    folder = store_dir()
    if not folder.is_dir():
        return []
    found = [(p.name, p) for p in folder.iterdir() if p.suffix in (".onnx", ".engine") and p.is_file()]
    found += [(d.name, xml) for d in folder.iterdir() if d.is_dir() and d.name.endswith(OPENVINO_DIR_SUFFIX)
              for xml in sorted(d.glob("*.xml"))[:1]]
    return sorted(found)


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec


def resolve_model(spec: str | Path) -> Path:
    """Path of the weights that `spec` (a path or a store name) refers to."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    spec = str(spec)
    if _looks_like_path(spec):
        raise ModelNotFound(f"model file not found: {path}")
    file_name = Path(spec).suffix in WEIGHT_SUFFIXES + ARTIFACT_SUFFIXES + (".pt",)
    for folder in (ASSETS_DIR, store_dir()):
        # A file or OpenVINO folder named as it is in the store ("horse2zebra.onnx", "horse2zebra_openvino").
        if file_name or spec.endswith(OPENVINO_DIR_SUFFIX):
            if (folder / spec).exists():
                return folder / spec
            continue
        for suffix in WEIGHT_SUFFIXES:
            candidate = folder / f"{spec}{suffix}"
            if candidate.is_file():
                return candidate
    if file_name:
        raise ModelNotFound(f"model file not found: {path} (nor {spec} in the store {store_dir()})")
    available = stored_models()
    how = (
        f"download it with `python cli.py download {spec}`"
        if spec in OFFICIAL_DIRECTIONS
        else "import a .pth with `python cli.py import-weights FILE.pth --name NAME`, "
        "train one with `python cli.py train`, or pass a file path"
    )
    listing = ", ".join(available) if available else "(empty)"
    raise ModelNotFound(f"no model named {spec!r} in the store {store_dir()}: {how}. Available: {listing}")


@dataclass
class ImportOptions:
    """Convert a reference .pth generator (official download or latest_net_G_A.pth) into the native format
    in the store."""

    file: Path | None = field(default=None, metadata={"positional": True, "help": "the .pth file"})
    name: str = field(default="", metadata={"required": True, "help": "name to store it under (then --model NAME)"})
    direction: str | None = field(default=None, metadata={
        "help": "what it translates, e.g. horse->zebra (known for official names)"})
    train_size: int = field(default=256, metadata={"help": "crop size it was trained at"})
    overwrite: bool = field(default=False, metadata={"help": "replace a stored model of the same name"})


def import_reference(file: str | Path, name: str, direction: str | None = None, train_size: int = 256,
                     overwrite: bool = False):
    """A reference CycleGAN .pth into the store as NAME.safetensors; returns (path, ModelInfo).

    The direction defaults to the official one when `name` or the file's stem is an official model's name.
    """
    from .weights import ModelInfo, load_reference_pth, save_generator

    target = store_dir() / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; pass --overwrite to replace it")
    generator, info = load_reference_pth(file)
    direction = direction or OFFICIAL_DIRECTIONS.get(name) or OFFICIAL_DIRECTIONS.get(Path(file).stem)
    info = ModelInfo(config=info.config, direction=direction, train_size=train_size, name=name, extra=info.extra)
    save_generator(generator, target, info, overwrite=overwrite)
    return target, info


def describe_models() -> list[str]:
    """A tab-separated line per name `--model` can take: direction, size, file, and student/teacher relation."""
    from .formats.metadata import artifact_kind
    from .students import relations
    from .weights import WeightsError, load_model

    names = stored_models()
    related = relations(names)
    lines = []
    for name in names:
        try:
            _, info = load_model(name)
            lines.append(f"{name}\t{info.direction or '?'}\tngf={info.config.ngf} blocks={info.config.n_blocks}"
                         f"\t{resolve_model(name)}" + (f"\t{related[name]}" if name in related else ""))
        except WeightsError as e:
            lines.append(f"{name}\tunreadable: {e}")
    for name, path in stored_artifacts():  # what `export` wrote into the store (a bundled model's exports too)
        lines.append(f"{name}\t{artifact_kind(path)} artifact\t{path}")
    return lines
