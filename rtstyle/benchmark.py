"""Side-by-side speed and accuracy of inference backends, measured interleaved in one process.

Shared machines are noisy, so absolute times mean little; what is reported is each backend's median
ms/frame and its ratio to eager fp32 PyTorch *measured in the same rounds*: every round times each
variant in turn (rotating the order), so a slow spell on the machine hits all of them alike. Accuracy is
the max abs error and PSNR of each variant's uint8 output against eager fp32 on the same real frames.
Peak memory is the process's peak resident set while the variant runs (Linux VmHWM, reset between
variants) and, on CUDA, torch's peak allocation.
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

from .backends import Backend, BackendOptions, create_backend
from .transforms import frames_to_tensor, resize_frames, tensor_to_frames

BASELINE = "torch:fp32"


@dataclass(frozen=True)
class Variant:
    """One thing to measure: 'backend[:precision][+compile]', e.g. 'openvino:bf16' or 'torch:bf16+compile'."""

    spec: str

    def options(self, device: str) -> BackendOptions:
        name, _, rest = self.spec.partition(":")
        compile_ = self.spec.endswith("+compile")
        precision = (rest.removesuffix("+compile") or "auto") if rest else "auto"
        name = name.removesuffix("+compile")
        kwargs = dict(backend=name, device=device, precision=precision)
        if compile_:
            kwargs["compile"] = True
        return BackendOptions(**kwargs)


@dataclass
class Record:
    variant: str
    backend: str  # what the backend says it runs (describe())
    size: tuple[int, int]
    batch: int
    ms_median: float
    ms_p10: float
    ms_p90: float
    fps: float
    ratio_vs_fp32: float  # eager fp32 median / this median, from the same rounds
    max_abs_err: float  # on the [-1, 1] output scale, vs eager fp32
    psnr_db: float  # uint8 output vs eager fp32 uint8 output; inf when identical
    peak_rss_mib: float
    peak_cuda_mib: float | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


def parse_size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '360x640' -> (360, 640) (height x width)."""
    if "x" in text:
        h, w = text.lower().split("x")
        return int(h), int(w)
    return int(text), int(text)


def sample_frames(count: int, size: tuple[int, int], video: Path | None = None) -> np.ndarray:
    """`count` real RGB uint8 frames (b, h, w, 3) resized to `size`: from `video`, else the bundled photo."""
    frames: list[np.ndarray] = []
    if video is not None:
        import cv2

        cap = cv2.VideoCapture(str(video))
        total = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 1)
        for index in np.linspace(0, total - 1, count).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, bgr = cap.read()
            if ok:
                frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
        cap.release()
        if not frames:
            raise ValueError(f"{video}: no frame could be decoded")
    else:
        from .images import read_image

        photo = read_image(Path(__file__).resolve().parent / "assets" / "bottle.jpg")
        frames = [np.ascontiguousarray(np.roll(photo, 37 * i, axis=1)) for i in range(count)]
    arr = np.stack([f for f in frames][:count])
    while len(arr) < count:
        arr = np.concatenate([arr, arr[: count - len(arr)]])
    return resize_frames(arr, *size)


def _psnr(reference: np.ndarray, test: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _reset_peak_rss() -> None:
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time_call(backend: Backend, x: torch.Tensor, sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    backend.infer(x)
    sync()
    return (time.perf_counter() - start) * 1000.0


def measure(model: str, variants: list[str], size: tuple[int, int], batch: int, device: str = "auto",
            warmup: int = 3, rounds: int = 5, per_round: int = 3, video: Path | None = None,
            log: Callable[[str], None] = lambda m: None) -> list[Record]:
    """Measure every variant at one (size, batch), interleaved; the first record is the eager fp32 baseline."""
    specs = [BASELINE] + [v for v in variants if v != BASELINE]
    frames = sample_frames(max(batch, 4), size, video)
    x = frames_to_tensor(frames[:batch])  # (b, 3, h, w) in [-1, 1]
    backends: dict[str, Backend] = {}
    errors: dict[str, str] = {}
    outputs: dict[str, torch.Tensor] = {}
    rss: dict[str, float] = {}
    cuda: dict[str, float | None] = {}
    for spec in specs:
        try:
            backend = create_backend(model, Variant(spec).options(device), log=log)
            _reset_peak_rss()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            for _ in range(warmup):
                outputs[spec] = backend.infer(x).float()
            rss[spec] = _peak_rss_mib()
            cuda[spec] = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
            backends[spec] = backend
        except Exception as e:  # a variant that cannot run here is reported, not fatal
            errors[spec] = f"{type(e).__name__}: {e}"
            log(f"{spec}: not measured: {errors[spec]}")
    if BASELINE not in backends:
        raise RuntimeError(f"the eager fp32 baseline could not run: {errors.get(BASELINE)}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times: dict[str, list[float]] = {s: [] for s in backends}
    order = list(backends)
    for r in range(rounds):
        for spec in order[r % len(order):] + order[: r % len(order)]:  # rotate who goes first
            times[spec] += [_time_call(backends[spec], x, sync) for _ in range(per_round)]
    base_ms = statistics.median(times[BASELINE])
    ref = outputs[BASELINE]
    ref_frames = tensor_to_frames(ref)
    records = []
    for spec in specs:
        if spec in errors:
            records.append(Record(spec, "", size, batch, *([math.nan] * 8), error=errors[spec]))
            continue
        ts = sorted(times[spec])
        med = statistics.median(ts)
        out = outputs[spec]
        records.append(Record(
            variant=spec, backend=backends[spec].describe(), size=size, batch=batch, ms_median=med,
            ms_p10=ts[int(0.1 * (len(ts) - 1))], ms_p90=ts[int(math.ceil(0.9 * (len(ts) - 1)))],
            fps=batch * 1000.0 / med, ratio_vs_fp32=base_ms / med,
            max_abs_err=float((out - ref).abs().max()), psnr_db=_psnr(ref_frames, tensor_to_frames(out)),
            peak_rss_mib=rss[spec], peak_cuda_mib=cuda[spec]))
    return records


def machine_info() -> dict:
    """CPU model, cores, GPU and library versions, for the JSON records."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in ("onnxruntime", "openvino", "cv2", "av", "tensorrt"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", None) or getattr(
                getattr(module, "runtime", None), "get_version", lambda: "?")()
        except Exception:
            continue
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "versions": versions,
    }


def as_dicts(records: list[Record]) -> list[dict]:
    out = []
    for r in records:
        d = asdict(r)
        d["size"] = f"{r.size[0]}x{r.size[1]}"
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()})
    return out
