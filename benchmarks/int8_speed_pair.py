"""Two generators' OpenVINO int8 speed side by side, with int8 used whatever its accuracy.

    python benchmarks/int8_speed_pair.py --model full-random --compare s8 --sizes 256x256,360x640 \
        --rounds 5 --json benchmarks/int8-speed-teacher-s8-intel.json

For a speed ratio when no trained teacher is at hand (`--model full-random`: the full reference generator, ngf
64 and 9 blocks, with the resize upsampler of issue 12's teachers, initialised as the reference initialises
it, seed 0): a generator of the teacher's shape with random weights
runs exactly as fast as a trained one, but its int8 model fails the accuracy gate of `benchmark`'s int8
backend (`rtstyle.formats.int8.quantize`, 24 dB against 30), which then runs it in f32 and compares the wrong
things. Here both are quantised with the gate at 0 dB (the PSNR each reached is printed), compiled as the int8
backend compiles them (`formats.openvino.compile_cpu`, static shape, the rest of the graph in f32 or bf16 as
the CPU has it) and timed on float tensors, batch 1, the models alternating within each round.
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

from rtstyle.benchmark import machine_info  # noqa: E402
from rtstyle.formats.int8.quantize import build_int8_openvino, run_hint  # noqa: E402
from rtstyle.formats.openvino import compile_cpu  # noqa: E402
from rtstyle.transforms import parse_hw  # noqa: E402
from rtstyle.weights import load_model  # noqa: E402


def load(source: str):
    if source != "full-random":
        return load_model(source)
    import torch

    from rtstyle import GeneratorConfig, ModelInfo
    from train.networks import build_generator

    torch.manual_seed(0)
    config = GeneratorConfig(ngf=64, n_blocks=9, upsample="resize")
    return build_generator(config).eval(), ModelInfo(config=config, direction="a->b", train_size=256, name=source)


def fps(compiled, hw: tuple[int, int], seconds: float) -> float:
    """Calls a second over about `seconds`, after one untimed call."""
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random((1, 3, *hw), dtype=np.float32)
    request.infer([x])
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 2:
        request.infer([x])
        calls += 1
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the slower generator (a teacher), or full-random")
    parser.add_argument("--compare", required=True, help="the faster one (say, its student)")
    parser.add_argument("--sizes", default="256x256,360x640")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per model per size per round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    sizes = [parse_hw(size) for size in args.sizes.split(",")]
    names = {"model": args.model, "compare": args.compare}
    compiled, psnr = {}, {}
    for role, source in names.items():
        generator, info = load(source)
        for hw in sizes:
            build = build_int8_openvino(generator, info, hw, target_psnr=0, min_psnr=0)
            psnr[(role, hw)] = build.attempts[-1].psnr_min
            compiled[(role, hw)] = compile_cpu(build.model, run_hint(), shape=(1, 3, *hw))
            print(f"{source} at {hw[0]}x{hw[1]}: {build.explanation}", flush=True)
    timings: dict[tuple, list[float]] = {}
    for round_index in range(args.rounds):
        for hw in sizes:
            for role in names:
                timings.setdefault((role, hw), []).append(fps(compiled[(role, hw)], hw, args.seconds))
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{names[role]} {hw[0]}x{hw[1]} {values[-1]:.2f} fps" for (role, hw), values in timings.items()), flush=True)
    summary = {}
    for hw in sizes:
        slow, fast = timings[("model", hw)], timings[("compare", hw)]
        ratios = [b / a for a, b in zip(slow, fast)]
        key = f"{hw[0]}x{hw[1]}"
        summary[key] = {"model_fps": statistics.median(slow), "compare_fps": statistics.median(fast),
                        "ratio": statistics.median(ratios), "ratio_rounds": ratios,
                        "model_int8_psnr_min_db": psnr[("model", hw)], "compare_int8_psnr_min_db": psnr[("compare", hw)]}
        print(f"{key}: {args.model} {summary[key]['model_fps']:.2f} fps, {args.compare} "
              f"{summary[key]['compare_fps']:.1f} fps: {summary[key]['ratio']:.1f}x (median of the rounds' ratios: "
              + ", ".join(f"{r:.1f}" for r in ratios) + ")")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "machine": machine_info(),
                                         "summary": summary}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
