"""Does NNCF's overflow fix matter for a generator on this CPU's int8 kernels? Both settings, one run.

    python benchmarks/int8_overflow.py GEN.safetensors [--size 256] [--json OUT.json]
    ONEDNN_MAX_CPU_ISA=AVX2 RTSTYLE_CPU_FLAGS="avx2 fma" python benchmarks/int8_overflow.py GEN.safetensors

AVX2 without VNNI (AMD Zen 3, older Intel) multiplies u8 activations by s8 weights with `vpmaddubsw`, whose
16-bit pair sums saturate; NNCF's `OverflowFix.ENABLE` quantises every convolution's weights to 7 bits so
they cannot, `FIRST_LAYER_ONLY` (its default) only the first convolution's. This builds the int8 model of
`rtstyle.formats.int8.quantize` with each setting and checks it against eager fp32 on the held-out real frames, in the
kernels this process runs: with `ONEDNN_MAX_CPU_ISA=AVX2` OpenVINO's CPU plugin runs `jit_avx2_I8` (the
AVX2-only arithmetic, saturation included) instead of the VNNI `brgconv_avx512_I8`, so an AVX-512 machine
reproduces the other class's accuracy (not its speed). The recipe's own fallback rules are off here: each
setting is measured for both recipes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtstyle.cpu import cpu_features  # noqa: E402
from rtstyle.formats.int8.quantize import build_int8_openvino, overflow_fix  # noqa: E402
from rtstyle.weights import load_model  # noqa: E402


def conv_kernels(build) -> dict[str, int]:
    """Which primitive OpenVINO runs each int8 convolution with (e.g. jit_avx2_I8), counted."""
    from rtstyle.formats.openvino import compile_cpu

    compiled = compile_cpu(build.model, "f32", (1, 3, build.meta.height, build.meta.width))
    kinds: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "Conv" in info["layerType"].astype(str):
            key = f"{info['primitiveType'].astype(str)} ({info['runtimePrecision'].astype(str)})"
            kinds[key] = kinds.get(key, 0) + 1
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    generator, info = load_model(args.model)
    features = cpu_features()
    print(f"CPU: {features.describe()}; ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}; "
          f"rtstyle uses: {overflow_fix()}")
    results = []
    for setting in ("first_layer_only", "enable"):
        # target 1000 dB: never accepted early, so both recipes are built and checked
        build = build_int8_openvino(generator, info, (args.size, args.size), target_psnr=1000, min_psnr=0,
                                    overflow=setting, log=lambda message: print("  " + message, flush=True))
        for attempt in build.attempts:
            results.append({"overflow_fix": setting, "recipe": attempt.recipe, "psnr_min_db": attempt.psnr_min,
                            "psnr_mean_db": attempt.psnr_mean, "max_abs": attempt.max_abs})
            print(f"{setting:>16} {attempt.recipe:>16}: worst {attempt.psnr_min:.2f} dB, mean "
                  f"{attempt.psnr_mean:.2f} dB, max abs {attempt.max_abs:.3f}")
        print(f"{setting:>16} kernels: {conv_kernels(build)}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "size": args.size, "cpu": features.describe(),
                                         "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
