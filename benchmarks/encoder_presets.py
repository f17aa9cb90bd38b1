"""x264 presets side by side on one backend: the encoder's own CPU time, and end-to-end fps against bare fps.

    python benchmarks/encoder_presets.py --model MODEL --clip ../shared/media/bottle-640x360.mp4 \
        --presets ultrafast,veryfast --rounds 3 --json benchmarks/encoder-presets-s8-zen4.json

First each preset encodes the model's translations of the clip's first `--frames` frames alone (what the
encoder gets in a conversion; `io.video.VideoWriter`, CPU seconds of this process per frame, and the file
size). Then, in one process with one backend (OpenVINO int8 by default,
built once), each round converts those frames once per preset through `rtstyle.benchmark.end_to_end` (what
`benchmark --video` runs: `--stabilize` off, bare tensor fps just before and after, the ratio against their
mean); the presets alternate within a round, so they share the machine's drift. This is what `--preset auto`'s
rule (`rtstyle.video.LIGHT_MACS_PER_PIXEL`) rests on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtstyle.backends import BackendOptions, create_backend  # noqa: E402
from rtstyle.benchmark import end_to_end, machine_info, video_excerpt  # noqa: E402
from rtstyle.io.video import VideoWriter, read_frames  # noqa: E402
from rtstyle.macs import generator_macs  # noqa: E402
from rtstyle.pipeline import FrameTranslator  # noqa: E402
from rtstyle.store import resolve_model  # noqa: E402


def encode_only(frames, preset: str, target: Path) -> dict:
    """CPU ms per frame (this process, all its threads) and kB of encoding `frames` at `preset`."""
    h, w = frames[0].shape[:2]
    writer = VideoWriter(target, w, h, 30, overwrite=True, preset=preset)
    begin = time.process_time()
    for i, rgb in enumerate(frames):
        writer.write(rgb, i / 30)
    writer.close()
    return {"cpu_ms_per_frame": 1000 * (time.process_time() - begin) / len(frames), "kbytes": target.stat().st_size / 1000}


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
    presets = args.presets.split(",")
    backend = create_backend(resolve_model(args.model), BackendOptions(backend=args.backend, precision=args.precision))
    runs = {p: [] for p in presets}
    with tempfile.TemporaryDirectory(prefix="rtstyle-presets-") as folder:
        clip = video_excerpt(args.clip, args.frames, Path(folder))
        frames = [translated[0] for translated in map(FrameTranslator(backend, None), (f[None] for f in read_frames(clip)))]
        encoding = {p: encode_only(frames, p, Path(folder) / f"alone-{p}.mp4") for p in presets}
        for preset, e in encoding.items():
            print(f"{preset:9s} alone: {e['cpu_ms_per_frame']:.2f} ms of CPU a frame, {e['kbytes']:.0f} kB", flush=True)
        short_side = min(frames[0].shape[:2])  # native size, as the clip is
        for r in range(args.rounds):
            for preset in presets:
                run = end_to_end(backend, clip, short_side, 1, Path(folder), args.bare_seconds, None, preset)
                runs[preset].append(run)
                stages = run["stage_ms_per_frame"]
                print(f"round {r + 1} {preset:9s}: e2e {run['e2e_fps']:5.1f} fps, bare {run['bare_fps_before']:5.1f}/"
                      f"{run['bare_fps_after']:5.1f}, ratio {run['e2e_vs_bare']:.3f}, encode {stages['encode']:.1f} ms",
                      flush=True)
    summary = {p: {"ratio_median": statistics.median(x["e2e_vs_bare"] for x in v),
                   "ratios": [x["e2e_vs_bare"] for x in v], **encoding[p]} for p, v in runs.items()}
    for preset, s in summary.items():
        print(f"{preset}: e2e/bare median {s['ratio_median']:.3f} {[round(x, 3) for x in s['ratios']]}")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "machine": machine_info(), "backend": backend.describe(),
            "macs_per_pixel": generator_macs(backend.info.config) / 256 ** 2, "frames": args.frames,
            "summary": summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
