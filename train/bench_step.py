"""Training step time, precisions side by side: `python -m train.bench_step [--size 256 --variants fp32,bf16]`.

Builds one `CycleGANTrainer` per variant (same seed, same weights) at the reference's full size (ngf 64,
9 blocks, ndf 64, batch 1 by default) and times `train_step` on the same random batch, interleaving the
variants round by round so that load from other processes on a shared machine falls on all of them
alike. Data loading is not included. A variant is a precision (fp32, bf16, fp16), optionally with
`+cl` for channels-last memory layout (e.g. `bf16+cl`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from .config import TrainConfig
from .trainer import CycleGANTrainer


def parse_variant(text: str) -> tuple[str, bool]:
    precision, _, layout = text.partition("+")
    if layout not in ("", "cl"):
        raise ValueError(f"variant {text!r}: expected PRECISION or PRECISION+cl")
    return precision, layout == "cl"


def bench(variants: list[str], size: int, ngf: int, n_blocks: int, batch: int, rounds: int, warmup: int,
          device: str) -> dict[str, list[float]]:
    trainers = {}
    for v in variants:
        precision, channels_last = parse_variant(v)
        torch.manual_seed(0)
        cfg = TrainConfig(ngf=ngf, n_blocks=n_blocks, crop_size=size, load_size=size, precision=precision,
                          memory_format="channels_last" if channels_last else "contiguous", device=device)
        trainers[v] = CycleGANTrainer(cfg, device)
    gen = torch.Generator().manual_seed(0)
    real_a = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1  # (b, 3, size, size)
    real_b = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(warmup + rounds):
        for v, trainer in trainers.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            trainer.train_step(real_a, real_b)  # returns floats: the step has finished when it returns
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[v].append(dt)
            print(f"{'warm-up' if r < warmup else f'round {r - warmup + 1}'} {v}: {dt:.3f} s",
                  file=sys.stderr, flush=True)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.bench_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="fp32,bf16", help="comma-separated, e.g. fp32,bf16,bf16+cl [fp32,bf16]")
    p.add_argument("--size", type=int, default=256, help="crop size [256]")
    p.add_argument("--ngf", type=int, default=64, help="[64]")
    p.add_argument("--n-blocks", type=int, default=9, help="[9]")
    p.add_argument("--batch", type=int, default=1, help="[1]")
    p.add_argument("--rounds", type=int, default=3, help="timed steps per variant [3]")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first [1]")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads [torch's default]")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] [cpu]")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    times = bench(variants, args.size, args.ngf, args.n_blocks, args.batch, args.rounds, args.warmup, args.device)
    base = statistics.median(times[variants[0]])
    print(f"train_step, {args.size} px, ngf {args.ngf}, {args.n_blocks} blocks, batch {args.batch}, "
          f"{args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-up")
    print(f"{'variant':<10} {'median s':>9} {'min s':>8} {'max s':>8} {'img/s':>7} {'vs ' + variants[0]:>9}")
    for v in variants:
        med = statistics.median(times[v])
        print(f"{v:<10} {med:9.3f} {min(times[v]):8.3f} {max(times[v]):8.3f} {args.batch / med:7.3f} "
              f"{base / med:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
