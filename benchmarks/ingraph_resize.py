"""The live frame's resizes done by OpenCV around the int8 model, or by OpenVINO's Interpolate inside its graph.

    python benchmarks/ingraph_resize.py --model s8 --json benchmarks/ingraph-resize-s8-zen4.json

The live loop shrinks each 640x360 frame to the processing size (456x256 at `--size 256`, `transforms.resize_frames`),
runs the int8 model on uint8 frames (`formats.openvino.frames_io`) and grows the result back (bicubic). This
builds the same int8 model with both resizes inside the graph instead (uint8 640x360 in and out; Interpolate-11,
down in each `--down` mode, up cubic or linear) and times three calls per frame of the bottle clip in one process,
alternating within each round: `bare` (the model alone on a ready 456x256 frame), `opencv` (the live loop's
resizes around it) and `in-graph`. It was measured and not kept (BENCHMARKS.md, "The live loop on Zen 4, in
rounds"): every in-graph variant was slower than OpenCV's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from rtstyle.backends import BackendOptions, create_backend  # noqa: E402
from rtstyle.benchmark import machine_info  # noqa: E402
from rtstyle.formats.openvino import frames_io, import_openvino, openvino_core  # noqa: E402
from rtstyle.io.video import read_frames  # noqa: E402
from rtstyle.transforms import plan_for, resize_frames, resize_to_plan  # noqa: E402

# (down mode, antialias, up mode): OpenVINO's Interpolate-11 modes
VARIANTS = [("bilinear_pillow", True, "cubic"), ("linear", True, "cubic"), ("linear_onnx", False, "cubic"),
            ("linear", True, "linear"), ("linear_onnx", False, "linear_onnx")]


def in_graph(model, source: tuple[int, int], resized: tuple[int, int], down: str, antialias: bool, up: str):
    """`model` (u8 NHWC frames at `resized`) taking and returning u8 frames at `source`, resized inside."""
    ov = import_openvino()
    from openvino import opset11 as ops

    def to_u8(node):
        return ops.convert(ops.clamp(ops.round(node, "half_to_even"), 0.0, 255.0), "u8")

    axes = np.array([1, 2], np.int64)
    frames = ops.parameter([1, *source, 3], ov.Type.u8, name="frames")
    small = to_u8(ops.interpolate(ops.convert(frames, "f32"), np.array(resized, np.int64), down, "sizes", axes=axes,
                                  antialias=antialias, coordinate_transformation_mode="half_pixel"))
    for target in list(model.get_parameters()[0].output(0).get_target_inputs()):
        target.replace_source_output(small.output(0))
    y = ops.convert(model.get_results()[0].input_value(0), "f32")
    big = to_u8(ops.interpolate(y, np.array(source, np.int64), up, "sizes", axes=axes, cube_coeff=-0.75,
                                coordinate_transformation_mode="half_pixel"))
    return ov.Model([ops.result(big)], [frames], "in_graph")


def per_frame_ms(call, frames: list[np.ndarray], seconds: float) -> float:
    call(frames[0])
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        call(frames[n % len(frames)])
        n += 1
    return 1000 * (time.perf_counter() - start) / n


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "media" / "bottle-640x360.mp4"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5, help="per call and round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    frames = read_frames(args.source, 60)
    plan = plan_for(*frames[0].shape[:2], args.size)
    backend = create_backend(args.model, BackendOptions(backend="openvino", precision="int8"), log=None)
    backend.prepare(plan.resized)  # the int8 model at the loop's shape (cached)
    int8 = backend.final[plan.resized][0]
    core, config = openvino_core(), {"INFERENCE_PRECISION_HINT": backend.rest, "PERFORMANCE_HINT": "LATENCY"}

    def static(model):
        model = model.clone()
        model.reshape([1, 3, *plan.resized])
        return model

    bare = core.compile_model(frames_io(static(int8)), "CPU", config).create_infer_request()

    def infer(request, x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()  # the request reuses its buffer

    ready = resize_to_plan(frames[0][None], args.size)[0]
    calls = {"bare": lambda f: infer(bare, ready),
             "opencv": lambda f: resize_frames(infer(bare, resize_to_plan(f[None], args.size)[0]), *plan.source)}
    reference = np.stack([calls["opencv"](f)[0] for f in frames[:10]]).astype(np.float64)
    psnr = {}
    for down, antialias, up in VARIANTS:
        name = f"in-graph {down}{' antialias' if antialias else ''} / {up}"
        request = core.compile_model(in_graph(frames_io(static(int8)), plan.source, plan.resized, down, antialias,
                                              up), "CPU", config).create_infer_request()
        calls[name] = lambda f, r=request: infer(r, f[None])
        got = np.stack([calls[name](f)[0] for f in frames[:10]]).astype(np.float64)
        psnr[name] = float(10 * np.log10(255 ** 2 / np.mean((got - reference) ** 2)))
    times = {name: [] for name in calls}
    for r in range(args.rounds):
        names = list(calls)[r % len(calls):] + list(calls)[:r % len(calls)]  # rotate who goes first
        for name in names:
            times[name].append(per_frame_ms(calls[name], frames, args.seconds))
        print(f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f}" for n in calls) + " ms", flush=True)
    summary = {name: {"ms_median": statistics.median(t), "vs_bare": statistics.median(
        b / x for b, x in zip(times["bare"], t)), "psnr_vs_opencv_db": psnr.get(name)} for name, t in times.items()}
    for name, s in summary.items():
        print(f"{name}: {s['ms_median']:.2f} ms a frame, bare/this {s['vs_bare']:.3f}"
              + (f", {s['psnr_vs_opencv_db']:.1f} dB vs the OpenCV path" if s["psnr_vs_opencv_db"] else ""))
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": machine_info(),
                                         "args": {k: str(v) for k, v in vars(args).items()}, "summary": summary,
                                         "rounds_ms": times}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
