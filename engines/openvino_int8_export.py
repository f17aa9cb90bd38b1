"""OpenVINO int8 IR export (`export --format openvino --int8`): the CPU fast path written as a file.

The build is `rtstyle.formats.int8.quantize.build_int8_openvino` (exact sub-pixel rewrite of the transposed
convolutions, NNCF post-training quantisation of the convolutions on real calibration frames, the
worst-frame PSNR check against eager fp32 on held-out real frames, the rebuild with the first and last
convolutions unquantised below `--target-psnr`), the same code `--backend auto` runs on first use. An
int8 IR is calibrated for one input size and compiled for that static shape, so `--dynamic` is refused.
When int8 stays below `--min-psnr` the export says so and writes the plain f32-weights IR instead (which
runs in bf16 on CPUs that have it): a slower file, never a silently worse one. The metadata in the IR's
rt_info records precision "int8", the recipe, both PSNR figures and the frames they were measured on.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rtstyle.errors import UserError
from rtstyle.formats.int8.quantize import build_int8_openvino
from rtstyle.formats.metadata import sha256_file
from rtstyle.formats.openvino import openvino_core, read_openvino_meta, save_openvino
from rtstyle.models import ResnetGenerator
from rtstyle.weights import ModelInfo

from .openvino_export import check_mvn, export_openvino
from .options import ExportOptions, ExportResult, Log
from .verify import Comparison


def export_openvino_int8(generator: ResnetGenerator, info: ModelInfo, source: Path, target: Path,
                         options: ExportOptions, log: Log, *, overwrite: bool = False) -> ExportResult:
    if options.dynamic:
        raise UserError("--int8 builds a fixed-size IR (calibrated and checked at one size, compiled for that static "
                         "shape); drop --dynamic and pass --size HxW, or let --backend auto build one per size")
    hw = options.shape(info.train_size)
    build = build_int8_openvino(generator, info, hw, sha256_file(source), target_psnr=options.target_psnr,
                                min_psnr=options.min_psnr, log=log)
    if build.model is None:
        log(f"int8 NOT written: {build.explanation}")
        result = export_openvino(generator, info, source, target, replace(options, int8=False), log,
                                 overwrite=overwrite)
        result.notes.insert(0, "fell back to the f32-weights IR (bf16 at run time where available): "
                               + build.explanation)
        return result
    graph_note = check_mvn(build.model, info)
    attempt = build.attempts[-1]
    shape = (5, info.config.input_nc, *hw)
    comparison = Comparison(f"held-out real frames 1x{hw[0]}x{hw[1]} (worst)", shape, attempt.max_abs, attempt.mean_abs)
    save_openvino(build.model, target, overwrite=overwrite)
    # the metadata survived the round trip
    meta = read_openvino_meta(openvino_core().read_model(str(target)), str(target))
    notes = [graph_note, f"int8: {build.explanation}"]
    notes += [f"tried {a.recipe}: worst {a.psnr_min:.1f} dB, mean {a.psnr_mean:.1f} dB" for a in build.attempts]
    return ExportResult(path=target, format="openvino-int8", tolerance=float("inf"), comparisons=[comparison],
                        notes=notes, psnr_db=meta.extra["int8"]["psnr_min_db"],
                        psnr_bound=options.target_psnr if build.recipe == "convs" else options.min_psnr)
