"""Downloading official pretrained generators (and any file) safely: progress, verification, no partials.

A download goes to a temporary file beside its destination; only once it is complete (and, for models,
loads as a generator) is it moved into place. Any failure removes the temporary file and raises
`DownloadError` with what failed and how to place the file by hand.

The official server is plain http and publishes no checksums, so a model's content is checked against a
sha256 where one is known: `--sha256` on the command line, `KNOWN_SHA256` (pinned here), or a `NAME.pth.sha256`
file beside it on the server (a mirror's own statement: it catches corruption, not a hostile server). A
mismatch stores nothing; with none known, the console says the download could not be verified and prints the
sha256 it got, which is recorded in the stored model's metadata either way.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from .errors import UserError
from .store import OFFICIAL_DIRECTIONS, store_dir

# Reference: scripts/download_cyclegan_model.sh. RTSTYLE_MODEL_URL points at a mirror holding NAME.pth files.
OFFICIAL_MODEL_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
CHUNK = 1 << 16
# sha256 of official NAME.pth files whose content has been pinned. The reference publishes none, and they
# cannot be fetched from where rtstyle is developed; add a name's hash here once it is known.
KNOWN_SHA256: dict[str, str] = {}


class DownloadError(UserError, RuntimeError):
    """A download that did not complete; nothing was left at the destination."""


def model_url(name: str, base_url: str | None = None) -> str:
    base = base_url or os.environ.get("RTSTYLE_MODEL_URL") or OFFICIAL_MODEL_URL
    return f"{base.rstrip('/')}/{name}.pth"


def download_file(url: str, dest: Path, timeout: float = 30.0, quiet: bool = False,
                  expected_sha256: str | None = None) -> str:
    """Fetch `url` into `dest` atomically; returns the sha256 of the content. With `expected_sha256`, content
    that does not match is a DownloadError and `dest` is left as it was."""
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
            if expected_sha256 and digest.hexdigest() != expected_sha256.lower():
                raise DownloadError(f"{url} is not the expected file: its sha256 is {digest.hexdigest()}, expected "
                                    f"{expected_sha256.lower()}; nothing was stored")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except DownloadError:
        Path(tmp).unlink(missing_ok=True)
        raise
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


def published_sha256(url: str, timeout: float = 10.0) -> str | None:
    """The sha256 in `URL.sha256` on the same server (a mirror may publish one), or None when there is none."""
    try:
        with urllib.request.urlopen(url + ".sha256", timeout=timeout) as resp:
            text = resp.read(4096).decode("ascii", "replace")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return None
    word = text.split()[0].lower() if text.split() else ""
    return word if len(word) == 64 and all(c in "0123456789abcdef" for c in word) else None


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower())):
        raise DownloadError(f"--sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return sha256.lower() if sha256 else None


def download_official_model(name: str, base_url: str | None = None, quiet: bool = False,
                            overwrite: bool = False, sha256: str | None = None,
                            log: Callable[[str], None] | None = None) -> Path:
    """Download official generator `name`, check its sha256 where one is known (`sha256`, `KNOWN_SHA256`, or
    the server's NAME.pth.sha256) and that it loads, and store it as `<store>/<name>.safetensors`. `log` hears
    whether the content was verified, and against what."""
    from .weights import ModelInfo, WeightsError, load_reference_pth, save_generator

    log = log or (lambda message: None)
    if name not in OFFICIAL_DIRECTIONS:
        raise DownloadError(f"unknown official model {name!r}; choose one of: {', '.join(OFFICIAL_DIRECTIONS)}")
    expected = _check_sha256(sha256)
    target = store_dir() / f"{name}.safetensors"
    if target.exists() and not overwrite:
        raise DownloadError(f"{target} already exists; pass --overwrite to download it again")
    url = model_url(name, base_url)
    manual = (
        f"To install it by hand, download {url} on a machine with internet access, copy it here and run "
        f"`python cli.py import-weights {name}.pth --name {name}`."
    )
    source = "--sha256" if expected else None
    if expected is None and name in KNOWN_SHA256:
        expected, source = KNOWN_SHA256[name], "the sha256 pinned in rtstyle/download.py"
    if expected is None:
        expected = published_sha256(url)
        source = f"{url}.sha256 (the server's own checksum: it shows the file arrived whole)" if expected else None
    with tempfile.TemporaryDirectory(dir=_ensure(store_dir())) as tmpdir:
        pth = Path(tmpdir) / f"{name}.pth"
        try:
            sha = download_file(url, pth, quiet=quiet, expected_sha256=expected)
        except DownloadError as e:
            raise DownloadError(f"{e}. {manual}") from e
        try:
            generator, info = load_reference_pth(pth)
        except WeightsError as e:
            raise DownloadError(f"downloaded {url} but it is not a CycleGAN generator: {e}. {manual}") from e
        info = ModelInfo(config=info.config, direction=OFFICIAL_DIRECTIONS[name], name=name,
                         extra={"source_url": url, "sha256": sha, "verified_by": source})
        save_generator(generator, target, info, overwrite=overwrite)
    if source:
        log(f"verified {name}.pth: sha256 {sha} matches {source}")
    else:
        log(f"note: {name}.pth could not be verified: no sha256 is known for it (the server is plain http and "
            f"publishes none). It loaded as a generator; its sha256 is {sha} (kept in the model's metadata). "
            "Pass --sha256 HEX to check a download against a hash you trust")
    return target


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
