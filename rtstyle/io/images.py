"""Reading and writing still images as RGB uint8 arrays (any common format, depth and channel count)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..transforms import to_rgb_uint8
from .files import atomic_write


class ImageReadError(ValueError):
    """A file that could not be decoded as an image; `reason` is the message without the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_image(path: str | Path) -> np.ndarray:
    """Decode `path` to (h, w, 3) RGB uint8: grayscale and 16-bit are converted, alpha dropped, EXIF applied."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(path, f"cannot be read ({os.strerror(e.errno) if e.errno else e})") from None
    # IMREAD_COLOR | ANYDEPTH: 3 channels (gray expanded, alpha dropped), 16-bit kept, EXIF orientation applied.
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    if img is None:
        img = _read_with_pillow(path)
        if img is None:
            raise ImageReadError(path, "not a readable image")
        return img
    return to_rgb_uint8(img, bgr=True)


def _read_with_pillow(path: Path) -> np.ndarray | None:
    """Formats OpenCV lacks (e.g. GIF): Pillow, which torchvision already depends on."""
    try:
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except Exception:
        return None


def write_image(path: str | Path, rgb: np.ndarray, *, overwrite: bool = True) -> Path:
    """Encode (h, w, 3) RGB uint8 to `path` (format from its suffix), atomically; `overwrite=False` refuses a
    file that appeared since the caller checked (`files.OutputAppeared`)."""
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError(f"could not encode an image as {path.suffix!r}")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.tobytes()), overwrite=overwrite)
    return path
