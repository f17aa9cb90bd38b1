"""Export options and results shared by every format's exporter (kept apart so exporters import no registry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rtstyle.formats.int8.quantize import MIN_PSNR, TARGET_PSNR
from rtstyle.formats.tensorrt import DEFAULT_MAX_BATCH
from rtstyle.transforms import parse_hw

from .verify import Comparison

Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    """Export a generator and check the artifact against PyTorch fp32 through its own runtime (prints the max
    abs error; fails above the tolerance). Writes next to the weights (in the store for a store name) unless
    --out is given; run it with --model ARTIFACT.

    (How to export; `export` maps its options onto these fields.)"""

    dynamic: bool = field(default=False, metadata={
        "help": "accept any height/width (multiples of 4) instead of one fixed size"})
    size: str = field(default="", metadata={
        "help": "N or HxW: the fixed input size (default: the model's training size, e.g. 256x256); with "
                "--dynamic, the size checked and the TensorRT optimisation shape", "metavar": "HxW"})
    half: bool = field(default=False, metadata={
        "help": "TensorRT only: FP16 engine (InstanceNorm kept in FP32)"})
    max_batch: int = field(default=DEFAULT_MAX_BATCH, metadata={"help": "TensorRT only: largest batch in the profile"})
    workspace_gb: float = field(default=4.0, metadata={"help": "TensorRT only: builder workspace limit in GiB"})
    tolerance: float = field(default=0.0, metadata={
        "help": "max abs error against PyTorch fp32 above which the export fails (0: the format's default)"})
    int8: bool = field(default=False, metadata={
        "help": "OpenVINO only: int8 IR (NNCF quantisation of the convolutions, checked by PSNR on real frames)"})
    target_psnr: float = field(default=TARGET_PSNR, metadata={
        "help": "--int8: worst-frame PSNR (dB) vs fp32 the all-convolution int8 model must reach, else the first "
                "and last convolutions stay unquantised"})
    min_psnr: float = field(default=MIN_PSNR, metadata={
        "help": "--int8: worst-frame PSNR (dB) below which no int8 model is written (the f32 IR instead)"})

    def shape(self, train_size: int) -> tuple[int, int]:
        return parse_hw(self.size) if self.size else (train_size, train_size)


@dataclass
class ExportResult:
    path: Path
    format: str
    tolerance: float
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    psnr_db: float | None = None  # int8: worst-frame PSNR vs fp32 on held-out real frames
    psnr_bound: float | None = None  # the PSNR it had to reach

    @property
    def max_abs_error(self) -> float:
        return max((c.max_abs_error for c in self.comparisons), default=float("nan"))

    def summary(self) -> list[str]:
        """What `export` prints: the notes, the accuracy against PyTorch fp32, and how to run the artifact."""
        lines = [f"  {note}" for note in self.notes]
        if self.psnr_db is not None:
            lines.append(f"worst-frame PSNR vs PyTorch fp32 on held-out real frames: {self.psnr_db:.1f} dB "
                         f"(bound {self.psnr_bound:g} dB; max abs {self.max_abs_error:.2e})")
        else:
            lines.append(f"max abs error vs PyTorch fp32: {self.max_abs_error:.2e} (tolerance {self.tolerance:g})")
        return lines + [f"wrote {self.path}  (run it: --model {self.path})"]


class ExportError(ValueError):
    """An export that must not be used: checker failure, wrong graph, or outputs off PyTorch's."""
