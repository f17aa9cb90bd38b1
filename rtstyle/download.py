"""Downloading official pretrained generators (and any file) safely: progress, verification, no partials.

A download goes to a temporary file beside its destination; only once it is complete (and, for models,
loads as a generator) is it moved into place. Any failure removes the temporary file and raises
`DownloadError` with what failed and how to place the file by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from .errors import UserError
from .store import OFFICIAL_DIRECTIONS, store_dir

# Reference: scripts/download_cyclegan_model.sh. RTSTYLE_MODEL_URL points at a mirror holding NAME.pth files.
OFFICIAL_MODEL_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
CHUNK = 1 << 16


class DownloadError(UserError, RuntimeError):
    """A download that did not complete; nothing was left at the destination."""


def model_url(name: str, base_url: str | None = None) -> str:
    base = base_url or os.environ.get("RTSTYLE_MODEL_URL") or OFFICIAL_MODEL_URL
    return f"{base.rstrip('/')}/{name}.pth"


def download_file(url: str, dest: Path, timeout: float = 30.0, quiet: bool = False) -> str:
    """Fetch `url` into `dest` atomically; returns the sha256 of the content."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                       TimeRemainingColumn())
            with Progress(*columns, disable=quiet, transient=True, console=Console(stderr=True)) as progress:
                task = progress.add_task(dest.name, total=total)
                received = 0
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    progress.update(task, advance=len(chunk))
            if total is not None and received != total:
                raise DownloadError(f"could not download {url}: connection closed after {received} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, urllib.error.HTTPError):
            reason = f"HTTP {e.code} {e.reason}"
        else:
            reason = getattr(e, "reason", None) or e
        raise DownloadError(f"could not download {url}: {reason}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def download_official_model(name: str, base_url: str | None = None, quiet: bool = False,
                            overwrite: bool = False) -> Path:
    """Download official generator `name`, check it loads, and store it as `<store>/<name>.safetensors`."""
    from .weights import ModelInfo, WeightsError, load_reference_pth, save_generator

    if name not in OFFICIAL_DIRECTIONS:
        raise DownloadError(f"unknown official model {name!r}; choose one of: {', '.join(OFFICIAL_DIRECTIONS)}")
    target = store_dir() / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise DownloadError(f"{target} already exists; pass --overwrite to download it again")
    url = model_url(name, base_url)
    manual = (
        f"To install it by hand, download {url} on a machine with internet access, copy it here and run "
        f"`python cli.py import-weights {name}.pth --name {name}`."
    )
    with tempfile.TemporaryDirectory(dir=_ensure(store_dir())) as tmpdir:
        pth = Path(tmpdir) / f"{name}.pth"
        try:
            sha = download_file(url, pth, quiet=quiet)
        except DownloadError as e:
            raise DownloadError(f"{e}. {manual}") from e
        try:
            generator, info = load_reference_pth(pth)
        except WeightsError as e:
            raise DownloadError(f"downloaded {url} but it is not a CycleGAN generator: {e}. {manual}") from e
        info = ModelInfo(config=info.config, direction=OFFICIAL_DIRECTIONS[name], name=name,
                         extra={"source_url": url, "sha256": sha})
        save_generator(generator, target, info, overwrite=overwrite)
    return target


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
