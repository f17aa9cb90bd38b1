"""Where the live loop's frames go besides the window and the recording: the `Sink` interface and its status.

`run_live` hands every shown view to each sink's `write(view, status)` on the display thread, so a sink must
return at once: the virtual camera copies into its device, the MJPEG server keeps only the newest view and
encodes it in its own thread. `LiveStatus` is what the overlay shows, for a sink that reports it (`/stats`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class LiveStatus:
    frames: int  # shown so far
    fps: float  # smoothed display rate
    latency_s: float  # capture -> shown, this frame
    dropped: int  # frames the source or the translation stage replaced by newer ones
    skipped: int  # frames whose last output was reused (--skip-similar)
    size: int | None  # processing size (None: native)


class Sink(Protocol):
    """A live output: `started` once the source and backend are open (the rate, what /stats names), `write` per
    view (must not block the loop), `close` releases it (called once, in `finally`)."""

    def started(self, source, backend) -> None:  # source: sources.Source, backend: backends.Backend
        ...

    def write(self, view: np.ndarray, status: LiveStatus) -> None:  # view: (h, w, 3) uint8 RGB
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class OutputOptions:
    """Where `webcam` sends the view besides the window and --record."""

    virtual_cam: bool = field(default=False, metadata={
        "help": "also send the view to a virtual camera for meeting apps (pyvirtualcam, [vcam] extra)"})
    virtual_cam_device: str | None = field(default=None, metadata={
        "metavar": "DEVICE", "help": "Linux: the v4l2loopback device, e.g. /dev/video2"})
    serve: str | None = field(default=None, metadata={
        "metavar": "[HOST:]PORT", "help": "also serve the view as MJPEG at /stream.mjpg (+ /snapshot.jpg, /stats); "
                                          "host 127.0.0.1 by default"})
    token: str | None = field(default=None, metadata={
        "help": "--serve: the access token every request needs [generated off loopback]"})


def open_sinks(options: OutputOptions, model: str = "", log=print) -> list[Sink]:
    """The outputs `webcam` asked for, checked and started before the model loads, so a missing virtual-camera
    driver or a busy port fails at start. The virtual camera opens at the first frame's size."""
    sinks: list[Sink] = []
    with close_on_error(sinks):
        if options.virtual_cam:
            from .vcam import VirtualCameraSink, check_virtual_camera

            check_virtual_camera(options.virtual_cam_device)
            sinks.append(VirtualCameraSink(None, options.virtual_cam_device, log=log))
        if options.serve is not None:
            from ..serve.mjpeg import MJPEGSink
            from ..serve.security import parse_address

            host, port = parse_address(options.serve)
            sinks.append(MJPEGSink(host, port, options.token, model=model, log=log))
    return sinks


@contextmanager
def close_on_error(sinks):
    """Close `sinks` if the block raises (a model or source that fails to open after them), then re-raise."""
    try:
        yield sinks
    except BaseException:
        close_sinks(sinks)
        raise


def close_sinks(sinks) -> None:
    for sink in sinks:
        sink.close()
