"""End-to-end `cli.py video` throughput next to the backend's bare throughput, measured in one run.

    python benchmarks/video_end_to_end.py VIDEO [--size 256] [--model M] [--precision auto] [--threads N]

Without --model a full-size generator (ngf 64, 9 blocks, the official architecture) with random weights is
saved to a temporary folder: speed does not depend on the weights' values. The bare figure is
`backend.infer` on one preprocessed frame of VIDEO at the same processing size, measured before and after
the conversion (the mean is used, so drift of a shared machine shows up in the spread); the end-to-end
figure is what `python cli.py video VIDEO --model M --out OUT --size N` reports for its conversion
(decode, translate, encode and mux overlapped; model loading and start-up excluded), and the whole
process's wall time is given too.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtstyle.backends import BackendOptions, create_backend  # noqa: E402
from rtstyle.io.video import VideoReader  # noqa: E402
from rtstyle.models import GeneratorConfig, ResnetGenerator  # noqa: E402
from rtstyle.transforms import parse_size, preprocess  # noqa: E402
from rtstyle.weights import ModelInfo, save_generator  # noqa: E402


def bare_fps(backend, x: torch.Tensor, iterations: int) -> float:
    for _ in range(3):  # warm-up: oneDNN builds its kernels for this shape on the first calls
        backend.infer(x)
    start = time.perf_counter()
    for _ in range(iterations):
        backend.infer(x)
    return iterations / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("video", type=Path)
    p.add_argument("--size", default="256")
    p.add_argument("--model", help="weights file; default: a random-init ngf 64, 9-block generator")
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch threads in both measurements (default: torch's own)")
    p.add_argument("--iterations", type=int, default=20, help="bare calls per measurement [20]")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rtstyle-bench-"))
    model = args.model
    if model is None:
        torch.manual_seed(0)
        generator = ResnetGenerator(GeneratorConfig(ngf=64, n_blocks=9))
        model = str(save_generator(generator, work / "full.safetensors",
                                   ModelInfo(config=generator.config, name="full")))
    if args.threads:
        torch.set_num_threads(args.threads)
    options = BackendOptions(device=args.device, precision=args.precision)
    backend = create_backend(model, options)
    with VideoReader(args.video) as reader:
        frame, _ = next(iter(reader))
        info = reader.info
    x, plan = preprocess(frame, parse_size(args.size))  # (1, 3, H, W)
    print(f"{args.video}: {info.width}x{info.height}, {info.frames} frames; processing {plan.padded[1]}x"
          f"{plan.padded[0]}; {backend.describe()}; torch threads {torch.get_num_threads()}", flush=True)

    before = bare_fps(backend, x, args.iterations)
    print(f"bare backend (before): {before:.2f} fps", flush=True)
    cmd = [sys.executable, str(ROOT / "cli.py"), "video", str(args.video), "--model", model, "--out",
           str(work / "out.mp4"), "--size", str(args.size), "--precision", args.precision, "--device", args.device]
    env = None
    if args.threads:
        import os

        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        return run.returncode
    after = bare_fps(backend, x, args.iterations)
    print(f"bare backend (after): {after:.2f} fps", flush=True)

    report = [line for line in run.stderr.splitlines() if "ms/frame" in line or "overall" in line]
    overall = float(re.search(r"([\d.]+) fps\S* overall", run.stderr).group(1))
    bare = (before + after) / 2
    print("\n".join(line.strip() for line in report))
    print(f"command: {' '.join(cmd[1:])}")
    print(f"end-to-end {overall:.2f} fps (process wall {wall:.1f} s incl. start-up) | bare {bare:.2f} fps "
          f"(before {before:.2f}, after {after:.2f}) | ratio {overall / bare:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
