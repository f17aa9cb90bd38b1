"""What the live loop spends besides the model, and two ways to spend less that were measured and not kept.

    python benchmarks/live_costs.py --model demo --json benchmarks/live-costs-demo-zen4.json

1. `loop`: `live.run_live` headless on the bottle clip (int8 at `--size`, no stabiliser, no similarity filter)
   with the file source's read, the decoder's colour conversion (`io.video.frame_rgb`) and the translation
   stage's hand-off timed inside it, beside the pipeline's own stage times.
2. `yuv`: outside the loop, on one OpenCV thread, the loop's shrink of the decoded frame (colour conversion at
   640x360, then `transforms.resize_frames`) against shrinking the decoder's YUV planes first and converting
   the small frame (what "decode to a smaller frame" would do for a file or stream source).
3. `threads`: `--pairs` alternating live runs with OpenCV on two threads (its default here) and on one.
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

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from rtstyle.backends import BackendOptions, create_backend  # noqa: E402
from rtstyle.benchmark import machine_info  # noqa: E402
from rtstyle.io import sources, video  # noqa: E402
from rtstyle.io.sources import open_source  # noqa: E402
from rtstyle.live import LiveOptions, run_live  # noqa: E402
from rtstyle.live_stages import Handoff  # noqa: E402
from rtstyle.pipeline import FrameTranslator  # noqa: E402
from rtstyle.transforms import plan_for, resize_frames  # noqa: E402


def live(backend, source: str, size: int, seconds: float) -> dict:
    report = run_live(open_source(source, realtime=False, log=lambda m: None), FrameTranslator(backend, size),
                      LiveOptions(size=size, show=False, duration=seconds, skip_similar=None), log=lambda m: None)
    return {"fps": report.fps, "stages_ms": report.times.ms_per_frame()}


def loop_costs(backend, source: str, size: int, seconds: float) -> dict:
    """The live loop with three more calls timed inside it (ms per call)."""
    spent: dict[str, list[float]] = {}
    patched = [(sources.FileSource, "read", "read"), (Handoff, "put", "hand-off"), (video, "frame_rgb", "colour")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]

    def timing(call, key):
        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent.setdefault(key, []).append(1000 * (time.perf_counter() - start))
        return timed_call

    for (owner, name, key), (_, _, call) in zip(patched, originals):
        setattr(owner, name, timing(call, key))
    try:
        got = live(backend, source, size, seconds)
    finally:
        for owner, name, call in originals:
            setattr(owner, name, call)
    return got | {"timed_ms": {key: statistics.fmean(values) for key, values in spent.items()}}


def yuv_costs(source: str, size: int, calls: int = 300) -> dict:
    """ms per frame, one OpenCV thread: convert then shrink (the loop) against shrink the planes then convert."""
    import av

    with av.open(source) as container:
        frames = [f for _, f in zip(range(60), container.decode(video=0))]
    h, w = frames[0].height, frames[0].width
    rh, rw = plan_for(h, w, size).resized

    def loop_way(frame):
        return resize_frames(video.frame_rgb(frame)[None], rh, rw)[0]

    def shrink(plane, height, width):  # the two-step shrink of resize_frames, on one plane
        big = cv2.resize(plane, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
        return cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA)

    def planes_way(frame):
        yuv = frame.to_ndarray(format="yuv420p")  # (h * 3/2, w): Y, then U and V at half size
        u = yuv[h:h + h // 4].reshape(h // 2, w // 2)
        v = yuv[h + h // 4:].reshape(h // 2, w // 2)
        small = [shrink(yuv[:h], rh, rw), shrink(u, rh // 2, rw // 2), shrink(v, rh // 2, rw // 2)]
        return cv2.cvtColor(np.concatenate([p.ravel() for p in small]).reshape(rh * 3 // 2, rw), cv2.COLOR_YUV2RGB_I420)

    def per_call(fn) -> float:
        fn(frames[0])
        start = time.perf_counter()
        for i in range(calls):
            fn(frames[i % len(frames)])
        return 1000 * (time.perf_counter() - start) / calls

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        ref = np.stack([loop_way(f) for f in frames]).astype(np.float64)
        got = np.stack([planes_way(f) for f in frames]).astype(np.float64)
        rounds = [(per_call(loop_way), per_call(planes_way)) for _ in range(3)]
    finally:
        cv2.setNumThreads(threads)
    return {"convert_then_shrink_ms": statistics.median(r[0] for r in rounds),
            "shrink_planes_then_convert_ms": statistics.median(r[1] for r in rounds),
            "psnr_db": float(10 * np.log10(255 ** 2 / np.mean((got - ref) ** 2))), "resized": f"{rh}x{rw}"}


def thread_pairs(backend, source: str, size: int, seconds: float, pairs: int) -> dict:
    default = cv2.getNumThreads()
    ratios, rounds = [], []
    try:
        for r in range(pairs):
            got = {}
            for threads in ((default, 1) if r % 2 == 0 else (1, default)):
                cv2.setNumThreads(threads)
                got[threads] = live(backend, source, size, seconds)["fps"]
            ratios.append(got[1] / got[default])
            rounds.append(got)
            print(f"pair {r + 1}: {default} threads {got[default]:.1f} fps, 1 thread {got[1]:.1f} fps", flush=True)
    finally:
        cv2.setNumThreads(default)
    return {"default_threads": default, "one_vs_default_median": statistics.median(ratios),
            "one_vs_default_range": [min(ratios), max(ratios)], "fps_rounds": rounds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "media" / "bottle-640x360.mp4"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=6.0, help="the instrumented live run")
    parser.add_argument("--pairs", type=int, default=10, help="OpenCV-thread pairs (0: skip)")
    parser.add_argument("--pair-seconds", type=float, default=3.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    backend = create_backend(args.model, BackendOptions(backend="openvino", precision="int8"), log=None)
    live(backend, args.source, args.size, 1.0)  # builds/compiles the loop's shape
    result = {"loop": loop_costs(backend, args.source, args.size, args.seconds), "yuv": yuv_costs(args.source, args.size)}
    loop = result["loop"]
    print(f"loop: {loop['fps']:.1f} fps; " + ", ".join(f"{k} {v:.2f}" for k, v in loop["stages_ms"].items())
          + "; timed inside: " + ", ".join(f"{k} {v:.3f}" for k, v in loop["timed_ms"].items()) + " ms")
    yuv = result["yuv"]
    print(f"yuv, one OpenCV thread, to {yuv['resized']}: convert then shrink {yuv['convert_then_shrink_ms']:.3f} ms, "
          f"shrink the planes then convert {yuv['shrink_planes_then_convert_ms']:.3f} ms ({yuv['psnr_db']:.1f} dB apart)")
    if args.pairs:
        result["threads"] = thread_pairs(backend, args.source, args.size, args.pair_seconds, args.pairs)
        t = result["threads"]
        print(f"OpenCV on 1 thread / on {t['default_threads']}: {t['one_vs_default_median']:.3f} "
              f"({t['one_vs_default_range'][0]:.3f}-{t['one_vs_default_range'][1]:.3f})")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": machine_info(),
                                         "args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
