"""rtstyle's command line: parses arguments, calls library functions and prints what they return.

Each subcommand is a `Command` in `COMMANDS`: its options are the option dataclass of the module it calls
(`TranslateOptions`, `VideoOptions`, `LiveOptions`, `TrainConfig`, ..., mapped by rtstyle/config.py), plus
--model and the backend options where it runs a model; `run_<name>(args) -> exit code` calls into `rtstyle`,
`train` or `engines` and prints the result (tables and progress bars: rtstyle/report.py). Errors the user can
fix are raised as `rtstyle.errors.UserError` and printed here as one line, exit code 2; anything else is a
bug and shows its traceback. Partial failures (some files could not be translated) exit 1; Ctrl-C exits 130
and SIGTERM 143.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from engines import FORMATS, export_model
from engines.options import ExportOptions
from rtstyle import __version__, benchmark, demo
from rtstyle.backends import BackendOptions, create_backend
from rtstyle.benchmark import BenchmarkSettings
from rtstyle.config import Command, dataclass_from_args, given_options, option_values
from rtstyle.demo import DemoOptions
from rtstyle.download import download_official_model
from rtstyle.errors import UserError
from rtstyle.interrupts import stop_reason
from rtstyle.io.files import write_json
from rtstyle.io.inputs import IMAGE_SUFFIXES, VIDEO_SUFFIXES, expand_inputs
from rtstyle.io.sinks import OutputOptions
from rtstyle.live import LiveOptions, open_live, run_live
from rtstyle.noise import quiet_libraries
from rtstyle.pipeline import FrameTranslator
from rtstyle.report import VideoProgress, print_benchmark, print_table
from rtstyle.serve import browser
from rtstyle.serve.browser import ServeOptions
from rtstyle.stabilize import StabilizeOptions, stabilize_options
from rtstyle.store import OFFICIAL_DIRECTIONS, ImportOptions, describe_models, import_reference, store_dir
from rtstyle.students import fast_model
from rtstyle.transforms import SIZE_HELP, parse_size
from rtstyle.translate import TranslateOptions, translate_images
from rtstyle.translate import output_paths as translate_paths
from rtstyle.video import ConversionInterrupted, VideoOptions, choose_preset, convert_videos, output_paths
from train import distill as distilling, loop as training
from train.config import TrainConfig
from train.datasets import DemoDatasetOptions, download_dataset, make_demo_dataset
from train.distill_config import DistillConfig
from train.evaluate import EvaluateOptions, evaluate

console = Console(stderr=True, highlight=False, soft_wrap=True)
say = console.print
plain = functools.partial(say, markup=False)  # library messages: '[openvino]' is not markup


def model_from_args(args) -> None:
    """--fast: args.model becomes its student (said on the console), or a clear error with the distill command."""
    if getattr(args, "fast", False):
        args.model = fast_model(args.model, log=say)


def backend_from_args(args, model: str | None = None):
    model_from_args(args)
    return create_backend(model or args.model, dataclass_from_args(BackendOptions, args))


def stabilize_from_args(args) -> StabilizeOptions | None:  # --stabilize [STRENGTH] of video, webcam and demo
    return stabilize_options(args.stabilize)


def running(args, backend, what: str, details: str = "") -> None:
    say(f"{what} with {args.model} ({backend.info.direction or 'direction unknown'}) via {backend.describe()}"
        + (f", {details}" if details else ""))


# --- images, models and artifacts ------------------------------------------------------------------------
def run_translate(args) -> int:
    size, inputs = parse_size(args.size), expand_inputs(args.inputs, IMAGE_SUFFIXES, out=args.out)
    translate_paths(inputs, args.out)  # a bad --out is refused before the model loads
    backend = backend_from_args(args)
    running(args, backend, f"[bold]{len(inputs)}[/] image(s)")
    report = translate_images(inputs, backend, args.out, size=size, overwrite=args.overwrite,
                              on_done=lambda src, dst, error: say(f"[red]skipped[/] {src}: {error}" if error
                                                                  else f"{src} -> {dst}"))
    say(f"[bold]{len(report.written)}[/] written to {args.out}, [bold]{len(report.failed)}[/] failed")
    return 1 if report.failed else 0


def run_import_weights(args) -> int:
    target, info = import_reference(args.file, args.name, args.direction, args.train_size, args.overwrite)
    say(f"imported {args.file} ({info.config.ngf} filters, {info.config.n_blocks} blocks, "
        f"{info.direction or 'direction unknown'}) -> {target}")
    return 0


def download_args(p) -> None:
    p.add_argument("name", choices=list(OFFICIAL_DIRECTIONS), metavar="NAME", help="official model name")
    p.add_argument("--overwrite", action="store_true", help="download again even if stored")
    p.add_argument("--sha256", help="the file's expected sha256: a different download is refused, nothing stored")


def run_download(args) -> int:
    path = download_official_model(args.name, overwrite=args.overwrite, sha256=args.sha256, log=plain)
    say(f"stored {args.name} -> {path}")
    return 0


def run_models(args) -> int:
    say(f"model store: {store_dir()}")
    print("\n".join(describe_models()))
    return 0


def export_args(p) -> None:
    p.add_argument("--format", required=True, choices=FORMATS, help="artifact format")
    p.add_argument("--out", type=Path, help="output file (.onnx, .engine, .xml) or OpenVINO folder")
    p.add_argument("--overwrite", action="store_true", help="replace an artifact that already exists")


def run_export(args) -> int:
    result = export_model(args.model, args.format, dataclass_from_args(ExportOptions, args), out=args.out,
                          overwrite=args.overwrite, log=plain)
    say("\n".join(result.summary()), markup=False)
    return 0


def run_benchmark(args) -> int:
    model_from_args(args)
    command_line = "python cli.py " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["benchmark"] else None
    records, document = benchmark.run_benchmark(args.model, dataclass_from_args(BenchmarkSettings, args),
                                                plain, command_line)
    print_benchmark(args.model, records, console, document.get("comparison", []))
    if args.json:
        benchmark.write_report(args.json, document)
        say(f"wrote {args.json}")
    return 0


# --- training and scores ----------------------------------------------------------------------------------
def resume_args(p) -> None:
    p.add_argument("--resume", action="store_true",
                   help="continue OUT/NAME from its last.pt with its saved config (budgets, logging and device may "
                        "be given anew; for train, the schedule length too)")


def stop_code(result) -> int:
    return {"SIGINT": 130, "SIGTERM": 143}.get(result.stopped_by or "", 0)


def run_train(args) -> int:
    config = training.resolve_config(option_values(TrainConfig, args), resume=args.resume, given=given_options(args))
    return stop_code(training.train(config, resume=args.resume, console=console))


def run_distill(args) -> int:
    config = distilling.resolve_config(option_values(DistillConfig, args), resume=args.resume,
                                       given=given_options(args))
    return stop_code(distilling.distill(config, resume=args.resume, console=console))


def run_make_demo(args) -> int:
    summary = make_demo_dataset(args.out, seed=args.seed, train_per_domain=args.train_per_domain,
                                test_count=args.test_count, size=args.crop, overwrite=args.overwrite)
    say(f"demo dataset in {args.out}: {summary['counts']} ({summary['transform']})")
    return 0


def dataset_download_args(p) -> None:
    p.add_argument("name", help="horse2zebra, monet2photo, ... (see the error for the full list)")
    p.add_argument("--out", "--root", dest="out", type=Path, default=Path("datasets"),
                   help="folder to put NAME/ in [datasets]")


def run_dataset_download(args) -> int:
    say(f"dataset {args.name} -> {download_dataset(args.name, args.out)}")
    return 0


def plot_args(p) -> None:
    p.add_argument("run", type=Path, help="a run folder (runs/NAME) or its losses.csv")
    p.add_argument("--out", type=Path, help="PNG to write [RUN/losses.png]")


def run_plot(args) -> int:
    from train.plot import plot_losses

    say(f"wrote {plot_losses(args.run, args.out)}")
    return 0


def run_evaluate(args) -> int:
    options = dataclass_from_args(EvaluateOptions, args)
    title, columns, record = evaluate(options, args.model, lambda model: backend_from_args(args, model))
    print_table(title, columns)
    if options.json:
        write_json(options.json, record)
    return 0


# --- video and live ---------------------------------------------------------------------------------------
def run_video(args) -> int:
    size, stabilize = parse_size(args.size), stabilize_from_args(args)
    inputs = expand_inputs(args.inputs, VIDEO_SUFFIXES, out=args.out)
    backend = backend_from_args(args)
    pairs = list(zip(inputs, output_paths(inputs, args.out, backend.info.name or Path(args.model).stem)))
    preset, why = choose_preset(args.preset, backend)
    if args.preset != "auto" and any(dst.suffix.lower() == ".webm" for _, dst in pairs):
        say(f"note: --preset {args.preset} is an H.264 (x264) setting; .webm outputs are VP9 and keep their own")
    running(args, backend, f"[bold]{len(inputs)}[/] video(s)", f"size {size or 'native'}, batch {args.batch}"
            + (f", stabilize {stabilize.strength:g}" if stabilize else "") + f", x264 {preset}"
            + (f" ({why})" if why else ""))
    try:
        with VideoProgress(console) as progress:
            report = convert_videos(pairs, FrameTranslator(backend, size), batch=args.batch, overwrite=args.overwrite,
                                    stabilize=stabilize, preset=preset, on_start=progress.on_start,
                                    on_progress=progress.on_progress, on_done=progress.on_done)
    except ConversionInterrupted as e:
        say(e.summary())
        return e.exit_code
    say(report.summary())
    return 1 if report.failed else 0


def run_webcam(args) -> int:
    options = dataclass_from_args(LiveOptions, args)
    outputs = dataclass_from_args(OutputOptions, args)
    source, backend, sinks = open_live(options, outputs, lambda: backend_from_args(args), model=args.model, log=say)
    running(args, backend, f"{source.name} ({'live, newest frame only' if source.live else 'every frame'})",
            f"size {options.size or 'native'}")
    report = run_live(source, FrameTranslator(backend, options.size), options, log=say,
                      stabilize=stabilize_from_args(args), sinks=sinks)
    say("\n".join(report.summary(skip_similar=bool(args.skip_similar))))
    if report.error:
        say(f"[red]error:[/] {report.error}")
    return report.exit_code if report.stopped_by else 1 if report.error else 0  # Ctrl-C 130, SIGTERM 143


def serve_args(p) -> None:
    p.add_argument("--size", default="256", help=f"{SIZE_HELP}; what the pages start with [256]")
    p.add_argument("--duration", type=float, help="stop after this many seconds [until Ctrl-C]")


def run_serve(args) -> int:
    model_from_args(args)
    browser.serve(args.model, dataclass_from_args(ServeOptions, args), dataclass_from_args(BackendOptions, args),
                  parse_size(args.size), log=say, duration=args.duration)
    return 0


def run_demo(args) -> int:
    stabilize = stabilize_from_args(args)  # a bad strength is said before the model loads
    backend = backend_from_args(args)
    running(args, backend, "the demo")
    options = dataclass_from_args(DemoOptions, args)
    report, shown = demo.run(backend, options, log=say, stabilize=stabilize)
    say("\n".join(report.summary(shown=shown)))
    return report.exit_code or (1 if report.error else 0)


COMMANDS = {
    "demo": Command("see it work: the bundled model on a bundled real clip (or --source 0)", run_demo, DemoOptions,
                    model="demo", backend=True),
    "translate": Command("translate image files, folders or globs", run_translate, TranslateOptions, model=True,
                         backend=True),
    "video": Command("translate video files (frame count, rate, rotation and audio kept)", run_video, VideoOptions,
                     model=True, backend=True),
    "webcam": Command("translate a camera or stream live, in a window", run_webcam, (LiveOptions, OutputOptions),
                      model=True, backend=True),
    "serve": Command("serve a page that translates the browser's camera (WebSocket), live", run_serve, ServeOptions,
                     model=True, backend=True, extra=serve_args),
    "models": Command("list the models --model can name", run_models),
    "download": Command("download an official CycleGAN pretrained generator", run_download, extra=download_args,
                        description="Download an official pretrained generator into the store. Names: "
                                    f"{', '.join(OFFICIAL_DIRECTIONS)}. RTSTYLE_MODEL_URL may point at a mirror."),
    "import-weights": Command("convert a reference CycleGAN .pth into the model store", run_import_weights,
                              ImportOptions),
    "export": Command("compile a model to ONNX, a TensorRT engine or OpenVINO IR", run_export, ExportOptions,
                      model=True, extra=export_args),
    "benchmark": Command("compare backends' speed and accuracy against eager fp32 PyTorch, interleaved",
                         run_benchmark, BenchmarkSettings, model=True),
    "evaluate": Command("score a model on a dataset's test split (PSNR/SSIM or cycle error), or a translated "
                        "video's flicker (--video)", run_evaluate, EvaluateOptions, model="", backend=True),
    "datasets": Command("make the offline demo dataset or download an official one", None, actions={
        "make-demo": Command("build the unpaired demo dataset from photos shipped in packages", run_make_demo,
                             DemoDatasetOptions),
        "download": Command("download an official CycleGAN dataset (reference layout)", run_dataset_download,
                            extra=dataset_download_args)}),
    "train": Command("train CycleGAN generators on unpaired image folders", run_train, TrainConfig, extra=resume_args),
    "distill": Command("distil a full-size generator into a small, fast student", run_distill, DistillConfig,
                       extra=resume_args),
    "plot": Command("draw a training run's loss curves (RUN/losses.csv into RUN/losses.png)", run_plot,
                    extra=plot_args),
}


def program_name() -> str:
    """The name the user typed: `rtstyle` (the installed command) or `cli.py`; rtstyle when run otherwise."""
    typed = Path(sys.argv[0]).name
    return typed if typed in ("rtstyle", "cli.py") else "rtstyle"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name(), description="rtstyle: CycleGAN translation for images, video files and live streams.",
        epilog="`COMMAND --help` tells more. Models are looked up by name in $RTSTYLE_HOME/models "
               "(default ~/.cache/rtstyle/models).")
    parser.add_argument("--version", action="version", version=f"rtstyle {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_to(sub, name)
    return parser


# train/ predates rtstyle.errors.UserError: it reports bad options, datasets and checkpoints as ValueError /
# FileNotFoundError, so for its commands those are the user's to fix too. Everywhere else they are bugs.
TRAIN_COMMANDS = {"train", "distill", "datasets", "evaluate", "plot"}


def user_errors(command: str) -> tuple[type[BaseException], ...]:
    """The exception types that are one-line messages for the user (exit 2) when `command` raises them."""
    older = (ValueError, FileNotFoundError, FileExistsError, ModuleNotFoundError)  # e.g. [data]'s scikit-image
    return (UserError, *older) if command in TRAIN_COMMANDS else (UserError,)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # nothing asked: the command list, as --help shows it
        parser.print_help()
        return 0
    quiet_libraries(verbose=args.verbose)
    try:
        return args.handler(args)
    except user_errors(args.command) as e:  # anything else is a bug: its traceback shows
        say(f"[red]error:[/] {escape(str(e))}")  # escaped: messages hold '[openvino]'-style extras, not markup
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C 130; SIGTERM 143 and SIGHUP 129 where a command turns them into one
        by, code = stop_reason(e)
        say(f"[yellow]interrupted[/] by {by}")
        return code


if __name__ == "__main__":
    sys.exit(main())
