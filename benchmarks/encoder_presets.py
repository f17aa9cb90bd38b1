"""x264 presets side by side on one backend: end-to-end fps of `cli.py video`'s pipeline against the bare fps.

    python benchmarks/encoder_presets.py --model MODEL --clip ../shared/media/bottle-640x360.mp4 \
        --presets ultrafast,veryfast --rounds 3 --json benchmarks/encoder-presets-s8-zen4.json

One process, one backend (OpenVINO int8 by default, built once): each round converts the first `--frames`
frames of the clip once per preset (`rtstyle.video.convert_video`, `--stabilize` off, native size), with the
bare `infer_frames` fps timed just before and after each conversion; each ratio is against the mean of the
two, and the median over rounds is reported with the file size. This is what `--preset auto`'s rule
(`rtstyle.video.LIGHT_MACS_PER_PIXEL`) rests on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtstyle.backends import BackendOptions, create_backend  # noqa: E402
from rtstyle.bench_live import bare_fps  # noqa: E402
from rtstyle.benchmark import machine_info, video_excerpt  # noqa: E402
from rtstyle.io.video import VideoReader  # noqa: E402
from rtstyle.macs import generator_macs  # noqa: E402
from rtstyle.pipeline import FrameTranslator  # noqa: E402
from rtstyle.store import resolve_model  # noqa: E402
from rtstyle.transforms import resize_to_plan  # noqa: E402
from rtstyle.video import convert_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--presets", default="ultrafast,veryfast")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bare-seconds", type=float, default=3.0)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    backend = create_backend(resolve_model(args.model), BackendOptions(backend=args.backend, precision=args.precision))
    presets = args.presets.split(",")
    with tempfile.TemporaryDirectory(prefix="rtstyle-presets-") as folder:
        clip = video_excerpt(args.clip, args.frames, Path(folder))
        with VideoReader(clip) as reader:
            frame, _ = next(iter(reader))
        resized, _ = resize_to_plan(frame, None)
        backend.infer_frames(resized)  # compiles (and builds the int8 model) before anything is timed
        runs = {p: [] for p in presets}
        for r in range(args.rounds):
            for preset in presets:
                before = bare_fps(backend.infer_frames, resized, args.bare_seconds)
                out = Path(folder) / f"{preset}.mp4"
                result = convert_video(clip, out, FrameTranslator(backend, None), overwrite=True, preset=preset)
                after = bare_fps(backend.infer_frames, resized, args.bare_seconds)
                stages = result.times.ms_per_frame()
                runs[preset].append({"e2e_fps": result.fps, "bare_fps": (before + after) / 2,
                                     "ratio": result.fps / ((before + after) / 2), "bytes": out.stat().st_size,
                                     "stage_ms_per_frame": stages})
                print(f"round {r + 1} {preset:9s}: e2e {result.fps:5.1f} fps, bare {before:5.1f}/{after:5.1f}, ratio "
                      f"{runs[preset][-1]['ratio']:.3f}, encode {stages['encode']:.1f} ms, {out.stat().st_size // 1000} kB",
                      flush=True)
    summary = {p: {"ratio_median": statistics.median(x["ratio"] for x in v),
                   "ratios": [x["ratio"] for x in v], "kbytes": v[0]["bytes"] / 1000} for p, v in runs.items()}
    for preset, s in summary.items():
        print(f"{preset}: e2e/bare median {s['ratio_median']:.3f} {[round(x, 3) for x in s['ratios']]}, "
              f"{s['kbytes']:.0f} kB")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "machine": machine_info(), "backend": backend.describe(),
            "macs_per_pixel": generator_macs(backend.info.config) / 256 ** 2, "frames": args.frames,
            "summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
