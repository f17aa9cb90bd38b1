"""Turning command-line inputs (files, folders, globs) into an ordered list of files."""

from __future__ import annotations

import glob
from pathlib import Path

from ..errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


class InputError(UserError, FileNotFoundError):
    """An input that names nothing; the message says what was expected."""


def refuse_clashing_stems(inputs: list[Path], verb: str) -> None:
    """Raise when two inputs share a file stem: their outputs (named by stem) would overwrite each other."""
    from collections import Counter

    from ..errors import UserError

    clashes = [stem for stem, n in Counter(p.stem for p in inputs).items() if n > 1]
    if clashes:
        raise UserError(f"several inputs share the name(s) {clashes}: their outputs would overwrite each other; "
                        f"{verb} them in separate runs or to separate --out folders")


def refuse_overwriting_inputs(inputs: list[Path], outputs: list[Path]) -> None:
    """Raise when an output path is one of the inputs: --overwrite would destroy the source, so it is no remedy."""
    sources = {p.resolve(): p for p in inputs}
    for dst in outputs:
        if dst.resolve() in sources:
            from ..errors import UserError

            raise UserError(f"the output {dst} would be the input {sources[dst.resolve()]} itself (replacing the "
                            "source); choose another --out")


def files_in(folder: Path, suffixes: tuple[str, ...], recursive: bool = False) -> list[Path]:
    """The files in `folder` (and its subfolders, with `recursive`) whose suffix is one of `suffixes`, sorted."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in suffixes)


def expand_inputs(inputs: list[str], suffixes: tuple[str, ...], out: Path | None = None) -> list[Path]:
    """Files as given, folders' files with `suffixes` (sorted), globs' matches; duplicates dropped, order kept.

    `out`, the output folder, may not be a folder given as an input (or one a glob lists): a second run would
    translate the first run's outputs as inputs.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if out is not None and Path(out).is_dir() and (path if path.is_dir() else path.parent).resolve() == \
                Path(out).resolve() and (path.is_dir() or glob.has_magic(item)):
            from ..errors import UserError

            raise UserError(f"--out {out} is also an input folder ({item}): a later run would take this run's "
                            "outputs as inputs; choose another --out")
        if path.is_dir():
            matches = files_in(path, suffixes)
            if not matches:
                raise InputError(f"folder {path} holds no files ending in {', '.join(suffixes)}")
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not matches:
                raise InputError(f"pattern {item!r} matches no file")
        else:
            raise InputError(f"input not found: {item} (expected a file, a folder or a glob pattern)")
        found.extend(matches)
    return list(dict.fromkeys(found))
