"""The live loop: newest frame from a source -> translation -> window and/or recording, as fast as it goes.

Three threads: the source's capture thread keeps only the newest frame (`sources.LatestFrame`), a
translation thread (`live_stages.TranslateStage`) hands its newest result to the calling thread, which
composes, records and shows it. When translation is slower than the camera, or display slower than
translation, frames are dropped rather than queued, so latency (capture to display) stays about one
translation long; a file or folder source drops nothing. Keys change the view while it
runs (`display.KEYS`); `--record` writes the view as shown (without the overlay) with the frames' capture
times, so the recording plays at the speed it happened. Ctrl-C, SIGTERM and SIGHUP end the session as `q`
does (`interrupts`): the recording is finished under its name, and `LiveReport.stopped_by` says which.
Other outputs are `sinks.Sink`s fed the same view (the virtual camera, the MJPEG server); each returns at
once, so none of them slows the loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import UserError
from .interrupts import stop_reason, stop_signals_interrupt
from .io.display import KEY_HELP, Window, compose, draw_overlay
from .io.files import OutputAppeared, OutputExistsError
from .io.images import write_image
from .io.sinks import LiveStatus, OutputOptions, Sink, close_sinks
from .io.sources import SOURCE_HELP, Captured, Source
from .io.video import VideoWriter
from .pipeline import FrameTranslator, StageTimes, timed
from .live_stages import TranslateStage
from .stabilize import StabilizeOptions, stabilize_option, stabilize_options
from .steady import SKIP_SIMILAR, SteadyTranslator
from .transforms import SIZE_HELP, parse_size, resize_frames, round_to_multiple
from .video import choose_preset, codec_threads

SIZE_STEP, MIN_SIZE, MAX_SIZE = 32, 64, 2048


@dataclass(frozen=True)
class LiveOptions:
    """Translate a live source in a window (keys: q/Esc quit, s snapshot, space original/translated, +/-
    processing size, o overlay). Live sources keep only the newest frame, so latency does not grow when
    translation is slower.

    (What the live loop shows, records and when it stops: the `webcam` command's options.)"""

    source: str = field(default="0", metadata={"help": SOURCE_HELP})  # opened by the caller (io.sources)
    size: int | None = field(default=256, metadata={"type": parse_size, "help": SIZE_HELP})  # None: native
    show: bool = field(default=True, metadata={"help": "open a window (--no-show: headless)"})
    side_by_side: bool = field(default=False, metadata={"help": "show original | translated"})
    overlay: bool = field(default=True, metadata={"help": "fps/latency overlay in the window (key o toggles)"})
    record: Path | None = field(default=None, metadata={"help": "write the view as shown to this video file",
                                                        "metavar": "FILE"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --record file"})
    duration: float | None = field(default=None, metadata={"help": "stop after this many seconds",
                                                           "metavar": "SECONDS"})
    max_frames: int | None = field(default=None, metadata={"help": "stop after this many frames",
                                                           "metavar": "N"})
    snapshot_dir: Path = field(default=Path("."), metadata={"help": "folder for snapshots (key s)"})
    read_timeout: float = field(default=10.0, metadata={"cli": False})  # a source silent this long ends the run
    stabilize: float | None = stabilize_option()  # the caller makes it a StabilizeOptions for run_live
    # On by default at a threshold measured safe on the real clips (issue 13: 50% skipped on a still scene at
    # SSIM 0.9975 against translating every frame; 20% on a moving one at 0.998; BENCHMARKS.md).
    skip_similar: float | None = field(default=SKIP_SIMILAR, metadata={
        "metavar": "THRESHOLD", "help": "reuse the last output when the input's mean luma difference (0..1, at "
                                        f"32 px) to the last translated input is below THRESHOLD; 0 translates "
                                        f"every frame [{SKIP_SIMILAR}]"})

    def check(self) -> None:
        """Refuse at once, before a model loads, what would fail later: a window with no display, or a
        --record file that exists without --overwrite."""
        from .io.display import check_display

        if self.skip_similar is not None and not 0.0 <= self.skip_similar < 1.0:
            raise UserError(f"--skip-similar {self.skip_similar:g}: expected a threshold in [0, 1) (0: translate "
                            f"every frame; the default {SKIP_SIMILAR} is measured safe)")
        stabilize_options(self.stabilize)  # a strength out of [0, 1) is refused here, before a model loads
        if self.show:
            check_display()
        if self.record and self.record.exists() and not self.overwrite:
            raise OutputExistsError(f"{self.record} exists; pass --overwrite to replace it")


@dataclass
class LiveReport:
    frames: int = 0
    dropped: int = 0
    skipped: int = 0  # frames whose input was similar enough to reuse the last output (--skip-similar)
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds from capture to display, per frame
    times: StageTimes = field(default_factory=StageTimes)
    recorded: Path | None = None
    snapshots: list[Path] = field(default_factory=list)
    ended: str = ""
    error: str | None = None  # set when the source failed (lost stream), or the recording could not take its name
    stopped_by: str | None = None  # "Ctrl-C", "SIGTERM" or "SIGHUP" when one ended the session
    exit_code: int = 0  # 130, 143 or 129 with `stopped_by`

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self, skip_similar: bool = False) -> list[str]:
        """What `webcam` prints at the end of a run."""
        median, worst = self.latency_ms()
        lines = [f"{self.ended}: {self.frames} frames in {self.seconds:.1f} s ({self.fps:.2f} fps), {self.dropped} "
                 f"dropped, latency median {median:.0f} ms / max {worst:.0f} ms"
                 + (f", {self.skipped} skipped as similar" if skip_similar else "")]
        if self.frames:
            lines.append(f"  {self.times.summary()}")
        if self.recorded:
            lines.append(f"recorded -> {self.recorded}")
        return lines

    def latency_ms(self) -> tuple[float, float]:
        """(median, max) capture-to-display latency in ms."""
        if not self.latencies:
            return 0.0, 0.0
        return 1000 * float(np.median(self.latencies)), 1000 * max(self.latencies)


def next_size(size: int | None, source_hw: tuple[int, int], step: int) -> int:
    """Processing size one step up (step > 0) or down from `size` (None: the source's own short side)."""
    current = size if size is not None else min(source_hw)
    return int(min(MAX_SIZE, max(MIN_SIZE, round_to_multiple(current + step))))


def open_live(options: LiveOptions, outputs: OutputOptions, load_backend: Callable[[], object], model: str = "",
              log: Callable[[str], None] = print) -> tuple[Source, object, list[Sink]]:
    """What `webcam` opens, in the order that fails fastest: the display and recording checks, the outputs (a
    missing virtual-camera driver, a busy port), then the model and the source; returns (source, backend,
    sinks), closing what was opened when a later step fails."""
    from .io.sinks import close_on_error, open_sinks
    from .io.sources import open_source

    options.check()
    sinks = open_sinks(outputs, model=model, log=log)
    with close_on_error(sinks):
        backend = load_backend()
        source = open_source(options.source, realtime=options.show or bool(sinks), log=log)
    for sink in sinks:
        sink.started(source, backend)
    return source, backend, sinks


def run_live(source: Source, translator: FrameTranslator, options: LiveOptions = LiveOptions(), *,
             log: Callable[[str], None] = print,
             on_frame: Callable[[Captured, np.ndarray, float], None] | None = None,
             stabilize: StabilizeOptions | None = None, sinks: Sequence[Sink] = ()) -> LiveReport:
    """Translate frames from `source` until it ends, a limit is reached, `q`/Esc, Ctrl-C, SIGTERM or SIGHUP.

    A window opens when `options.show` (DisplayUnavailable where none can). `on_frame(captured, translated,
    latency_s)` is called after each frame is shown/recorded. The source is closed on return. `stabilize` and
    `options.skip_similar` are `steady.SteadyTranslator`'s (--stabilize, --skip-similar). Every view also goes
    to each of `sinks` (closed on return, like the source).
    """
    with stop_signals_interrupt():  # SIGTERM and SIGHUP end the session as Ctrl-C does, recording kept
        return _run_live(source, translator, options, log, on_frame, stabilize, sinks)


def _run_live(source, translator, options, log, on_frame, stabilize, sinks) -> LiveReport:
    try:
        options.check()  # webcam checked before loading; a caller that did not is refused here, source closed
        window = Window() if options.show else None
    except BaseException:
        source.close()
        close_sinks(sinks)
        raise
    report = LiveReport(times=translator.times)
    steady = SteadyTranslator(translator, stabilize, options.skip_similar)
    stage = TranslateStage(source, steady.start, options.read_timeout)  # reads and translates in its own thread
    recorder: VideoWriter | None = None
    show_original, overlay = False, options.overlay
    fps_ema, last_shown = 0.0, None
    start = time.monotonic()
    if window:
        log(KEY_HELP)
    try:
        stage.start()
        while True:
            if options.max_frames is not None and report.frames >= options.max_frames:
                report.ended = f"{options.max_frames} frames done"
                break
            if options.duration is not None and time.monotonic() - start >= options.duration:
                report.ended = f"{options.duration:g} s elapsed"
                break
            got = stage.next()  # (Captured, translated (h, w, 3)), the newest one for a live source
            if got is None:
                report.error = source.error
                report.ended = source.error or "source ended"
                break
            item, translated = got
            report.skipped = steady.skipped
            view = compose(item.rgb, translated, options.side_by_side, show_original)
            if options.record:
                with timed(report.times, "encode"):
                    if recorder is None:
                        recorder = VideoWriter(options.record, view.shape[1], view.shape[0],
                                               source.rate or Fraction(30), time_base=Fraction(1, 1000),
                                               overwrite=options.overwrite,  # x264 as `video --preset auto`
                                               preset=choose_preset("auto", translator.backend)[0],
                                               threads=codec_threads(translator.backend)[1])
                    recorder.write(_fit(view, recorder.size), _record_time(item, start))
            now = time.monotonic()
            latency = now - item.captured_at
            if last_shown is not None:
                interval = max(now - last_shown, 1e-6)
                fps_ema = 1 / interval if fps_ema == 0 else 0.9 * fps_ema + 0.1 / interval
            last_shown = now
            report.frames += 1
            report.latencies.append(latency)
            report.dropped = source.dropped + stage.out.dropped
            if sinks:
                status = LiveStatus(report.frames, fps_ema, latency, report.dropped, steady.skipped, translator.size)
                with timed(report.times, "outputs"):
                    for sink in sinks:
                        sink.write(view, status)
            if window:
                with timed(report.times, "display"):
                    shown = view
                    if overlay:
                        shown = draw_overlay(view, _overlay_lines(fps_ema, latency, translator.size, source,
                                                                  show_original, steady.skipped))
                    window.show(shown)
                    action = window.poll(1)
                if action == "quit":
                    report.ended = "quit key"
                    break
                if action == "snapshot":
                    report.snapshots.append(_snapshot(view, options.snapshot_dir, len(report.snapshots)))
                    log(f"snapshot -> {report.snapshots[-1]}")
                elif action == "toggle":
                    show_original = not show_original
                    log("showing the original" if show_original else "showing the translation")
                elif action in ("bigger", "smaller"):
                    step = SIZE_STEP if action == "bigger" else -SIZE_STEP
                    new = next_size(translator.size, item.rgb.shape[:2], step)
                    log(f"processing size {translator.size or 'native'} -> {new}")
                    translator.size = new
                elif action == "overlay":
                    overlay = not overlay
            if on_frame:
                on_frame(item, translated, latency)
        if window and not source.live and report.ended == "source ended" and report.frames:
            log("source ended; press q or Esc to close the window")
            _hold(window, options, start)  # a file or folder that ended: keep its last frame up until q
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP as `interrupts.Terminated`
        report.stopped_by, report.exit_code = stop_reason(e)
        report.ended = f"interrupted ({report.stopped_by})"
    finally:
        report.seconds = time.monotonic() - start
        stage.finish(options.read_timeout + 1.0)  # before the source closes: a file must not be closed mid-read
        steady.close()  # its flow thread, once the translation stage has stopped
        report.dropped = source.dropped + stage.out.dropped
        report.skipped = steady.skipped
        source.close()
        close_sinks(sinks)
        if window:
            window.close()
        if recorder is not None:
            try:
                report.recorded = recorder.close()  # a live session ends this way: the recording is complete
            except OutputAppeared as e:  # another run recorded to the same name meanwhile: ours is kept beside it
                report.recorded, report.error = e.kept, str(e)
    return report


def _record_time(item: Captured, start: float) -> Fraction:
    """When the frame happened: its timestamp in a file, else its capture time since the run started (ms)."""
    if item.pts is not None:
        return item.pts
    return Fraction(round((item.captured_at - start) * 1000), 1000)


def _fit(view: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`view` letterboxed into (h, w): a recording keeps its first frame's size (images in a folder differ)."""
    h, w = size
    if view.shape[:2] == (h, w):
        return view
    scale = min(h / view.shape[0], w / view.shape[1])
    nh, nw = max(1, round(view.shape[0] * scale)), max(1, round(view.shape[1] * scale))
    out = np.zeros((h, w, 3), np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top:top + nh, left:left + nw] = resize_frames(view[None], nh, nw)[0]
    return out


def _overlay_lines(fps: float, latency: float, size: int | None, source: Source, show_original: bool,
                   skipped: int = 0) -> list[str]:
    lines = [f"{fps:4.1f} fps  {1000 * latency:4.0f} ms", f"size {size or 'native'}"]
    if source.live:
        lines[1] += f"  dropped {source.dropped}"
    if skipped:
        lines[1] += f"  skipped {skipped}"
    if show_original:
        lines.append("original")
    return lines


def _snapshot(view: np.ndarray, folder: Path, n: int) -> Path:
    name = f"rtstyle-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{n:03d}.png"
    return write_image(Path(folder) / name, view)


def _hold(window: Window, options: LiveOptions, start: float) -> None:
    while options.duration is None or time.monotonic() - start < options.duration:
        if window.poll(50) == "quit":
            return
