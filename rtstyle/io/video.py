"""Video files in and out with PyAV (FFmpeg's libraries): RGB uint8 frames with exact timestamps.

`VideoReader` decodes a file's first video stream to (h, w, 3) RGB frames, each with its presentation
time in seconds as a `Fraction` (pts x time_base), so rates such as 29.83 (179/6) or 12.5 survive untouched.
`VideoWriter` encodes frames into a new file under a temporary name (`files.make_temp`) and puts it in
place when complete with `files.publish`: as the target on `close()` (or `<stem>.new<suffix>` when the
target appeared meanwhile and `overwrite` is off), or as `<stem>.partial<suffix>` on `close_partial()` (an
interrupted conversion, or a truncated input, still leaves a playable file). It keeps the input's timing
(timestamps snapped to the exact frame grid, see `_output_time_base`), its rotation (display matrix) and
copies its audio and subtitle tracks unchanged (`tracks.TrackCopy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from .tracks import TrackCopy
from .files import OutputAppeared, OutputExistsError, make_temp, publish, publish_free, writes_to

# container format per output suffix; the video codec is H.264 except for WebM (VP9)
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}


# BT.601 limited-range 4:2:0 <-> RGB, what swscale uses for untagged video and for every file this module
# writes, done with OpenCV instead: swscale's rgb24 -> yuv420p costs about 1.4 ms of CPU a 640x360 frame,
# `rgb_to_i420` 0.35 (one thread), time a light model's inference gets back; to RGB both are cheap (0.13 to
# 0.5 ms) but OpenCV's is closer to the exact BT.601 formula (mean error 0.25 against swscale's 1.34, 8-bit
# levels). BENCHMARKS, "Colour conversion and decoder threads". Other matrices, full range and other formats
# keep swscale.
_BT601_TAGS = (2, 5, 6)  # AVColorSpace: unspecified (swscale reads it as BT.601), BT470BG, SMPTE170M
_LIMITED_RANGE = (0, 1)  # AVColorRange: unspecified, MPEG (16-235)
# Full-range (JPEG) Cb/Cr to limited range (16-240): 128 + (c - 128) * 224/255
_LIMITED_CHROMA = np.clip(np.round(128 + (np.arange(256) - 128) * 224 / 255), 0, 255).astype(np.uint8)


def frame_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The (h, w, 3) RGB uint8 of a decoded frame (OpenCV for BT.601 limited 4:2:0, else swscale)."""
    if (frame.format.name == "yuv420p" and frame.colorspace in _BT601_TAGS and frame.color_range in _LIMITED_RANGE
            and frame.width % 2 == 0 and frame.height % 2 == 0):
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def rgb_to_i420(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range planar 4:2:0 ((h * 3/2, w) uint8: Y, then Cb, then Cr) of an even-sided RGB frame.

    Chroma is that of each 2x2 block's mean colour, as swscale makes it (OpenCV's RGB2YUV_I420 keeps the
    top-left pixel's, which aliases fine colour detail, so only its Y plane is used)."""
    h, w = rgb.shape[:2]
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    ycrcb = cv2.cvtColor(cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2YCrCb)
    chroma = cv2.LUT(ycrcb, _LIMITED_CHROMA)
    planes = out[h:].reshape(2, h // 2, w // 2)
    planes[0], planes[1] = chroma[..., 2], chroma[..., 1]
    return out


class VideoReadError(ValueError):
    """A file that cannot be decoded as video; the message says which file and why."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    rate: Fraction  # average frames per second, exact (179/6 for 29.83)
    time_base: Fraction  # unit of the stream's timestamps
    frames: int  # from the container header, else estimated from the duration; 0 when unknown
    duration: float | None  # seconds
    rotation: int  # display rotation in degrees, counter-clockwise (0 when the file has no display matrix)
    codec: str
    audio: str | None  # codec of the first audio stream, None without audio


def _av_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


class VideoReader:
    """Decodes the first video stream of `path`; iterate for (rgb (h, w, 3) uint8, time in seconds).

    `threads` is FFmpeg's decoder threading (`rtstyle.video.codec_threads` picks it for a conversion)."""

    def __init__(self, path: str | Path, threads: str = "AUTO") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoReadError(f"{self.path}: no such file")
        try:
            self.container = av.open(str(self.path))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise VideoReadError(f"{self.path}: not a readable video ({_av_reason(e)})") from e
        try:
            if not self.container.streams.video:
                kinds = sorted({s.type for s in self.container.streams}) or ["none"]
                raise VideoReadError(f"{self.path}: no video stream (streams found: {', '.join(kinds)})")
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = threads  # FFmpeg's: AUTO (frame + slice threads), SLICE, FRAME, NONE
            self.decoded = 0  # frames decoded so far
            self._frames = self._decode()
            first = next(self._frames, None)
            if first is None:
                raise VideoReadError(f"{self.path}: the video stream has no decodable frame")
        except BaseException:
            if hasattr(self, "_frames"):
                self._frames.close()
            self.container.close()
            raise
        self._first = first
        self.info = self._info(first)

    def _info(self, first: av.VideoFrame) -> VideoInfo:
        s = self.stream
        rate = s.average_rate or s.guessed_rate or s.base_rate or Fraction(25)
        duration = None
        if s.duration and s.time_base:
            duration = float(s.duration * s.time_base)
        elif _tag_seconds(s.metadata.get("DURATION")):  # Matroska's per-track length; the container's counts audio
            duration = _tag_seconds(s.metadata["DURATION"])
        elif self.container.duration:
            duration = self.container.duration / av.time_base
        frames = s.frames or (round(duration * rate) if duration else 0)
        audio = self.container.streams.audio[0].codec_context.name if self.container.streams.audio else None
        return VideoInfo(path=self.path, width=first.width, height=first.height, rate=Fraction(rate),
                         time_base=Fraction(s.time_base or Fraction(1, 90000)), frames=int(frames),
                         duration=duration, rotation=int(first.rotation or 0), codec=s.codec_context.name,
                         audio=audio)

    def _decode(self) -> Iterator[av.VideoFrame]:
        try:
            for frame in self.container.decode(self.stream):
                self.decoded += 1
                yield frame
        except av.FFmpegError as e:
            of = f" of {self.info.frames}" if getattr(self, "info", None) and self.info.frames else ""
            raise VideoReadError(f"{self.path}: input ended after {self.decoded}{of} frames (decoding failed: "
                                 f"{_av_reason(e)}; the file is cut short or damaged)") from e

    def ended_early(self) -> str | None:
        """After the frames ran out: why they are fewer than the header announced (a file cut short), or None.

        Counts estimated from a duration may be a frame or two off on a whole file, so a shortfall counts
        from 2 frames or 2 %; a header's exact count (MP4) is held to the same margin, as an edit list may
        hide a frame or two of a healthy file."""
        expected = self.info.frames
        if expected and self.decoded < expected - max(2, expected // 50):
            return (f"{self.path}: input ended after {self.decoded} of {expected} frames (the file is cut short or "
                    "damaged)")
        return None

    def __iter__(self) -> Iterator[tuple[np.ndarray, Fraction]]:
        index = 0
        frame = self._first
        while frame is not None:
            if frame.pts is not None and frame.time_base is not None:
                t = Fraction(frame.pts) * Fraction(frame.time_base)
            else:  # raw streams without timestamps: frames are on the nominal grid
                t = Fraction(index) / self.info.rate
            yield frame_rgb(frame), t  # (h, w, 3)
            index += 1
            frame = next(self._frames, None)

    def close(self) -> None:
        # End the suspended decode generator while its container is still open. Left alone it would live on in
        # a reference cycle (it holds `self`) and be finalised by the garbage collector at some later moment,
        # in whatever thread that happens to be, after the container it decodes from was closed.
        self._frames.close()  # idempotent; `__iter__` then ends at once
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tag_seconds(value: str | None) -> float | None:
    """Seconds of a Matroska DURATION tag ("00:00:02.400000000"), None when absent or unreadable."""
    try:
        h, m, sec = (value or "").split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec) or None
    except ValueError:
        return None


def read_frames(path: str | Path, count: int | None = None) -> list[np.ndarray]:
    """Every frame of a video (`count` None), or `count` frames spread evenly over it, as RGB uint8 (h, w, 3).

    The one way a whole clip is read (int8 calibration, benchmark accuracy frames): the same PyAV decoder, and
    so the same pixels and rotation, as every video the CLI converts.
    """
    with VideoReader(path) as reader:
        total = reader.info.frames
        if count is None or total <= 0:  # a container that does not say its length: decode it all, then pick
            frames = [frame for frame, _ in reader]
        else:
            wanted = set(np.linspace(0, total - 1, count).round().astype(int).tolist())
            frames = [frame for index, (frame, _) in enumerate(reader) if index in wanted]
    if count is not None and len(frames) > count:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
    return frames


def _output_time_base(rate: Fraction, time_base: Fraction | None) -> Fraction:
    """A time base in which both the input's timestamps and the exact frame grid 1/rate are integers.

    1/D with D = lcm(input time-base denominator, rate numerator): 1/1000 (Matroska) and 30 fps give 1/3000,
    where frame k sits at exactly 100k. Keeping the input's 33 ms ticks instead would make the output's
    average rate 29.99 rather than 30. Capped so it fits MP4's 32-bit timescale.
    """
    d = math.lcm(time_base.denominator if time_base else 1, rate.numerator)
    if d >= 2**31:
        d = rate.numerator if rate.numerator < 2**31 else 90000
    return Fraction(1, d)


# x264's speed presets, fastest first. veryfast is the default: a student's 640x360 translations on a 2-core
# Zen 4 took it 9.3 ms of CPU a frame, ultrafast 2.6 ms at twice the file size (benchmarks/encoder_presets.py;
# BENCHMARKS.md, "Encoder presets").
# A fast model shares the cores with the encoder, so a faster preset leaves it more of them.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
DEFAULT_PRESET = "veryfast"


def preset_option():
    """The `--preset` field of the options that write videos (video, benchmark); `auto` is resolved by
    `rtstyle.video.choose_preset` from the model."""
    return field(default="auto", metadata={"choices": ("auto",) + X264_PRESETS, "help": (
        "H.264 encoder speed (x264 preset): a faster one leaves more of the CPU to the model and writes larger "
        "files (ultrafast: about a third of veryfast's encoding time, twice its size); auto: ultrafast for a "
        "light model (a distilled student) or one on a GPU, where encoding would take a large share of the time, "
        f"else {DEFAULT_PRESET}")})


def _encoder(suffix: str, width: int, height: int, preset: str = DEFAULT_PRESET) -> tuple[str, str, dict[str, str]]:
    """(codec, pixel format, options) for an output; H.264 at visually lossless quality at x264 `preset`."""
    if preset not in X264_PRESETS:
        raise ValueError(f"encoder preset must be one of {', '.join(X264_PRESETS)}, got {preset!r}")
    if suffix == ".webm":
        return "libvpx-vp9", "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p", {"crf": "24", "b": "0"}
    codec = "libx264" if "libx264" in av.codecs_available else "h264"
    # 4:2:0 halves chroma resolution and so needs even sides; odd-sized videos keep full chroma instead
    pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    return codec, pix_fmt, ({"crf": "18", "preset": preset} if codec == "libx264" else {})


class VideoWriter:
    """Encodes RGB frames to `path` (written under a temporary name in the same folder until finished).

    `preset` is x264's speed preset, `threads` the encoder's threads (0: its own choice; see
    `rtstyle.video.codec_threads`)."""

    @writes_to(1)
    def __init__(self, path: str | Path, width: int, height: int, rate: Fraction, *,
                 time_base: Fraction | None = None, rotation: int = 0, audio_from: str | Path | None = None,
                 overwrite: bool = False, preset: str = DEFAULT_PRESET, threads: int = 0) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in OUTPUT_FORMATS:
            raise ValueError(f"output {self.path} must end in one of {', '.join(OUTPUT_FORMATS)}")
        if self.path.exists() and not overwrite:
            raise OutputExistsError(f"{self.path} exists; pass --overwrite to replace it")
        self.overwrite = overwrite
        self.notes: list[str] = []
        self._temp = make_temp(self.path, suffix, note=self.notes.append)  # stale temps of killed runs go
        self.tmp = self._temp.path
        self.rate = Fraction(rate)
        self.size = (height, width)
        self.frames = 0
        self._t0: Fraction | None = None
        self._last_pts = -1
        self._last_t = Fraction(0)
        try:
            self.container = av.open(str(self.tmp), "w", format=OUTPUT_FORMATS[suffix])
            codec, pix_fmt, options = _encoder(suffix, width, height, preset)
            self.pix_fmt = pix_fmt
            if pix_fmt == "yuv444p":
                self.notes.append(f"odd size {width}x{height}: encoded as 4:4:4 (4:2:0 needs even sides)")
            self.stream = self.container.add_stream(codec, rate=self.rate, options=options)
            self.stream.codec_context.thread_count = threads  # 0: the encoder's own choice
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, pix_fmt
            self.time_base = _output_time_base(self.rate, time_base)
            self.stream.time_base = self.time_base
            self.stream.codec_context.time_base = self.time_base
            if rotation and hasattr(self.stream, "set_display_rotation"):
                self.stream.set_display_rotation(rotation)
            elif rotation:
                self.notes.append(f"rotation {rotation} not kept: this PyAV cannot write it (needs av>=18)")
            self.audio = TrackCopy(Path(audio_from), self.container, self.stream) if audio_from else None
            if self.audio:
                self.notes.extend(self.audio.notes)
        except BaseException:
            self._discard()
            raise

    def _pts(self, t: Fraction) -> int:
        """Output timestamp of a frame shown at `t` seconds, on the exact 1/rate grid when it is close to it."""
        if self._t0 is None:
            self._t0 = t
        steps = (t - self._t0) * self.rate
        k = round(steps)
        if abs(steps - k) <= Fraction(1, 10):  # input ticks rounded the grid (e.g. 33 ms for 1/30 s)
            t = self._t0 + k / self.rate
        pts = round(t / self.time_base)
        pts = max(pts, self._last_pts + 1)  # encoders need strictly increasing timestamps
        self._last_pts = pts
        self._last_t = pts * self.time_base
        return pts

    def write(self, rgb: np.ndarray, t: Fraction) -> None:
        """Encode one (h, w, 3) RGB uint8 frame shown at `t` seconds."""
        if self.pix_fmt == "yuv420p":
            frame = av.VideoFrame.from_ndarray(rgb_to_i420(np.ascontiguousarray(rgb)), format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._pts(Fraction(t))
        frame.time_base = self.time_base
        frame.duration = round(1 / (self.rate * self.time_base))  # the last frame's duration ends the file
        if self.audio:
            self.audio.pump(until=self._last_t)
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def _finish(self, audio_until: Fraction | None) -> None:
        self.container.mux(self.stream.encode(None))  # flush frames the encoder still holds
        if self.audio:
            self.audio.finish(until=audio_until)
        self.container.close()
        if self.audio:  # only now: the output's audio stream was made from the input's as a template, and PyAV
            self.audio.close()  # crashes on an output whose template's container is already closed (PyAV #1137)

    def close(self) -> Path:
        """Finish the file and put it in place; all of the input's audio is copied. When the output appeared
        meanwhile (another run) and `overwrite` is off, raises `OutputAppeared` with this file kept as
        `<stem>.new<suffix>`."""
        try:
            self._finish(audio_until=None)
        except BaseException:
            self._discard()
            raise
        try:
            publish(self.tmp, self.path, overwrite=self.overwrite)
        except OutputAppeared:
            raise OutputAppeared(self.path, kept=self._keep("new")) from None
        except BaseException:
            self._discard()
            raise
        self._temp.release()
        return self.path

    def close_partial(self) -> Path | None:
        """Finish what was written as a playable `<stem>.partial<suffix>`; None (nothing kept) without frames."""
        if self.frames == 0:
            self._discard()
            return None
        try:
            self._finish(audio_until=self._last_t + 1 / self.rate)
        except BaseException:
            self._discard()
            raise
        return self._keep("partial")

    def _keep(self, tag: str) -> Path:
        """The finished temporary file under the first free `<stem>.<tag><suffix>` (never replacing one)."""
        try:
            return publish_free(self.tmp, self.path, tag)
        except BaseException:
            self._discard()
            raise
        finally:
            self._temp.release()

    def _discard(self) -> None:
        try:
            if getattr(self, "container", None):
                self.container.close()
            if getattr(self, "audio", None):
                self.audio.close()
        except Exception:  # the file is being thrown away; its trailer does not matter
            pass
        self.tmp.unlink(missing_ok=True)
        self._temp.release()

    def discard(self) -> None:
        """Drop the output (nothing is renamed)."""
        self._discard()
