"""The live loop with and without the next frame's inference overlapping the last frame's hand-on.

    python benchmarks/live_overlap.py --model demo --source ../shared/media/bottle-640x360.mp4 --size 256 \
        --rounds 6 --seconds 5 --json benchmarks/live-overlap-demo-zen4.json

`serial` is the live loop as `webcam` runs it (`live_stages.TranslateStage`: each frame translated,
finished and handed on before the next is read). `overlapped` starts frame k+1 on an asynchronous backend
(OpenVINO's infer requests, `Pending.running`) before it collects frame k's result, so the model runs while
frame k is resized back, blended and handed on; `steady.SteadyTranslator.start` keeps that order safe with
the stabiliser and the similarity filter. It was measured here and not kept (BENCHMARKS.md). Both run `live.run_live` headless in one process on one backend, alternating within each round (which goes
first alternates too), so the machine's drift hits both alike; the figure to quote is the median of the
per-round ratios overlapped / serial. `--stabilize` runs both with the stabiliser at that strength.

`--two-streams` makes the second variant two single-thread CPU streams with two frames in flight
(`TwoStreamStage`: the next frame is read and started without waiting for the model, as the file conversion
does, `formats.openvino.streams_for`), against the serial loop's one stream of every thread. Measured and not
kept either: no more frames, twice the latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from rtstyle import live  # noqa: E402
from rtstyle.backends import BackendOptions, create_backend  # noqa: E402
from rtstyle.backends.base import Pending  # noqa: E402
from rtstyle.benchmark import machine_info  # noqa: E402
from rtstyle.io.sources import Captured, open_source  # noqa: E402
from rtstyle.live import LiveOptions, run_live  # noqa: E402
from rtstyle.live_stages import TranslateStage  # noqa: E402
from rtstyle.pipeline import FrameTranslator  # noqa: E402
from rtstyle.stabilize import stabilize_options  # noqa: E402


class OverlappedStage(TranslateStage):
    """Frame k+1 started before frame k's result is collected (at most two outstanding, as OpenVINO's two infer
    requests allow); k+1 is read once the model is done with k, so it is the newest frame then."""

    wait_for_model = True

    def run(self) -> None:
        started: list[tuple[Captured, Pending]] = []  # results not collected yet, oldest first
        try:
            while not self.stop.is_set():
                if started and self.wait_for_model:
                    started[0][1].wait()  # the model is free: the frame read next is the newest one
                item = self.source.read(timeout=self.read_timeout)
                if item is None:
                    break
                started.append((item, self.start_frame(item.rgb, item.captured_at)))
                # hand on the last result while this frame runs; one that is done already goes at once too
                while len(started) > 1 or (started and not started[0][1].running):
                    item, result = started.pop(0)
                    if not self.out.put((item, result()), self.stop):
                        return
            while started and not self.stop.is_set():
                item, result = started.pop(0)
                self.out.put((item, result()), self.stop)
        except BaseException as e:
            self.error = e
        finally:
            for _, result in started:  # collected, so the backend's requests are free for the next run
                result()
            self.out.close()


class TwoStreamStage(OverlappedStage):
    """Two frames in flight, each started as soon as it is read (the oldest collected once two are out)."""

    wait_for_model = False


class TwoStreamTranslator(FrameTranslator):
    """Every frame submitted as one of two in flight, so OpenVINO compiles two single-thread streams for it."""

    def submit(self, frames, parallel: int = 1) -> Pending:
        return super().submit(frames, parallel=2)


def run(backend, source: str, size: int, seconds: float, stabilize, serial: bool, two_streams: bool = False) -> dict:
    live.TranslateStage = TranslateStage if serial else TwoStreamStage if two_streams else OverlappedStage
    translator = (TwoStreamTranslator if two_streams and not serial else FrameTranslator)(backend, size)
    try:
        report = run_live(open_source(source, realtime=False, log=lambda m: None), translator,
                          LiveOptions(size=size, show=False, duration=seconds, skip_similar=None),
                          log=lambda m: None, stabilize=stabilize)
    finally:
        live.TranslateStage = TranslateStage
    latencies = 1000 * np.asarray(report.latencies)
    return {"fps": report.fps, "frames": report.frames, "latency_median_ms": float(np.median(latencies)),
            "latency_p95_ms": float(np.percentile(latencies, 95)), "stages_ms": report.times.ms_per_frame()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "media" / "bottle-640x360.mp4"))
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="live loop per variant per round")
    parser.add_argument("--stabilize", type=float, default=0.0)
    parser.add_argument("--two-streams", action="store_true",
                        help="the second variant: two single-thread streams, two frames in flight")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    backend = create_backend(args.model, BackendOptions(backend=args.backend, precision=args.precision), log=None)
    stabilize = stabilize_options(args.stabilize) if args.stabilize else None
    run(backend, args.source, args.size, 1.0, stabilize, serial=False, two_streams=args.two_streams)  # compiles
    run(backend, args.source, args.size, 1.0, stabilize, serial=True)  # the loop's shape, both ways
    rounds = []
    for r in range(args.rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        got = {("serial" if serial else "overlapped"): run(backend, args.source, args.size, args.seconds, stabilize,
                                                            serial, args.two_streams) for serial in order}
        got["ratio"] = got["overlapped"]["fps"] / got["serial"]["fps"]
        rounds.append(got)
        print(f"round {r + 1}: serial {got['serial']['fps']:.1f} fps (p95 {got['serial']['latency_p95_ms']:.1f} ms), "
              f"overlapped {got['overlapped']['fps']:.1f} fps (p95 {got['overlapped']['latency_p95_ms']:.1f} ms), "
              f"ratio {got['ratio']:.3f}", flush=True)

    def median(variant: str, key: str) -> float:
        return statistics.median(r[variant][key] for r in rounds)

    summary = {v: {k: median(v, k) for k in ("fps", "latency_median_ms", "latency_p95_ms")}
               for v in ("serial", "overlapped")}
    summary["ratio_median"] = statistics.median(r["ratio"] for r in rounds)
    summary["ratio_range"] = [min(r["ratio"] for r in rounds), max(r["ratio"] for r in rounds)]
    print(f"{args.model}, {backend.describe()}, stabilize {args.stabilize:g}: overlapped / serial live fps "
          f"{summary['ratio_median']:.3f} (rounds {summary['ratio_range'][0]:.3f}-{summary['ratio_range'][1]:.3f}); "
          f"medians: serial {summary['serial']['fps']:.1f} fps, p50/p95 {summary['serial']['latency_median_ms']:.1f}/"
          f"{summary['serial']['latency_p95_ms']:.1f} ms; overlapped {summary['overlapped']['fps']:.1f} fps, "
          f"{summary['overlapped']['latency_median_ms']:.1f}/{summary['overlapped']['latency_p95_ms']:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": machine_info(), "args": {
            k: str(v) for k, v in vars(args).items()}, "summary": summary, "rounds": rounds}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
