"""OpenVINO int8 straight from weights: the CPU fast path `--backend auto` picks (issue 6).

An int8 model is calibrated and checked for one input size (`rtstyle.quantize`), so this backend builds
(or finds in the cache) one per (h, w) and keeps it compiled for each batch size it sees; video and
webcam keep one size, so that is one build per model and size, ever. A build takes minutes on a small
CPU, which only pays off on a stream: with `build_after=2` (what `--backend auto` uses) a size with no
cached build runs OpenVINO bf16 until a second batch of that size arrives, so a folder of photos of
assorted sizes never waits for quantisation while a video builds at its second frame; `--precision int8`
builds on the first batch. Where the int8 check fails for a size (worst-frame PSNR against fp32 below
the bound) that size runs OpenVINO bf16 (f32 on CPUs without bf16) of the plain IR, and the reason is
logged.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..artifacts import INPUT_NAME, MULTIPLE, ArtifactError
from ..weights import load_model
from .base import Backend
from .openvino_backend import OV_PRECISION, compile_cpu, cpu_capabilities, import_openvino, resolve_precision


class OpenVinoInt8Backend(Backend):
    name = "openvino"
    precision = "int8"

    def __init__(self, weights_path: Path, threads: int | None = None, log: Callable[[str], None] | None = None,
                 build_after: int = 1, **thresholds) -> None:
        """`build_after`: the batch of a new size that builds its int8 model (earlier ones run bf16).

        `thresholds`: `target_psnr`, `min_psnr`, `calibration_count` for `rtstyle.quantize.cached_int8`.
        """
        import_openvino()
        self.path = Path(weights_path)
        super().__init__(load_model(self.path)[1])
        self.threads, self.log, self.thresholds = threads, log or (lambda message: None), thresholds
        self.rest = OV_PRECISION[resolve_precision("auto", cpu_capabilities())]  # what is not quantised
        self.models: dict[tuple[int, int], tuple[object, str, str]] = {}  # (h, w) -> (model, hint, what)
        self.requests: dict[tuple, tuple] = {}  # (b, h, w, interim) -> (request, output)
        self.build_after, self.seen = build_after, Counter()  # batches seen per (h, w)
        self.interim: dict[tuple[int, int], object] = {}  # (h, w) -> plain IR run until int8 is built

    def _interim(self, hw: tuple[int, int]):
        """The plain IR while `hw` has no int8 build (and is not yet worth one); None once it has or should."""
        from ..quantize import cached_int8

        if hw in self.models or self.seen[hw] >= self.build_after:
            return None
        if hw not in self.interim:
            if cached_int8(self.path, hw, build=False, **self.thresholds) is not None:
                return None
            from ..convert import cached_openvino

            self.log(f"int8: {hw[0]}x{hw[1]} has no int8 build yet: {self.rest} until a batch of that size recurs")
            self.interim[hw] = import_openvino().Core().read_model(str(cached_openvino(self.path, self.log)))
        return self.interim[hw]

    def _model(self, hw: tuple[int, int]):
        if hw not in self.models:
            from ..convert import cached_openvino, read_openvino_meta
            from ..quantize import cached_int8

            core = import_openvino().Core()
            decision = cached_int8(self.path, hw, self.log, **self.thresholds)
            if decision.built:
                self.log(f"int8: {decision.explanation}")
            if decision.xml is not None:
                model = core.read_model(str(decision.xml))
                record = read_openvino_meta(model, str(decision.xml)).extra["int8"]
                what = (f"int8 at {hw[0]}x{hw[1]} ({record['recipe']}, worst PSNR {record['psnr_min_db']} dB "
                        f"vs fp32), the rest {self.rest}")
            else:  # never silent: the reason goes to the log and into describe()
                self.log(f"int8 not used at {hw[0]}x{hw[1]}: {decision.explanation}")
                model = core.read_model(str(cached_openvino(self.path, self.log)))
                what = f"{self.rest} at {hw[0]}x{hw[1]} (int8 fell below the PSNR bound)"
            self.models[hw] = (model, self.rest, what)
        return self.models[hw]

    def describe(self) -> str:
        when = "first use" if self.build_after <= 1 else "the second batch of a size"
        done = [what for _, _, what in self.models.values()]
        done += [f"{self.rest} at {h}x{w} (no int8 build yet)" for h, w in self.interim if (h, w) not in self.models]
        if not done:
            return f"openvino int8 on CPU ({self.path.name}; built per input size at {when}, then cached)"
        return "openvino on CPU (" + "; ".join(done) + ")"

    def infer(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) float32 -> same
        b, c, h, w = x.shape
        if c != self.info.config.input_nc or h % MULTIPLE or w % MULTIPLE:
            raise ArtifactError(f"expected input (b, {self.info.config.input_nc}, h, w) with h and w multiples of "
                                f"{MULTIPLE}, got {tuple(x.shape)}")
        self.seen[(h, w)] += 1
        interim = self._interim((h, w))
        key = (b, h, w, interim is not None)
        if key not in self.requests:
            model, hint = (interim, self.rest) if interim is not None else self._model((h, w))[:2]
            compiled = compile_cpu(model, hint, (b, c, h, w), self.threads)
            self.requests[key] = (compiled.create_infer_request(), compiled.output(0))
        request, output = self.requests[key]
        result = request.infer({INPUT_NAME: np.ascontiguousarray(x.detach().float().cpu().numpy())})
        return torch.from_numpy(np.array(result[output], dtype=np.float32, copy=True))
