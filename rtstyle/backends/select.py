"""`--backend auto`: which backend runs a model here, and why (the reason is printed, never silent).

Order (issues 5 and 6): TensorRT when it is installed and a CUDA GPU is present (FP16 engine, built and
cached on first use); else torch on CUDA in fp16; else, on the CPU, the fastest installed of OpenVINO int8
(weights only: NNCF post-training quantisation of the convolutions, accuracy-checked, built per input size
on first use, see `rtstyle.formats.int8.quantize`), OpenVINO bf16 (where the CPU has native bf16), torch bf16, ONNX
Runtime; else torch fp32. The CPU ranking is measured, not assumed: full generator, 256x256, batch 1, 2
threads of an AMD EPYC (Zen 4, AVX512_BF16 and VNNI, no AMX), interleaved runs on a shared machine:
OpenVINO int8 6.15x eager torch fp32 (32 dB worst-frame PSNR vs fp32; 5.86x at 42 dB with the first and
last convolutions unquantised), OpenVINO bf16 3.4-3.65x, OpenVINO f32 1.6-1.8x, torch bf16 autocast
1.1-1.7x, ONNX Runtime 1.4-1.7x (the last two are within noise; the issue's order is kept).
`probe()` looks at the machine (cheap: no heavy import except OpenVINO's capability query when installed);
`choose_backend` is a pure function of the model kind, the options and that probe, so it is tested with
literal environments.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from ..cpu import cpu_features
from .registry import REGISTRY

# Read from the one backend map: the pip extra of each optional backend, the artifact kinds each runs.
EXTRAS = {name: entry.extra for name, entry in REGISTRY.items() if entry.extra}
RUNS = {name: entry.runs for name, entry in REGISTRY.items()}


@dataclass(frozen=True)
class Environment:
    """What the machine offers, as far as backend choice is concerned."""

    cuda: bool = False
    gpu_name: str | None = None
    installed: frozenset = frozenset()  # optional runtimes importable here: onnxruntime, openvino, tensorrt
    onnxruntime_cuda: bool = False  # onnxruntime-gpu with its CUDA execution provider
    openvino_bf16: bool = False  # OpenVINO reports native BF16 for this CPU
    openvino_int8: bool = False  # OpenVINO reports INT8 for this CPU and nncf (to build int8 models) is installed
    torch_bf16: bool = False  # oneDNN has native bf16 kernels for this CPU
    tensorrt_problem: str | None = None  # why an installed tensorrt cannot be used (not 10.x), if it cannot
    gpu_count: int | None = None  # CUDA GPUs visible (None: not counted), so --device cuda:N can be checked


@dataclass(frozen=True)
class Choice:
    backend: str
    device: str  # "cpu" or "cuda[:N]"
    precision: str  # "fp32", "bf16", "fp16", "int8", or "auto" (the backend resolves it, e.g. OpenVINO's bf16/f32)
    reason: str


def probe() -> Environment:
    installed = frozenset(name for name in EXTRAS if importlib.util.find_spec(name) is not None)
    trt_problem = _tensorrt_problem() if "tensorrt" in installed else None
    cuda = torch.cuda.is_available()
    ort_cuda = False
    if "onnxruntime" in installed:
        import onnxruntime

        ort_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    ov_bf16 = ov_int8 = False
    if "openvino" in installed:
        from ..formats.openvino import cpu_capabilities

        capabilities = cpu_capabilities()
        ov_bf16 = "BF16" in capabilities
        ov_int8 = "INT8" in capabilities and importlib.util.find_spec("nncf") is not None
    return Environment(
        cuda=cuda,
        gpu_name=torch.cuda.get_device_name() if cuda else None,
        gpu_count=torch.cuda.device_count() if cuda else 0,
        installed=installed,
        onnxruntime_cuda=ort_cuda,
        openvino_bf16=ov_bf16,
        openvino_int8=ov_int8,
        torch_bf16=cpu_features().bf16 is not None,
        tensorrt_problem=trt_problem,
    )


def _tensorrt_problem() -> str | None:
    """Why the installed tensorrt cannot build rtstyle's engines; None when it is a usable 10.x.

    Importing it is the only reliable check: `pip install tensorrt` now brings 11, which removed the weakly
    typed network API, and counting it as usable made `auto` choose it and then fail.
    """
    try:
        import tensorrt
    except Exception as e:  # a broken install raises OSError/ImportError from its CUDA libraries
        return f"tensorrt does not import ({type(e).__name__}: {e})"
    from ..formats.tensorrt import version_problem

    return version_problem(getattr(tensorrt, "__version__", "unknown"))


def check_gpu_index(device: str, count: int | None) -> None:
    """`cuda:N` must name one of the `count` visible GPUs (torch would fail later with 'invalid device ordinal')."""
    from ..errors import BackendUnavailable

    if count and device.startswith("cuda:") and int(device[5:]) >= count:
        raise BackendUnavailable(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")


def require_installed(backend: str, env: Environment) -> None:
    from ..errors import BackendUnavailable

    if backend == "tensorrt" and "tensorrt" in env.installed and env.tensorrt_problem:
        raise BackendUnavailable(f"--backend tensorrt: {env.tensorrt_problem}")
    if backend in EXTRAS and backend not in env.installed:
        raise BackendUnavailable(f"--backend {backend} is not installed here: `pip install -e '.[{EXTRAS[backend]}]'`")


def choose_backend(kind: str, backend: str, device: str, precision: str, env: Environment) -> Choice:
    """The backend for a model of `kind` given the --backend/--device/--precision values and the machine."""
    from ..errors import BackendUnavailable

    if device.startswith("cuda") and not env.cuda:
        raise BackendUnavailable(f"--device {device} asked for, but no CUDA GPU is usable here; use --device cpu")
    check_gpu_index(device, env.gpu_count)
    on_gpu = device.startswith("cuda") or (device == "auto" and env.cuda)
    gpu = device if device.startswith("cuda") else "cuda"
    if backend != "auto":
        if kind not in RUNS[backend]:
            able = [name for name, kinds in RUNS.items() if kind in kinds]
            raise BackendUnavailable(f"--backend {backend} cannot run this {kind} model; "
                                     f"use --backend {' or '.join(able)}")
        require_installed(backend, env)
        if backend == "openvino" and device.startswith("cuda"):
            raise BackendUnavailable("the openvino backend runs on the CPU here; use --device cpu")
        if backend == "tensorrt" and not env.cuda:
            raise BackendUnavailable("the tensorrt backend needs a CUDA GPU; none is usable here")
        run_on = gpu if backend == "tensorrt" or (on_gpu and backend != "openvino") else "cpu"
        return Choice(backend, run_on, _explicit_precision(backend, run_on, precision, env, kind), "asked for")

    if kind == "openvino":
        require_installed("openvino", env)
        return Choice("openvino", "cpu", precision, "an OpenVINO IR runs on OpenVINO")
    if kind == "tensorrt":
        require_installed("tensorrt", env)
        if not env.cuda:
            raise BackendUnavailable("a TensorRT engine needs a CUDA GPU; none is usable here")
        return Choice("tensorrt", gpu, "fp16", "a TensorRT engine runs on TensorRT")
    if precision == "int8":  # an OpenVINO CPU precision: on a GPU machine too, unless a GPU is demanded
        if device.startswith("cuda"):
            raise BackendUnavailable("--precision int8 runs on the CPU (OpenVINO); use --device cpu or auto")
        return _choose_cpu(kind, precision, env)
    if on_gpu:
        usable_trt = "tensorrt" in env.installed and not env.tensorrt_problem
        if usable_trt and precision in ("auto", "fp16", "fp32"):
            prec = "fp32" if precision == "fp32" else "fp16"
            return Choice("tensorrt", gpu, prec, f"TensorRT is installed and a CUDA GPU ({env.gpu_name}) is present: "
                                                 f"{prec} engine, built and cached on first use")
        hint = (f"TensorRT not used: {env.tensorrt_problem}" if env.tensorrt_problem else
                "install the [tensorrt] extra for the fastest GPU path")
        if kind == "weights":
            prec = "fp16" if precision == "auto" else precision
            return Choice("torch", gpu, prec, f"CUDA GPU ({env.gpu_name}) present, no usable TensorRT ({hint}): "
                                              f"torch {prec}")
        if env.onnxruntime_cuda:
            return Choice("onnxruntime", gpu, "fp32", f"ONNX graph on a CUDA GPU without TensorRT ({hint}): "
                                                      "onnxruntime CUDA provider")
    return _choose_cpu(kind, precision, env)


def _choose_cpu(kind: str, precision: str, env: Environment) -> Choice:
    from ..errors import BackendUnavailable
    from ..formats.int8.quantize import MIN_PSNR  # here: the int8 format pulls in the frame readers

    measured = "measured fastest CPU path here (see rtstyle/backends/select.py)"
    if precision == "int8" and kind not in ("weights", "openvino"):
        raise BackendUnavailable(f"--precision int8 is built from weights (the sub-pixel rewrite and the fp32 "
                                 f"accuracy check need the generator), not from a {kind} artifact")
    if "openvino" in env.installed and precision == "int8" and (kind == "openvino" or env.openvino_int8):
        return Choice("openvino", "cpu", "int8", "int8 asked for")
    if kind == "weights" and "openvino" in env.installed and env.openvino_int8 and precision == "auto":
        rest = "bf16" if env.openvino_bf16 else "f32 (no native bf16 on this CPU)"
        return Choice("openvino", "cpu", "int8", "CPU: OpenVINO int8 (NNCF quantisation of the convolutions, checked "
                                                 f">= {MIN_PSNR:g} dB PSNR vs fp32 on real frames or it falls back "
                                                 f"to {rest}; built in the background once an input size makes a "
                                                 "stream, as in a video, and cached; that until then); " + measured)
    if precision == "int8":
        raise BackendUnavailable("--precision int8 needs OpenVINO with nncf on a CPU with int8 support: "
                                 "`pip install -e '.[openvino]'`")
    if "openvino" in env.installed and precision in ("auto", "bf16", "fp32"):
        prec = "bf16" if precision in ("auto", "bf16") and env.openvino_bf16 else "fp32"
        why = "native bf16 on this CPU" if prec == "bf16" else (
            "fp32 asked for" if precision == "fp32" else "this CPU has no native bf16, so f32")
        if kind == "weights" and precision == "auto":
            why += "; int8 needs nncf (`pip install -e '.[openvino]'`) and a CPU with OpenVINO INT8"
        return Choice("openvino", "cpu", prec, f"CPU: OpenVINO {prec} ({why}); {measured}")
    if kind == "weights" and env.torch_bf16 and precision in ("auto", "bf16"):
        return Choice("torch", "cpu", "bf16", "CPU with native bf16, OpenVINO not installed "
                                              "(`pip install -e '.[openvino]'` is faster): torch bf16")
    if "onnxruntime" in env.installed and precision in ("auto", "fp32"):
        return Choice("onnxruntime", "cpu", "fp32", "CPU without OpenVINO or native bf16: onnxruntime fp32 "
                                                    "(faster than eager torch fp32)")
    if kind == "weights":
        prec = "fp32" if precision == "auto" else precision
        return Choice("torch", "cpu", prec, f"CPU, no faster backend installed: torch {prec}")
    raise BackendUnavailable(f"nothing installed here runs a {kind} artifact on the CPU: "
                             "`pip install -e '.[openvino]'` or `pip install -e '.[onnx]'`")


def _explicit_precision(backend: str, device: str, precision: str, env: Environment, kind: str = "weights") -> str:
    from ..errors import BackendUnavailable

    if backend == "torch":
        if precision == "auto":
            return "fp16" if device.startswith("cuda") else "fp32"
        return precision
    if backend == "onnxruntime":
        if precision not in ("auto", "fp32"):
            raise BackendUnavailable(f"the onnxruntime backend runs the exported fp32 graph; --precision {precision} "
                                     "is offered by openvino (bf16, int8) and tensorrt (fp16)")
        return "fp32"
    if backend == "tensorrt":
        if precision in ("bf16", "int8"):
            raise BackendUnavailable("the tensorrt backend builds fp16 or fp32 engines; use --precision fp16 or fp32")
        return "fp16" if precision == "auto" else precision
    if precision == "int8" and not (env.openvino_int8 or kind == "openvino"):
        raise BackendUnavailable("--precision int8 from weights needs nncf and a CPU with OpenVINO INT8 support: "
                                 "`pip install -e '.[openvino]'`")
    return precision  # openvino resolves auto/bf16/fp32/fp16 against the CPU's capabilities
