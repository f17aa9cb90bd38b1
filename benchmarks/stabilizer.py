"""Stabiliser settings side by side on real clips: warping-error ratio, SSIM vs per-frame, ms per frame.

    python benchmarks/stabilizer.py --clip ../shared/media/bottle-640x360.mp4 --frames 240 \
        --clip ../shared/media/webcam-asl-thanks-640x480.mkv --json benchmarks/stabilizer-zen4.json

Each clip is translated once per frame (`--model`, torch fp32 at short side `--size`: the per-frame output
every setting starts from), then every setting of `SETTINGS` (or `--only NAME,...`) runs the real
`rtstyle.stabilize.Stabilizer` over the same frames in one thread, timed per frame (motion estimation and
blend together, i.e. everything `--stabilize` adds), and `rtstyle.temporal.temporal_scores` scores the result
the way `cli.py evaluate --video` does (DIS flow on the source at full size, forward-backward mask).
`--skip 0.0015,...` also runs `--skip-similar` at each threshold (alone and with the default stabiliser)
through the real `SteadyTranslator` and reports the share of inferences skipped and the SSIM against
translating every frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtstyle.backends import BackendOptions, create_backend  # noqa: E402
from rtstyle.io.video import read_frames  # noqa: E402
from rtstyle.pipeline import FrameTranslator  # noqa: E402
from rtstyle.stabilize import StabilizeOptions, Stabilizer  # noqa: E402
from rtstyle.steady import SteadyTranslator  # noqa: E402
from rtstyle.temporal import ssim, temporal_scores  # noqa: E402

SETTINGS = {
    "off": None,
    "fb-180": StabilizeOptions(check="forward-backward", flow_size=180),  # two DIS flows at a 180 px short side
    "fb-144": StabilizeOptions(check="forward-backward", flow_size=144),
    "photo-180": StabilizeOptions(check="photometric", flow_size=180),  # one flow, warped-input agreement
    "photo-144": StabilizeOptions(check="photometric", flow_size=144),  # the default
    "photo-120": StabilizeOptions(check="photometric", flow_size=120),  # measured: less steady, no reliably cheaper
    "photo-180-s95": StabilizeOptions(check="photometric", flow_size=180, strength=0.95),
}


def run(frames: list[np.ndarray], per_frame: list[np.ndarray], options: StabilizeOptions | None) -> dict:
    if options is None:
        out, ms = per_frame, [0.0]
    else:
        stabilizer, out, ms = Stabilizer(options), [], []
        for src, translated in zip(frames, per_frame):
            begin = time.perf_counter()
            out.append(stabilizer(src, translated))
            ms.append((time.perf_counter() - begin) * 1000)
        ms = ms[1:]  # the first frame only stores its luma
    scores = temporal_scores(frames, out, per_frame)
    return {"ratio": scores.ratio, "ssim_vs_per_frame": scores.ssim_vs_per_frame, "ms_median": statistics.median(ms),
            "ms_mean": statistics.fmean(ms)}


class Replay:
    """A translator that hands back the precomputed per-frame output of the frame being handled (`index`)."""

    times = None

    def __init__(self, per_frame: list[np.ndarray]) -> None:
        self.per_frame, self.index = per_frame, 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.per_frame[self.index][None]


def skip_similar(frames: list[np.ndarray], per_frame: list[np.ndarray], threshold: float,
                 options: StabilizeOptions | None) -> dict:
    """`--skip-similar THRESHOLD` (with `--stabilize` when `options`) through the real `SteadyTranslator`: share
    of inferences skipped and mean SSIM against translating every frame."""
    replay = Replay(per_frame)
    steady = SteadyTranslator(replay, options, skip_similar=threshold)
    out = []
    for i, frame in enumerate(frames):
        replay.index = i
        out.append(steady(frame))
    return {"threshold": threshold, "skipped": steady.skipped / len(frames),
            "ssim_vs_per_frame": statistics.fmean(ssim(a, b) for a, b in zip(out, per_frame))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", action="append", type=Path, required=True, help="a real clip (repeatable)")
    parser.add_argument("--frames", type=int, default=240, help="first frames of each clip [240]")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=256, help="processing short side [256]")
    parser.add_argument("--only", help="comma list of setting names")
    parser.add_argument("--skip", default="", help="comma list of --skip-similar thresholds to score too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    translate = FrameTranslator(create_backend(args.model, BackendOptions(backend="torch", precision="fp32")),
                                args.size)
    names = args.only.split(",") if args.only else list(SETTINGS)
    results = {}
    for clip in args.clip:
        frames = read_frames(clip)[: args.frames]
        per_frame = [translate(f[None])[0] for f in frames]
        for name in names:
            results[f"{clip.name} {name}"] = row = run(frames, per_frame, SETTINGS[name])
            print(f"{clip.name:36s} {name:14s} ratio {row['ratio']:.3f}  SSIM {row['ssim_vs_per_frame']:.4f}  "
                  f"{row['ms_median']:.1f} ms/frame", flush=True)
        for threshold in (float(t) for t in args.skip.split(",") if t):
            for name, options in (("skip", None), ("skip+stabilize", StabilizeOptions())):
                results[f"{clip.name} {name} {threshold:g}"] = row = skip_similar(frames, per_frame, threshold,
                                                                                  options)
                print(f"{clip.name:36s} {name} {threshold:g}: skipped {row['skipped']:.0%}  SSIM vs every frame "
                      f"{row['ssim_vs_per_frame']:.4f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"command": "python benchmarks/stabilizer.py " + " ".join(argv or sys.argv[1:]),
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
