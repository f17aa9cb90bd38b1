"""What the commands print: rich tables and progress bars for the results the library returns.

cli.py parses and calls; the shape of each command's console output lives here, with no logic of its own,
so a result (benchmark records, a conversion's progress, a score set) prints the same way wherever it
comes from. Results that are a line or two of text carry a `summary()` of their own in their module.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


def print_table(title: str, columns: dict[str, str]) -> None:
    """One row of named, already formatted values as a table on stdout (the scores of `evaluate`)."""
    table = Table(title=title)
    for name in columns:
        table.add_column(name, justify="right")
    table.add_row(*columns.values())
    Console().print(table)


def print_benchmark(model: str, records: list, console: Console, comparison: list[dict] = ()) -> None:
    """The benchmark's table (stdout, wide when piped), its per-variant notes and, for a `--compare` run,
    each model's fastest variant and their fps ratio (`benchmark.comparison`) on the console."""
    table = Table(title=f"{model}: speed ratio and accuracy vs eager fp32 PyTorch, same rounds")
    has = {key: any(key in r.extra for r in records if not r.error) for key in ("video", "live", "busy")}
    video_columns = ("video at", "e2e fps", "bare fps", "e2e/bare") if has["video"] else ()
    live_columns = ("live fps", "live/bare", "latency p50/p95 ms", "dropped") if has["live"] else ()
    busy_columns = ("busy ms", "busy/idle") if has["busy"] else ()
    compared = any(r.model for r in records)
    for name in ("model",) * compared + ("variant", "size", "GMACs", "batch", "ms (p10-p90)", "fps", "x fp32",
                                         "(rounds)", "max abs", "PSNR dB (worst)", "+MiB", "setup s") \
            + video_columns + live_columns + busy_columns:
        table.add_column(name, justify="left" if name in ("model", "variant") else "right")
    for r in records:
        size = f"{r.size[0]}x{r.size[1]}"
        first = (Path(r.model or model).name,) * compared  # a store name, or a file's name
        if r.error:
            table.add_row(*first, r.variant, size, "", str(r.batch), f"[red]{r.error[:60]}[/]")
            continue
        low, high = r.extra["ratio_rounds"][0], r.extra["ratio_rounds"][-1]
        e2e, live, busy = (r.extra.get(key) for key in ("video", "live", "busy"))
        table.add_row(*first, r.variant, size, f"{r.extra['macs'] / 1e9:.3g}", str(r.batch),
                      f"{r.ms_median:.1f} ({r.ms_p10:.0f}-{r.ms_p90:.0f})", f"{r.fps:.2f}", f"{r.ratio_vs_fp32:.2f}",
                      f"{low:.2f}-{high:.2f}", f"{r.max_abs_err:.3g}", f"{r.psnr_db:.1f} ({r.psnr_min_db:.1f})",
                      f"{r.added_mib:.0f}", f"{r.setup_s:.1f}",
                      *((e2e["processing"], f"{e2e['e2e_fps']:.2f}", f"{e2e['bare_fps']:.2f}",
                         f"{e2e['e2e_vs_bare']:.2f}") if e2e else ()),
                      *((f"{live['live_fps']:.2f}", f"{live['live_vs_bare']:.2f}",
                         f"{live['latency_median_ms']:.0f}/{live['latency_p95_ms']:.0f}", str(live["dropped"]))
                        if live else ()),
                      *((f"{busy['ms_median']:.1f}", f"{busy['busy_vs_idle']:.2f}") if busy else ()))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    for variant, backend in dict.fromkeys((r.variant, r.backend) for r in records if not r.error):
        console.print(f"{variant}: {backend}", markup=False)
    for row in comparison:
        console.print(f"fastest at {row['size'][0]}x{row['size'][1]} batch {row['batch']}: {model} "
                      f"{row['model_best']} {row['model_fps']:.2f} fps, {row['compare']} {row['compare_best']} "
                      f"{row['compare_fps']:.2f} fps: {row['fps_ratio']:.2f}x the fps for {row['macs_ratio']:.1f}x "
                      "fewer MACs, same rounds", markup=False)
    for r in (r for r in records if "baseline_vs_plain" in r.extra):
        console.print(f"baseline check at {r.size[0]}x{r.size[1]} batch {r.batch}: eager fp32 backend "
                      f"{r.ms_median:.1f} ms, plain torch.no_grad() loop {r.extra['plain_no_grad_ms']:.1f} ms "
                      f"(ratio {r.extra['baseline_vs_plain']:.2f}; near 1 means the baseline is sound)", markup=False)


class VideoProgress:
    """A progress bar per video with its fps, and a line per finished or failed file: the callbacks
    `rtstyle.video.convert_videos` takes (`on_start`, `on_progress`, `on_done`). Use as a context manager."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[fps]:.1f} fps"), TimeRemainingColumn(), console=console)
        self.tasks: dict[Path, int] = {}
        self.started: dict[Path, float] = {}

    def __enter__(self) -> VideoProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def on_start(self, src: Path, dst: Path, info) -> None:
        self.tasks[src] = self.progress.add_task(src.name, total=info.frames or None, fps=0.0)
        self.started[src] = time.perf_counter()
        self.progress.console.print(f"{src} ({info.width}x{info.height}, {float(info.rate):.3f} fps, "
                                    f"{info.frames} frames{', audio ' + info.audio if info.audio else ''}) -> {dst}")

    def on_progress(self, src: Path, done: int) -> None:
        self.progress.update(self.tasks[src], completed=done,
                             fps=done / max(time.perf_counter() - self.started[src], 1e-9))

    def on_done(self, result, src: Path, error: str | None) -> None:
        say = self.progress.console.print
        if error:
            say(f"[red]failed[/] {src}: {error}")
            return
        if result is None:
            return
        if src in self.tasks:
            self.progress.update(self.tasks[src], completed=result.frames, total=result.frames)
        for note in result.notes:
            say(f"  note: {note}")
        say(f"  {result.frames} frames in {result.seconds:.1f} s: [bold]{result.fps:.2f} fps[/] | {result.times.summary()}")
