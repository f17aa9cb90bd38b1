"""The built-in demo: the bundled model on the bundled clip (or a live source), with nothing to download.

`run_demo` converts `assets/demo_clip.mp4` (4 s of a real CC-BY clip) with the bundled `demo` generator
through the same video pipeline as `cli.py video`, writes the translated video and a side-by-side PNG
(original | translated, middle frame) into the output folder, and, where a display exists, plays the clip
side by side in a window through the live loop. With a `source` (camera index, stream, file) it is the live
loop on that source instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .backends import Backend
from .io.files import writing
from .io.images import write_image
from .io.video import read_frames
from .pipeline import FrameTranslator
from .stabilize import StabilizeOptions, stabilize_option
from .store import DEMO_CLIP
from .transforms import SIZE_HELP, plan_for
from .video import choose_preset, convert_video


@dataclass
class DemoOptions:
    """Translate a bundled 4-second clip with the bundled demo model (photo -> thermal, trained by this project
    on CPU), write the video and a side-by-side PNG to --out (replacing the demo's own files there), show it in
    a window when a display exists, and print the fps. --source makes it a live demo."""

    source: str | None = field(default=None, metadata={
        "help": "live demo: camera index, stream URL, video file or image folder [the bundled clip]"})
    out: Path = field(default=Path("runs/demo"), metadata={"help": "output folder"})
    size: str = field(default="256", metadata={"help": SIZE_HELP})
    show: bool | None = field(default=None, metadata={"help": "open a window (default: when a display exists)"})
    duration: float | None = field(default=None, metadata={"help": "live demo: stop after this many seconds",
                                                           "metavar": "SECONDS"})
    stabilize: float | None = stabilize_option()


@dataclass
class DemoReport:
    video: Path | None = None  # the translated clip
    side_by_side: Path | None = None  # original | translated PNG
    recorded: Path | None = None  # live mode with --no-show: what was recorded
    frames: int = 0
    fps: float = 0.0  # frames per second achieved, end to end
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # live mode: why the source ended early
    exit_code: int = 0  # live mode: 130 when Ctrl-C ended it (143 SIGTERM, 129 SIGHUP)

    def summary(self, shown: bool) -> list[str]:
        """What `demo` prints at the end."""
        if self.video is None:  # the live demo
            return [f"{self.frames} frames at [bold]{self.fps:.1f} fps[/]"
                    + (f"; recorded -> {self.recorded}" if self.recorded else "")]
        lines = [f"translated {self.frames} frames at [bold]{self.fps:.1f} fps[/] (decode + translate + encode)",
                 f"video: {self.video}", f"side by side: {self.side_by_side}"]
        if not shown:
            lines.append("no display here: nothing shown (open the files above, or run with a display)")
        return lines


def display_wanted(show: bool | None) -> bool:
    """--show / --no-show as asked; neither: a window where a display exists. Checked before a model loads."""
    from .io.display import DisplayUnavailable, check_display

    if show is None:
        try:
            check_display()
            return True
        except DisplayUnavailable:
            return False
    if show:
        check_display()  # a clear error now instead of a crash after the model has loaded
    return show


def middle_frame(path: Path) -> np.ndarray:
    """The middle frame of a video as RGB uint8 (h, w, 3)."""
    frames = read_frames(path)
    return frames[len(frames) // 2]


def side_by_side(original: np.ndarray, translated: np.ndarray) -> np.ndarray:
    """(h, w, 3) + (h, w, 3) -> (h, 2w, 3): what the demo shows, original on the left."""
    return np.concatenate([original, translated], axis=1)


def run_demo(backend: Backend, out_dir: Path, size: int | None = 256, show: bool = True,
             log: Callable[[str], None] = print, stabilize: StabilizeOptions | None = None) -> DemoReport:
    """Translate the bundled clip into `out_dir` (its own files are replaced on each run) and show it."""
    with writing(out_dir):  # a read-only or unwritable --out: one line, not a traceback
        out_dir.mkdir(parents=True, exist_ok=True)
    translator = FrameTranslator(backend, size)
    original = middle_frame(DEMO_CLIP)
    if hasattr(backend, "prepare"):  # OpenVINO int8 from weights: the 4 s clip is over before a background build
        backend.prepare(plan_for(*original.shape[:2], size).padded)
    video = out_dir / "demo_clip_translated.mp4"
    result = convert_video(DEMO_CLIP, video, translator, overwrite=True, stabilize=stabilize,
                           preset=choose_preset("auto", backend)[0])
    picture = write_image(out_dir / "side_by_side.png", side_by_side(original, translator(original[None])[0]))
    report = DemoReport(video=video, side_by_side=picture, frames=result.frames, fps=result.fps,
                        notes=list(result.notes))
    if show:
        from .live import LiveOptions, run_live
        from .io.sources import open_source

        log("playing the clip side by side (q or Esc closes the window)")
        run_live(open_source(str(DEMO_CLIP), realtime=True, log=log), translator,
                 LiveOptions(size=size, show=True, side_by_side=True), log=log, stabilize=stabilize)
    return report


def run_live_demo(backend: Backend, source: str, out_dir: Path, size: int | None = 256, show: bool = True,
                  duration: float | None = None, log: Callable[[str], None] = print,
                  stabilize: StabilizeOptions | None = None) -> DemoReport:
    """The demo on a live source, side by side; without a window it records 10 s (or `duration`) to out_dir."""
    from .io.sources import open_source
    from .live import LiveOptions, run_live

    options = LiveOptions(size=size, show=show, side_by_side=True, record=None if show else out_dir / "live.mp4",
                          overwrite=True, duration=duration if show or duration else 10.0)
    with writing(out_dir):  # a read-only or unwritable --out: one line, not a traceback
        out_dir.mkdir(parents=True, exist_ok=True)
    live = run_live(open_source(source, realtime=show, log=log), FrameTranslator(backend, size), options, log=log,
                    stabilize=stabilize)
    return DemoReport(recorded=live.recorded, frames=live.frames, fps=live.fps,
                      error=str(live.error) if live.error else None, exit_code=live.exit_code)


def run(backend: Backend, options: DemoOptions, log: Callable[[str], None] = print,
        stabilize: StabilizeOptions | None = None) -> tuple[DemoReport, bool]:
    """The `demo` command: the bundled clip, or the live demo on `options.source`; returns (report, shown)."""
    from .transforms import parse_size

    size, show = parse_size(options.size), display_wanted(options.show)
    if options.source is not None:
        return run_live_demo(backend, options.source, options.out, size, show, options.duration, log=log,
                             stabilize=stabilize), show
    return run_demo(backend, options.out, size=size, show=show, log=log, stabilize=stabilize), show
