"""Side-by-side speed and accuracy of inference backends, measured interleaved in one process (issue 6).

Shared machines are noisy, so absolute times mean little; what is reported is each variant's median
ms per batch (with its 10th-90th percentile spread) and its ratio to eager fp32 PyTorch *measured in the
same rounds*: every round times each variant in turn (rotating who goes first), so a slow spell on the
machine hits all of them alike. Accuracy is each variant's output against eager fp32 on the same real
frames: max abs error on the [-1, 1] scale, PSNR of the uint8 frames over all of them and for the worst
one. By default those are the held-out frames of `rtstyle.formats.int8.calibration` (never the int8 calibration
frames); with a video, frames spread over it. Memory is what the variant added to the process at its
peak while it was built and warmed up (Linux VmHWM, reset before each variant); on CUDA, torch's peak
(TensorRT's activation memory is allocated through torch, so it counts). The GPU fp32 baseline runs
without TF32 (`TorchBackend` turns cuDNN's TF32 default off for fp32).
With a video, each variant also converts the video's first frames end to end (`rtstyle.video`: decode,
translate and encode overlapped in threads) at short side min(size), and the bare `backend.infer` fps on
one preprocessed frame of that processing shape is measured just before and just after, so the two
figures sit side by side from the same minutes of the machine.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .bench_live import BusyCores, bare_fps, bare_frames, live_record, median_round
from .backends import BACKENDS, PRECISIONS, Backend, BackendOptions, create_backend
from .backends.select import Environment, probe
from .cpu import cpu_features
from .devices import HELP as DEVICE_HELP
from .devices import parse_device
from .errors import UserError
from .formats.int8.calibration import fit_frame, heldout_frames
from .formats.int8.quantize import psnr_db
from .io.video import preset_option
from .macs import generator_macs
from .stabilize import StabilizeOptions, stabilize_option, stabilize_options
from .transforms import frames_to_tensor, parse_hw, tensor_to_frames

BASELINE = "torch:fp32"
PLAIN = "plain torch.no_grad() loop"  # timed beside the baseline as its check, not a variant of its own


@dataclass(frozen=True)
class Variant:
    """One thing to measure: 'backend[:precision][+compile]', e.g. 'openvino:int8' or 'torch:bf16+compile'."""

    spec: str

    def options(self, device: str) -> BackendOptions:
        body, plus, flag = self.spec.partition("+")
        name, _, precision = body.partition(":")
        if name not in BACKENDS or (precision or "auto") not in PRECISIONS or (plus and flag != "compile"):
            raise UserError(f"benchmark variant {self.spec!r}: expected backend[:precision][+compile] with backend "
                             f"in {', '.join(BACKENDS)} and precision in {', '.join(PRECISIONS)}")
        return BackendOptions(backend=name, device=device, precision=precision or "auto", compile=bool(plus))


def available_variants(env: Environment | None = None) -> list[str]:
    """What `--backends all` measures here: every installed backend at each precision this machine runs."""
    from .backends.registry import REGISTRY

    env = env or probe()
    return [f"{name}:{precision}" for name, entry in REGISTRY.items() if entry.extra is None or name in env.installed
            for precision, runs_here in entry.precisions if runs_here(env)]


@dataclass
class Record:
    variant: str
    backend: str  # what the backend says it runs (describe())
    size: tuple[int, int]
    batch: int
    ms_median: float  # per batch
    ms_p10: float
    ms_p90: float
    fps: float  # frames per second: batch / median
    ratio_vs_fp32: float  # eager fp32 median / this median, from the same rounds
    max_abs_err: float  # on the [-1, 1] output scale, vs eager fp32
    psnr_db: float  # uint8 output vs eager fp32 uint8 output over all accuracy frames; inf when identical
    psnr_min_db: float  # the worst single frame
    added_mib: float  # peak resident memory the variant added while built and warmed up
    peak_rss_mib: float  # the process's peak resident set by then
    peak_cuda_mib: float | None = None
    setup_s: float = math.nan  # create + warm-up (includes first-use builds: int8 quantisation, engines)
    timed_calls: int = 0
    error: str | None = None
    extra: dict = field(default_factory=dict)
    model: str = ""  # "" for the benchmarked model; the other model's name in a `--compare` run


def sample_frames(count: int, size: tuple[int, int], video: Path | None = None) -> np.ndarray:
    """`count` real RGB uint8 frames (b, h, w, 3) at `size`: spread over `video`, else the held-out frames."""
    if video is None:
        frames = list(heldout_frames(size)[1])
    else:
        from .io.video import read_frames

        frames = [fit_frame(frame, size) for frame in read_frames(video, count)]
    while len(frames) < count:
        frames += frames[: count - len(frames)]
    return np.stack(frames[:count])


def _rss_mib(key: str) -> float:
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _outputs(backend: Backend, x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([backend.infer(x[i:i + batch]).float() for i in range(0, len(x), batch)])


def video_excerpt(video: Path, frames: int, folder: Path) -> Path:
    """The first `frames` frames of `video` as a new file in `folder` (re-encoded; timing and rotation kept)."""
    from .io.video import VideoReader, VideoWriter

    target = Path(folder) / f"{Path(video).stem}-first{frames}.mp4"
    with VideoReader(video) as reader:
        info = reader.info
        writer = VideoWriter(target, info.width, info.height, info.rate, time_base=info.time_base,
                             rotation=info.rotation, overwrite=True)
        for index, (rgb, stamp) in enumerate(reader):
            if index >= frames:
                break
            writer.write(rgb, stamp)
        return writer.close()


def end_to_end(backend: Backend, clip: Path, short_side: int, batch: int, folder: Path,
               bare_seconds: float = 8.0, stabilize: StabilizeOptions | None = None,
               preset: str = "auto", rounds: int = 1) -> dict:
    """`rtstyle.video.convert_video` fps of `clip` through `backend`, next to its bare fps at that shape.

    The bare fps is `backend.infer` on one preprocessed frame for at least `bare_seconds` (and 3 calls)
    before the first conversion and after each of `rounds`; each conversion's ratio is against the mean of
    the two bare figures around it, and the median ratio is reported (the machine's speed drifts between
    rounds: the ratio pairs what ran side by side). `pipeline_infer_fps` is the infer stage's own rate inside
    the median conversion, so e2e / pipeline_infer shows what decode and encode cost and pipeline_infer / bare
    what sharing the cores with them costs. `stabilize` and `preset` are `cli.py video`'s --stabilize (on there
    by default) and --preset.
    """
    from .pipeline import FrameTranslator
    from .transforms import preprocess
    from .video import choose_preset, convert_video
    from .io.video import VideoReader

    with VideoReader(clip) as reader:
        frame, _ = next(iter(reader))
    x, plan = preprocess(np.stack([frame] * batch), short_side)  # (b, 3, H, W)
    backend.infer(x)  # first call at this shape: compiles (and may build an int8 model)
    preset, _ = choose_preset(preset, backend)
    bares, results = [bare_fps(backend.infer, x, bare_seconds)], []
    for _ in range(max(1, rounds)):
        results.append(convert_video(clip, Path(folder) / f"out-{id(backend)}.mp4",
                                     FrameTranslator(backend, short_side), batch=batch, overwrite=True,
                                     stabilize=stabilize, preset=preset))
        bares.append(bare_fps(backend.infer, x, bare_seconds))
    middle, ratios, bare = median_round([result.fps for result in results], bares)
    result = results[middle]
    stages = result.times.ms_per_frame()
    extra = bare_frames(backend, np.stack([frame] * batch), short_side, bare_seconds)  # what the conversion ran
    return {"processing": f"{plan.padded[0]}x{plan.padded[1]}", "frames": result.frames, "e2e_fps": result.fps,
            "bare_fps": bare, "bare_fps_before": bares[middle], "bare_fps_after": bares[middle + 1],
            "e2e_vs_bare": ratios[middle], "e2e_vs_bare_rounds": ratios, "bare_fps_rounds": bares,
            "pipeline_infer_fps": 1000.0 / stages["infer"], "stage_ms_per_frame": stages,
            "stabilize": stabilize.strength if stabilize else None, "preset": preset, **extra}


class PlainLoop:
    """The check on the baseline (issue 10): the same generator called in a plain `torch.no_grad()` loop.

    Timed in the same rounds as the eager fp32 backend; if the two differ, the baseline (and every ratio
    against it) is off, which a ratio alone would hide.
    """

    def __init__(self, generator: torch.nn.Module, device: torch.device) -> None:
        self.generator, self.device = generator.eval().float().to(device), device

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.generator(x.to(self.device)).cpu()


def plain_loop(model: str, baseline: Backend) -> PlainLoop | None:
    """The plain loop for `model` when it is weights (an exported artifact has no torch generator)."""
    from .formats.metadata import artifact_kind
    from .store import resolve_model
    from .weights import load_model

    path = resolve_model(model)
    if artifact_kind(path) != "weights":
        return None
    return PlainLoop(load_model(path)[0], getattr(baseline, "device", torch.device("cpu")))


def measure(model: str, variants: list[str], size: tuple[int, int], batch: int, device: str = "auto",
            warmup: int = 2, rounds: int = 5, per_round: int = 2, video: Path | None = None, e2e_frames: int = 0,
            settle: int = 1, stabilize: StabilizeOptions | None = None, preset: str = "auto", video_rounds: int = 1,
            bare_seconds: float = 8.0, log: Callable[[str], None] = lambda m: None, busy: int = 0,
            live: str | None = None, live_seconds: float = 10.0, live_rounds: int = 1,
            compare: str | None = None) -> list[Record]:
    """Measure every variant at one (size, batch), interleaved; the first record is the eager fp32 baseline.

    With `compare` (a second model, e.g. a teacher's distilled student), every variant of that model is timed
    in the same rounds too; its records carry `model=compare` and their ratios and accuracy are against that
    model's own eager fp32 baseline.
    With `video` and `e2e_frames` > 0, each record's `extra["video"]` holds `end_to_end` on that many frames.
    `stabilize` applies to that conversion and to the live loop (`--skip-similar` is never on here: the live
    figure is the translation of every frame).
    Every variant's turn in a round starts with `settle` untimed calls: interleaving is there to spread the
    machine's noise over all variants, not to time each one straight after another model has evicted the
    caches and put the thread pools to sleep (a small model measured that way ran 1.6x slower than on its own).
    With `busy` > 0 every round is timed twice, idle and with `busy` spinning processes beside it
    (`extra["busy"]`); with `live`, `extra["live"]` is `bench_live.live_record` on that source.
    """
    specs = [BASELINE] + [v for v in dict.fromkeys(variants) if v != BASELINE]
    models = [model] + ([compare] if compare else [])
    entries = [(m, spec) for m in models for spec in specs]  # what is timed: (model, variant)

    def label(entry) -> str:
        return entry[1] if entry[0] == model else f"{entry[0]} {entry[1]}"

    count = max(batch, 5)
    frames = sample_frames(count + (-count) % batch, size, video)  # whole batches only
    x_all = frames_to_tensor(frames)  # (n, 3, h, w) in [-1, 1]
    x = x_all[:batch]  # the timed input
    backends: dict[tuple[str, str], Backend] = {}
    errors: dict[tuple[str, str], str] = {}
    outputs: dict[tuple[str, str], torch.Tensor] = {}
    memory: dict[tuple[str, str], tuple[float, float, float | None, float]] = {}
    for entry in entries:
        log(f"{size[0]}x{size[1]} batch {batch}: preparing {label(entry)}")
        start, rss_before = time.perf_counter(), _rss_mib("VmRSS")
        _reset_peak_rss()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        try:
            backend = create_backend(entry[0], Variant(entry[1]).options(device), log=log)
            for _ in range(warmup):
                backend.infer(x)
            outputs[entry] = _outputs(backend, x_all, batch)
            backends[entry] = backend
        except Exception as e:  # a variant that cannot run here is reported, not fatal
            errors[entry] = f"{type(e).__name__}: {e}"
            log(f"{label(entry)}: not measured: {errors[entry]}")
            continue
        peak = _rss_mib("VmHWM")
        cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        memory[entry] = (peak - rss_before, peak, cuda, time.perf_counter() - start)
    for m in models:
        if (m, BASELINE) not in backends:
            raise RuntimeError(f"the eager fp32 baseline of {m} could not run: {errors.get((m, BASELINE))}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    timed: dict = dict(backends)
    plain = plain_loop(model, backends[(model, BASELINE)])
    if plain is not None:
        plain.infer(x)  # its warm-up
        timed[(model, PLAIN)] = plain
    times: dict[tuple[str, str], list[float]] = {e: [] for e in timed}
    busy_times: dict[tuple[str, str], list[float]] = {e: [] for e in timed}  # the same rounds, `busy` cores spinning
    order = list(timed)
    for r in range(rounds):
        for kept, busy_now in ((times, 0), (busy_times, busy))[:2 if busy else 1]:
            with BusyCores(busy_now):
                for entry in order[r % len(order):] + order[: r % len(order)]:  # rotate who goes first
                    for _ in range(settle):
                        timed[entry].infer(x)
                    sync()
                    for _ in range(per_round):
                        begin = time.perf_counter()
                        timed[entry].infer(x)
                        sync()
                        kept[entry].append((time.perf_counter() - begin) * 1000.0)
        log(f"{size[0]}x{size[1]} batch {batch}: round {r + 1}/{rounds} " + ", ".join(
            f"{label(e)} {statistics.median(times[e]):.0f} ms" + (f" ({statistics.median(busy_times[e]):.0f} busy)"
                                                                 if busy else "") for e in order))
    conversions = {}
    if video is not None and e2e_frames > 0:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="rtstyle-bench-") as folder:
            clip = video_excerpt(video, e2e_frames, Path(folder))
            for entry in backends:
                log(f"{label(entry)}: converting the first {e2e_frames} frames of {video.name} end to end")
                conversions[entry] = end_to_end(backends[entry], clip, min(size), batch, Path(folder), bare_seconds,
                                                stabilize, preset, video_rounds)
                log(f"{label(entry)}: end to end {conversions[entry]['e2e_fps']:.2f} fps, bare "
                    f"{conversions[entry]['bare_fps']:.2f} fps at {conversions[entry]['processing']}"
                    + (f", stabilize {stabilize.strength:g}" if stabilize else ""))
    lives = {}
    for entry in backends if live else ():
        log(f"{label(entry)}: the live loop on {live} for {live_seconds:g} s"
            + (f", {live_rounds} rounds" if live_rounds > 1 else ""))
        lives[entry] = live_record(backends[entry], live, min(size), live_seconds, bare_seconds, log=log,
                                   stabilize=stabilize, rounds=live_rounds)
        frames_fps = lives[entry].get("bare_frames_fps")
        log(f"{label(entry)}: live {lives[entry]['live_fps']:.2f} fps, bare {lives[entry]['bare_fps']:.2f} fps"
            + (f" ({frames_fps:.2f} on uint8 frames)" if frames_fps else "")
            + f", latency p50 {lives[entry]['latency_median_ms']:.0f} / p95 {lives[entry]['latency_p95_ms']:.0f} ms")
    records = []
    for m in models:
        # MACs of the model at this size (rtstyle.macs: GAN Compression's convention), from its own metadata.
        macs = generator_macs(backends[(m, BASELINE)].info.config, *size)
        base_times = times[(m, BASELINE)]
        base_ms = statistics.median(base_times)
        ref = outputs[(m, BASELINE)]
        ref_frames = tensor_to_frames(ref)
        name = "" if m == model else m
        for spec in specs:
            entry = (m, spec)
            if entry in errors:
                records.append(Record(spec, "", size, batch, *([math.nan] * 11), error=errors[entry], model=name))
                continue
            ts = sorted(times[entry])
            med = statistics.median(ts)
            # Per-round ratios (the baseline's and this variant's calls of the same round): how much it moved.
            per_round_ratio = sorted(statistics.median(base_times[r * per_round:(r + 1) * per_round])
                                     / statistics.median(times[entry][r * per_round:(r + 1) * per_round])
                                     for r in range(rounds))
            out_frames = tensor_to_frames(outputs[entry])
            added, peak, cuda, setup = memory[entry]
            records.append(Record(
                variant=spec, backend=backends[entry].describe(), size=size, batch=batch, ms_median=med,
                ms_p10=ts[int(0.1 * (len(ts) - 1))], ms_p90=ts[int(math.ceil(0.9 * (len(ts) - 1)))],
                fps=batch * 1000.0 / med, ratio_vs_fp32=base_ms / med,
                max_abs_err=float((outputs[entry] - ref).abs().max()), psnr_db=psnr_db(ref_frames, out_frames),
                psnr_min_db=min(psnr_db(r, o) for r, o in zip(ref_frames, out_frames)),
                added_mib=added, peak_rss_mib=peak, peak_cuda_mib=cuda, setup_s=setup, timed_calls=len(ts),
                model=name, extra={"accuracy_frames": len(ref_frames), "ratio_rounds": per_round_ratio, "macs": macs}
                | ({"video": conversions[entry]} if entry in conversions else {})
                | ({"live": lives[entry]} if entry in lives else {})
                | ({"busy": {"cores": busy, "ms_median": statistics.median(busy_times[entry]),
                             "busy_vs_idle": statistics.median(busy_times[entry]) / med}} if busy else {})
                | (_plain_check(times[(model, PLAIN)], base_ms)
                   if entry == (model, BASELINE) and plain is not None else {})))
    return records


def comparison(records: list[Record]) -> list[dict]:
    """Per size and batch of a `compare` run: the fastest variant of each model and the fps ratio between them
    (the compared model's best over the main model's best), from the same interleaved rounds."""
    rows = []
    for size, batch in dict.fromkeys((r.size, r.batch) for r in records):
        best = {}
        for r in records:
            if r.size == size and r.batch == batch and not r.error and (r.model not in best
                                                                        or r.fps > best[r.model].fps):
                best[r.model] = r
        if len(best) == 2:
            main, other = best[""], next(r for m, r in best.items() if m)
            rows.append({"size": list(size), "batch": batch, "model_best": main.variant, "model_fps": main.fps,
                         "compare": other.model, "compare_best": other.variant, "compare_fps": other.fps,
                         "fps_ratio": other.fps / main.fps,
                         "macs_ratio": main.extra["macs"] / other.extra["macs"]})
    return rows


def _plain_check(plain_times: list[float], base_ms: float) -> dict:
    plain_ms = statistics.median(plain_times)
    return {"plain_no_grad_ms": plain_ms, "baseline_vs_plain": base_ms / plain_ms}


def machine_info() -> dict:
    """CPU model and flags, cores, load, GPU and library versions, for the JSON records."""
    cpu = platform.processor()
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    except OSError:
        pass
    features = cpu_features()
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    from importlib import metadata

    for name in ("onnxruntime", "openvino", "nncf", "opencv-python", "av", "tensorrt"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "cpu_flags": sorted(features.flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni",
                                              "amx_tile", "amx_bf16", "amx_int8"}),
        "cpu_class": features.describe(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "versions": versions,
    }


def as_dicts(records: list[Record]) -> list[dict]:
    """JSON-ready records: size as 'HxW', NaN (not measured) as null; an identical output keeps PSNR inf."""
    out = []
    for r in records:
        d = asdict(r)
        d["size"] = f"{r.size[0]}x{r.size[1]}"
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()})
    return out


@dataclass(frozen=True)
class BenchmarkSettings:
    """Times every variant round by round in one process (so a noisy machine slows all alike) and reports median
    ms and spread, fps, the speed ratio to eager fp32 from the same rounds, max abs error and PSNR against fp32
    on real frames, and memory. Variants are backend[:precision][+compile], e.g. torch, openvino:bf16,
    openvino:int8, torch:bf16+compile.

    (What `benchmark` was asked; `run_benchmark` checks it before measuring anything.)"""

    backends: str = field(default="all", metadata={
        "help": "'all' (every backend and precision installed here) or a comma list of variants"})
    sizes: str = field(default="256", metadata={"help": "comma list of N or HxW input sizes"})
    batch: str = field(default="1", metadata={"help": "comma list of batch sizes"})
    device: str = field(default="auto", metadata={"help": DEVICE_HELP})
    video: Path | None = field(default=None, metadata={
        "help": "also convert this video end to end with each variant (decode + translate + encode, short side "
                "min(size)) next to the bare backend fps there; its frames become the accuracy frames"})
    video_frames: int = field(default=60, metadata={"help": "frames of --video converted per variant"})
    video_rounds: int = field(default=1, metadata={
        "help": "conversions of --video per variant, each between two bare timings; the median e2e/bare is "
                "reported (a noisy machine: 3)"})
    rounds: int = field(default=5, metadata={"help": "interleaved rounds"})
    per_round: int = field(default=2, metadata={"help": "timed calls per variant and round"})
    warmup: int = field(default=2, metadata={"help": "untimed calls per variant first"})
    settle: int = field(default=1, metadata={
        "help": "untimed calls per variant at the start of each round, so the timed ones run in a steady state "
                "(not just after another variant evicted the caches)"})
    threads: int | None = field(default=None, metadata={
        "help": "torch intra-op threads (OpenVINO and ONNX Runtime use all cores)"})
    busy: int = field(default=0, metadata={
        "help": "also time every round with this many processes keeping a core busy each (busy/idle ratio)"})
    live: str | None = field(default=None, metadata={
        "metavar": "SOURCE", "help": "also run the live loop on this source (camera, stream or file; a file plays "
                                     "as fast as the loop takes it): live fps, latency p50/p95, bare fps"})
    live_seconds: float = field(default=10.0, metadata={"help": "how long --live runs per variant"})
    live_rounds: int = field(default=1, metadata={
        "help": "live loops per variant, each between two bare timings; the median live/bare is reported (a "
                "noisy machine: 5)"})
    stabilize: float | None = stabilize_option()  # as `cli.py video` and `webcam`: for --video and --live
    preset: str = preset_option()  # as `cli.py video`: for --video
    json: Path | None = field(default=None, metadata={
        "help": "also write the records, settings and machine description here"})
    fast: bool = field(default=False, metadata={"help": "benchmark the model's distilled student instead"})
    compare: str | None = field(default=None, metadata={
        "metavar": "MODEL", "help": "also measure MODEL (say, the model's distilled student) in the same "
                                    "interleaved rounds, and report the fps ratio of each model's fastest variant"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", parse_device(self.device))

    def variants(self) -> list[str]:
        found = available_variants() if self.backends == "all" else [v.strip() for v in self.backends.split(",")]
        for variant in found:
            Variant(variant).options("cpu")  # a misspelt variant is an error now, not a line in the table later
        return found

    def check(self) -> tuple[list[tuple[int, int]], list[int]]:
        """(sizes, batches), or a UserError saying which setting is wrong."""
        if (min(self.rounds, self.per_round, self.video_rounds, self.live_rounds) < 1
                or min(self.warmup, self.settle, self.busy) < 0 or self.live_seconds <= 0):
            raise UserError("--rounds, --per-round, --video-rounds and --live-rounds must be at least 1, --warmup, "
                            "--settle and --busy at least 0, --live-seconds above 0")
        sizes = [parse_hw(s.strip(), "--sizes") for s in self.sizes.split(",")]
        try:
            batches = [int(b) for b in self.batch.split(",")]
        except ValueError:
            raise UserError(f"--batch: expected a comma list of integers, got {self.batch!r}") from None
        if self.video is not None and not Path(self.video).is_file():
            raise UserError(f"--video {self.video}: no such file")
        return sizes, batches

    def check_compare(self, model: str) -> None:
        """A `--compare` model must exist and differ from the benchmarked one (UserError otherwise)."""
        if self.compare is None:
            return
        from .store import resolve_model

        if resolve_model(self.compare).resolve() == resolve_model(model).resolve():
            raise UserError(f"--compare {self.compare}: that is the benchmarked model itself; name another "
                            "model (for example its distilled student, see `python cli.py models`)")


def run_benchmark(model: str, settings: BenchmarkSettings, log: Callable[[str], None],
                  command: str | None = None) -> tuple[list[Record], dict]:
    """Every variant at every size and batch; returns the records and the JSON document describing the run."""
    sizes, batches = settings.check()
    settings.check_compare(model)
    stabilize = stabilize_options(settings.stabilize)  # once, and refused before anything is measured
    variants = settings.variants()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    machine = machine_info()
    log(f"{machine['cpu']}, {machine['cores']} cores, load {machine['load_average']}; variants: "
        f"{', '.join([BASELINE] + [v for v in variants if v != BASELINE])}")
    records = []
    for size in sizes:
        for batch in batches:
            records += measure(model, variants, size, batch, device=settings.device, warmup=settings.warmup,
                               rounds=settings.rounds, per_round=settings.per_round, video=settings.video,
                               e2e_frames=settings.video_frames if settings.video else 0, log=log,
                               settle=settings.settle, stabilize=stabilize, preset=settings.preset,
                               video_rounds=settings.video_rounds,
                               busy=settings.busy, live=settings.live, live_seconds=settings.live_seconds,
                               live_rounds=settings.live_rounds,
                               compare=settings.compare)
    document = {"command": command, "machine": machine | {"load_average_end": machine_info()["load_average"]},
                "settings": {"rounds": settings.rounds, "per_round": settings.per_round, "warmup": settings.warmup,
                             "settle": settings.settle, "stabilize": settings.stabilize, "preset": settings.preset,
                             "device": settings.device, "video": str(settings.video) if settings.video else None,
                             "video_frames": settings.video_frames if settings.video else None,
                             "video_rounds": settings.video_rounds if settings.video else None,
                             "busy": settings.busy, "live": settings.live,
                             "live_rounds": settings.live_rounds if settings.live else None, "baseline": BASELINE,
                             "compare": settings.compare},
                "records": as_dicts(records)} | ({"comparison": comparison(records)} if settings.compare else {})
    return records, document


def write_report(path: Path, document: dict) -> None:
    from .io.files import write_json

    write_json(path, document, indent=1)
