"""Batch video conversion: every frame of each file translated, with its timing, rotation and audio kept.

Three stages overlap (`pipeline.Worker` threads, bounded queues): a decoder thread turns packets into RGB
frames, the calling thread batches them through the `FrameTranslator` (PyTorch and OpenCV release the GIL
while they compute; OpenVINO runs a batch asynchronously while the last is handed on), an encoder thread
writes them with `VideoWriter`. Each stage is FIFO, so frame order
is kept. Ctrl-C, SIGTERM and SIGHUP (`interrupts`) drain what was translated into `<stem>.partial<suffix>`
(playable) and raise `ConversionInterrupted`. A file that fails to decode, or whose frames end before its
header said (a file cut short), keeps what was translated under the partial name, is reported as failed,
and the batch goes on; so does an output that another run wrote meanwhile (`files.OutputAppeared`).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np

from .errors import UserError
from .interrupts import stop_reason, stop_signals_interrupt
from .io.files import OutputAppeared, OutputExistsError
from .io.inputs import refuse_clashing_stems, refuse_overwriting_inputs
from .io.video import (DEFAULT_PRESET, OUTPUT_FORMATS, VideoInfo, VideoReader, VideoReadError, VideoWriter,
                       preset_option)
from .pipeline import END, FrameTranslator, StageTimes, Worker, get, timed
from .stabilize import Blender, MotionEstimator, StabilizeOptions, stabilize_option
from .transforms import SIZE_HELP


@dataclass
class VideoOptions:
    """Translate every frame of video files. One input may write to a file --out; several write
    OUT/<stem>_<model>.mp4. Frame count, exact rate, size, rotation and audio (copied) are kept."""

    inputs: list[str] = field(default_factory=list, metadata={"positional": True, "nargs": "+",
                                                              "help": "video files, folders or glob patterns"})
    out: Path | None = field(default=None, metadata={"required": True, "help": "output file (one input) or folder"})
    size: str = field(default="256", metadata={"help": SIZE_HELP + " (256: the official models' training size)"})
    batch: int = field(default=1, metadata={"help": "frames per backend call (helps GPUs)"})
    overwrite: bool = field(default=False, metadata={"help": "replace outputs that already exist"})
    stabilize: float | None = stabilize_option()
    preset: str = preset_option()


@dataclass
class ConvertResult:
    source: Path
    output: Path | None  # the finished file, the partial file, or None when nothing was kept
    frames: int = 0  # frames written
    expected: int = 0  # frames the input announced (0 when unknown)
    seconds: float = 0.0  # wall time of the conversion
    times: StageTimes = field(default_factory=StageTimes)
    notes: list[str] = field(default_factory=list)
    partial: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ConvertReport:
    done: list[ConvertResult] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        frames = sum(r.frames for r in self.done)
        seconds = sum(r.seconds for r in self.done)
        return (f"[bold]{len(self.done)}[/] written, [bold]{len(self.failed)}[/] failed; {frames} frames in "
                f"{seconds:.1f} s: [bold]{frames / seconds if seconds else 0:.2f} fps[/] overall")


class ConversionInterrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during a conversion; `result.output` is the playable partial file (or None),
    `by` what stopped it ("Ctrl-C", "SIGTERM", "SIGHUP") and `exit_code` the matching 130, 143 or 129."""

    def __init__(self, result: ConvertResult, report: ConvertReport | None = None, by: str = "Ctrl-C",
                 exit_code: int = 130) -> None:
        super().__init__(f"interrupted by {by}: {result.frames} frames kept in {result.output}")
        self.result, self.report, self.by, self.exit_code = result, report, by, exit_code

    def summary(self) -> str:
        r = self.result
        kept = (f"the {r.frames} frames translated so far are in {r.output} (playable, named as partial)"
                if r.output else "no frame had been written; nothing was kept")
        return f"[yellow]interrupted[/] by {self.by} during {r.source}: {kept}"


class ConversionFailed(RuntimeError):
    def __init__(self, message: str, result: ConvertResult) -> None:
        super().__init__(message)
        self.result = result


# `--preset auto`: below this many MACs a pixel a model is "light". Measured on a 2-core Zen 4, 640x360, int8
# (BENCHMARKS.md, "Encoder presets"): an ngf-8 student (12k) spent a median 0.89x of its bare fps end to end
# with ultrafast against 0.84x with veryfast (a noisy machine: single rounds 0.77 to 1.0); an ngf-16 one (44k)
# 0.91x with veryfast. The share of the CPU the encoder takes is what matters, and both the encoder's and the
# model's costs grow with the pixels, so the rule holds at every size.
LIGHT_MACS_PER_PIXEL = 25_000


def on_gpu(backend) -> bool:
    return getattr(getattr(backend, "device", None), "type", None) == "cuda"


def codec_threads(backend) -> tuple[str, int]:
    """(FFmpeg's decoder threading, x264's threads, 0 for its own choice) for a conversion beside `backend`.

    Beside a model on the CPU the codecs' own worker threads only wait for the cores the model holds, and
    their hand-offs cost CPU time: frame threads in the decoder 0.45 to 0.50 ms a 640x360 frame against 0.37
    to 0.43 with slice threads, x264 ultrafast 1.26 to 1.56 ms with its default threads against 1.03 with one
    (veryfast 2.6 to 2.8 against 2.33, and a smaller file). So slice threads and one x264 thread there; one
    x264 thread still encodes a 640x360 frame in about 2.5 ms at veryfast, far faster than a CPU model. Beside
    a GPU, where the codecs may be what limits, both keep their own threads. BENCHMARKS, "Colour conversion
    and codec threads"."""
    return ("AUTO", 0) if on_gpu(backend) else ("SLICE", 1)


def choose_preset(preset: str, backend) -> tuple[str, str]:
    """(x264 preset, why) for `--preset`: the preset itself unless it is `auto` (see `LIGHT_MACS_PER_PIXEL`)."""
    if preset != "auto":
        return preset, ""
    if on_gpu(backend):
        return "ultrafast", "auto: the model runs on a GPU, the encoder on the CPU"
    from .macs import generator_macs

    per_pixel = generator_macs(backend.info.config) / 256 ** 2
    if per_pixel < LIGHT_MACS_PER_PIXEL:
        return "ultrafast", f"auto: a light model ({per_pixel / 1000:.0f}k MACs a pixel)"
    return DEFAULT_PRESET, f"auto: {per_pixel / 1000:.0f}k MACs a pixel"


def output_paths(inputs: list[Path], out: Path, model_name: str) -> list[Path]:
    """One input and OUT with a video suffix: OUT itself; otherwise OUT is a folder of `<stem>_<model>.mp4`."""
    if len(inputs) == 1 and not out.is_dir() and out.suffix:
        if out.suffix.lower() not in OUTPUT_FORMATS:
            raise UserError(f"--out {out}: a video output must end in one of {', '.join(OUTPUT_FORMATS)}")
        refuse_overwriting_inputs(inputs, [out])
        return [out]
    if out.is_file() or (out.suffix.lower() in OUTPUT_FORMATS and not out.is_dir()):
        raise UserError(f"--out {out}: {len(inputs)} inputs need a folder for --out, not a file")
    refuse_clashing_stems(inputs, "convert")
    return [out / f"{p.stem}_{model_name}.mp4" for p in inputs]


def _put(q: queue.Queue, item, consumer: Worker) -> None:
    """Put into a bounded queue, giving up (with the consumer's error) if the consumer died."""
    while True:
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            if not consumer.is_alive():
                consumer.join_checked()
                raise RuntimeError(f"{consumer.name} stage stopped unexpectedly")


def _hand_on(q_out: queue.Queue, items: list, result: Callable[[], np.ndarray], encoder: Worker) -> None:
    """The translated batch (b, h, w, 3), its timestamps and motions, to the encode stage."""
    _put(q_out, (result(), [it[1] for it in items], [it[-1] for it in items]), encoder)


def convert_video(src: Path, dst: Path, translator: FrameTranslator, *, batch: int = 1, overwrite: bool = False,
                  on_start: Callable[[VideoInfo], None] | None = None,
                  on_progress: Callable[[int], None] | None = None,
                  stabilize: StabilizeOptions | None = None, preset: str = DEFAULT_PRESET) -> ConvertResult:
    """Translate every frame of `src` into `dst`; raises VideoReadError, OutputExistsError, ConversionFailed,
    ConversionInterrupted. With `stabilize`, the flow is found in the decode thread and the blend done in the
    encode thread (`rtstyle/stabilize.py`), both beside inference. `preset` is x264's speed preset."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst} exists; pass --overwrite to replace it")
    times = translator.times = StageTimes()
    decode_threads, encode_threads = codec_threads(translator.backend)
    with VideoReader(src, threads=decode_threads) as reader:
        info = reader.info
        writer = VideoWriter(dst, info.width, info.height, info.rate, time_base=info.time_base,
                             rotation=info.rotation, audio_from=src, overwrite=overwrite, preset=preset,
                             threads=encode_threads)
        result = ConvertResult(source=src, output=None, expected=info.frames, times=times, notes=list(writer.notes))
        if on_start:
            on_start(info)
        stop = threading.Event()
        q_in: queue.Queue = queue.Queue(maxsize=2 * batch + 2)
        q_out: queue.Queue = queue.Queue(maxsize=2 * batch + 2)

        motion = MotionEstimator(stabilize) if stabilize else None
        blender = Blender(stabilize) if stabilize else None

        def decode(put, stop_event) -> None:
            frames = iter(reader)
            while not stop_event.is_set():
                with timed(times, "decode"):
                    item = next(frames, None)  # (rgb (h, w, 3), t)
                if item is None:
                    return
                if motion is not None:
                    with timed(times, "flow"):
                        item = (*item, motion(item[0]))  # (rgb, t, Motion)
                put(item)

        def encode(_put, stop_event) -> None:
            while (item := get(q_out, stop_event)) is not END:
                frames, stamps, motions = item
                if blender is not None:
                    with timed(times, "blend", len(frames)):
                        frames = [blender(rgb, m) for rgb, m in zip(frames, motions)]
                with timed(times, "encode", len(frames)):
                    for rgb, t in zip(frames, stamps):
                        writer.write(rgb, t)
                result.frames += len(frames)
                if on_progress:
                    on_progress(result.frames)

        decoder = Worker("decode", decode, q_in, stop)
        encoder = Worker("encode", encode, None, stop)
        start = time.perf_counter()
        decoder.start()
        encoder.start()
        pending = None  # the batch in flight: (its items, the call giving its result)
        try:
            ended = False
            while not ended:
                items = []
                while len(items) < batch:
                    item = get(q_in, stop)
                    if item is END:
                        ended = True
                        break
                    items.append(item)
                # start this batch before handing on the last, so the model runs while that is done; with two in
                # flight they may run side by side (OpenVINO: two CPU streams, `formats.openvino.streams_for`)
                started = (items, translator.submit(np.stack([it[0] for it in items]), parallel=2)) if items else None
                if pending:
                    _hand_on(q_out, *pending, encoder)
                pending = started
            if pending:
                _hand_on(q_out, *pending, encoder)
                pending = None
            _put(q_out, END, encoder)
            encoder.join_checked()
            decoder.join_checked()
            result.seconds = time.perf_counter() - start
            if short := reader.ended_early():  # a file cut short: not the whole video, so not the final name
                result.output, result.partial = writer.close_partial(), True
                kept = f"; the {result.frames} frames translated are in {result.output}" if result.output else ""
                raise ConversionFailed(f"{short}{kept}", result)
            result.output = writer.close()
            return result
        except (ConversionFailed, OutputAppeared) as e:  # the writer is closed: its file is kept as the message says
            if isinstance(e, OutputAppeared):
                result.output = e.kept
                raise ConversionFailed(str(e), result) from None
            raise
        except KeyboardInterrupt as e:
            _drain(stop, q_out, decoder, encoder)
            result.seconds = time.perf_counter() - start
            result.output, result.partial = writer.close_partial(), True
            raise ConversionInterrupted(result, None, *stop_reason(e)) from None
        except BaseException as e:
            _drain(stop, q_out, decoder, encoder)
            result.seconds = time.perf_counter() - start
            try:
                result.output, result.partial = writer.close_partial(), True
            except Exception:
                result.output = None
            kept = f"; the {result.frames} frames before are in {result.output}" if result.output else ""
            if isinstance(e, VideoReadError):  # its message names the file
                raise ConversionFailed(f"{e}{kept}", result) from e
            if isinstance(e, (OSError, av.FFmpegError)):  # a full disk, an encoder refusing the frames
                raise ConversionFailed(f"{src}: writing {dst} failed ({e}){kept}", result) from e
            raise
        finally:
            if pending:  # a batch left in flight by an error or Ctrl-C: collected (and dropped), so the backend's
                try:  # request is free for the next video
                    pending[1]()
                except Exception:
                    pass


def _drain(stop: threading.Event, q_out: queue.Queue, decoder: Worker, encoder: Worker) -> None:
    """Stop decoding; let the encoder write what was already translated, then end it.

    No timeouts: both stages notice `stop` within one frame, and the reader and the writer they use must not be
    closed under them (PyAV frees what a still-running decode or encode call is using)."""
    stop.set()
    decoder.join()
    encoder.join()


def convert_videos(pairs: list[tuple[Path, Path]], translator: FrameTranslator, *, batch: int = 1,
                   overwrite: bool = False, stabilize: StabilizeOptions | None = None, preset: str = DEFAULT_PRESET,
                   on_start: Callable[[Path, Path, VideoInfo], None] | None = None,
                   on_progress: Callable[[Path, int], None] | None = None,
                   on_done: Callable[[ConvertResult | None, Path, str | None], None] | None = None) -> ConvertReport:
    """Convert each (source, output) pair; unreadable inputs and existing outputs are reported, not fatal."""
    with stop_signals_interrupt():  # SIGTERM and SIGHUP keep a partial file as Ctrl-C does
        return _convert_all(pairs, translator, batch, overwrite, stabilize, preset, on_start, on_progress, on_done)


def _convert_all(pairs, translator, batch, overwrite, stabilize, preset, on_start, on_progress, on_done) -> ConvertReport:
    report = ConvertReport()
    for src, dst in pairs:
        result, error = None, None
        try:
            result = convert_video(
                src, dst, translator, batch=batch, overwrite=overwrite, stabilize=stabilize, preset=preset,
                on_start=(lambda info, s=src, d=dst: on_start(s, d, info)) if on_start else None,
                on_progress=(lambda n, s=src: on_progress(s, n)) if on_progress else None)
            report.done.append(result)
        except ConversionInterrupted as e:
            e.report = report
            raise
        except ConversionFailed as e:
            result, error = e.result, str(e)
        except (VideoReadError, OutputExistsError) as e:
            error = str(e)
        except av.FFmpegError as e:  # e.g. an encoder that refuses this size
            error = f"{src}: {e}"
        if error:
            report.failed.append((src, error))
        if on_done:
            on_done(result, src, error)
    return report
