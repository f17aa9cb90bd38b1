"""The CPU probe (`rtstyle.cpu`, issue 10) and every decision that reads it, on both CPU classes.

This project's machines are AMD Zen 4 (AVX-512, native bf16, VNNI), Zen 3 (AVX2 and FMA only) or an Intel
Xeon (AVX-512 and VNNI, no bf16); the `cpu_class` fixture forces the probe to each in turn, so whichever CPU
runs the suite, all are covered.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from rtstyle.backends.select import choose_backend, probe
from rtstyle.cpu import FLAGS_VARIABLE, cap_flags, cpu_features, parse_flags, read_features

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
HAS_INT8 = HAS_OPENVINO and importlib.util.find_spec("nncf") is not None
ZEN4 = "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni sha_ni\n"


# What the kernels of this process can really run: the probe without any forced flags, read at import, before
# the `cpu_class` fixture changes the environment (ONEDNN_MAX_CPU_ISA, set at start, caps this process for good).
REAL = read_features({k: v for k, v in os.environ.items() if k != FLAGS_VARIABLE})


def openvino_has_bf16() -> bool:
    """Whether OpenVINO itself (reading CPUID, deaf to the probe's overrides) lists BF16 for this CPU."""
    from rtstyle.formats.openvino import openvino_core

    return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


# Forcing the probe can take capabilities away from OpenVINO, never give it ones the CPU lacks: on a CPU with
# AVX-512 but no bf16 (an Intel Xeon whose flags stop at avx512_vnni) the forced AVX-512 class still runs f32.
OPENVINO_BF16 = HAS_OPENVINO and openvino_has_bf16()


def test_flags_come_from_cpuinfo_and_the_override_replaces_them(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\n" + ZEN4 + "processor\t: 1\nflags\t\t: sse2\n")
    zen4 = read_features({}, cpuinfo)
    assert zen4.bf16 == "avx512_bf16" and zen4.vnni and zen4.avx512
    assert zen4.describe().startswith("AVX-512, native bf16 (avx512_bf16), VNNI")
    zen3 = read_features({"RTSTYLE_CPU_FLAGS": "avx2,fma"}, cpuinfo)
    assert zen3.flags == {"avx2", "fma"} and zen3.bf16 is None and not zen3.vnni and not zen3.avx512
    assert zen3.describe().startswith("AVX2, no native bf16, no VNNI") and "RTSTYLE_CPU_FLAGS" in zen3.describe()
    assert read_features({"RTSTYLE_CPU_FLAGS": ""}, cpuinfo).describe().startswith("no AVX2")
    amx = read_features({"RTSTYLE_CPU_FLAGS": "avx512f avx512_bf16 amx_bf16 amx_int8"}, cpuinfo)
    assert amx.bf16 == "amx_bf16" and amx.vnni  # AMX tiles before AVX-512 bf16


def test_onednn_isa_cap_removes_what_its_kernels_will_not_use(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(ZEN4)
    capped = read_features({"ONEDNN_MAX_CPU_ISA": "AVX2"}, cpuinfo)
    assert capped.bf16 is None and not capped.vnni and not capped.avx512 and "avx2" in capped.flags
    assert "capped by ONEDNN_MAX_CPU_ISA=AVX2" in capped.source
    vnni_only = cap_flags(parse_flags(ZEN4), "avx512_core_vnni")
    assert "avx512_vnni" in vnni_only and "avx512_bf16" not in vnni_only
    assert read_features({"ONEDNN_MAX_CPU_ISA": "ALL"}, cpuinfo).bf16 == "avx512_bf16"  # no cap: nothing removed


def test_unreadable_cpuinfo_falls_back_to_torch(tmp_path):
    features = read_features({}, tmp_path / "absent")
    assert not features.known and "unknown CPU flags" in features.describe()
    expected = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert (features.bf16 is not None) == bool(expected)


def test_training_precision_follows_the_cpu_class(cpu_class):
    from train.trainer import resolve_precision

    cpu = torch.device("cpu")
    precision, why = resolve_precision("auto", cpu)
    if cpu_class == "avx512":
        assert precision == "bf16" and "avx512_bf16" in why
        assert resolve_precision("bf16", cpu) == ("bf16", "asked for")
    else:
        assert precision == "fp32" and "no native bf16" in why
        precision, why = resolve_precision("bf16", cpu)  # honoured, but never silently slow
        slowdown = "1.4x slower" if cpu_class == "avx512-no-bf16" else "13x slower"
        assert precision == "bf16" and why.startswith("WARNING") and slowdown in why and "--precision auto" in why
    assert resolve_precision("fp32", cpu) == ("fp32", "asked for")
    assert resolve_precision("auto", torch.device("cuda"), cuda_bf16=True)[0] == "bf16"
    assert resolve_precision("auto", torch.device("cuda"), cuda_bf16=False)[0] == "fp32"


def test_backend_choice_follows_the_cpu_class(cpu_class):
    env = probe()
    assert env.torch_bf16 == (cpu_class == "avx512")
    if HAS_OPENVINO:
        from rtstyle.formats.openvino import cpu_capabilities
        from rtstyle.backends.openvino_backend import resolve_precision

        openvino_bf16 = cpu_class == "avx512" and OPENVINO_BF16
        assert env.openvino_bf16 == openvino_bf16 and ("BF16" in cpu_capabilities()) == openvino_bf16
        assert resolve_precision("auto", cpu_capabilities()) == ("bf16" if openvino_bf16 else "fp32")
    if HAS_INT8:
        choice = choose_backend("weights", "auto", "cpu", "auto", env)
        assert choice.precision == "int8"
        rest = "bf16;" if env.openvino_bf16 else "f32 (no native bf16 on this CPU)"
        assert f"falls back to {rest}" in choice.reason


@pytest.mark.skipif(not HAS_INT8, reason="needs openvino and nncf (the [openvino] extra)")
def test_int8_names_the_precision_that_really_runs(cpu_class, tiny_model_path):
    from rtstyle.backends.openvino_int8_backend import OpenVinoInt8Backend
    from rtstyle.formats.int8.quantize import build_int8_openvino, run_hint
    from rtstyle.weights import load_model

    rest = "bf16" if cpu_class == "avx512" and OPENVINO_BF16 else "f32"
    assert run_hint() == rest and OpenVinoInt8Backend(tiny_model_path).rest == rest
    if rest == "bf16" and REAL.bf16 is None:
        return  # the decisions above hold; compiling bf16 kernels needs a oneDNN cap that lets them run
    generator, info = load_model(tiny_model_path)
    build = build_int8_openvino(generator, info, (32, 32), calibration_count=4, target_psnr=1000, min_psnr=999)
    assert build.model is None and f"OpenVINO {rest} instead" in build.explanation
    assert ("bf16" in build.explanation) == (rest == "bf16")


def test_the_probe_is_read_once_per_process(monkeypatch):
    first = cpu_features()
    monkeypatch.setenv("RTSTYLE_CPU_FLAGS", "sse2")
    assert cpu_features() is first  # cached: decisions cannot change mid-run
    cpu_features.cache_clear()
    assert cpu_features().flags == {"sse2"}
    cpu_features.cache_clear()
