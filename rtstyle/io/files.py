"""Writing files so that a reader never sees half of one: the one `atomic_write` every output goes through.

Weights, checkpoints, exported artifacts, images, videos' side files, JSON reports and caches are all
written to a temporary name in the target's folder, fsynced, then renamed over the target (POSIX rename is
atomic), so a `kill -9` or a full disk leaves either the previous file or the new one, never a torn one.
What the machine refuses (no permission, a read-only file system, a full disk, a file where a folder
should be) becomes a `WriteError`, a one-line message naming the file and what to do (`writes_to`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import UserError


class WriteError(UserError):
    """An output the machine would not let us write (permission, read-only file system, full disk)."""

    def __init__(self, message: str, errno_: int) -> None:
        super().__init__(message)
        self.errno = errno_


# errno -> (what happened, what to do). Anything else an OSError says is left as it is (a bug, or unforeseen).
_REFUSALS = {
    errno.EACCES: ("no permission to write there", "choose another output folder or change its permissions"),
    errno.EPERM: ("the operation is not permitted there", "choose another output folder"),
    errno.EROFS: ("it is on a read-only file system", "choose an output folder on a writable disk"),
    errno.ENOSPC: ("the disk is full", "free some space or choose an output folder on another disk"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or choose another output folder"),
    errno.EEXIST: ("a file is in the way of a folder", "remove it or choose another output folder"),
    errno.ENOTDIR: ("a file is in the way of a folder", "remove it or choose another output folder"),
}


def write_error(path: Path, e: OSError) -> WriteError | None:
    """The WriteError for an OSError met while writing `path`, or None when it is not the machine refusing."""
    if e.errno not in _REFUSALS:
        return None
    what, todo = _REFUSALS[e.errno]
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        blocking = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
        if blocking is None:
            return None  # not a file standing where a folder should be: not ours to explain
        what = f"{what}: {blocking} is a file"
    return WriteError(f"cannot write {path}: {what}; {todo}", e.errno)


@contextlib.contextmanager
def writing(path: Path):
    """Within: OSErrors the machine raises while writing `path` become `WriteError`s naming it."""
    try:
        yield
    except OSError as e:
        error = write_error(Path(path), e)
        if error is None:
            raise
        raise error from e


def writes_to(path_arg: int):
    """Decorator: `writing(args[path_arg])` around the call, so the user reads the path they gave (the
    temporary file's name would mean nothing to them)."""
    def wrap(func):
        @functools.wraps(func)
        def call(*args, **kwargs):
            with writing(args[path_arg]):
                return func(*args, **kwargs)
        return call
    return wrap


@writes_to(0)
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
