"""rtstyle's command line: parses arguments and calls library functions, nothing more.

Each subcommand is a pair in `COMMANDS`: `add_<name>(subparsers)` declares its options, `run_<name>(args) ->
exit code` calls into `rtstyle`, `train` or `engines` and prints. Errors the user can fix are raised by the
library as `rtstyle.errors.UserError` (or one of the older specific types in `user_errors`) and printed here
as one line (exit code 2); anything else is a bug and shows its traceback. Partial failures (some files
could not be translated) exit 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

from rtstyle.errors import UserError

console = Console(stderr=True, highlight=False, soft_wrap=True)

MODEL_HELP = (
    "a weights file (.safetensors or reference .pth) or a model name looked up in the store "
    "($RTSTYLE_HOME/models, default ~/.cache/rtstyle/models)"
)


FAST_HELP = "run the model's distilled student from the store instead (`python cli.py distill` makes one)"


def add_backend_args(p) -> None:
    from rtstyle.backends import BackendOptions
    from rtstyle.config import add_dataclass_args

    add_dataclass_args(p, BackendOptions)
    p.add_argument("--fast", action="store_true", help=FAST_HELP)


def apply_fast(args) -> None:
    """--fast: args.model becomes its student (said on the console), or a clear error with the distill command."""
    if getattr(args, "fast", False):
        from rtstyle.students import fast_model

        args.model = fast_model(args.model, log=console.print)


def backend_from_args(args):
    from rtstyle.backends import BackendOptions, create_backend
    from rtstyle.config import dataclass_from_args

    apply_fast(args)
    return create_backend(args.model, dataclass_from_args(BackendOptions, args))


def add_stabilize_args(p) -> None:
    p.add_argument("--stabilize", nargs="?", type=float, const=0.93, default=None, metavar="STRENGTH",
                   help="steady the output: blend it with the previous output warped along the input's optical "
                        "flow, where the flow is trusted (rtstyle/stabilize.py); STRENGTH in [0, 1) [0.93; off "
                        "without the option]")


def add_skip_similar_arg(p) -> None:
    p.add_argument("--skip-similar", type=float, default=None, metavar="THRESHOLD",
                   help="live sources: reuse the last output when the input's mean luma difference (0..1, at 32 px) "
                        "to the last translated input is below THRESHOLD, e.g. 0.01 [off]")


def stabilize_from_args(args):
    from rtstyle.stabilize import StabilizeOptions

    return None if args.stabilize is None else StabilizeOptions(strength=args.stabilize)


# --- translate --------------------------------------------------------------------------------------------
def add_translate(sub) -> None:
    p = sub.add_parser("translate", help="translate image files, folders or globs",
                       description="Translate images; writes OUT/<stem>.png at each input's own size.")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--out", required=True, type=Path,
                   help="output folder (or, for one input, an image file such as result.png)")
    p.add_argument("--size", default="native",
                   help="'native' (pad to a multiple of 4, crop back) or N (resize short side to N) [native]")
    add_backend_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")


def run_translate(args) -> int:
    from rtstyle.io.inputs import IMAGE_SUFFIXES, expand_inputs
    from rtstyle.transforms import parse_size
    from rtstyle.translate import output_paths, translate_images

    size = parse_size(args.size)
    inputs = expand_inputs(args.inputs, IMAGE_SUFFIXES, out=args.out)
    output_paths(inputs, args.out)  # a bad --out is refused before the model loads
    backend = backend_from_args(args)
    console.print(f"[bold]{len(inputs)}[/] image(s) with {args.model} "
                  f"({backend.info.direction or 'direction unknown'}) via {backend.describe()}")

    def on_done(src, dst, error):
        if error:
            console.print(f"[red]skipped[/] {src}: {error}")
        else:
            console.print(f"{src} -> {dst}")

    report = translate_images(inputs, backend, args.out, size=size, overwrite=args.overwrite, on_done=on_done)
    console.print(f"[bold]{len(report.written)}[/] written to {args.out}, [bold]{len(report.failed)}[/] failed")
    return 1 if report.failed else 0


# --- import-weights ---------------------------------------------------------------------------------------
def add_import_weights(sub) -> None:
    p = sub.add_parser("import-weights", help="convert a reference CycleGAN .pth into the model store",
                       description="Convert a reference .pth generator (official download or "
                                   "latest_net_G_A.pth) into the native format in the store.")
    p.add_argument("file", type=Path, help="the .pth file")
    p.add_argument("--name", required=True, help="name to store it under (then --model NAME)")
    p.add_argument("--direction", help="what it translates, e.g. horse->zebra (known for official names)")
    p.add_argument("--train-size", type=int, default=256, help="crop size it was trained at [256]")
    p.add_argument("--overwrite", action="store_true", help="replace a stored model of the same name")


def run_import_weights(args) -> int:
    from rtstyle.store import import_reference

    target, info = import_reference(args.file, args.name, args.direction, args.train_size, args.overwrite)
    console.print(f"imported {args.file} ({info.config.ngf} filters, {info.config.n_blocks} blocks, "
                  f"{info.direction or 'direction unknown'}) -> {target}")
    return 0


# --- download ---------------------------------------------------------------------------------------------
def add_download(sub) -> None:
    from rtstyle.store import OFFICIAL_DIRECTIONS

    p = sub.add_parser("download", help="download an official CycleGAN pretrained generator",
                       description="Download an official pretrained generator into the store. "
                                   f"Names: {', '.join(OFFICIAL_DIRECTIONS)}. "
                                   "RTSTYLE_MODEL_URL may point at a mirror.")
    p.add_argument("name", choices=list(OFFICIAL_DIRECTIONS), metavar="NAME", help="official model name")
    p.add_argument("--overwrite", action="store_true", help="download again even if stored")
    p.add_argument("--sha256", help="the file's expected sha256: a different download is refused, nothing stored")


def run_download(args) -> int:
    from rtstyle.download import download_official_model

    path = download_official_model(args.name, overwrite=args.overwrite, sha256=args.sha256,
                                   log=lambda message: console.print(message, markup=False))
    console.print(f"stored {args.name} -> {path}")
    return 0


# --- models -----------------------------------------------------------------------------------------------
def add_models(sub) -> None:
    sub.add_parser("models", help="list the models --model can name")


def run_models(args) -> int:
    from rtstyle.store import resolve_model, store_dir, stored_models
    from rtstyle.students import relations
    from rtstyle.weights import WeightsError, load_model

    console.print(f"model store: {store_dir()}")
    names = stored_models()
    related = relations(names)
    for name in names:
        try:
            _, info = load_model(name)
            print(f"{name}\t{info.direction or '?'}\tngf={info.config.ngf} blocks={info.config.n_blocks}"
                  f"\t{resolve_model(name)}" + (f"\t{related[name]}" if name in related else ""))
        except WeightsError as e:
            print(f"{name}\tunreadable: {e}")
    return 0


# --- datasets ---------------------------------------------------------------------------------------------
def add_datasets(sub) -> None:
    p = sub.add_parser("datasets", help="make the offline demo dataset or download an official one")
    dsub = p.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    make = dsub.add_parser("make-demo", help="build the unpaired demo dataset from photos shipped in packages",
                           description="Domain A: crops of photos from scikit-image/scikit-learn; domain B: "
                                       "crops of other photos through the 'vintage' colour transform; testB is "
                                       "the transformed testA (paired ground truth). Needs the [data] extra.")
    make.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    make.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset) [0]")
    make.add_argument("--train-per-domain", type=int, default=400, help="training crops per domain [400]")
    make.add_argument("--test-count", type=int, default=40, help="paired test crops [40]")
    make.add_argument("--crop", type=int, default=144, help="crop side in pixels [144]")
    make.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    dl = dsub.add_parser("download", help="download an official CycleGAN dataset (reference layout)")
    dl.add_argument("name", help="horse2zebra, monet2photo, ... (see the error for the full list)")
    dl.add_argument("--root", type=Path, default=Path("datasets"), help="folder to put NAME/ in [datasets]")


def run_datasets(args) -> int:
    from train.datasets import download_dataset, make_demo_dataset

    if args.datasets_command == "make-demo":
        summary = make_demo_dataset(args.out, seed=args.seed, train_per_domain=args.train_per_domain,
                                    test_count=args.test_count, size=args.crop, overwrite=args.overwrite)
        console.print(f"demo dataset in {args.out}: {summary['counts']} ({summary['transform']})")
    else:
        console.print(f"dataset {args.name} -> {download_dataset(args.name, args.root)}")
    return 0


# --- evaluate ---------------------------------------------------------------------------------------------
def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model on a dataset's test split (PSNR/SSIM or cycle error), "
                                        "or a translated video's flicker (--video)",
                       description="With paired ground truth (testB/NAME = translation of testA/NAME) reports "
                                   "PSNR and SSIM next to the identity baseline; otherwise, given "
                                   "--model-back, the cycle-consistency error on testA. --video SOURCE TRANSLATED "
                                   "reports the warping error (Lai et al. 2018) instead; no model needed.")
    p.add_argument("--model", help=MODEL_HELP + " (needed with --dataroot)")
    p.add_argument("--dataroot", type=Path, help="dataset folder with testA (and testB)")
    add_evaluate_video_args(p)
    p.add_argument("--model-back", help="the reverse generator (B->A), for the cycle-consistency score")
    p.add_argument("--size", default="native", help="processing size: native or short side N [native]")
    p.add_argument("--json", type=Path, help="also write the scores as JSON here")
    add_backend_args(p)


def run_evaluate(args) -> int:
    import json

    from rich.table import Table

    from rtstyle.backends import BackendOptions, create_backend
    from rtstyle.config import dataclass_from_args
    from rtstyle.transforms import parse_size
    from train.evaluate import as_record, evaluate_cycle, evaluate_paired, has_paired_ground_truth

    if args.video:
        return run_evaluate_video(args)
    if not args.model or not args.dataroot:
        raise ValueError("evaluate needs --model and --dataroot (or --video SOURCE TRANSLATED)")
    size = parse_size(args.size)
    backend = backend_from_args(args)
    table = Table(title=f"{args.model} on {args.dataroot}")
    if has_paired_ground_truth(args.dataroot):
        scores = evaluate_paired(backend, args.dataroot, size)
        for col in ("images", "PSNR model", "PSNR identity", "SSIM model", "SSIM identity"):
            table.add_column(col, justify="right")
        table.add_row(str(scores.images), f"{scores.psnr:.2f} dB", f"{scores.identity_psnr:.2f} dB",
                      f"{scores.ssim:.4f}", f"{scores.identity_ssim:.4f}")
    elif args.model_back:
        back = create_backend(args.model_back, dataclass_from_args(BackendOptions, args))
        scores = evaluate_cycle(backend, back, args.dataroot, size)
        for col in ("images", "cycle L1", "cycle PSNR"):
            table.add_column(col, justify="right")
        table.add_row(str(scores.images), f"{scores.cycle_l1:.4f}", f"{scores.cycle_psnr:.2f} dB")
    else:
        raise UserError(f"{args.dataroot} has no paired ground truth (testB with testA's file names); "
                         "pass --model-back with the reverse generator to score cycle consistency")
    Console().print(table)
    if args.json:
        record = as_record(scores) | {"model": str(args.model), "dataroot": str(args.dataroot)}
        args.json.write_text(json.dumps(record, indent=2))
    return 0


def add_evaluate_video_args(p) -> None:
    p.add_argument("--video", nargs=2, type=Path, metavar=("SOURCE", "TRANSLATED"),
                   help="warping error of TRANSLATED along SOURCE's optical flow, SOURCE's own as the floor, ratio")
    p.add_argument("--per-frame", type=Path, metavar="PERFRAME",
                   help="with --video: the per-frame translation, for the SSIM of TRANSLATED against it")
    p.add_argument("--flow", choices=("dis", "farneback"), default="dis", help="with --video: optical flow [dis]")


def run_evaluate_video(args) -> int:
    import json

    from rich.table import Table

    from rtstyle.temporal import score_videos

    source, translated = args.video
    scores = score_videos(source, translated, args.per_frame, args.flow)
    table = Table(title=f"temporal consistency of {translated} along {source}'s flow ({scores.flow})")
    for col in ("frames", "warp error source", "warp error translated", "ratio", "masked", "SSIM vs per-frame"):
        table.add_column(col, justify="right")
    table.add_row(str(scores.frames), f"{scores.source_error:.6f}", f"{scores.translated_error:.6f}",
                  f"{scores.ratio:.3f}", f"{scores.masked_fraction:.1%}",
                  "-" if scores.ssim_vs_per_frame is None else f"{scores.ssim_vs_per_frame:.4f}")
    Console().print(table)
    if args.json:
        record = scores.as_record() | {"source": str(source), "translated": str(translated),
                                       "per_frame": str(args.per_frame) if args.per_frame else None}
        args.json.write_text(json.dumps(record, indent=2))
    return 0


# --- export -----------------------------------------------------------------------------------------------
def add_export(sub) -> None:
    from engines import FORMATS
    from engines.options import ExportOptions
    from rtstyle.config import add_dataclass_args

    p = sub.add_parser(
        "export", help="compile a model to ONNX, a TensorRT engine or OpenVINO IR",
        description="Export a generator and check the artifact against PyTorch fp32 through its own runtime "
                    "(prints the max abs error; fails above the tolerance). Writes next to the weights (in the "
                    "store for a store name) unless --out is given; run it with --model ARTIFACT.")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--format", required=True, choices=FORMATS, help="artifact format")
    p.add_argument("--out", type=Path, help="output file (.onnx, .engine, .xml) or OpenVINO folder")
    add_dataclass_args(p, ExportOptions)
    p.add_argument("--overwrite", action="store_true", help="replace an artifact that already exists")


def run_export(args) -> int:
    from engines import export_model
    from engines.options import ExportOptions
    from rtstyle.config import dataclass_from_args

    options = dataclass_from_args(ExportOptions, args)
    result = export_model(args.model, args.format, options, out=args.out, overwrite=args.overwrite,
                          log=lambda message: console.print(message, markup=False))
    for note in result.notes:
        console.print(f"  {note}", markup=False)
    if result.psnr_db is not None:
        console.print(f"worst-frame PSNR vs PyTorch fp32 on held-out real frames: [bold]{result.psnr_db:.1f} dB[/] "
                      f"(bound {result.psnr_bound:g} dB; max abs {result.max_abs_error:.2e})")
    else:
        console.print(f"max abs error vs PyTorch fp32: [bold]{result.max_abs_error:.2e}[/] "
                      f"(tolerance {result.tolerance:g})")
    console.print(f"wrote {result.path}  (run it: --model {result.path})")
    return 0


# --- train ------------------------------------------------------------------------------------------------
def add_train(sub) -> None:
    from rtstyle.config import add_dataclass_args
    from train.config import TrainConfig

    p = sub.add_parser("train", help="train CycleGAN generators on unpaired image folders",
                       description="Learn G_A (A->B) and G_B (B->A) from DATAROOT/trainA and DATAROOT/trainB the "
                                   "way the reference CycleGAN does. Writes OUT/NAME/{last.pt, G_A.safetensors, "
                                   "G_B.safetensors, config.json, losses.csv, losses.png, samples/}. Several "
                                   "processes: torchrun --nproc-per-node N cli.py train ...")
    add_dataclass_args(p, TrainConfig)
    p.add_argument("--resume", action="store_true",
                   help="continue OUT/NAME from its last.pt with its saved config (budgets, logging, device "
                        "and the schedule length may be given anew)")


def run_train(args) -> int:
    from dataclasses import fields

    from rtstyle.config import given_options
    from train.config import TrainConfig
    from train.loop import resolve_config, train

    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    config = resolve_config(options, resume=args.resume, given=given_options(args))
    result = train(config, resume=args.resume, console=console)
    return {"SIGINT": 130, "SIGTERM": 143}.get(result.stopped_by or "", 0)


# --- distill ----------------------------------------------------------------------------------------------
def add_distill(sub) -> None:
    from rtstyle.config import add_dataclass_args
    from train.distill_config import DistillConfig

    p = sub.add_parser("distill", help="distil a full-size generator into a small, fast student",
                       description="Train a small student generator (default ngf 16, 6 blocks: about 1/20 of the "
                                   "full generator's MACs) to reproduce --teacher's outputs on images (and video "
                                   "frames) of its input domain. Writes OUT/NAME/{student.safetensors, last.pt, "
                                   "config.json, losses.csv, fidelity.csv, losses.png, samples/} and installs the "
                                   "student in the store as NAME, so --model TEACHER --fast runs it.")
    add_dataclass_args(p, DistillConfig)
    p.add_argument("--resume", action="store_true",
                   help="continue OUT/NAME from its last.pt with its saved config (budgets, logging and device may "
                        "be given anew)")


def run_distill(args) -> int:
    from dataclasses import fields

    from rtstyle.config import given_options
    from train.distill import distill, resolve_config
    from train.distill_config import DistillConfig

    options = {f.name: getattr(args, f.name) for f in fields(DistillConfig) if hasattr(args, f.name)}
    config = resolve_config(options, resume=args.resume, given=given_options(args))
    result = distill(config, resume=args.resume, console=console)
    return {"SIGINT": 130, "SIGTERM": 143}.get(result.stopped_by or "", 0)


# --- plot -------------------------------------------------------------------------------------------------
def add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw a training run's loss curves",
                       description="Draw RUN/losses.csv into RUN/losses.png (or --out).")
    p.add_argument("run", type=Path, help="a run folder (runs/NAME) or its losses.csv")
    p.add_argument("--out", type=Path, help="PNG to write [RUN/losses.png]")


def run_plot(args) -> int:
    from train.plot import plot_losses

    console.print(f"wrote {plot_losses(args.run, args.out)}")
    return 0


# --- video ------------------------------------------------------------------------------------------------
SIZE_HELP_VIDEO = ("processing size: N resizes the short side to N (a multiple of 4) and scales the result back; "
                   "'native' pads to a multiple of 4 [256, the official models' training size]")


def add_video(sub) -> None:
    p = sub.add_parser("video", help="translate video files (frame count, rate, rotation and audio kept)",
                       description="Translate every frame of video files. One input may write to a file --out; "
                                   "several write OUT/<stem>_<model>.mp4. Audio is copied unchanged.")
    p.add_argument("inputs", nargs="+", help="video files, folders or glob patterns")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--out", required=True, type=Path, help="output file (one input) or folder")
    p.add_argument("--size", default="256", help=SIZE_HELP_VIDEO)
    p.add_argument("--batch", type=int, default=1, help="frames per backend call (helps GPUs) [1]")
    add_backend_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    add_stabilize_args(p)


def run_video(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rtstyle.video import ConversionInterrupted, convert_videos, output_paths
    from rtstyle.io.inputs import VIDEO_SUFFIXES, expand_inputs
    from rtstyle.pipeline import FrameTranslator
    from rtstyle.transforms import parse_size

    size = parse_size(args.size)
    stabilize = stabilize_from_args(args)
    inputs = expand_inputs(args.inputs, VIDEO_SUFFIXES, out=args.out)
    backend = backend_from_args(args)
    model_name = backend.info.name or Path(args.model).stem
    pairs = list(zip(inputs, output_paths(inputs, args.out, model_name)))
    console.print(f"[bold]{len(inputs)}[/] video(s) with {args.model} "
                  f"({backend.info.direction or 'direction unknown'}) via {backend.describe()}, "
                  f"size {size or 'native'}, batch {args.batch}"
                  + (f", stabilize {stabilize.strength:g}" if stabilize else ""))
    translator = FrameTranslator(backend, size)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[fps]:.1f} fps"), TimeRemainingColumn(), console=console,
                        transient=False)
    tasks: dict = {}

    started: dict = {}

    def on_start(src, dst, info):
        tasks[src], started[src] = progress.add_task(src.name, total=info.frames or None, fps=0.0), time.perf_counter()
        progress.console.print(f"{src} ({info.width}x{info.height}, {float(info.rate):.3f} fps, "
                               f"{info.frames} frames{', audio ' + info.audio if info.audio else ''}) -> {dst}")

    def on_progress(src, done):
        progress.update(tasks[src], completed=done, fps=done / max(time.perf_counter() - started[src], 1e-9))

    def on_done(result, src, error):
        if result is not None and not error:
            if src in tasks:
                progress.update(tasks[src], completed=result.frames, total=result.frames)
            for note in result.notes:
                progress.console.print(f"  note: {note}")
            progress.console.print(f"  {result.frames} frames in {result.seconds:.1f} s: [bold]{result.fps:.2f} fps[/]"
                                   f" | {result.times.summary()}")
        if error:
            progress.console.print(f"[red]failed[/] {src}: {error}")

    try:
        with progress:
            report = convert_videos(pairs, translator, batch=args.batch, overwrite=args.overwrite, stabilize=stabilize,
                                    on_start=on_start, on_progress=on_progress, on_done=on_done)
    except ConversionInterrupted as e:
        r = e.result
        kept = (f"the {r.frames} frames translated so far are in {r.output} (playable, named as partial)"
                if r.output else "no frame had been written; nothing was kept")
        console.print(f"[yellow]interrupted[/] during {r.source}: {kept}")
        return 130
    frames = sum(r.frames for r in report.done)
    seconds = sum(r.seconds for r in report.done)
    console.print(f"[bold]{len(report.done)}[/] written, [bold]{len(report.failed)}[/] failed; "
                  f"{frames} frames in {seconds:.1f} s: [bold]{frames / seconds if seconds else 0:.2f} fps[/] overall")
    return 1 if report.failed else 0


# --- webcam -----------------------------------------------------------------------------------------------
def add_webcam(sub) -> None:
    from rtstyle.config import add_dataclass_args
    from rtstyle.live import LiveOptions

    p = sub.add_parser("webcam", help="translate a camera or stream live, in a window",
                       description="Translate a live source in a window (keys: q/Esc quit, s snapshot, space "
                                   "original/translated, +/- processing size, o overlay). Live sources keep only "
                                   "the newest frame, so latency does not grow when translation is slower.")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--source", default="0", help="camera index, rtsp:// or http(s):// stream (e.g. MJPEG), "
                                                 "video file, or folder/glob of images [0]")
    p.add_argument("--size", default="256", help=SIZE_HELP_VIDEO)
    add_backend_args(p)
    add_dataclass_args(p, LiveOptions)
    add_stabilize_args(p)
    add_skip_similar_arg(p)


def run_webcam(args) -> int:
    from rtstyle.config import dataclass_from_args
    from rtstyle.io.display import check_display
    from rtstyle.live import LiveOptions, run_live
    from rtstyle.pipeline import FrameTranslator
    from rtstyle.io.sources import open_source
    from rtstyle.transforms import parse_size

    options = dataclass_from_args(LiveOptions, args, size=parse_size(args.size))
    if options.show:
        check_display()  # before loading anything: a clear error instead of a crash
    if options.record and options.record.exists() and not options.overwrite:
        raise UserError(f"{options.record} exists; pass --overwrite to replace it")
    backend = backend_from_args(args)
    log = lambda message: console.print(message)  # noqa: E731
    source = open_source(args.source, realtime=options.show, log=log)
    console.print(f"{source.name} ({'live, newest frame only' if source.live else 'every frame'}) with "
                  f"{args.model} via {backend.describe()}, size {options.size or 'native'}")
    report = run_live(source, FrameTranslator(backend, options.size), options, log=log,
                      stabilize=stabilize_from_args(args), skip_similar=args.skip_similar)
    median, worst = report.latency_ms()
    console.print(f"{report.ended}: {report.frames} frames in {report.seconds:.1f} s ({report.fps:.2f} fps), "
                  f"{report.dropped} dropped, latency median {median:.0f} ms / max {worst:.0f} ms"
                  + (f", {report.skipped} skipped as similar" if args.skip_similar else ""))
    if report.frames:
        console.print(f"  {report.times.summary()}")
    if report.recorded:
        console.print(f"recorded -> {report.recorded}")
    if report.error:
        console.print(f"[red]error:[/] {report.error}")
        return 1
    return 0


# --- demo -------------------------------------------------------------------------------------------------
def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="see it work: the bundled model on a bundled real clip (or --source 0)",
                       description="Translate a bundled 4-second clip with the bundled demo model (photo -> "
                                   "vintage, trained by this project on CPU), write the video and a side-by-side "
                                   "PNG to --out (replacing the demo's own files there), show it in a window "
                                   "when a display exists, and print the fps. --source makes it a live demo.")
    p.add_argument("--model", default="demo", help=f"{MODEL_HELP} [demo]")
    p.add_argument("--source", help="camera index, stream URL or video file for a live demo [the bundled clip]")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder [runs/demo]")
    p.add_argument("--size", default="256", help="processing size: short side N or 'native' [256]")
    p.add_argument("--show", action=argparse.BooleanOptionalAction, default=None,
                   help="open a window (default: when a display exists)")
    p.add_argument("--duration", type=float, help="live demo: stop after this many seconds")
    add_backend_args(p)
    add_stabilize_args(p)


def run_demo(args) -> int:
    from rtstyle.demo import display_wanted, run_demo, run_live_demo
    from rtstyle.transforms import parse_size

    size, show = parse_size(args.size), display_wanted(args.show)
    backend = backend_from_args(args)
    console.print(f"demo model {args.model} ({backend.info.direction or 'direction unknown'}) via "
                  f"{backend.describe()}")
    if args.source is not None:
        report = run_live_demo(backend, args.source, args.out, size, show, args.duration, log=console.print,
                               stabilize=stabilize_from_args(args))
        console.print(f"{report.frames} frames at [bold]{report.fps:.1f} fps[/]"
                      + (f"; recorded -> {report.recorded}" if report.recorded else ""))
        return 1 if report.error else 0
    report = run_demo(backend, args.out, size=size, show=show, log=console.print, stabilize=stabilize_from_args(args))
    console.print(f"translated {report.frames} frames at [bold]{report.fps:.1f} fps[/] (decode + translate + encode)")
    console.print(f"video: {report.video}\nside by side: {report.side_by_side}")
    if not show:
        console.print("no display here: nothing shown (open the files above, or run with a display)")
    return 0


# --- benchmark --------------------------------------------------------------------------------------------
def add_benchmark(sub) -> None:
    from rtstyle.benchmark import BenchmarkSettings
    from rtstyle.config import add_dataclass_args

    p = sub.add_parser(
        "benchmark", help="compare backends' speed and accuracy against eager fp32 PyTorch, interleaved",
        description="Times every variant round by round in one process (so a noisy machine slows all alike) and "
                    "reports median ms and spread, fps, the speed ratio to eager fp32 from the same rounds, max abs "
                    "error and PSNR against fp32 on real frames, and memory. Variants are backend[:precision]"
                    "[+compile], e.g. torch, openvino:bf16, openvino:int8, torch:bf16+compile.")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    add_dataclass_args(p, BenchmarkSettings)
    p.add_argument("--json", type=Path, help="also write the records, settings and machine description here")
    p.add_argument("--fast", action="store_true", help=FAST_HELP)


def run_benchmark(args) -> int:
    from rich.table import Table

    from rtstyle.benchmark import BenchmarkSettings, run_benchmark, write_report
    from rtstyle.config import dataclass_from_args

    apply_fast(args)
    settings = dataclass_from_args(BenchmarkSettings, args)
    command = "python cli.py " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["benchmark"] else None
    records, document = run_benchmark(args.model, settings, lambda message: console.print(message, markup=False),
                                      command)
    table = Table(title=f"{args.model}: speed ratio and accuracy vs eager fp32 PyTorch, same rounds")
    video_columns = ("video at", "e2e fps", "bare fps", "e2e/bare") if args.video else ()
    for name in ("variant", "size", "GMACs", "batch", "ms (p10-p90)", "fps", "x fp32", "(rounds)", "max abs",
                 "PSNR dB (worst)", "+MiB", "setup s") + video_columns:
        table.add_column(name, justify="left" if name == "variant" else "right")
    for r in records:
        if r.error:
            table.add_row(r.variant, f"{r.size[0]}x{r.size[1]}", "", str(r.batch), f"[red]{r.error[:60]}[/]")
            continue
        low, high = r.extra["ratio_rounds"][0], r.extra["ratio_rounds"][-1]
        e2e = r.extra.get("video")
        table.add_row(r.variant, f"{r.size[0]}x{r.size[1]}", f"{r.extra['macs'] / 1e9:.3g}", str(r.batch),
                      f"{r.ms_median:.1f} ({r.ms_p10:.0f}-{r.ms_p90:.0f})", f"{r.fps:.2f}", f"{r.ratio_vs_fp32:.2f}",
                      f"{low:.2f}-{high:.2f}", f"{r.max_abs_err:.3g}", f"{r.psnr_db:.1f} ({r.psnr_min_db:.1f})",
                      f"{r.added_mib:.0f}", f"{r.setup_s:.1f}",
                      *((e2e["processing"], f"{e2e['e2e_fps']:.2f}", f"{e2e['bare_fps']:.2f}",
                         f"{e2e['e2e_vs_bare']:.2f}") if e2e else ()))
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    for variant, backend in dict.fromkeys((r.variant, r.backend) for r in records if not r.error):
        console.print(f"{variant}: {backend}", markup=False)
    for r in (r for r in records if "baseline_vs_plain" in r.extra):
        console.print(f"baseline check at {r.size[0]}x{r.size[1]} batch {r.batch}: eager fp32 backend "
                      f"{r.ms_median:.1f} ms, plain torch.no_grad() loop {r.extra['plain_no_grad_ms']:.1f} ms "
                      f"(ratio {r.extra['baseline_vs_plain']:.2f}; near 1 means the baseline is sound)", markup=False)
    if args.json:
        write_report(args.json, document)
        console.print(f"wrote {args.json}")
    return 0


COMMANDS = {
    "translate": (add_translate, run_translate),
    "import-weights": (add_import_weights, run_import_weights),
    "download": (add_download, run_download),
    "models": (add_models, run_models),
    "demo": (add_demo, run_demo),
    "video": (add_video, run_video),
    "webcam": (add_webcam, run_webcam),
    "datasets": (add_datasets, run_datasets),
    "evaluate": (add_evaluate, run_evaluate),
    "export": (add_export, run_export),
    "train": (add_train, run_train),
    "distill": (add_distill, run_distill),
    "plot": (add_plot, run_plot),
    "benchmark": (add_benchmark, run_benchmark),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cli.py", description="rtstyle: CycleGAN translation for images, video files and live streams.",
        epilog="Models are looked up by name in $RTSTYLE_HOME/models (default ~/.cache/rtstyle/models).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


# train/ predates rtstyle.errors.UserError: it reports bad options, datasets and checkpoints as ValueError /
# FileNotFoundError, so for its commands those are the user's to fix too. Everywhere else they are bugs.
TRAIN_COMMANDS = {"train", "distill", "datasets", "evaluate", "plot"}


def user_errors(command: str) -> tuple[type[BaseException], ...]:
    """The exception types that are one-line messages for the user (exit 2) when `command` raises them."""
    from rtstyle.download import DownloadError
    from rtstyle.errors import UserError
    from rtstyle.io.display import DisplayUnavailable
    from rtstyle.io.inputs import InputError
    from rtstyle.io.sources import SourceError
    from rtstyle.io.video import OutputExistsError
    from rtstyle.store import ModelNotFound
    from rtstyle.weights import WeightsError

    found = (UserError, WeightsError, ModelNotFound, InputError, DownloadError, SourceError, DisplayUnavailable,
             OutputExistsError)
    older = (ValueError, FileNotFoundError, FileExistsError, ModuleNotFoundError)  # e.g. [data]'s scikit-image
    return found + older if command in TRAIN_COMMANDS else found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except user_errors(args.command) as e:  # anything else is a bug: its traceback shows
        from rich.markup import escape  # messages hold '[openvino]'-style extras: not markup

        console.print(f"[red]error:[/] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
