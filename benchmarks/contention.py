"""Threads and wait policies under a busy core (issue 13, item 5): which setting keeps half the throughput.

On a 2-core machine, PyTorch with two OpenMP threads was seen running ~10x slower while another process kept
one core busy: its threads spin at each barrier waiting for the one that lost its core. This times the
demo model (or --model) at one size for each setting below, in a child process per setting (OpenMP reads its
wait policy when the library loads), idle and with one spinning process beside it, alternating rounds:

- torch: 2 threads (default), 2 threads with OMP_WAIT_POLICY=PASSIVE or a shorter GOMP_SPINCOUNT, 1 thread;
- onnxruntime: default (spinning), intra-op spinning off, 1 thread;
- openvino (int8 where it builds, else f32): default, 1 stream of 1 thread.

    python benchmarks/contention.py --model demo --size 256 --rounds 6 --json benchmarks/contention-zen4.json

It prints one line per setting: median ms idle, median ms busy, busy/idle. `benchmark --busy 1` gives the
same ratio for the settings rtstyle uses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `import rtstyle` sets OMP_WAIT_POLICY=PASSIVE unless it is set, so libgomp's own default (no policy: spin
# 300,000 times, then sleep) is asked for explicitly: ACTIVE with that spin count behaves the same.
LIBGOMP_DEFAULT = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}
SETTINGS = {  # name: (backend, environment, options)
    "torch 2 threads": ("torch", LIBGOMP_DEFAULT, {}),
    "torch 2 threads OMP passive": ("torch", {"OMP_WAIT_POLICY": "PASSIVE"}, {}),
    "torch 2 threads spin 10000": ("torch", {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "10000"}, {}),
    "torch 2 threads spin 30000": ("torch", {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "30000"}, {}),
    "torch 1 thread": ("torch", LIBGOMP_DEFAULT, {"threads": 1}),
    "onnxruntime default": ("onnxruntime", {}, {}),
    "onnxruntime no spinning": ("onnxruntime", {}, {"spin": False}),
    "onnxruntime 1 thread": ("onnxruntime", {}, {"threads": 1}),
    "openvino default": ("openvino", {}, {}),
    "openvino 1 thread": ("openvino", {}, {"threads": 1}),
}


def child(backend: str, options: dict, model: str, size: int, rounds: int, per_round: int) -> dict:
    """In the child: time `backend` idle and busy, alternating rounds; returns both lists of ms."""
    import torch

    sys.path.insert(0, str(ROOT))
    from rtstyle.bench_live import BusyCores
    from rtstyle.backends import BackendOptions, create_backend

    threads = options.get("threads")
    if backend == "torch":
        if threads:
            torch.set_num_threads(threads)
        runner = create_backend(model, BackendOptions(backend="torch", precision="fp32", device="cpu"))
        infer = runner.infer
    elif backend == "onnxruntime":
        import onnxruntime as ort

        from rtstyle.backends.onnxruntime_backend import onnx_source

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        if options.get("spin") is False:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        from rtstyle.store import resolve_model

        session = ort.InferenceSession(str(onnx_source(resolve_model(model))), so, providers=["CPUExecutionProvider"])
        infer = lambda x: session.run(None, {"input": x.numpy()})  # noqa: E731
    else:
        runner = create_backend(model, BackendOptions(backend="openvino", precision="auto", device="cpu"))
        if threads:  # recompile the same IR with one stream of one thread
            from rtstyle.formats.openvino import compile_cpu

            compiled = compile_cpu(runner.model, runner.hint, None if runner.meta.dynamic else
                                   (1, 3, runner.meta.height, runner.meta.width), threads)
            request = compiled.create_infer_request()
            infer = lambda x: request.infer({"input": x.numpy()})  # noqa: E731
        else:
            infer = runner.infer
    x = torch.rand(1, 3, size, size) * 2 - 1
    for _ in range(2):
        infer(x)
    idle, busy = [], []
    for _ in range(rounds):
        for kept, cores in ((idle, 0), (busy, 1)):
            with BusyCores(cores):
                for _ in range(per_round):
                    start = time.perf_counter()
                    infer(x)
                    kept.append(1000 * (time.perf_counter() - start))
    return {"idle_ms": idle, "busy_ms": busy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=3)
    parser.add_argument("--only", help="comma list of setting names to run (default: all)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, options = json.loads(args.child)
        print(json.dumps(child(backend, options, args.model, args.size, args.rounds, args.per_round)))
        return 0
    wanted = [s.strip() for s in args.only.split(",")] if args.only else list(SETTINGS)
    results = {}
    for name in wanted:
        backend, env, options = SETTINGS[name]
        run = subprocess.run([sys.executable, __file__, "--model", args.model, "--size", str(args.size), "--rounds",
                              str(args.rounds), "--per-round", str(args.per_round),
                              "--child", json.dumps([backend, options])],
                             env={**os.environ, **env}, capture_output=True, text=True, timeout=1200)
        if run.returncode != 0:
            print(f"{name}: failed: {run.stderr.strip().splitlines()[-1:]}")
            continue
        times = json.loads(run.stdout.strip().splitlines()[-1])
        idle, busy = statistics.median(times["idle_ms"]), statistics.median(times["busy_ms"])
        results[name] = {"idle_ms": idle, "busy_ms": busy, "busy_vs_idle": busy / idle, "env": env,
                         "options": options, **times}
        print(f"{name:32s} idle {idle:8.1f} ms   busy {busy:8.1f} ms   busy/idle {busy / idle:5.2f}", flush=True)
    if args.json:
        machine = subprocess.run(["grep", "-m1", "model name", "/proc/cpuinfo"], capture_output=True, text=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "cpu": machine.stdout.strip(),
                                         "load_average": os.getloadavg(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
