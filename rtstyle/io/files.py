"""Writing files so that a reader never sees half of one, and a finished file is never silently replaced.

Every output (weights, checkpoints, exported artifacts, images, videos, recordings, JSON reports, caches) is
written to a temporary name in the target's folder and then put in place by the one final step, `publish`
(issue 15, item 1). Without `overwrite` it hard-links the temporary file to the target and unlinks the
temporary name: the link fails with EEXIST when the target appeared since the run began (another run writing
the same output finished first), so a check at start cannot be raced. With `overwrite` it renames over the
target (POSIX rename is atomic). Either way a `kill -9` or a full disk leaves the previous file or the new
one, never a torn one.

Temporary names are `.<target name>.rtstyle<pid>.<random>.tmp<suffix>` and the writer holds an exclusive
`flock` on the file while it writes (item 5). A later run writing into the same folder removes the temporary
files of earlier runs whose lock is free and whose process is gone (a `kill -9`, a crash, a power cut), with
a note.
What the machine refuses (no permission, a read-only file system, a full disk, a file where a folder
should be) becomes a `WriteError`, a one-line message naming the file and what to do (`writes_to`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from itertools import count
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



# hard links unsupported where the output lives (vfat, some FUSE and SMB mounts): claim the name exclusively
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


class OutputExistsError(UserError, FileExistsError):
    """The output exists and --overwrite was not given."""


class OutputAppeared(OutputExistsError):
    """The output did not exist when the run began, but did at its final step: another run wrote it meanwhile.

    `kept` is where this run's own file was put instead (None when the caller discarded it)."""

    def __init__(self, target: Path, kept: Path | None = None) -> None:
        self.target, self.kept = Path(target), kept
        where = f"this run's output is kept as {kept}" if kept else "this run's output was not kept"
        super().__init__(f"{target} appeared while this run was writing it (another run writing the same "
                         f"output?); it was not replaced and {where}: pass --overwrite to replace it")


@dataclass
class Temp:
    """A temporary file beside its target, locked by this process until `release()`."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # drops the flock
            self.fd = -1


def _temp_pattern(name: str) -> re.Pattern:
    """Temporary names of target `name` (a regular expression for any target), the writer's pid as group 1."""
    return re.compile(rf"^\.{name}\.rtstyle(\d+)\.[A-Za-z0-9_]+\.tmp")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps_in(folder: Path) -> list[str]:
    """Remove the temporary files in `folder` left by earlier runs that died; a note per file removed.

    Stale means both: nobody holds its lock (a live writer always does) and the process named in it is gone
    (which also covers the instant between a writer creating the file and locking it)."""
    folder, pattern, notes = Path(folder), _temp_pattern(".+"), []
    try:
        candidates = [p for p in folder.iterdir() if pattern.match(p.name)]
    except OSError:
        return notes
    for path in candidates:
        pid = int(pattern.match(path.name).group(1))
        if _process_alive(pid):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: a writer on another machine sharing this folder
            os.close(fd)
            continue
        try:
            if path.is_dir():
                import shutil

                shutil.rmtree(path)
            else:
                path.unlink()
            notes.append(f"removed {path}, left unfinished by process {pid} (killed or crashed)")
        except OSError:
            pass
        finally:
            os.close(fd)
    return notes


def print_note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


_swept: set[Path] = set()  # folders this process has removed stale temps from (once each: a batch writes many)


def make_temp(target: Path, suffix: str = "", note: Callable[[str], None] | None = print_note, *,
              folder: bool = False) -> Temp:
    """A new locked temporary file (or `folder`) for `target` in its folder; the first one this process makes
    in a folder removes the stale temps there first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if (where := target.parent.resolve()) not in _swept:
        _swept.add(where)
        for message in remove_stale_temps_in(where):
            if note:
                note(message)
    prefix = f".{target.name}.rtstyle{os.getpid()}."  # the tag: a user's own hidden files never match
    if folder:
        tmp = tempfile.mkdtemp(prefix=prefix, suffix=f".tmp{suffix}", dir=target.parent)
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    else:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=f".tmp{suffix}", dir=target.parent)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else can hold it
    return Temp(Path(tmp), fd)


def publish(tmp: Path, target: Path, *, overwrite: bool) -> None:
    """The final step of every writer: `tmp` becomes `target`.

    `overwrite`: renamed over whatever is there. Otherwise the target must still be free at this instant, else
    `OutputAppeared` is raised and `tmp` is left where it was, for the caller to keep or remove."""
    tmp, target = Path(tmp), Path(target)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; a weights file or video is meant to be shared
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise OutputAppeared(target) from None
    except OSError as e:
        if e.errno not in _NO_LINKS:
            raise
        try:  # claim the name with an exclusive create; the rename then replaces only our own empty file
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise OutputAppeared(target) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def sibling_name(path: Path, tag: str, n: int = 1) -> Path:
    """`clip.mp4` -> `clip.TAG.mp4` (n 1), `clip.TAG-2.mp4`, ..."""
    return path.with_name(f"{path.stem}.{tag}{'' if n == 1 else f'-{n}'}{path.suffix}")


def publish_free(tmp: Path, path: Path, tag: str) -> Path:
    """Put `tmp` in place as the first free `sibling_name(path, tag, n)`, never replacing a file; returns it."""
    for n in count(1):
        candidate = sibling_name(path, tag, n)
        try:
            publish(tmp, candidate, overwrite=False)
            return candidate
        except OutputAppeared:
            continue
    raise AssertionError("unreachable")


@writes_to(0)
def atomic_write(path: Path, write: Callable[[str], object], *, overwrite: bool = True,
                 note: Callable[[str], None] | None = print_note) -> None:
    """Call write(tmp_path), fsync it, then `publish` it as `path`: a reader never sees a half-written file.

    `overwrite=False` for a user's output whose existence was checked at start: a file that appeared since is
    not replaced (`OutputAppeared`; this run's file is discarded, it can be made again). Files this program
    owns and rewrites (checkpoints, caches, logs) keep the default."""
    path = Path(path)
    temp = make_temp(path, note=note)
    try:
        write(str(temp.path))
        with open(temp.path, "rb+") as f:
            os.fsync(f.fileno())
        publish(temp.path, path, overwrite=overwrite)
    except BaseException:
        temp.path.unlink(missing_ok=True)
        raise
    finally:
        temp.release()


def write_json(path: Path, document: dict, indent: int = 2) -> Path:
    """`document` as JSON at `path`, atomically (reports, scores, run configs)."""
    text = json.dumps(document, indent=indent)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))
    return Path(path)
