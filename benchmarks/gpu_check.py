"""One command for a lent GPU machine: every figure the GPU path needs, in one JSON, in under five minutes.

    python benchmarks/gpu_check.py --out gpu_check.json            # on a machine with a CUDA GPU
    python benchmarks/gpu_check.py --dry-run --out /tmp/check.json  # anywhere: the same code paths on the CPU

What it measures (issue 11), with the bundled demo generator unless `--model` says otherwise:
- torch on CUDA in fp16, bf16 and fp32 (TF32 off, which `TorchBackend` sets for fp32): max abs error and PSNR
  of the uint8 output against CPU fp32, and fps at 256x256 batch 1 and 8 and 1920x1080 batch 1, each with
  and without `cudnn.benchmark`;
- ONNX Runtime's CUDA provider (accuracy and fps at 256x256), refusing a session that fell back to the CPU;
- TensorRT fp16 where `tensorrt` imports (the lent machine has none: then the reason is recorded);
- the `cuda`-marked tests (`pytest -m cuda`), their summary line and exit code.
It needs only torch, onnxruntime (onnx too, to export the graph; or pass `--onnx FILE` made elsewhere) and
the project's own modules that import neither OpenCV nor PyAV. Without a CUDA GPU and without `--dry-run` it
writes nothing and exits 2 with "no CUDA GPU". Each section is timed by a budget, not a count, so the whole
run stays under five minutes; a section that fails records its error and the rest still run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtstyle.backends.torch_backend import TorchBackend  # noqa: E402
from rtstyle.io.files import atomic_write  # noqa: E402
from rtstyle.store import resolve_model  # noqa: E402
from rtstyle.weights import load_model  # noqa: E402

GPU_SHAPES = [(1, 256, 256), (8, 256, 256), (1, 1080, 1920)]  # (batch, h, w); 1080 is a multiple of 4
DRY_SHAPES = [(1, 64, 64), (2, 64, 64), (1, 96, 128)]  # the same code paths, sized for a CPU
SECONDS_PER_FIGURE = 2.0  # timing budget of one fps figure (after warm-up)


def psnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """PSNR of the uint8 images of two [-1, 1] tensors; inf when identical (what users see, not raw floats)."""
    to_u8 = lambda t: ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()  # noqa: E731
    mse = float(np.mean((to_u8(reference).astype(np.float64) - to_u8(test).astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def inputs(batch: int, h: int, w: int) -> torch.Tensor:
    """Deterministic inputs with per-image statistics that differ (InstanceNorm must see each image alone)."""
    gen = torch.Generator().manual_seed(batch * 7919 + h * w)
    x = torch.rand(batch, 3, h, w, generator=gen) * 2 - 1
    return (x * torch.linspace(0.3, 1.0, batch).view(batch, 1, 1, 1)).clamp(-1, 1)


def fps(run, x: torch.Tensor, sync, budget: float) -> float:
    """Frames per second of `run(x)` over `budget` seconds after two warm-up calls (cudnn.benchmark tunes)."""
    for _ in range(2):
        run(x)
    sync()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget or calls < 2:
        run(x)
        calls += 1
    sync()
    return calls * x.shape[0] / (time.perf_counter() - start)


def accuracy(reference: torch.Tensor, out: torch.Tensor) -> dict:
    out = out.float().cpu()
    return {"max_abs": round(float((out - reference).abs().max()), 6), "psnr_db": round(psnr(reference, out), 2)}


def section(report: dict, name: str, work) -> None:
    """Run one part; its error (with the last traceback line) goes into the report instead of ending the run."""
    start = time.perf_counter()
    try:
        report[name] = work()
    except Exception as e:  # noqa: BLE001 - one broken part must not hide the others' figures
        report[name] = {"error": f"{type(e).__name__}: {e}", "where": traceback.format_exc().splitlines()[-3:]}
    report.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)


def check_torch(model_path: Path, device: str, shapes, references, budget: float) -> list[dict]:
    generator, info = load_model(model_path)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    precisions = ("fp16", "bf16", "fp32") if device.startswith("cuda") else ("bf16", "fp32")
    rows = []
    for precision in precisions:
        for benchmark in (False, True):
            try:
                backend = TorchBackend(generator, info, device=device, precision=precision, cudnn_benchmark=benchmark)
            except Exception as e:  # noqa: BLE001 - e.g. bf16 on a GPU without it: record it, measure the rest
                rows.append({"precision": precision, "cudnn_benchmark": benchmark, "error": f"{type(e).__name__}: {e}"})
                continue
            for shape in shapes:
                x = inputs(*shape)
                row = {"precision": precision, "cudnn_benchmark": benchmark, "shape": list(shape),
                       "describe": backend.describe()}
                row |= accuracy(references[shape], backend.infer(x))
                row["fps"] = round(fps(backend.infer, x, sync, budget), 2)
                rows.append(row)
    return rows


def check_onnxruntime(model_path: Path, device: str, onnx_file: Path | None, references, shape, budget) -> dict:
    import onnxruntime

    from rtstyle.backends.onnxruntime_backend import OnnxRuntimeBackend, onnx_source

    graph = onnx_file or onnx_source(model_path)  # exporting needs onnx + onnxscript; --onnx skips that
    backend = OnnxRuntimeBackend(graph, device=device)  # raises if a CUDA session fell back to the CPU
    x = inputs(*shape)
    result = {"version": onnxruntime.__version__, "providers": backend.session.get_providers(),
              "describe": backend.describe(), "shape": list(shape)}
    return result | accuracy(references[shape], backend.infer(x)) | {"fps": round(fps(backend.infer, x, lambda: None,
                                                                                       budget), 2)}


def check_tensorrt(model_path: Path, references, shape, budget) -> dict:
    from rtstyle.backends.select import _tensorrt_problem

    problem = _tensorrt_problem() if _importable("tensorrt") else "tensorrt is not installed"
    if problem:
        return {"skipped": problem}
    from rtstyle.backends.tensorrt_backend import TensorRTBackend
    from rtstyle.formats.tensorrt import prepare_engine

    backend = TensorRTBackend(prepare_engine(model_path, "fp16", log=print), device="cuda")
    x = inputs(*shape)
    result = {"describe": backend.describe(), "shape": list(shape)} | accuracy(references[shape], backend.infer(x))
    result["fps"] = round(fps(backend.infer_device, x.cuda(), torch.cuda.synchronize, budget), 2)
    result["context_memory_mib"] = round(backend.device_memory_bytes / 2**20, 1)
    return result


def run_cuda_tests(timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"returncode": done.returncode, "summary": lines[-1] if lines else "", "tail": lines[-15:]}


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="where the JSON goes")
    parser.add_argument("--model", default="demo", help="weights file or store name [demo]")
    parser.add_argument("--onnx", type=Path, help="an rtstyle .onnx of --model, where onnx cannot export here")
    parser.add_argument("--dry-run", action="store_true", help="run every code path on the CPU at small sizes")
    parser.add_argument("--budget", type=float, default=SECONDS_PER_FIGURE, help="seconds per fps figure [2]")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU (torch.cuda.is_available() is False, torch "
              f"{torch.__version__}, CUDA build {torch.version.cuda}); nothing measured. "
              "Run it on the GPU machine, or with --dry-run to exercise it here.", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    shapes = DRY_SHAPES if args.dry_run else GPU_SHAPES
    budget = min(args.budget, 0.2) if args.dry_run else args.budget
    model_path = resolve_model(args.model)
    report: dict = {"dry_run": args.dry_run, "model": str(model_path), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                    "gpu": torch.cuda.get_device_name() if device == "cuda" else None}
    generator, _ = load_model(model_path)
    with torch.inference_mode():  # the reference: CPU fp32, eager, same inputs
        references = {shape: generator.eval()(inputs(*shape)) for shape in shapes}
    section(report, "torch", lambda: check_torch(model_path, device, shapes, references, budget))
    section(report, "onnxruntime", lambda: check_onnxruntime(model_path, device, args.onnx, references, shapes[0],
                                                             budget))
    if args.dry_run:
        report["tensorrt"] = {"skipped": "dry run (CPU)"}
        report["cuda_tests"] = {"skipped": "dry run (CPU)"}
    else:
        section(report, "tensorrt", lambda: check_tensorrt(model_path, references, shapes[0], budget))
        section(report, "cuda_tests", lambda: run_cuda_tests(timeout=150))
    text = json.dumps(report, indent=1, default=str)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    failed = [name for name in ("torch", "onnxruntime", "tensorrt", "cuda_tests")
              if isinstance(report.get(name), dict) and "error" in report[name]]
    print(f"gpu_check: wrote {args.out}" + (f"; errors in {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
