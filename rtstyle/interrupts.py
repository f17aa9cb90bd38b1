"""SIGTERM and SIGHUP handled as Ctrl-C is, so that a stopped conversion or recording keeps what it made.

`timeout`, systemd, `docker stop` and a closed terminal stop a program with SIGTERM or SIGHUP, whose default
action kills it at once: a video conversion would leave only its hidden temporary file (issue 15, item 2).
Inside `stop_signals_interrupt()` each raises `Terminated`, a `KeyboardInterrupt`, in the main thread, so the
code that finalises a `*.partial.*` file on Ctrl-C runs for them too; the exit code is then 128 + the signal
number (143 for SIGTERM, 129 for SIGHUP), as a shell reports a process killed by it. Only the first such
signal raises: a second one (systemd repeats SIGTERM to the group) must not cut the finalising short.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; `signal` is its name, `exit_code` what the process should exit with."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum).name
        self.exit_code = 128 + int(signum)
        super().__init__(f"stopped by {self.signal}")


def stop_reason(e: BaseException) -> tuple[str, int]:
    """(what stopped it, exit code) for a KeyboardInterrupt: Ctrl-C (130) or the signal's `Terminated`."""
    if isinstance(e, Terminated):
        return e.signal, e.exit_code
    return "Ctrl-C", 130


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Terminated` in the main thread while inside; a no-op in other threads (only
    the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handle(signum, frame) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated(signum)

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
