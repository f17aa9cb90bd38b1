"""What this CPU can do: the one probe every precision, backend and int8 decision reads.

This project's machines are not all alike (issue 10): some are AMD Zen 4 (AVX-512 with native bf16 and
VNNI), some Zen 3 (AVX2 and FMA only), some an Intel Xeon whose hypervisor shows AVX-512 with VNNI but
neither bf16 nor AMX. What a choice depends on is read here once, from the flags the
kernel reports for the CPU (`/proc/cpuinfo`, i.e. CPUID), and narrowed by two overrides:
- `RTSTYLE_CPU_FLAGS="avx2 fma"` replaces the flags: the program then behaves as it would on a CPU that
  reports only those (tests use it to cover the CPU class they are not running on).
- `ONEDNN_MAX_CPU_ISA` (oneDNN's own cap, obeyed by the kernels of torch and of OpenVINO's CPU plugin,
  e.g. `AVX2`): extensions above the cap do not count, since no kernel will use them. With both set, the
  arithmetic really is that of the other class too (OpenVINO picks `jit_avx2_I8` over `brgconv_avx512_I8`).
Without `/proc/cpuinfo` (macOS, Windows) the flags are unknown and bf16 is taken from torch's oneDNN check.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

FLAGS_VARIABLE = "RTSTYLE_CPU_FLAGS"
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # AMX tiles first: the faster of the two where both exist
VNNI_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # u8 x s8 -> s32 without 16-bit saturation
# The flags that stop counting under each ONEDNN_MAX_CPU_ISA value (oneDNN's `cpu_isa` names), by prefix.
_ABOVE = {
    "SSE41": ("avx", "fma", "amx", "f16c"), "AVX": ("avx2", "avx512", "avx_vnni", "amx", "fma"),
    "AVX2": ("avx512", "avx_vnni", "amx"), "AVX2_VNNI": ("avx512", "amx"), "AVX2_VNNI_2": ("avx512", "amx"),
    "AVX512_CORE": ("avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx"),
    "AVX512_CORE_VNNI": ("avx512_bf16", "avx512_fp16", "amx"), "AVX512_CORE_BF16": ("avx512_fp16", "amx"),
    "AVX512_CORE_FP16": ("amx",),
}


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's instruction-set flags that count here, and where they came from."""

    flags: frozenset
    source: str  # "/proc/cpuinfo", "RTSTYLE_CPU_FLAGS", ... with the cap applied, for messages
    known: bool = True  # False where no flags could be read (then `bf16_fallback` answers for bf16)
    bf16_fallback: bool = False

    @property
    def bf16(self) -> str | None:
        """The flag that gives native bf16 arithmetic (AMX or AVX512_BF16), or None."""
        native = next((flag for flag in BF16_FLAGS if flag in self.flags), None)
        return native if self.known else ("torch's oneDNN bf16 check" if self.bf16_fallback else None)

    @property
    def vnni(self) -> bool:
        """Whether int8 dot products accumulate without the 16-bit saturation of AVX2's vpmaddubsw."""
        return any(flag in self.flags for flag in VNNI_FLAGS)

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    def describe(self) -> str:
        """A short name of the CPU class for messages and benchmark records."""
        if not self.known:
            return f"unknown CPU flags ({self.source})"
        parts = ["AVX-512" if self.avx512 else "AVX2" if "avx2" in self.flags else "no AVX2"]
        parts.append(f"native bf16 ({self.bf16})" if self.bf16 else "no native bf16")
        parts.append("VNNI" if self.vnni else "no VNNI")
        return ", ".join(parts) + f" (from {self.source})"


def parse_flags(cpuinfo_text: str) -> frozenset:
    """The flags of the first processor in a /proc/cpuinfo text; empty when it has none."""
    for line in cpuinfo_text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cap_flags(flags: frozenset, max_isa: str) -> frozenset:
    """`flags` without the extensions that oneDNN ignores under ONEDNN_MAX_CPU_ISA=`max_isa`."""
    above = _ABOVE.get(max_isa.strip().upper(), ())
    return frozenset(flag for flag in flags if not flag.startswith(above))


def read_features(environ: dict | None = None, cpuinfo: str | Path = "/proc/cpuinfo") -> CpuFeatures:
    """Probe the CPU (see the module docstring for the overrides); `environ` defaults to os.environ."""
    environ = os.environ if environ is None else environ
    forced = environ.get(FLAGS_VARIABLE)
    if forced is not None:
        flags, source = frozenset(forced.replace(",", " ").split()), f"{FLAGS_VARIABLE}={forced!r}"
    else:
        try:
            flags, source = parse_flags(Path(cpuinfo).read_text()), str(cpuinfo)
        except OSError:
            flags, source = frozenset(), f"no {cpuinfo}"
    if forced is None and not flags:
        return CpuFeatures(frozenset(), source, known=False, bf16_fallback=_torch_bf16())
    max_isa = environ.get("ONEDNN_MAX_CPU_ISA", "")
    if max_isa.strip().upper() in _ABOVE:
        flags, source = cap_flags(flags, max_isa), f"{source}, capped by ONEDNN_MAX_CPU_ISA={max_isa}"
    return CpuFeatures(flags, source)


def _torch_bf16() -> bool:
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@functools.cache
def cpu_features() -> CpuFeatures:
    """This process's probe, read once (tests that change the overrides call `cpu_features.cache_clear()`)."""
    return read_features()
