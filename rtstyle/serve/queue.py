"""The one-model translation queue the browsers share (`serve`): fair between clients, newest frame per client.

Each client has a one-frame mailbox: a frame that arrives while the previous one still waits replaces it
(counted in `dropped`), so a client that sends faster than the model runs never builds a queue, and memory is
one frame per client whatever it sends. One worker thread serves the clients with a frame waiting in turn
(round robin), so a fast client cannot starve a slow one: with k clients waiting each gets every k-th
translation. Models load once per (model, backend) in that thread and are shared by every client that
chooses them; each client keeps its own stabiliser state, so two cameras are never blended together.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import UserError
from ..io.display import compose
from ..pipeline import FrameTranslator
from ..stabilize import stabilize_options
from ..steady import SteadyTranslator

MAX_LOADED = 2  # models kept loaded at once; the least recently used one no client has chosen goes first


@dataclass(frozen=True)
class ClientSettings:
    """What a page can change for its own frames."""

    model: str
    backend: str = "auto"
    size: int | None = 256  # processing size, None: native
    side_by_side: bool = False  # the returned view is original | translated
    stabilize: float | None = None  # strength, None: off


class Client:
    """One browser (or the server's own source): settings, its mailbox and counters; `deliver(view, info)` is
    called in the worker thread with each result (`view` None and `info["error"]` when it failed)."""

    def __init__(self, name: str, settings: ClientSettings,
                 deliver: Callable[[np.ndarray | None, dict], None]) -> None:
        self.name, self.settings, self.deliver = name, settings, deliver
        self.pending: tuple[np.ndarray, float] | None = None  # (rgb (h, w, 3), received_at)
        self.dropped = self.translated = 0  # replaced while waiting; done
        self.flooded = 0  # refused before decoding (sent while the last was decoding, or over the rate)
        self.steady: SteadyTranslator | None = None
        self._steady_key: tuple | None = None
        self.last_translate_s = 0.0

    def steady_for(self, translator: FrameTranslator) -> SteadyTranslator:
        key = (id(translator), self.settings.stabilize)
        if self._steady_key != key:  # a new model or strength starts the stabiliser over
            strength = self.settings.stabilize
            if self.steady is not None:
                self.steady.close()  # its flow thread
            self.steady = SteadyTranslator(translator, stabilize_options(strength))
            self._steady_key = key
        return self.steady


class TranslationQueue:
    """`submit(client, rgb)` from any thread; results come back through `client.deliver`."""

    def __init__(self, load: Callable[[str, str], object], default: ClientSettings,
                 log: Callable[[str], None] = print) -> None:
        self.load, self.default, self.log = load, default, log  # load(model, backend) -> Backend
        self.clients: list[Client] = []
        self.translators: dict[tuple[str, str], FrameTranslator] = {}
        self.translated = 0
        self._cond = threading.Condition()
        self._next = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="translation queue", daemon=True)

    def start(self) -> "TranslationQueue":
        self._thread.start()
        return self

    def add(self, client: Client) -> None:
        with self._cond:
            self.clients.append(client)

    def remove(self, client: Client) -> None:
        with self._cond:
            if client in self.clients:
                self.clients.remove(client)
            client.pending = None

    def submit(self, client: Client, rgb: np.ndarray) -> None:
        with self._cond:
            if client.pending is not None:
                client.dropped += 1
            client.pending = (rgb, time.monotonic())
            self._cond.notify_all()

    def waiting(self) -> int:
        """Frames waiting for the model: at most one per client."""
        with self._cond:
            return sum(c.pending is not None for c in self.clients)

    def translator(self, model: str, backend: str) -> FrameTranslator:
        """The loaded model for (model, backend), loading it now if need be (in the worker thread)."""
        key = (model, backend)
        if key not in self.translators:
            in_use = {(c.settings.model, c.settings.backend) for c in self.clients}
            for old in [k for k in self.translators if k not in in_use][:max(0, len(self.translators) + 1 - MAX_LOADED)]:
                del self.translators[old]
            self.log(f"loading {model} ({backend})")
            self.translators[key] = FrameTranslator(self.load(model, backend), None)
        return self.translators[key]

    def _take(self) -> tuple[Client, tuple[np.ndarray, float]] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._closed or any(c.pending is not None for c in self.clients))
            if self._closed:
                return None
            n = len(self.clients)
            for i in range(n):  # round robin from the client after the one served last
                client = self.clients[(self._next + i) % n]
                if client.pending is not None:
                    self._next = (self._next + i + 1) % n
                    item, client.pending = client.pending, None
                    return client, item
        return None

    def _run(self) -> None:
        while (got := self._take()) is not None:
            client, (rgb, received_at) = got
            settings = client.settings
            start = time.monotonic()
            try:
                translator = self.translator(settings.model, settings.backend)
                translator.size = settings.size
                out = client.steady_for(translator)(rgb, received_at)
            except (UserError, OSError, ValueError) as e:  # a model or backend that cannot load here
                client.settings = self.default  # back to what the server started with, which loaded
                client.deliver(None, {"error": f"{settings.model} ({settings.backend}): {e}"})
                continue
            done = time.monotonic()
            client.translated += 1
            client.last_translate_s = done - start
            self.translated += 1
            view = compose(rgb, out, settings.side_by_side, False)
            client.deliver(view, {"translate_ms": round(1000 * (done - start), 1),
                                  "wait_ms": round(1000 * (start - received_at), 1), "dropped": client.dropped,
                                  "size": settings.size})

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)
