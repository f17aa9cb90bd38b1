"""Side-by-side speed and accuracy of inference backends, measured interleaved in one process (issue 6).

Shared machines are noisy, so absolute times mean little; what is reported is each variant's median
ms per batch (with its 10th-90th percentile spread) and its ratio to eager fp32 PyTorch *measured in the
same rounds*: every round times each variant in turn (rotating who goes first), so a slow spell on the
machine hits all of them alike. Accuracy is each variant's output against eager fp32 on the same real
frames: max abs error on the [-1, 1] scale, PSNR of the uint8 frames over all of them and for the worst
one. By default those are the held-out frames of `rtstyle.calibration` (never the int8 calibration
frames); with a video, frames spread over it. Memory is what the variant added to the process at its
peak while it was built and warmed up (Linux VmHWM, reset before each variant); on CUDA, torch's peak.
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .backends import BACKENDS, PRECISIONS, Backend, BackendOptions, create_backend
from .backends.select import Environment, probe
from .calibration import fit_frame, heldout_frames
from .macs import generator_macs
from .quantize import psnr_db
from .transforms import frames_to_tensor, tensor_to_frames

BASELINE = "torch:fp32"


@dataclass(frozen=True)
class Variant:
    """One thing to measure: 'backend[:precision][+compile]', e.g. 'openvino:int8' or 'torch:bf16+compile'."""

    spec: str

    def options(self, device: str) -> BackendOptions:
        body, plus, flag = self.spec.partition("+")
        name, _, precision = body.partition(":")
        if name not in BACKENDS or (precision or "auto") not in PRECISIONS or (plus and flag != "compile"):
            raise ValueError(f"benchmark variant {self.spec!r}: expected backend[:precision][+compile] with backend "
                             f"in {', '.join(BACKENDS)} and precision in {', '.join(PRECISIONS)}")
        kwargs = dict(backend=name, device=device, precision=precision or "auto")
        if plus:
            if "compile" not in {f.name for f in fields(BackendOptions)}:
                raise ValueError(f"{self.spec}: this build's torch backend has no torch.compile option")
            kwargs["compile"] = True
        return BackendOptions(**kwargs)


def available_variants(env: Environment | None = None) -> list[str]:
    """What `--backends all` measures here: every installed backend at each precision this machine runs."""
    env = env or probe()
    found = [BASELINE]
    if env.torch_bf16 and "bf16" in env.torch_precisions:
        found.append("torch:bf16")
    if env.cuda and "fp16" in env.torch_precisions:
        found.append("torch:fp16")
    if "onnxruntime" in env.installed:
        found.append("onnxruntime:fp32")
    if "openvino" in env.installed:
        found += ["openvino:fp32"] + (["openvino:bf16"] if env.openvino_bf16 else [])
        found += ["openvino:int8"] if env.openvino_int8 else []
    if "tensorrt" in env.installed and env.cuda:
        found.append("tensorrt:fp16")
    return found


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


def parse_size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '360x640' -> (360, 640) (height x width); sides multiples of 4."""
    try:
        h, w = (int(v) for v in text.lower().split("x")) if "x" in text.lower() else (int(text), int(text))
    except ValueError:
        raise ValueError(f"--sizes: expected N or HxW, got {text!r}") from None
    if h < 16 or w < 16 or h % 4 or w % 4:
        raise ValueError(f"--sizes {text}: sides must be multiples of 4 and at least 16")
    return h, w


def sample_frames(count: int, size: tuple[int, int], video: Path | None = None) -> np.ndarray:
    """`count` real RGB uint8 frames (b, h, w, 3) at `size`: spread over `video`, else the held-out frames."""
    if video is None:
        frames = list(heldout_frames(size)[1])
    else:
        import cv2

        capture = cv2.VideoCapture(str(video))
        total = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 1)
        frames = []
        for index in np.linspace(0, total - 1, count).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, bgr = capture.read()
            if ok:
                frames.append(fit_frame(np.ascontiguousarray(bgr[:, :, ::-1]), size))
        capture.release()
        if not frames:
            raise ValueError(f"{video}: no frame could be decoded")
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
    from .video_io import VideoReader, VideoWriter

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
               bare_seconds: float = 8.0) -> dict:
    """`rtstyle.video.convert_video` fps of `clip` through `backend`, next to its bare fps at that shape.

    The bare fps is `backend.infer` on one preprocessed frame for at least `bare_seconds` (and 3 calls) just
    before and just after the conversion; `pipeline_infer_fps` is the infer stage's own rate inside the
    conversion, so e2e / pipeline_infer shows what decode and encode cost and pipeline_infer / bare what
    sharing the cores with them costs.
    """
    from .pipeline import FrameTranslator
    from .transforms import preprocess
    from .video import convert_video
    from .video_io import VideoReader

    with VideoReader(clip) as reader:
        frame, _ = next(iter(reader))
    x, plan = preprocess(np.stack([frame] * batch), short_side)  # (b, 3, H, W)

    def bare() -> float:
        start, calls = time.perf_counter(), 0
        while calls < 3 or time.perf_counter() - start < bare_seconds:
            backend.infer(x)
            calls += 1
        return calls * batch / (time.perf_counter() - start)

    backend.infer(x)  # first call at this shape: compiles (and may build an int8 model)
    before = bare()
    result = convert_video(clip, Path(folder) / f"out-{id(backend)}.mp4", FrameTranslator(backend, short_side),
                           batch=batch, overwrite=True)
    after = bare()
    bare_fps = (before + after) / 2
    stages = result.times.ms_per_frame()
    return {"processing": f"{plan.padded[0]}x{plan.padded[1]}", "frames": result.frames, "e2e_fps": result.fps,
            "bare_fps": bare_fps, "bare_fps_before": before, "bare_fps_after": after,
            "e2e_vs_bare": result.fps / bare_fps, "pipeline_infer_fps": 1000.0 / stages["infer"],
            "stage_ms_per_frame": stages}


def measure(model: str, variants: list[str], size: tuple[int, int], batch: int, device: str = "auto",
            warmup: int = 2, rounds: int = 5, per_round: int = 2, video: Path | None = None, e2e_frames: int = 0,
            bare_seconds: float = 8.0, log: Callable[[str], None] = lambda m: None) -> list[Record]:
    """Measure every variant at one (size, batch), interleaved; the first record is the eager fp32 baseline.

    With `video` and `e2e_frames` > 0, each record's `extra["video"]` holds `end_to_end` on that many frames.
    """
    specs = [BASELINE] + [v for v in dict.fromkeys(variants) if v != BASELINE]
    count = max(batch, 5)
    frames = sample_frames(count + (-count) % batch, size, video)  # whole batches only
    x_all = frames_to_tensor(frames)  # (n, 3, h, w) in [-1, 1]
    x = x_all[:batch]  # the timed input
    backends: dict[str, Backend] = {}
    errors: dict[str, str] = {}
    outputs: dict[str, torch.Tensor] = {}
    memory: dict[str, tuple[float, float, float | None, float]] = {}
    for spec in specs:
        log(f"{size[0]}x{size[1]} batch {batch}: preparing {spec}")
        start, rss_before = time.perf_counter(), _rss_mib("VmRSS")
        _reset_peak_rss()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        try:
            backend = create_backend(model, Variant(spec).options(device), log=log)
            for _ in range(warmup):
                backend.infer(x)
            outputs[spec] = _outputs(backend, x_all, batch)
            backends[spec] = backend
        except Exception as e:  # a variant that cannot run here is reported, not fatal
            errors[spec] = f"{type(e).__name__}: {e}"
            log(f"{spec}: not measured: {errors[spec]}")
            continue
        peak = _rss_mib("VmHWM")
        cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        memory[spec] = (peak - rss_before, peak, cuda, time.perf_counter() - start)
    if BASELINE not in backends:
        raise RuntimeError(f"the eager fp32 baseline could not run: {errors.get(BASELINE)}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times: dict[str, list[float]] = {s: [] for s in backends}
    order = list(backends)
    for r in range(rounds):
        for spec in order[r % len(order):] + order[: r % len(order)]:  # rotate who goes first
            for _ in range(per_round):
                begin = time.perf_counter()
                backends[spec].infer(x)
                sync()
                times[spec].append((time.perf_counter() - begin) * 1000.0)
        log(f"{size[0]}x{size[1]} batch {batch}: round {r + 1}/{rounds} " + ", ".join(
            f"{s} {statistics.median(times[s]):.0f} ms" for s in order))
    conversions = {}
    if video is not None and e2e_frames > 0:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="rtstyle-bench-") as folder:
            clip = video_excerpt(video, e2e_frames, Path(folder))
            for spec in order:
                log(f"{spec}: converting the first {e2e_frames} frames of {video.name} end to end")
                conversions[spec] = end_to_end(backends[spec], clip, min(size), batch, Path(folder), bare_seconds)
                log(f"{spec}: end to end {conversions[spec]['e2e_fps']:.2f} fps, bare "
                    f"{conversions[spec]['bare_fps']:.2f} fps at {conversions[spec]['processing']}")
    # MACs of the model at this size (rtstyle.macs: GAN Compression's convention), from its own metadata.
    macs = generator_macs(backends[BASELINE].info.config, *size)
    base_ms = statistics.median(times[BASELINE])
    ref = outputs[BASELINE]
    ref_frames = tensor_to_frames(ref)
    records = []
    for spec in specs:
        if spec in errors:
            records.append(Record(spec, "", size, batch, *([math.nan] * 11), error=errors[spec]))
            continue
        ts = sorted(times[spec])
        med = statistics.median(ts)
        # Per-round ratios (the baseline's and this variant's calls of the same round): how much the ratio moved.
        per_round_ratio = sorted(statistics.median(times[BASELINE][r * per_round:(r + 1) * per_round])
                                 / statistics.median(times[spec][r * per_round:(r + 1) * per_round])
                                 for r in range(rounds))
        out_frames = tensor_to_frames(outputs[spec])
        added, peak, cuda, setup = memory[spec]
        records.append(Record(
            variant=spec, backend=backends[spec].describe(), size=size, batch=batch, ms_median=med,
            ms_p10=ts[int(0.1 * (len(ts) - 1))], ms_p90=ts[int(math.ceil(0.9 * (len(ts) - 1)))],
            fps=batch * 1000.0 / med, ratio_vs_fp32=base_ms / med,
            max_abs_err=float((outputs[spec] - ref).abs().max()), psnr_db=psnr_db(ref_frames, out_frames),
            psnr_min_db=min(psnr_db(r, o) for r, o in zip(ref_frames, out_frames)),
            added_mib=added, peak_rss_mib=peak, peak_cuda_mib=cuda, setup_s=setup, timed_calls=len(ts),
            extra={"accuracy_frames": len(ref_frames), "ratio_rounds": per_round_ratio, "macs": macs}
            | ({"video": conversions[spec]} if spec in conversions else {})))
    return records


def machine_info() -> dict:
    """CPU model and flags, cores, load, GPU and library versions, for the JSON records."""
    cpu, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    from importlib import metadata

    for name in ("onnxruntime", "openvino", "nncf", "opencv-python", "av", "tensorrt"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile",
                                     "amx_bf16", "amx_int8"}),
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
