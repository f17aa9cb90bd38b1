"""The one reader of `--device` values, shared by every command (translate, video, webcam, demo, benchmark,
evaluate, export checks, train, distill): `auto`, `cpu`, `cuda` or `cuda:N`, anything else refused.

Before it, `--device gpu` or `--device banana` fell through the backends' `startswith("cuda")` tests and
ran on the CPU with exit 0. Whether a CUDA GPU is actually usable is decided later, where it is needed
(`rtstyle.backends.resolve_device`, `select.choose_backend`); this module only checks the spelling.
"""

from __future__ import annotations

import re

from .errors import UserError

DEVICE_FORMS = "auto, cpu, cuda or cuda:N (N = the GPU's index, from 0)"
HELP = f"where to run: {DEVICE_FORMS}"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# Names people reach for, and what they mean here.
_HINTS = {"gpu": "cuda", "cuda0": "cuda:0", "nvidia": "cuda", "mps": "cpu (Apple GPUs are not supported)"}


def parse_device(value: str, option: str = "--device") -> str:
    """`value` lower-cased and stripped when it is one of the accepted forms, else a UserError listing them."""
    text = str(value).strip().lower()
    if _DEVICE.match(text):
        return text
    hint = f"; for {value!r} use {_HINTS[text]}" if text in _HINTS else ""
    raise UserError(f"{option} {value!r} is not a device: use {DEVICE_FORMS}{hint}")
