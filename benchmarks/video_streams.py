"""File conversion on OpenVINO with its two batches in flight on one CPU stream or on two, side by side.

    python benchmarks/video_streams.py --model s8 --clip ../shared/media/bottle-640x360.mp4 --frames 300 \
        --rounds 4 --busy 0,1 --json benchmarks/video-streams-s8-zen4.json

`video.convert_video` starts batch k+1 before it hands batch k on. Compiled with the LATENCY hint (`one`), the
two requests run one after the other, each on every thread; compiled with two streams (`two`,
`formats.openvino.streams_for`, what `convert_video` now asks for), they run at once, one thread each. Both are
timed here through `convert_video` itself on the same int8 backend in one process, alternating within each
round (who goes first alternates too), with `--stabilize` as `cli.py video` runs it by default unless
`--stabilize 0`; `--busy 1` repeats every round beside a process spinning on a core (a user's other work).
The figure to quote is the median of the per-round ratios two / one, each pair run seconds apart.
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
from rtstyle.bench_live import BusyCores  # noqa: E402
from rtstyle.benchmark import machine_info, video_excerpt  # noqa: E402
from rtstyle.pipeline import FrameTranslator  # noqa: E402
from rtstyle.stabilize import DEFAULT_STRENGTH, stabilize_options  # noqa: E402
from rtstyle.video import choose_preset, convert_video  # noqa: E402


class OneStream(FrameTranslator):
    """The conversion before: its two batches in flight on the one-stream (LATENCY) compile."""

    def submit(self, frames, parallel=1):
        return super().submit(frames, 1)


def convert(backend, clip: Path, out: Path, size: int | None, stabilize, two: bool) -> dict:
    translator = (FrameTranslator if two else OneStream)(backend, size)
    preset = choose_preset("auto", backend)[0]
    result = convert_video(clip, out, translator, overwrite=True, stabilize=stabilize, preset=preset)
    return {"fps": result.frames / result.seconds, "frames": result.frames, "stages_ms": result.times.ms_per_frame()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--clip", type=Path, default=ROOT.parent / "shared" / "media" / "bottle-640x360.mp4")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="native", help="short side, or native")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--busy", default="0", help="comma-separated counts of spinning processes, e.g. 0,1")
    parser.add_argument("--stabilize", type=float, default=DEFAULT_STRENGTH)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    size = None if args.size == "native" else int(args.size)
    busy_counts = [int(b) for b in args.busy.split(",")]
    backend = create_backend(args.model, BackendOptions(backend="openvino", precision="int8"), log=None)
    stabilize = stabilize_options(args.stabilize) if args.stabilize else None
    records = {b: [] for b in busy_counts}
    with tempfile.TemporaryDirectory(prefix="rtstyle-streams-") as folder:
        clip = video_excerpt(args.clip, args.frames, Path(folder))
        out = Path(folder) / "out.mp4"
        for two in (False, True):  # builds and compiles both before timing
            convert(backend, clip, out, size, stabilize, two)
        for r in range(args.rounds):
            for busy in busy_counts:
                with BusyCores(busy):
                    order = (False, True) if r % 2 == 0 else (True, False)
                    got = {("two" if two else "one"): convert(backend, clip, out, size, stabilize, two)
                           for two in order}
                got["ratio"] = got["two"]["fps"] / got["one"]["fps"]
                records[busy].append(got)
                print(f"round {r + 1}, busy {busy}: one stream {got['one']['fps']:.1f} fps, two streams "
                      f"{got['two']['fps']:.1f} fps, ratio {got['ratio']:.3f}", flush=True)
    summary = {}
    for busy, rounds in records.items():
        ratios = [g["ratio"] for g in rounds]
        summary[str(busy)] = {"one_fps": statistics.median(g["one"]["fps"] for g in rounds),
                              "two_fps": statistics.median(g["two"]["fps"] for g in rounds),
                              "ratio_median": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)]}
        s = summary[str(busy)]
        print(f"{args.model}, {args.frames} frames, stabilize {args.stabilize:g}, busy {busy}: two / one streams "
              f"{s['ratio_median']:.3f} (rounds {s['ratio_range'][0]:.3f}-{s['ratio_range'][1]:.3f}); median fps "
              f"one {s['one_fps']:.1f}, two {s['two_fps']:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": machine_info(),
                                         "backend": backend.describe(), "args": {k: str(v) for k, v in vars(args).items()},
                                         "summary": summary, "rounds": {str(b): r for b, r in records.items()}},
                                        indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
