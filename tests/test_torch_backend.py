"""The PyTorch backend: precision policy (said, never silent), bf16/channels_last/compile agree with fp32 eager."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from media_helpers import one_torch_thread, tiny_model  # noqa: F401 (fixtures)
from rtstyle.backends import BackendOptions, BackendUnavailable, create_backend
from rtstyle.backends.torch_backend import choose_precision
from rtstyle.cpu import cpu_features

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("flags, expected", [
    ({"avx512f", "avx512_bf16"}, "bf16"),
    ({"amx_bf16", "amx_tile", "avx512_bf16"}, "bf16"),
    ({"avx2", "fma"}, "fp32"),
    (set(), "fp32"),
])
def test_auto_precision_on_cpu_follows_the_bf16_flags(flags, expected):
    precision, why = choose_precision("auto", CPU, flags=flags)
    assert precision == expected
    assert why.startswith("auto:")
    if expected == "fp32":
        assert "lacks" in why and "--precision bf16" in why


def test_explicit_precision_is_honoured_and_the_cost_said():
    precision, why = choose_precision("bf16", CPU, flags={"avx2"})
    assert precision == "bf16" and "no native bf16" in why
    precision, why = choose_precision("fp16", CPU, flags={"avx512_bf16"})
    assert precision == "fp16" and "emulated" in why
    assert choose_precision("fp32", CPU, flags={"avx512_bf16"}) == ("fp32", "requested")


def test_cuda_policy():
    assert choose_precision("auto", CUDA)[0] == "fp16"
    assert choose_precision("bf16", CUDA, cuda_bf16=True)[0] == "bf16"
    with pytest.raises(BackendUnavailable, match="compute capability"):
        choose_precision("bf16", CUDA, cuda_bf16=False)
    with pytest.raises(ValueError, match="unknown precision"):
        choose_precision("int8", CPU)


def test_auto_follows_the_probe_on_each_cpu_class(cpu_class):
    expected = "bf16" if cpu_class == "avx512" else "fp32"
    assert choose_precision("auto", CPU)[0] == expected
    assert (cpu_features().bf16 is not None) == (expected == "bf16")


def test_describe_says_what_runs_and_why(tiny_model):
    backend = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu", precision="fp32"))
    text = backend.describe()
    assert "torch eager fp32 on cpu" in text and "requested" in text
    assert "channels_last" not in text  # contiguous on CPU: channels_last measured slower here


@pytest.mark.parametrize("precision, tolerance", [("bf16", 12), ("fp16", 4)])
def test_reduced_precision_stays_close_to_fp32(tiny_model, precision, tolerance):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
    ref = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu", precision="fp32"))(frames)
    low = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu", precision=precision))
    assert f"{precision} autocast" in low.describe()
    out = low(frames)
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= tolerance and diff.mean() < 2, (diff.max(), diff.mean())


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler")
def test_compiled_matches_eager(tiny_model, tmp_path, monkeypatch):
    # A private inductor cache: torch 2.14's shared one (/tmp/torchinductor_$USER) is not keyed by the kernel ISA,
    # so kernels built under one ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA gave NaN (or a crash) when reused under
    # another, as this suite's forced-AVX2 run does on an AVX-512 machine.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    eager = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu", precision="fp32"))
    compiled = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu", precision="fp32", compile=True))
    assert "torch.compile" in compiled.describe()
    torch.testing.assert_close(compiled.infer(x), eager.infer(x), atol=1e-4, rtol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_fp16_close_to_cpu_fp32(tiny_model):
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    ref = create_backend(str(tiny_model), BackendOptions(backend="torch", device="cpu", precision="fp32")).infer(x)
    gpu = create_backend(str(tiny_model), BackendOptions(device="cuda"))
    assert "fp16 autocast on cuda" in gpu.describe()
    assert (gpu.infer(x) - ref).abs().max() < 0.02
