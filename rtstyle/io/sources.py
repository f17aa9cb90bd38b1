"""Frame sources for the live loop: cameras, network streams, video files and image folders.

`open_source(spec)` picks one from the `--source` text: a number is a camera index (OpenCV), a URL
(`rtsp://`, `http(s)://`, ...) a network stream (PyAV/FFmpeg: MJPEG over HTTP, RTSP, HLS), a video file is
decoded in order, a folder or glob of images is read in order. Live sources (camera, stream) run a capture
thread that reads continuously into a one-slot `LatestFrame`: the translator always takes the newest frame
and older ones are dropped, so latency stays bounded when translation is slower than the camera. A stream
that drops is reopened a few times before the source ends with a message saying why.
"""

from __future__ import annotations

import glob
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

from ..errors import UserError
from ..transforms import to_rgb_uint8
from .images import ImageReadError, read_image
from .inputs import IMAGE_SUFFIXES, VIDEO_SUFFIXES, files_in
from .video import VideoReader, VideoReadError, frame_rgb

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class SourceError(UserError, OSError):
    """A source that cannot be opened; the message says which and what to try."""


@dataclass
class Captured:
    rgb: np.ndarray  # (h, w, 3) uint8
    index: int  # position in the source (live: counts frames captured, dropped ones included)
    captured_at: float  # time.monotonic() when it was read
    pts: Fraction | None = None  # presentation time in the file (file sources)


class Source:
    """`read()` returns the next frame to translate, or None when the source has ended (`error` says why)."""

    live = False
    rate: Fraction | None = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: str | None = None  # why it ended early (lost stream); None for a normal end
        self.dropped = 0  # live sources: frames replaced by newer ones before being read

    def read(self, timeout: float = 5.0) -> Captured | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LatestFrame:
    """A one-frame mailbox: `put` replaces (counting the frame it drops), `take` waits for a newer one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Captured | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: Captured) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float) -> Captured | None:
        """The newest unread frame; None when closed and empty, or after `timeout` seconds without one."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout=timeout)
            item, self._item = self._item, None
            return item


class LiveSource(Source):
    """A capture thread calling `grab()` continuously into a `LatestFrame`; `reopen()` after a failure."""

    live = True
    retries = 3
    retry_delay = 1.0
    stable_after = 10.0  # seconds of frames after a reconnection before a new outage counts from 1 again

    def __init__(self, name: str, log: Callable[[str], None] | None = None) -> None:
        super().__init__(name)
        self.log = log or (lambda message: None)
        self.slot = LatestFrame()
        self._stop = threading.Event()
        self._count = 0
        self._thread = threading.Thread(target=self._capture, name=f"capture {name}", daemon=True)

    def start(self) -> "LiveSource":
        self._thread.start()
        return self

    def grab(self) -> np.ndarray | None:  # one frame, None when the source gives no more
        raise NotImplementedError

    def reopen(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def _capture(self) -> None:
        failures = 0
        up_since = time.monotonic()  # when the source last (re)connected
        try:
            while not self._stop.is_set():
                try:
                    rgb = self.grab()
                    reason = "the source sent no more frames" if rgb is None else None
                except Exception as e:  # network errors, decoder errors: handled by retrying
                    rgb, reason = None, f"{type(e).__name__}: {e}"
                if rgb is not None:
                    # The count starts again only once the source has stayed up a while: a server that accepts,
                    # sends a frame and drops would otherwise be retried forever at "(1/3)" (issue 15).
                    if failures and time.monotonic() - up_since >= self.stable_after:
                        failures = 0
                    self.slot.put(Captured(rgb, self._count, time.monotonic()))
                    self._count += 1
                    continue
                if self._stop.is_set():
                    break
                failures += 1
                if failures > self.retries:
                    self.error = f"{self.name}: lost ({reason}); gave up after {self.retries} reconnection attempts"
                    break
                self.log(f"{self.name}: {reason}; reconnecting ({failures}/{self.retries})")
                time.sleep(self.retry_delay)
                try:
                    self.reopen()
                except Exception as e:
                    self.log(f"{self.name}: reconnection failed: {e}")
                up_since = time.monotonic()
        finally:
            self.slot.close()

    def read(self, timeout: float = 5.0) -> Captured | None:
        item = self.slot.take(timeout)
        self.dropped = self.slot.dropped
        if item is None and self._thread.is_alive() and self.error is None:
            self.error = f"{self.name}: no frame for {timeout:.0f} s"
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=getattr(self, "timeout", 5.0) + 2.0)
        if not self._thread.is_alive():  # a capture blocked in a read past its timeout keeps its handle
            self.release()


class CameraSource(LiveSource):
    """A local camera through OpenCV (V4L2, AVFoundation, DirectShow, ...)."""

    def __init__(self, index: int, log: Callable[[str], None] | None = None) -> None:
        import cv2

        super().__init__(f"camera {index}", log)
        self.index = index
        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(
                f"could not open camera {index}: no such device, or no permission to use it. "
                "Try another index (--source 1; on Linux `ls /dev/video*` lists them), check that your user "
                "may use the camera (Linux: the 'video' group; macOS: Privacy > Camera), and close other "
                "programs holding it")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else None

    def grab(self) -> np.ndarray | None:
        ok, bgr = self.cap.read()
        return to_rgb_uint8(bgr, bgr=True) if ok and bgr is not None else None

    def reopen(self) -> None:
        import cv2

        self.cap.release()
        self.cap = cv2.VideoCapture(self.index)

    def release(self) -> None:
        self.cap.release()


class StreamSource(LiveSource):
    """A network stream decoded by FFmpeg (MJPEG over HTTP, RTSP, HLS, ...) with low-latency options."""

    def __init__(self, url: str, timeout: float = 10.0, log: Callable[[str], None] | None = None) -> None:
        super().__init__(url, log)
        self.url, self.timeout = url, timeout
        self.container = None
        try:
            self._open()
        except (av.FFmpegError, OSError) as e:
            raise SourceError(f"could not open stream {url}: {getattr(e, 'strerror', None) or e}. Check the "
                              "address and port, that the server is running and reachable from here, and "
                              "the path of the stream on it") from e

    def _open(self) -> None:
        # nobuffer/low_delay and a small probe: start with the first frames instead of buffering seconds
        options = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "65536", "analyzeduration": "0"}
        if self.url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"  # UDP loses packets on busy networks: torn frames
        container = av.open(self.url, options=options, timeout=(self.timeout, self.timeout))
        if not container.streams.video:
            container.close()
            raise SourceError(f"stream {self.url} carries no video")
        self.container = container
        stream = container.streams.video[0]
        self.rate = stream.average_rate or stream.guessed_rate
        self._frames = container.decode(stream)

    def grab(self) -> np.ndarray | None:
        if self.container is None:
            raise SourceError("not connected")
        frame = next(self._frames, None)
        return None if frame is None else frame_rgb(frame)

    def reopen(self) -> None:
        self.release()
        self._open()

    def release(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
            self._frames = iter(())


class FileSource(Source):
    """A video file, every frame in order; `realtime` paces frames to their timestamps (for a window)."""

    def __init__(self, path: Path, realtime: bool = False) -> None:
        super().__init__(str(path))
        try:
            self.reader = VideoReader(path)
        except VideoReadError as e:
            raise SourceError(str(e)) from e
        self.rate = self.reader.info.rate
        self.realtime = realtime
        self._frames = iter(self.reader)
        self._index = 0
        self._start: tuple[float, Fraction] | None = None

    def read(self, timeout: float = 5.0) -> Captured | None:
        try:
            item = next(self._frames, None)
        except VideoReadError as e:
            self.error = str(e)
            return None
        if item is None:
            return None
        rgb, pts = item
        if self.realtime:
            if self._start is None:
                self._start = (time.monotonic(), pts)
            due = self._start[0] + float(pts - self._start[1])
            time.sleep(max(0.0, due - time.monotonic()))
        self._index += 1
        return Captured(rgb, self._index - 1, time.monotonic(), pts)

    def close(self) -> None:
        self.reader.close()


class ImageSource(Source):
    """Still images in order; unreadable ones are skipped with a message in `skipped`."""

    def __init__(self, paths: list[Path], name: str) -> None:
        super().__init__(name)
        self.paths = paths
        self.skipped: list[str] = []
        self._next = 0

    def read(self, timeout: float = 5.0) -> Captured | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            try:
                return Captured(read_image(path), self._next - 1, time.monotonic())
            except ImageReadError as e:
                self.skipped.append(str(e))
        return None


SOURCE_HELP = "camera index, rtsp:// or http(s):// stream (e.g. MJPEG), video file, or folder/glob of images"


def open_source(spec: str | int, *, realtime: bool = False, log: Callable[[str], None] | None = None) -> Source:
    """The source `--source` names (see the module docstring); raises SourceError with what to try."""
    text = str(spec).strip()
    if text.isdigit():
        return CameraSource(int(text), log).start()
    if text.lower().startswith(STREAM_SCHEMES):
        return StreamSource(text, log=log).start()
    path = Path(text).expanduser()
    if path.is_dir():
        images = files_in(path, IMAGE_SUFFIXES)
        if not images:
            raise SourceError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageSource(images, str(path))
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageSource([path], str(path))
        return FileSource(path, realtime=realtime)
    if glob.has_magic(text):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        images = [p for p in matches if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise SourceError(f"pattern {text!r} matches no image")
        return ImageSource(images, text)
    raise SourceError(f"source {text!r} not found: expected a camera index (0, 1, ...), a stream URL "
                      f"({', '.join(s[:-3] for s in STREAM_SCHEMES[:4])}, ...), a video file "
                      f"({', '.join(VIDEO_SUFFIXES[:4])}, ...), or a folder or glob of images")
