"""Still-image translation (the reference's test.py without its dataset machinery).

Each input image is read, brought to the generator by `transforms.preprocess` (native size padded to a
multiple of 4, or short side resized to N), translated by a backend and written as `OUT/<stem>.png` at the
input's own size (or as the one file --out names). A file that cannot be read or written is reported and
the batch goes on; a refusal every later file would meet too (no permission, a read-only disk) ends it.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .backends import Backend
from .errors import UserError
from .io.files import OutputAppeared, WriteError
from .io.images import ImageReadError, read_image, write_image
from .io.inputs import IMAGE_SUFFIXES, refuse_clashing_stems, refuse_overwriting_inputs
from .tiling import guarded_infer
from .transforms import SIZE_HELP, postprocess, preprocess


@dataclass
class TranslateOptions:
    """Translate images; writes OUT/<stem>.png at each input's own size (OUT may be one image file for one input)."""

    inputs: list[str] = field(default_factory=list, metadata={"positional": True, "nargs": "+",
                                                              "help": "image files, folders or glob patterns"})
    out: Path | None = field(default=None, metadata={
        "required": True, "help": "output folder (or, for one input, an image file such as result.png)"})
    size: str = field(default="native", metadata={"help": SIZE_HELP})
    overwrite: bool = field(default=False, metadata={"help": "replace outputs that already exist"})

# Write failures after which the next file may still fit (a smaller image, space freed meanwhile).
PER_FILE_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class TranslateReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def output_paths(inputs: list[Path], out: Path) -> list[Path]:
    """OUT/<stem>.png per input, or OUT itself when it names an image file and there is one input.

    Refused: two inputs with the same stem (they would overwrite each other), an existing file as the
    folder, several inputs for one file, and an output that is one of the inputs (it would destroy it).
    """
    if out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir():
        if len(inputs) != 1:
            raise UserError(f"--out {out} names one image file, but {len(inputs)} inputs were given; give a folder "
                            "for --out")
        paths = [out]
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is an existing file, not a folder; give a folder for OUT/<stem>.png (or "
                            "an image file name such as result.png with one input)")
        refuse_clashing_stems(inputs, "translate")
        paths = [out / f"{p.stem}.png" for p in inputs]
    refuse_overwriting_inputs(inputs, paths)
    return paths


def translate_images(inputs: list[Path], backend: Backend, out: Path, size: int | None = None,
                     overwrite: bool = False, on_done: Callable[[Path, Path | None, str | None], None] | None = None
                     ) -> TranslateReport:
    """Translate each image into `output_paths(inputs, out)`; unreadable inputs, existing outputs (without
    `overwrite`) and a full disk are reported per file, not fatal. Errors name the output, not the input
    (`on_done` gets the input). Raises WriteError when the output folder cannot be written at all."""
    report = TranslateReport()
    for src, dst in zip(inputs, output_paths(inputs, out)):
        error = None
        if dst.exists() and not overwrite:
            error = f"{dst} exists (pass --overwrite to replace it)"
        else:
            try:
                x, plan = preprocess(read_image(src), size)
                write_image(dst, postprocess(guarded_infer(backend, x), plan)[0], overwrite=overwrite)  # tiled if large
            except ImageReadError as e:
                error = e.reason
            except OutputAppeared as e:  # another run wrote dst meanwhile
                error = str(e)
            except WriteError as e:
                if e.errno not in PER_FILE_WRITE_ERRORS:
                    done = f" ({len(report.written)} written before)" if report.written else ""
                    raise WriteError(f"{e}{done}", e.errno) from None
                error = str(e)
        if error:
            report.failed.append((src, error))
        else:
            report.written.append(dst)
        if on_done:
            on_done(src, None if error else dst, error)
    return report
