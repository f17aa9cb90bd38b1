"""Every registered backend against eager PyTorch fp32: same output within its tolerance, dynamic sizes,
batch > 1, metadata read back; `--backend auto` choices; the TensorRT backend's pure decisions.

Tolerances (max abs error on generator outputs in [-1, 1]; one uint8 level is 7.8e-3):
- torch fp32: 0 (it is the reference).
- onnxruntime fp32: 1e-4 (summation order only; ~1e-5 measured).
- openvino f32: 5e-4 (its Winograd convolutions and MVN: ~1e-4 measured on the full generator).
- openvino bf16: 0.25 (8 significant bits; ~0.08 tiny / 0.11 full generator measured, mean < 1e-2).
- tensorrt fp16: 5e-2 (11 significant bits, InstanceNorm in FP32); needs tensorrt and a CUDA GPU.
- torch cuda fp16 (auto's GPU choice without TensorRT): 5e-2; needs a CUDA GPU.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, tiny_store
from rtstyle.backends import BACKENDS, BackendOptions, BackendUnavailable, create_backend, resolve_device
from rtstyle.backends.registry import REGISTRY
from rtstyle.backends.select import Environment, choose_backend
from rtstyle.backends.tensorrt_backend import ALIGNMENT, grown_size, needs_copy
from rtstyle.formats.metadata import ArtifactError

HAS_CUDA = torch.cuda.is_available()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
NO_TRT = "needs the tensorrt package and a CUDA GPU (this machine: " + \
    f"tensorrt {'installed' if HAS_TRT else 'not installed'}, CUDA {'yes' if HAS_CUDA else 'no'})"

# (backend, precision) -> max abs tolerance; every registered backend must appear (checked below).
CASES = {
    ("torch", "fp32"): 0.0,
    ("onnxruntime", "fp32"): 1e-4,
    ("openvino", "fp32"): 5e-4,
    ("openvino", "bf16"): 0.25,
    ("tensorrt", "fp16"): 5e-2,
}


def _skip_reason(backend: str, precision: str) -> str | None:
    if backend == "tensorrt" and not (HAS_TRT and HAS_CUDA):
        return NO_TRT
    if backend in ("onnxruntime", "openvino") and importlib.util.find_spec(backend) is None:
        return f"{backend} is not installed"
    if (backend, precision) == ("openvino", "bf16"):
        from rtstyle.formats.openvino import cpu_capabilities

        if "BF16" not in cpu_capabilities():
            return "this CPU has no native bf16 for OpenVINO"
    return None


PARAMS = [pytest.param(b, p, tol, id=f"{b}-{p}",
                       marks=[pytest.mark.skipif(_skip_reason(b, p) is not None, reason=_skip_reason(b, p) or "")])
          for (b, p), tol in CASES.items()]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A model store with a tiny generator (ngf 8, 2 blocks); on-the-fly artifacts are cached inside it."""
    return tiny_store(tmp_path_factory.mktemp("rtstyle-home"), seed=0, direction="day->night")


@pytest.fixture
def tiny(home, monkeypatch):
    monkeypatch.setenv("RTSTYLE_HOME", str(home))
    from rtstyle.weights import load_model

    generator, info = load_model(home / "models" / "tiny.safetensors")
    return home / "models" / "tiny.safetensors", generator, info


def _batch(b: int, h: int, w: int) -> torch.Tensor:
    """Images with very different statistics per item: per-image (not batch) normalisation is visible."""
    gen = torch.Generator().manual_seed(h * w + b)
    x = torch.rand(b, 3, h, w, generator=gen) * 2 - 1
    scale = torch.linspace(0.2, 1.0, b).view(b, 1, 1, 1)
    return (x * scale + (1 - scale) * 0.5).clamp(-1, 1)


def test_every_registered_backend_has_a_case():
    assert {b for b, _ in CASES} == set(BACKENDS) - {"auto"}


@pytest.mark.parametrize("backend,precision,tolerance", PARAMS)
def test_matches_torch_fp32_at_several_sizes_and_batches(tiny, backend, precision, tolerance):
    path, generator, info = tiny
    runner = create_backend(str(path), BackendOptions(backend=backend, precision=precision), log=None)
    assert runner.info == info  # metadata read back from whatever artifact the backend runs
    for shape in [(1, 64, 64), (3, 64, 96), (2, 36, 64)]:
        x = _batch(*shape)
        with torch.no_grad():
            expected = generator(x)
        got = runner.infer(x)
        assert got.shape == expected.shape and got.dtype == torch.float32
        error = float((got - expected).abs().max())
        assert error <= tolerance, f"{backend} {precision} {shape}: max abs {error:.3g} > {tolerance}"


@pytest.mark.parametrize("backend,precision,tolerance", PARAMS)
def test_uint8_frames_in_and_out_match_the_tensor_path(tiny, backend, precision, tolerance):
    """`infer_frames` (OpenVINO: the conversions inside its graph) == the pure transforms around `infer`."""
    from rtstyle.transforms import frames_to_tensor, tensor_to_frames

    path, _, _ = tiny
    runner = create_backend(str(path), BackendOptions(backend=backend, precision=precision), log=None)
    assert runner.fuses_frames == (backend == "openvino")
    for b, h, w in [(1, 64, 64), (3, 36, 92)]:
        frames = (_batch(b, h, w).permute(0, 2, 3, 1).add(1).mul(127.5).round().to(torch.uint8)).numpy()
        got = runner.infer_frames(frames)
        expected = tensor_to_frames(runner.infer(frames_to_tensor(frames)))
        assert got.dtype == expected.dtype and got.shape == frames.shape
        # rounding of values within the backend's tolerance of a half level may land one level apart
        levels = int(got.astype(int).__sub__(expected).__abs__().max())
        assert levels <= 1 + int(tolerance * 127.5), f"{backend} {precision} {(b, h, w)}: {levels} levels apart"


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_torch_cuda_fp16_chosen_by_auto_matches(tiny):
    path, generator, _ = tiny
    runner = create_backend(str(path), BackendOptions(backend="auto", device="cuda"), log=None)
    x = _batch(2, 64, 64)
    with torch.no_grad():
        expected = generator(x)
    assert float((runner.infer(x) - expected).abs().max()) <= 5e-2


def test_uint8_frames_and_describe(tiny):
    path, _, _ = tiny
    runner = create_backend(str(path), BackendOptions(backend="onnxruntime"), log=None)
    frames = (torch.rand(2, 32, 48, 3) * 255).to(torch.uint8).numpy()
    out = runner(frames)
    assert out.shape == (2, 32, 48, 3) and out.dtype.name == "uint8"
    assert "onnxruntime" in runner.describe() and "dynamic" in runner.describe()


def test_auto_prints_its_reason(tiny):
    path, _, _ = tiny
    said: list[str] = []
    runner = create_backend(str(path), BackendOptions(), log=said.append)
    assert said and said[0].startswith(f"backend auto -> {runner.choice.backend}")
    assert runner.choice.reason in said[0]


def test_bad_sizes_are_refused_with_a_message(tiny):
    path, _, _ = tiny
    runner = create_backend(str(path), BackendOptions(backend="onnxruntime"), log=None)
    with pytest.raises(ArtifactError, match="multiples of 4"):
        runner.infer(torch.zeros(1, 3, 30, 32))


# --- --backend auto: a pure function of the model kind, the options and the machine -----------------------
CPU_OV = Environment(installed=frozenset({"onnxruntime", "openvino"}), openvino_bf16=True, torch_bf16=True)
GPU_TRT = Environment(cuda=True, gpu_name="NVIDIA H200", installed=frozenset({"tensorrt", "onnxruntime"}))


@pytest.mark.parametrize("kind,env,device,precision,expected", [
    ("weights", GPU_TRT, "auto", "auto", ("tensorrt", "cuda", "fp16")),
    ("onnx", GPU_TRT, "auto", "auto", ("tensorrt", "cuda", "fp16")),
    ("weights", Environment(cuda=True, gpu_name="g"), "auto", "auto", ("torch", "cuda", "fp16")),
    ("weights", GPU_TRT, "cpu", "auto", ("onnxruntime", "cpu", "fp32")),
    ("weights", CPU_OV, "auto", "auto", ("openvino", "cpu", "bf16")),
    ("weights", CPU_OV, "auto", "fp32", ("openvino", "cpu", "fp32")),
    ("weights", Environment(installed=frozenset({"openvino"})), "auto", "auto", ("openvino", "cpu", "fp32")),
    ("weights", Environment(installed=frozenset({"onnxruntime"}), torch_bf16=True), "auto", "auto",
     ("torch", "cpu", "bf16")),
    ("weights", Environment(installed=frozenset({"onnxruntime"})), "auto", "auto", ("onnxruntime", "cpu", "fp32")),
    ("weights", Environment(), "auto", "auto", ("torch", "cpu", "fp32")),
    ("onnx", CPU_OV, "auto", "auto", ("openvino", "cpu", "bf16")),
    ("openvino", CPU_OV, "auto", "auto", ("openvino", "cpu", "auto")),
])
def test_auto_choice(kind, env, device, precision, expected):
    choice = choose_backend(kind, "auto", device, precision, env)
    assert (choice.backend, choice.device, choice.precision) == expected
    assert choice.reason


@pytest.mark.parametrize("kind,backend,env,message", [
    ("weights", "openvino", Environment(), r"pip install -e '\.\[openvino\]'"),
    ("weights", "onnxruntime", Environment(), r"pip install -e '\.\[onnx\]'"),
    ("weights", "tensorrt", Environment(), r"pip install -e '\.\[tensorrt\]'"),
    ("tensorrt", "auto", Environment(installed=frozenset({"tensorrt"})), "needs a CUDA GPU"),
    ("openvino", "torch", CPU_OV, "cannot run this openvino model; use --backend openvino"),
    ("onnx", "auto", Environment(), r"\[openvino\]"),
])
def test_unusable_choices_say_what_to_do(kind, backend, env, message):
    with pytest.raises(BackendUnavailable, match=message):
        choose_backend(kind, backend, "auto", "auto", env)


def test_cuda_asked_without_gpu():
    with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
        choose_backend("weights", "torch", "cuda", "auto", Environment())


@pytest.mark.cuda
@pytest.mark.skipif(not (HAS_TRT and HAS_CUDA), reason=NO_TRT)
def test_tensorrt_engine_is_cached_and_stale_engines_rebuilt(tiny):
    from rtstyle.formats.tensorrt import EngineKey, prepare_engine, read_engine, read_engine_header, write_engine

    path, _, _ = tiny
    first = prepare_engine(path, "fp16")
    stamp = first.stat().st_mtime_ns
    assert prepare_engine(path, "fp16") == first and first.stat().st_mtime_ns == stamp  # cache hit, no rebuild
    meta, key, plan = read_engine(first)
    foreign = write_engine(first.with_name("foreign.engine"), plan, meta, EngineKey(**{
        **key.__dict__, "tensorrt_version": "10.0.0"}))
    rebuilt = prepare_engine(foreign, "fp16")
    assert rebuilt == foreign and read_engine_header(rebuilt)[1].tensorrt_version != "10.0.0"


CTRL_C_AFTER_RELEASE = r"""
import gc, os, signal, sys, threading, time
import torch
from rtstyle.backends import BackendOptions, create_backend
backend = create_backend(sys.argv[1], BackendOptions(backend="openvino", device="cpu", precision="fp32"))
backend(torch.zeros(1, 3, 32, 32))
held = [backend]
del backend
released = threading.Thread(target=lambda: (held.clear(), gc.collect()))  # as a pipeline worker or the GC would
released.start()
released.join()
try:
    os.kill(os.getpid(), signal.SIGINT)  # a terminal's Ctrl-C, handled on the main thread
    time.sleep(5)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs openvino")
def test_ctrl_c_still_works_after_an_openvino_backend_is_released_in_another_thread(tiny_model_path):
    """OpenVINO's CPU plugin swaps the main thread's alternate signal stack for its own and unmaps it when the
    plugin unloads; released from another thread, that left the main thread's pointing at freed memory, and a
    Ctrl-C then killed the process with SIGSEGV (it took down CI's pytest run). rtstyle keeps one Core alive."""
    result = subprocess.run([sys.executable, "-c", CTRL_C_AFTER_RELEASE, str(tiny_model_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and "KeyboardInterrupt" in result.stdout, (result.returncode, result.stderr[-2000:])


# --- the TensorRT backend's pure decisions (the CUDA calls around them are cuda-marked above) ------------
def test_misaligned_strided_or_mistyped_inputs_are_copied_before_tensorrt_reads_them():
    batch = torch.zeros(2, 3, 4, 4)  # one image is 3*4*4*4 = 192 bytes: batch[1:] starts 192 bytes in
    view = batch[1:]
    assert view.data_ptr() - batch.data_ptr() == 192 and view.is_contiguous()
    aligned = ALIGNMENT * 1000
    assert not needs_copy(aligned, True, torch.float32, torch.float32)
    assert needs_copy(aligned + 192, True, torch.float32, torch.float32)  # what batch[1:] on an aligned base is
    assert needs_copy(aligned, False, torch.float32, torch.float32)  # e.g. a channels-last or transposed view
    assert needs_copy(aligned, True, torch.float32, torch.float16)  # an fp16 engine fed fp32
    assert not needs_copy(aligned + ALIGNMENT, True, torch.float16, torch.float16)


def test_context_memory_grows_to_the_shapes_used_and_never_shrinks():
    assert grown_size(0, 0) == 1  # TensorRT rejects a null device-memory pointer
    assert grown_size(0, 5 << 20) == 5 << 20
    assert grown_size(5 << 20, 3 << 20) is None  # a smaller size fits: no reallocation per frame-size change
    assert grown_size(5 << 20, 9 << 20) == 9 << 20


def test_auto_skips_an_unsupported_tensorrt_with_the_reason():
    problem = "TensorRT 11.0.0 found; rtstyle's engine builder is written for TensorRT 10"
    env = Environment(cuda=True, gpu_name="g", installed=frozenset({"tensorrt"}), tensorrt_problem=problem)
    choice = choose_backend("weights", "auto", "auto", "auto", env)
    assert (choice.backend, choice.device, choice.precision) == ("torch", "cuda", "fp16")
    assert "TensorRT 11.0.0" in choice.reason
    with pytest.raises(BackendUnavailable, match="TensorRT 11.0.0"):
        choose_backend("weights", "tensorrt", "cuda", "auto", env)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_onnxruntime_says_when_cuda_fell_back_to_the_cpu(tiny):
    """A real CPU session: asking it for CUDA must not pass as a CUDA run (what a broken onnxruntime-gpu does)."""
    import onnxruntime

    from rtstyle.backends.onnxruntime_backend import check_providers, onnx_source

    path, _, _ = tiny
    session = onnxruntime.InferenceSession(str(onnx_source(path)), providers=["CPUExecutionProvider"])
    assert session.get_providers()[0] == "CPUExecutionProvider"
    check_providers(session, "cpu")  # what was asked
    with pytest.raises(BackendUnavailable, match="fell back to the CPU"):
        check_providers(session, "cuda")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_registry_entry_names_its_module_extra_and_kinds(name):
    import tomllib

    from rtstyle.formats import FORMATS

    entry = REGISTRY[name]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert entry.extra is None or entry.extra in extras
    assert set(entry.runs) <= {"weights"} | {f.kind for f in FORMATS.values()}
    assert callable(entry.create())  # the module imports without its heavy library and has its entry point
    assert name in BACKENDS and BackendOptions(backend=name).backend == name


def test_device_values_are_read_by_one_parser_everywhere(tiny_model_path, tmp_path, capsys):
    """`--device gpu` or `banana` ran on the CPU with exit 0 (issue 15): every command now refuses them."""
    from conftest import run_main
    from rtstyle.benchmark import BenchmarkSettings
    from rtstyle.devices import parse_device
    from rtstyle.errors import UserError
    from train.config import TrainConfig
    from train.distill_config import DistillConfig

    assert [parse_device(d) for d in ("auto", "cpu", "cuda", "cuda:1", " CUDA:0 ")] == \
        ["auto", "cpu", "cuda", "cuda:1", "cuda:0"]
    for bad in ("gpu", "banana", "cuda:", "cuda:x", "cuda1", "", "mps"):
        with pytest.raises(UserError, match="auto, cpu, cuda or cuda:N"):
            parse_device(bad)
    for make in (lambda d: BackendOptions(device=d), lambda d: BenchmarkSettings(device=d),
                 lambda d: TrainConfig(device=d), lambda d: DistillConfig(device=d)):
        with pytest.raises(ValueError, match="'gpu' is not a device.*use cuda"):
            make("gpu")
    assert BackendOptions(device="CPU").device == "cpu"
    two_gpus = Environment(cuda=True, gpu_name="test GPU", gpu_count=2)  # a GPU index beyond those present
    assert choose_backend("weights", "torch", "cuda:1", "auto", two_gpus).device == "cuda:1"
    with pytest.raises(BackendUnavailable, match="2 CUDA GPU\\(s\\), cuda:0 to cuda:1"):
        choose_backend("weights", "torch", "cuda:2", "auto", two_gpus)
    with pytest.raises(UserError, match="'banana' is not a device"):
        resolve_device("banana")
    (tmp_path / "a.png").write_bytes(b"")  # never read: the device is refused first
    for device in ("gpu", "banana"):
        capsys.readouterr()
        assert run_main("translate", tmp_path / "a.png", "--model", tiny_model_path, "--out", tmp_path / "o",
                        "--device", device) == 2
        assert f"--device {device!r} is not a device" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
