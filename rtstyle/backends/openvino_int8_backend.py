"""OpenVINO int8 straight from weights: the CPU fast path `--backend auto` picks (issue 6).

An int8 model is calibrated and checked for one input size (`rtstyle.quantize`), so this backend builds
(or finds in the cache) one per (h, w) on the first batch of that size and keeps it compiled for each
batch size it sees; video and webcam keep one size, so that is one build per model and size, ever.
Where the int8 check fails for a size (worst-frame PSNR against fp32 below the bound) that size runs
OpenVINO bf16 (f32 on CPUs without bf16) of the plain IR instead, and the reason is logged.
"""

from __future__ import annotations

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
                 **thresholds) -> None:
        """`thresholds`: `target_psnr`, `min_psnr`, `calibration_count` for `rtstyle.quantize.cached_int8`."""
        import_openvino()
        self.path = Path(weights_path)
        super().__init__(load_model(self.path)[1])
        self.threads, self.log, self.thresholds = threads, log or (lambda message: None), thresholds
        self.rest = OV_PRECISION[resolve_precision("auto", cpu_capabilities())]  # what is not quantised
        self.models: dict[tuple[int, int], tuple[object, str, str]] = {}  # (h, w) -> (model, hint, what)
        self.requests: dict[tuple[int, int, int], tuple] = {}  # (b, h, w) -> (request, output)

    def _model(self, hw: tuple[int, int]):
        if hw not in self.models:
            import openvino as ov

            from ..convert import cached_openvino
            from ..quantize import cached_int8

            decision = cached_int8(self.path, hw, self.log, **self.thresholds)
            if decision.xml is not None:
                model = ov.Core().read_model(str(decision.xml))
                from ..convert import read_openvino_meta

                record = read_openvino_meta(model, str(decision.xml)).extra["int8"]
                what = (f"int8 at {hw[0]}x{hw[1]} ({record['recipe']}, worst PSNR {record['psnr_min_db']} dB "
                        f"vs fp32), the rest {self.rest}")
                self.models[hw] = (model, self.rest, what)
            else:
                self.log(f"int8 not used at {hw[0]}x{hw[1]}: {decision.explanation}")
                model = ov.Core().read_model(str(cached_openvino(self.path, self.log)))
                self.models[hw] = (model, self.rest, f"{self.rest} at {hw[0]}x{hw[1]} (int8 fell below the "
                                                     "PSNR bound)")
            if decision.built:
                self.log(f"int8: {decision.explanation}")
        return self.models[hw]

    def describe(self) -> str:
        if not self.models:
            return f"openvino int8 on CPU ({self.path.name}; built per input size on first use)"
        return "openvino on CPU (" + "; ".join(what for _, _, what in self.models.values()) + ")"

    def infer(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) float32 -> same
        b, c, h, w = x.shape
        if c != self.info.config.input_nc or h % MULTIPLE or w % MULTIPLE:
            raise ArtifactError(f"expected input (b, {self.info.config.input_nc}, h, w) with h and w multiples of "
                                f"{MULTIPLE}, got {tuple(x.shape)}")
        if (b, h, w) not in self.requests:
            model, hint, _ = self._model((h, w))
            compiled = compile_cpu(model, hint, (b, c, h, w), self.threads)
            self.requests[(b, h, w)] = (compiled.create_infer_request(), compiled.output(0))
        request, output = self.requests[(b, h, w)]
        result = request.infer({INPUT_NAME: np.ascontiguousarray(x.detach().float().cpu().numpy())})
        return torch.from_numpy(np.array(result[output], dtype=np.float32, copy=True))
