"""The virtual-camera output (`webcam --virtual-cam`): translated frames as a camera that meeting apps can pick.

pyvirtualcam (the `[vcam]` extra) drives v4l2loopback on Linux and OBS Virtual Camera on Windows and macOS.
`check_virtual_camera` runs before the model loads and opens the device once, so a missing driver or device
fails at start with what to install, never mid-run; the camera itself opens on the first frame, at that
frame's size and the source's rate (a camera's size is fixed for the session, so later frames of another
size, e.g. a folder of images, are letterboxed into it). `device_frame` is the pure conversion: the view
fitted to the camera and put in the pixel format it was opened with (RGB, BGR or I420; pyvirtualcam converts
RGB to the device's native format itself).
"""

from __future__ import annotations

import sys
from fractions import Fraction

import cv2
import numpy as np

from ..errors import UserError
from ..transforms import resize_frames
from .sinks import LiveStatus

DEFAULT_RATE = 30.0  # a camera or stream that does not say its rate
FORMATS = ("RGB", "BGR", "I420")


def install_hint() -> str:
    """What to install or load for a virtual camera on this platform."""
    if sys.platform.startswith("linux"):
        return ("load the v4l2loopback driver: sudo apt install v4l2loopback-dkms && "
                "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=rtstyle")
    return "install OBS Studio (27 or newer), start it once and click 'Start Virtual Camera', then 'Stop'"


def _pyvirtualcam():
    try:
        import pyvirtualcam
    except ImportError:
        raise UserError("--virtual-cam needs pyvirtualcam: pip install -e '.[vcam]' (and a virtual camera driver: "
                        f"{install_hint()})") from None
    return pyvirtualcam


def camera_rate(rate: Fraction | float | None) -> float:
    """The rate the camera announces: the source's, else 30."""
    return float(rate) if rate else DEFAULT_RATE


def camera_size(view_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the camera for a first view of `view_hw`: even sides, which I420 and most apps need."""
    h, w = view_hw
    return max(2, h - h % 2), max(2, w - w % 2)


def device_frame(view: np.ndarray, size: tuple[int, int], fmt: str = "RGB") -> np.ndarray:
    """(h, w, 3) uint8 RGB view -> what `Camera.send` takes for a camera of `size` (h, w) in `fmt`.

    RGB/BGR: (h, w, 3); I420: (h * 3 // 2, w) planar Y, U, V. A view of another size is letterboxed in.
    """
    h, w = size
    if view.shape[:2] != (h, w):
        scale = min(h / view.shape[0], w / view.shape[1])
        nh, nw = max(1, round(view.shape[0] * scale)), max(1, round(view.shape[1] * scale))
        fitted = np.zeros((h, w, 3), np.uint8)
        top, left = (h - nh) // 2, (w - nw) // 2
        fitted[top:top + nh, left:left + nw] = resize_frames(view[None], nh, nw)[0]
        view = fitted
    if fmt == "RGB":
        return np.ascontiguousarray(view)
    if fmt == "BGR":
        return np.ascontiguousarray(view[..., ::-1])
    if fmt == "I420":
        return cv2.cvtColor(view, cv2.COLOR_RGB2YUV_I420)  # (h * 3 / 2, w)
    raise ValueError(f"pixel format {fmt!r}: expected one of {', '.join(FORMATS)}")


def _open(pyvirtualcam, width: int, height: int, fps: float, device: str | None, fmt: str):
    try:
        return pyvirtualcam.Camera(width, height, fps, fmt=getattr(pyvirtualcam.PixelFormat, fmt), device=device)
    except RuntimeError as e:  # pyvirtualcam's one error type for "no backend could open a device"
        where = f" {device}" if device else ""
        raise UserError(f"no virtual camera{where} could be opened ({e}); {install_hint()}; "
                        "or drop --virtual-cam") from None


def check_virtual_camera(device: str | None = None) -> None:
    """Raise UserError (what to install) unless a virtual camera can be opened; nothing is left open."""
    pyvirtualcam = _pyvirtualcam()
    _open(pyvirtualcam, 320, 240, DEFAULT_RATE, device, "RGB").close()


class VirtualCameraSink:
    """A live-loop sink: the first view opens the camera at its size and `rate`; each view is sent to it."""

    def __init__(self, rate: Fraction | float | None, device: str | None = None, fmt: str = "RGB",
                 log=print) -> None:
        self._pyvirtualcam = _pyvirtualcam()
        self.fps, self.device, self.fmt, self.log = camera_rate(rate), device, fmt, log
        self.camera = None
        self.size: tuple[int, int] | None = None

    def started(self, source, backend) -> None:
        self.fps = camera_rate(source.rate)

    def write(self, view: np.ndarray, status: LiveStatus) -> None:
        if self.camera is None:
            self.size = camera_size(view.shape[:2])
            h, w = self.size
            self.camera = _open(self._pyvirtualcam, w, h, self.fps, self.device, self.fmt)
            self.log(f"virtual camera {self.camera.device}: {w}x{h} at {self.fps:g} fps "
                     f"({self.camera.native_fmt} on the device)")
        self.camera.send(device_frame(view, self.size, self.fmt))

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
            self.camera = None
