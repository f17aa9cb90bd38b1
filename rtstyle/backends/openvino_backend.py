"""OpenVINO inference backend: an rtstyle IR (or ONNX, or weights converted once and cached) on the CPU.

Precision is OpenVINO's `INFERENCE_PRECISION_HINT`: bf16 where the CPU has native bf16 (AVX512_BF16 or
AMX: OpenVINO lists "BF16" among the CPU's optimisation capabilities), f32 elsewhere; weights stay f32 in
the IR, so one artifact serves both. bf16 keeps f32's exponent (no overflow in InstanceNorm) with an
8-bit mantissa: on the full generator outputs moved by up to 0.11 max abs, 6e-3 mean (under one uint8
level) against fp32 here, at 3.4x the speed of eager torch fp32. An int8 IR (`export --format openvino
--int8`, metadata precision "int8") runs its quantised convolutions in int8 and the rest in bf16/f32;
int8 straight from weights, built per input size on first use, is `openvino_int8_backend`. openvino is
imported inside `rtstyle.formats.openvino`, which also makes, reads and compiles the IR this backend runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..formats.openvino import (OV_PRECISION, Requests, compile_cpu, cpu_capabilities, load_openvino_model,
                                streams_for)
from .base import Backend, BackendUnavailable, Pending


def resolve_precision(precision: str, capabilities: set[str]) -> str:
    """'auto' -> bf16 where the CPU has it, else fp32; an explicit precision the CPU lacks is an error."""
    if precision == "auto":
        return "bf16" if "BF16" in capabilities else "fp32"
    wanted = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}[precision]
    if wanted not in capabilities:
        raise BackendUnavailable(f"--precision {precision}: this CPU has no native {precision} for OpenVINO "
                                 f"(capabilities {sorted(capabilities)}); use --precision fp32 or auto")
    return precision


class OpenVinoBackend(Backend):
    name = "openvino"
    fuses_frames = True  # infer_frames: uint8 frames in and out, converted inside the graph

    def __init__(self, model_path: Path, precision: str = "auto", threads: int | None = None,
                 log: Callable[[str], None] | None = None, kind: str | None = None) -> None:
        model, meta = load_openvino_model(Path(model_path), log, kind)  # kind: ModelRef.kind from create()
        super().__init__(meta.info)
        self.meta, self.path = meta, Path(model_path)
        capabilities = cpu_capabilities()
        if meta.precision == "int8":  # the quantised convolutions are int8 whatever is asked; the rest:
            if precision not in ("auto", "int8", "bf16", "fp32"):
                raise BackendUnavailable(f"{model_path} is an int8 IR; --precision {precision} does not apply "
                                         "(auto/int8: the rest in bf16 where the CPU has it; fp32: the rest in f32)")
            rest = resolve_precision("fp32" if precision == "fp32" else "auto", capabilities)
            self.precision, hint = "int8", OV_PRECISION[rest]
            self.note = f"int8 convolutions, the rest {rest}; {_int8_summary(meta)}"
        else:
            if precision == "int8":
                raise BackendUnavailable(f"{model_path} is not an int8 IR (precision {meta.precision}): make one "
                                         "with `python cli.py export --format openvino --int8`, or pass the "
                                         "weights with --precision int8 to build it on first use")
            self.precision = resolve_precision(precision, capabilities)
            hint, self.note = OV_PRECISION[self.precision], meta.size_policy
        # A fixed-size IR is compiled for its static shape, once per batch size seen (faster kernels than a
        # dynamic compile: 15% for the int8 generator here); a dynamic IR is compiled once.
        self.model, self.hint, self.threads = model, hint, threads
        self.requests: dict[tuple[int | None, bool, int], Requests] = {}
        self._request(None if meta.dynamic else 1)

    def _request(self, batch: int | None, frames: bool = False, parallel: int = 1) -> Requests:
        """The infer requests compiled for `batch` (None: the dynamic IR), taking uint8 frames or not, for
        `parallel` requests at once (`Backend.submit_frames`)."""
        streams = streams_for(parallel, self.threads)
        key = (batch, frames, streams)
        if key not in self.requests:
            shape = None if batch is None else (batch, self.meta.info.config.input_nc, self.meta.height,
                                                 self.meta.width)
            self.requests[key] = Requests(compile_cpu(self.model, self.hint, shape, self.threads, frames=frames,
                                                      streams=streams))
        return self.requests[key]

    def describe(self) -> str:
        return f"openvino {self.precision} on CPU ({self.path.name}, {self.note})"

    def infer(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) float32 -> same
        self.meta.check_input(tuple(x.shape))
        requests = self._request(None if self.meta.dynamic else x.shape[0])
        return torch.from_numpy(requests.infer(x.detach().float().cpu().numpy()))

    def infer_frames(self, frames: np.ndarray) -> np.ndarray:  # (b, h, w, 3) uint8 -> same, converted in-graph
        return self.submit_frames(frames)()

    def submit_frames(self, frames: np.ndarray, parallel: int = 1) -> Pending:
        b, h, w, _ = frames.shape
        self.meta.check_input((b, self.meta.info.config.input_nc, h, w))
        wait, result = self._request(None if self.meta.dynamic else b, True, parallel).start(frames)
        return Pending(result, wait)


def _int8_summary(meta) -> str:
    record = meta.extra.get("int8", {})
    if not record:
        return meta.size_policy
    return (f"{meta.size_policy}, {record.get('recipe')}: worst PSNR {record.get('psnr_min_db')} dB vs fp32 "
            f"on {len(record.get('heldout', []))} held-out frames")


def create(ref, choice, options, log) -> Backend:
    """The registry's entry point: an IR / ONNX / weights on OpenVINO; int8 from weights is built per size.

    Asked for (--precision int8): built on first use, waited for. Chosen by auto: built in the background once
    a size makes a stream, bf16 meanwhile (see openvino_int8_backend).
    """
    if choice.precision == "int8" and ref.kind == "weights":
        from .openvino_int8_backend import STREAM_BATCHES, OpenVinoInt8Backend

        asked = options.precision == "int8"
        return OpenVinoInt8Backend(ref.path, log=log, build_after=1 if asked else STREAM_BATCHES, background=not asked)
    return OpenVinoBackend(ref.path, precision=choice.precision, log=log, kind=ref.kind)
