"""The live loop's translation stage: its own thread between the source and the display/recording.

Capture already runs in the source's thread (`sources.LiveSource` keeps the newest frame). `TranslateStage`
reads from the source and translates in a second thread, handing each result to the calling thread (window,
keys, recording) through a one-slot `Handoff`. For a live source the slot keeps only the newest result, so a
slow display or encoder drops translated frames instead of queueing them and latency stays bounded; for a
file or folder, which has every frame to give, the stage waits until the slot is taken, so none is lost. The
fps is then set by the slowest stage, not by the sum of all of them.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from .backends.base import Pending
from .io.sources import Captured, Source


class Handoff:
    """One item between two threads. `put` replaces an unread item when `drop` (counted), else waits for `take`."""

    def __init__(self, drop: bool) -> None:
        self.drop = drop
        self.dropped = 0
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = self._closed = False

    def put(self, item: Any, stop: threading.Event) -> bool:
        """False when `stop` was set before the item could be handed over."""
        with self._cond:
            while self._full and not self.drop:
                if stop.is_set():
                    return False
                self._cond.wait(0.05)
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> tuple[bool, Any]:
        """(True, item) with the next item; (False, None) after `timeout` s, or at once when closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout=timeout) or not self._full:
                return False, None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return True, item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed and not self._full


class TranslateStage(threading.Thread):
    """source.read() -> start(rgb, captured_at)() -> Handoff of (Captured, translated (h, w, 3)), until the
    source ends, `stop` is set, or an error (kept in `error`, re-raised by `check`).

    `start` returns a `Pending` result (`steady.SteadyTranslator.start`), collected at once: each frame is
    translated, finished and handed on before the next is read, so the frame read is the newest one when the
    model is free. Starting the next frame before collecting the last, so that an asynchronous backend
    (OpenVINO's infer requests) runs while the last is resized back, blended and handed on, was measured and
    not kept: on a 2-core CPU whose inference fills both cores it gained 1-6% of live fps and cost 2-6 ms of
    latency (`benchmarks/live_overlap.py`, BENCHMARKS.md "Overlapping the next frame's inference").
    """

    def __init__(self, source: Source, start: Callable[[np.ndarray, float], Pending], read_timeout: float) -> None:
        super().__init__(name="translate", daemon=True)
        self.source, self.start_frame, self.read_timeout = source, start, read_timeout
        self.out = Handoff(drop=source.live)
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                item: Captured | None = self.source.read(timeout=self.read_timeout)
                if item is None:
                    return
                if not self.out.put((item, self.start_frame(item.rgb, item.captured_at)()), self.stop):
                    return
        except BaseException as e:  # handed to the display thread by `check`
            self.error = e
        finally:
            self.out.close()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def next(self, poll: float = 0.1) -> tuple[Captured, np.ndarray] | None:
        """The next (captured, translated); None once the stage has ended. Waits in short steps (Ctrl-C)."""
        while True:
            ok, item = self.out.take(poll)
            if ok:
                return item
            if self.out.closed:
                self.check()
                return None

    def finish(self, timeout: float) -> None:
        """Stop and wait for the thread (a read in progress ends within `timeout`), before the source is closed."""
        self.stop.set()
        if self.ident is not None:  # started
            self.join(timeout)
