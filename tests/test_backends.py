"""Every registered backend against eager PyTorch fp32: same output within its tolerance, dynamic sizes,
batch > 1, metadata read back; `--backend auto` choices; the TensorRT engine file and cache rules.

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
import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, tiny_store
from rtstyle.artifacts import ArtifactError, ArtifactMeta
from rtstyle.backends import BACKENDS, BackendOptions, BackendUnavailable, create_backend
from rtstyle.backends.select import Environment, choose_backend
from rtstyle.engine_file import (MAGIC, EngineKey, Profile, engine_cache_path, read_engine, read_engine_header,
                                 stale_reason, write_engine)
from rtstyle.models import GeneratorConfig
from rtstyle.weights import ModelInfo

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
        from rtstyle.backends.openvino_backend import cpu_capabilities

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
GPU_TRT = Environment(cuda=True, gpu_name="NVIDIA H200", installed=frozenset({"tensorrt", "onnxruntime"}),
                      torch_precisions=("fp32", "bf16", "fp16"))


@pytest.mark.parametrize("kind,env,device,precision,expected", [
    ("weights", GPU_TRT, "auto", "auto", ("tensorrt", "cuda", "fp16")),
    ("onnx", GPU_TRT, "auto", "auto", ("tensorrt", "cuda", "fp16")),
    ("weights", Environment(cuda=True, gpu_name="g", torch_precisions=("fp32", "bf16", "fp16")), "auto", "auto",
     ("torch", "cuda", "fp16")),
    ("weights", GPU_TRT, "cpu", "auto", ("onnxruntime", "cpu", "fp32")),
    ("weights", CPU_OV, "auto", "auto", ("openvino", "cpu", "bf16")),
    ("weights", CPU_OV, "auto", "fp32", ("openvino", "cpu", "fp32")),
    ("weights", Environment(installed=frozenset({"openvino"})), "auto", "auto", ("openvino", "cpu", "fp32")),
    ("weights", Environment(installed=frozenset({"onnxruntime"}), torch_bf16=True,
                            torch_precisions=("fp32", "bf16", "fp16")), "auto", "auto", ("torch", "cpu", "bf16")),
    ("weights", Environment(installed=frozenset({"onnxruntime"}), torch_bf16=True), "auto", "auto",
     ("onnxruntime", "cpu", "fp32")),
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


# --- TensorRT engine files: header, cache key, staleness (no tensorrt needed) ----------------------------
def _meta() -> ArtifactMeta:
    info = ModelInfo(config=GeneratorConfig(ngf=8, n_blocks=2), direction="a->b", name="tiny")
    return ArtifactMeta(info=info, format="tensorrt", dynamic=True, precision="fp16", source_sha256="ab" * 32)


def _key(**changes) -> EngineKey:
    fields = dict(gpu_name="NVIDIA H200", compute_capability="9.0", tensorrt_version="10.13.0", precision="fp16",
                  profile=Profile.for_shapes(3, (256, 256), dynamic=True), source_sha256="ab" * 32)
    fields.update(changes)
    return EngineKey(**fields)


def test_engine_header_round_trip(tmp_path):
    plan = bytes(range(256)) * 10  # any bytes: the header must not depend on the plan's content
    path = write_engine(tmp_path / "m.engine", plan, _meta(), _key())
    meta, key, offset = read_engine_header(path)
    assert meta == _meta() and key == _key()
    assert read_engine(path)[2] == plan
    assert path.read_bytes()[:len(MAGIC)] == MAGIC and offset == path.stat().st_size - len(plan)
    header = json.loads(path.read_bytes()[len(MAGIC) + 4:offset])
    assert header["engine_key"]["gpu_name"] == "NVIDIA H200" and header["metadata"]["rtstyle.direction"] == "a->b"


def test_foreign_or_broken_engine_files_are_refused(tmp_path):
    bare = tmp_path / "bare.engine"
    bare.write_bytes(b"\x00ftrt plan from trtexec")
    with pytest.raises(ArtifactError, match="no rtstyle header"):
        read_engine_header(bare)
    good = write_engine(tmp_path / "m.engine", b"plan", _meta(), _key())
    cut = tmp_path / "cut.engine"
    cut.write_bytes(good.read_bytes()[:len(MAGIC) + 10])
    with pytest.raises(ArtifactError, match="truncated"):
        read_engine_header(cut)
    empty = write_engine(tmp_path / "e.engine", b"", _meta(), _key())
    with pytest.raises(ArtifactError, match="plan is empty"):
        read_engine(empty)


@pytest.mark.parametrize("change,reason", [
    ({"gpu_name": "NVIDIA A100", "compute_capability": "8.0"}, "built for NVIDIA A100"),
    ({"compute_capability": "8.9"}, "compute capability 8.9"),
    ({"tensorrt_version": "10.0.1"}, "TensorRT 10.0.1"),
    ({"precision": "fp32"}, "built for fp32"),
    ({"source_sha256": "cd" * 32}, "other weights"),
    ({"profile": Profile.for_shapes(3, (256, 256), dynamic=False)}, "shape profile"),
])
def test_stale_engines_are_detected(change, reason):
    assert stale_reason(_key(), _key()) is None
    found = _key(**change)
    assert reason in stale_reason(found, _key())
    assert engine_cache_path("tiny", found) != engine_cache_path("tiny", _key())  # never the same cache file


def test_profiles():
    fixed = Profile.for_shapes(3, (360, 640), dynamic=False, max_batch=4)
    assert fixed.contains((4, 3, 360, 640)) and not fixed.contains((5, 3, 360, 640))
    assert not fixed.contains((1, 3, 256, 256))
    dynamic = Profile.for_shapes(3, (256, 256), dynamic=True)
    assert dynamic.contains((1, 3, 16, 16)) and dynamic.contains((8, 3, 1080, 1920))
    assert dynamic.opt == (1, 3, 256, 256) and not dynamic.contains((1, 3, 2160, 3840))
    with pytest.raises(ValueError, match="multiples of 4"):
        Profile((1, 3, 30, 30), (1, 3, 30, 30), (1, 3, 30, 30))


@pytest.mark.cuda
@pytest.mark.skipif(not (HAS_TRT and HAS_CUDA), reason=NO_TRT)
def test_tensorrt_engine_is_cached_and_stale_engines_rebuilt(tiny):
    from rtstyle.backends.tensorrt_backend import prepare_engine

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
