"""OpenVINO int8 straight from weights: the CPU fast path `--backend auto` picks (issue 6).

An int8 model is calibrated and checked for one input size (`rtstyle.formats.int8.quantize`), so this backend builds
(or finds in the cache) one per (h, w) and keeps it compiled for each batch size it sees; video and
webcam keep one size, so that is one build per model and size, ever. A build takes minutes on a small
CPU (85 s for the full generator at 256x256 here), so two policies:
- `--precision int8` (`background=False, build_after=1`): the first batch of a size waits for its build
  (what a benchmark or an explicit request wants: int8 from the first timed frame).
- `--backend auto` (`background=True, build_after=STREAM_BATCHES`): a size without a cached build runs
  OpenVINO bf16 (the plain IR) at once; once that size has come `STREAM_BATCHES` times (a video or webcam
  stream, not a handful of photos or a clip too short to repay a build) its int8 build starts in a child
  process (`python -m rtstyle.formats.int8.quantize`, one at a time:
  a thread would share the GIL, and OpenVINO's threads abort the interpreter if it exits mid-build), and
  the first batch after it finishes switches to int8. A live stream never stalls for quantisation; when
  the process ends first the child is stopped and the build left undone (the cache is written
  atomically, so nothing half-made is kept).
Where the int8 check fails for a size (worst-frame PSNR against fp32 below the bound) that size stays on
OpenVINO bf16 (f32 on CPUs without bf16), and the reason is logged.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..formats.metadata import ArtifactError
from ..formats.openvino import (OV_PRECISION, Requests, compile_cpu, cpu_capabilities, import_openvino, openvino_core,
                                streams_for)
from ..transforms import MULTIPLE
from ..weights import load_model
from .base import Backend, Pending
from .openvino_backend import resolve_precision


# Batches of one size after which `--backend auto` starts that size's int8 build. A build costs minutes of
# both cores (85 s for the full generator at 256x256 here) and saves ~0.2 s a frame against bf16, so it
# repays itself after a few hundred frames; 30 keeps short clips, live previews and photo folders free of
# it while any longer video starts it within its first seconds.
STREAM_BATCHES = 30
CHILD_MODULE = "rtstyle.formats.int8.quantize"  # `python -m` of it builds one size in a child process


class OpenVinoInt8Backend(Backend):
    name = "openvino"
    precision = "int8"
    fuses_frames = True  # infer_frames: uint8 frames in and out, converted inside the graph

    def __init__(self, weights_path: Path, threads: int | None = None, log: Callable[[str], None] | None = None,
                 build_after: int = 1, background: bool = False, **thresholds) -> None:
        """`build_after`: the batch of a new size that starts its int8 build; `background`: build in a child process.

        `thresholds`: `target_psnr`, `min_psnr`, `calibration_count` for `rtstyle.formats.int8.quantize.cached_int8`.
        """
        import_openvino()
        self.path = Path(weights_path)
        super().__init__(load_model(self.path)[1])
        self.threads, self.log, self.thresholds = threads, log or (lambda message: None), thresholds
        self.build_after, self.background = build_after, background
        self.rest = OV_PRECISION[resolve_precision("auto", cpu_capabilities())]  # what is not quantised
        self.final: dict[tuple[int, int], tuple[object, str]] = {}  # (h, w) -> (model, description)
        self.interim: dict[tuple[int, int], object] = {}  # (h, w) -> plain IR run until int8 is ready
        self.seen: Counter = Counter()  # batches per (h, w)
        self.builds: dict[tuple[int, int], subprocess.Popen] = {}  # background builds, one running at a time
        self.requests: dict[tuple, Requests] = {}  # (b, h, w, final, frames) -> its infer requests
        if background:  # the plain IR is what runs first: convert it now, not during the first frame
            from ..formats.openvino import cached_openvino

            cached_openvino(self.path, self.log)

    # --- which model runs a size -------------------------------------------------------------------------
    def _finish(self, hw: tuple[int, int], decision) -> None:
        from ..formats.openvino import cached_openvino, read_openvino_meta

        core = openvino_core()
        if isinstance(decision, BaseException):
            self.log(f"int8 build at {hw[0]}x{hw[1]} failed ({type(decision).__name__}: {decision}); "
                     f"staying on {self.rest}")
            what = f"{self.rest} at {hw[0]}x{hw[1]} (the int8 build failed)"
            self.final[hw] = (core.read_model(str(cached_openvino(self.path, self.log))), what)
            return
        if decision.built:
            self.log(f"int8: {decision.explanation}")
        if decision.xml is not None:
            model = core.read_model(str(decision.xml))
            record = read_openvino_meta(model, str(decision.xml)).extra["int8"]
            what = (f"int8 at {hw[0]}x{hw[1]} ({record['recipe']}, worst PSNR {record['psnr_min_db']} dB vs fp32), "
                    f"the rest {self.rest}")
        else:  # never silent: the reason goes to the log and into describe()
            self.log(f"int8 not used at {hw[0]}x{hw[1]}: {decision.explanation}")
            model = core.read_model(str(cached_openvino(self.path, self.log)))
            what = f"{self.rest} at {hw[0]}x{hw[1]} (int8 fell below the PSNR bound)"
        self.final[hw] = (model, what)

    def _build(self, hw: tuple[int, int]):
        from ..formats.int8.quantize import cached_int8

        try:
            return cached_int8(self.path, hw, self.log, **self.thresholds)
        except Exception as e:  # reported by _finish; the size keeps running on the plain IR
            return e

    def _start_build(self, hw: tuple[int, int]) -> None:
        self.log(f"int8: {hw[0]}x{hw[1]} is a stream: building its int8 model in the background, {self.rest} until "
                 "it is ready (or build it up front: --precision int8)")
        args = [f"--{key.replace('_', '-')}={value}" for key, value in self.thresholds.items()]
        package_root = str(Path(__file__).resolve().parents[2])  # the child imports this very rtstyle
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        child = subprocess.Popen([sys.executable, "-m", CHILD_MODULE, str(self.path), f"{hw[0]}x{hw[1]}", *args],
                                 stdout=subprocess.DEVNULL, env=env, start_new_session=True)  # no terminal Ctrl-C
        self.builds[hw] = child
        atexit.register(_stop, child)

    def _collect(self, hw: tuple[int, int]) -> bool:
        """Whether the background build of `hw` has ended; its result (or failure) becomes final."""
        from ..formats.int8.quantize import cached_int8

        code = self.builds[hw].poll()
        if code is None:
            return False
        found = cached_int8(self.path, hw, build=False, **self.thresholds) if code == 0 else None
        self._finish(hw, found if found is not None else RuntimeError(f"python -m {CHILD_MODULE} exited {code}"))
        if found is not None and found.xml is not None:
            self.log(f"int8: {hw[0]}x{hw[1]} switches from {self.rest} to the int8 model built in the background")
        return True

    def _model(self, hw: tuple[int, int]) -> tuple[object, bool]:
        """(model, final) for inputs of `hw`: the int8 (or fallback) model, or the plain IR meanwhile."""
        from ..formats.int8.quantize import cached_int8

        if hw in self.final:
            return self.final[hw][0], True
        if hw in self.builds and self._collect(hw):  # a background build ended since the last batch
            return self.final[hw][0], True
        if hw not in self.interim and hw not in self.builds:
            found = cached_int8(self.path, hw, build=False, **self.thresholds)
            if found is not None:
                self._finish(hw, found)
                return self.final[hw][0], True
        if self.seen[hw] >= self.build_after and hw not in self.builds:
            if not self.background:
                self._finish(hw, self._build(hw))
                return self.final[hw][0], True
            if all(child.poll() is not None for child in self.builds.values()):  # one build at a time
                self._start_build(hw)
        if hw not in self.interim:
            from ..formats.openvino import cached_openvino

            if self.build_after > 1 and self.seen[hw] < self.build_after:
                self.log(f"int8: {hw[0]}x{hw[1]} has no int8 build yet: {self.rest}, and int8 built in the "
                         f"background if this size keeps coming ({self.build_after} batches)")
            self.interim[hw] = openvino_core().read_model(str(cached_openvino(self.path, self.log)))
        return self.interim[hw], False

    def prepare(self, hw: tuple[int, int]) -> None:
        """Build (or find in the cache) the int8 model of `hw` now, in this process, before the first batch.

        For a clip known to be short, whose size is known up front (the demo): a background build would
        start after `build_after` batches and be stopped unfinished at exit, so the clip would run bf16 (f32)
        on every run and the build would never reach the cache.
        """
        if hw not in self.final:
            self._finish(hw, self._build(hw))

    def describe(self) -> str:
        done = [what for _, what in self.final.values()]
        for hw in self.interim:
            if hw not in self.final:
                state = "int8 building in the background" if hw in self.builds else "no int8 build yet"
                done.append(f"{self.rest} at {hw[0]}x{hw[1]} ({state})")
        if done:
            return "openvino on CPU (" + "; ".join(done) + ")"
        when = "in the background once a size recurs" if self.background else "on first use"
        return f"openvino int8 on CPU ({self.path.name}; built per input size {when}, then cached)"

    def _request(self, b: int, h: int, w: int, frames: bool = False, parallel: int = 1) -> Requests:
        """The infer requests for a batch of `b` inputs of `h` x `w`: the model that runs that size now, for
        `parallel` requests at once (`Backend.submit_frames`)."""
        c = self.info.config.input_nc
        if h % MULTIPLE or w % MULTIPLE:
            raise ArtifactError(f"expected input (b, {c}, h, w) with h and w multiples of {MULTIPLE}, got "
                                f"{(b, c, h, w)}")
        self.seen[(h, w)] += 1
        model, final = self._model((h, w))
        streams = streams_for(parallel, self.threads)
        key = (b, h, w, final, frames, streams)
        if key not in self.requests:
            self.requests[key] = Requests(compile_cpu(model, self.rest, (b, c, h, w), self.threads, frames=frames,
                                                      streams=streams))
        return self.requests[key]

    def infer(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) float32 -> same
        b, c, h, w = x.shape
        if c != self.info.config.input_nc:
            raise ArtifactError(f"expected input (b, {self.info.config.input_nc}, h, w), got {tuple(x.shape)}")
        return torch.from_numpy(self._request(b, h, w).infer(x.detach().float().cpu().numpy()))

    def infer_frames(self, frames: np.ndarray) -> np.ndarray:  # (b, h, w, 3) uint8 -> same, converted in-graph
        return self.submit_frames(frames)()

    def submit_frames(self, frames: np.ndarray, parallel: int = 1) -> Pending:
        b, h, w, _ = frames.shape
        wait, result = self._request(b, h, w, True, parallel).start(frames)
        return Pending(result, wait)


def _stop(child: subprocess.Popen) -> None:
    """At exit: a build still running is stopped (its half-made files never reach the cache)."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
