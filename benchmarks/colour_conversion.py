"""What reading and writing a video frame costs the CPU, conversion by conversion, with this process's CPU time.

    python benchmarks/colour_conversion.py --clip ../shared/media/bottle-640x360.mp4 --rounds 3 \
        --json benchmarks/colour-conversion-intel.json

- decode: FFmpeg's decoder alone (frames kept in their own pixel format) with each threading mode
  (`io.video.VideoReader(threads=...)`; `video.decoder_threads` picks SLICE beside a model on the CPU);
- to RGB: swscale's rgb24 (PyAV's `to_ndarray`) against `io.video.frame_rgb` (OpenCV), and each one's mean
  error against the exact BT.601 limited-range formula (nearest chroma);
- to 4:2:0: swscale's rgb24 -> yuv420p against `io.video.rgb_to_i420`, with the same error measure (chroma
  as each 2x2 block's mean);
- encode: x264 at `--preset` from 4:2:0 frames, i.e. what the encoder itself costs once the frame is converted,
  with its own thread count and with one (`video.codec_threads` gives one beside a model on the CPU).

OpenCV runs with one thread and two (`--cv-threads`): in a conversion the model holds both cores, so a
library's own worker threads mostly wait for them. Rounds alternate the variants; medians are printed.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from rtstyle.benchmark import machine_info  # noqa: E402
from rtstyle.io.video import frame_rgb, rgb_to_i420  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_frame_ms(work, items) -> float:
    start = cpu_seconds()
    for item in items:
        work(item)
    return (cpu_seconds() - start) / len(items) * 1000


def decoded(clip: Path, frames: int, threads: str = "SLICE") -> list[av.VideoFrame]:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = threads
        return [frame for _, frame in zip(range(frames), container.decode(stream))]


def decode_ms(clip: Path, frames: int, threads: str) -> float:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = threads
        start, n = cpu_seconds(), 0
        for frame in container.decode(stream):
            frame.to_ndarray(format=frame.format.name)
            n += 1
            if n == frames:
                break
        return (cpu_seconds() - start) / n * 1000


def exact_rgb(frame: av.VideoFrame) -> np.ndarray:
    yuv = frame.to_ndarray(format="yuv420p").astype(float)
    h, w = frame.height, frame.width
    y = 1.164383 * (yuv[:h] - 16)
    cb, cr = (np.repeat(np.repeat(p.reshape(h // 2, w // 2), 2, 0), 2, 1) - 128
              for p in (yuv[h:h + h // 4], yuv[h + h // 4:]))
    return np.stack([y + 1.596027 * cr, y - 0.391762 * cb - 0.812968 * cr, y + 2.017232 * cb], -1).clip(0, 255)


def exact_i420(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    r, g, b = (rgb[..., i].astype(float) for i in range(3))
    y = 16 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    cb = 128 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    cr = 128 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    return np.concatenate([y, *(c.reshape(h // 2, 2, w // 2, 2).mean((1, 3)).reshape(-1, w) for c in (cb, cr))])


def swscale_i420(rgb: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()


def encode_ms(planes: list[np.ndarray], rate: int, preset: str, threads: int) -> float:
    h, w = planes[0].shape[0] * 2 // 3, planes[0].shape[1]
    with av.open(io.BytesIO(), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": "18", "preset": preset})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = threads  # as io.video.VideoWriter(threads=...)
        start = cpu_seconds()
        for i, plane in enumerate(planes):
            frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        return (cpu_seconds() - start) / len(planes) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="ultrafast")
    parser.add_argument("--cv-threads", default="1,2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    frames = decoded(args.clip, args.frames)
    if frames[0].format.name != "yuv420p":
        sys.exit(f"{args.clip}: {frames[0].format.name} frames; this compares the 4:2:0 (yuv420p) paths")
    rgb = [frame.to_ndarray(format="rgb24") for frame in frames]
    planes = [rgb_to_i420(x) for x in rgb]
    timings: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for threads in ("AUTO", "FRAME", "SLICE", "NONE"):
            timings.setdefault(f"decode, {threads} threads", []).append(decode_ms(args.clip, args.frames, threads))
        timings.setdefault("to RGB, swscale", []).append(
            per_frame_ms(lambda f: f.to_ndarray(format="rgb24"), frames))
        timings.setdefault("to 4:2:0, swscale", []).append(per_frame_ms(swscale_i420, rgb))
        for n in (int(t) for t in args.cv_threads.split(",")):
            cv2.setNumThreads(n)
            timings.setdefault(f"to RGB, frame_rgb (OpenCV, {n} thread)", []).append(per_frame_ms(frame_rgb, frames))
            timings.setdefault(f"to 4:2:0, rgb_to_i420 (OpenCV, {n} thread)", []).append(
                per_frame_ms(rgb_to_i420, rgb))
        for threads in (0, 1):
            timings.setdefault(f"encode 4:2:0, x264 {args.preset}, threads {threads or 'auto'}", []).append(
                encode_ms(planes, 30, args.preset, threads))
    errors = {
        "to RGB, swscale": np.mean([np.abs(f.to_ndarray(format="rgb24") - exact_rgb(f)).mean() for f in frames[:20]]),
        "to RGB, frame_rgb": np.mean([np.abs(frame_rgb(f) - exact_rgb(f)).mean() for f in frames[:20]]),
        "to 4:2:0, swscale": np.mean([np.abs(swscale_i420(x) - exact_i420(x)).mean() for x in rgb[:20]]),
        "to 4:2:0, rgb_to_i420": np.mean([np.abs(rgb_to_i420(x) - exact_i420(x)).mean() for x in rgb[:20]]),
    }
    medians = {name: statistics.median(values) for name, values in timings.items()}
    h, w = rgb[0].shape[:2]
    print(f"{args.clip.name}: {args.frames} frames of {w}x{h}, CPU ms a frame, median of {args.rounds} rounds")
    for name, value in medians.items():
        print(f"  {name:45s} {value:6.3f}   rounds " + ", ".join(f"{v:.3f}" for v in timings[name]))
    print("mean error against the exact BT.601 formula, 8-bit levels:")
    for name, value in errors.items():
        print(f"  {name:45s} {value:6.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(["python", *sys.argv]), "machine": machine_info(), "clip": str(args.clip),
            "size": f"{w}x{h}", "frames": args.frames, "cpu_ms_per_frame": medians, "rounds": timings,
            "mean_error_vs_bt601": {k: float(v) for k, v in errors.items()}}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
