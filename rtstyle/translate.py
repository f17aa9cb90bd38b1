"""Still-image translation (the reference's test.py without its dataset machinery).

Each input image is read, brought to the generator by `transforms.preprocess` (native size padded to a
multiple of 4, or short side resized to N), translated by a backend and written as `OUT/<stem>.png` at the
input's own size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .backends import Backend
from .io.files import OutputAppeared
from .io.images import ImageReadError, read_image, write_image
from .io.inputs import refuse_clashing_stems
from .transforms import SIZE_HELP, postprocess, preprocess


@dataclass
class TranslateOptions:
    """Translate images; writes OUT/<stem>.png at each input's own size."""

    inputs: list[str] = field(default_factory=list, metadata={"positional": True, "nargs": "+",
                                                              "help": "image files, folders or glob patterns"})
    out: Path | None = field(default=None, metadata={"required": True, "help": "output folder"})
    size: str = field(default="native", metadata={"help": SIZE_HELP})
    overwrite: bool = field(default=False, metadata={"help": "replace outputs that already exist"})


@dataclass
class TranslateReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def output_paths(inputs: list[Path], out_dir: Path) -> list[Path]:
    """OUT/<stem>.png per input; two inputs with the same stem would overwrite each other, so refuse."""
    refuse_clashing_stems(inputs, "translate")
    return [out_dir / f"{p.stem}.png" for p in inputs]


def translate_images(inputs: list[Path], backend: Backend, out_dir: Path, size: int | None = None,
                     overwrite: bool = False, on_done: Callable[[Path, Path | None, str | None], None] | None = None
                     ) -> TranslateReport:
    """Translate each image; unreadable ones and existing outputs (without `overwrite`) are reported, not fatal."""
    report = TranslateReport()
    for src, dst in zip(inputs, output_paths(inputs, out_dir)):
        error = None
        if dst.exists() and not overwrite:
            error = f"{dst} exists (pass --overwrite to replace it)"
        else:
            try:
                x, plan = preprocess(read_image(src), size)
                write_image(dst, postprocess(backend.infer(x), plan)[0], overwrite=overwrite)
            except (ImageReadError, OutputAppeared) as e:  # OutputAppeared: another run wrote dst meanwhile
                error = str(e)
        if error:
            report.failed.append((src, error))
        else:
            report.written.append(dst)
        if on_done:
            on_done(src, None if error else dst, error)
    return report
