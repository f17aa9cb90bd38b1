"""Writing files so that a reader never sees half of one: the one `atomic_write` every output goes through.

Weights, checkpoints, exported artifacts, images, videos' side files, JSON reports and caches are all
written to a temporary name in the target's folder, fsynced, then renamed over the target (POSIX rename is
atomic), so a `kill -9` or a full disk leaves either the previous file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call write(tmp_path), fsync it, then rename over `path`: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a weights file or video is meant to be shared
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, document: dict, indent: int = 2) -> Path:
    """`document` as JSON at `path`, atomically (reports, scores, run configs)."""
    text = json.dumps(document, indent=indent)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))
    return Path(path)
