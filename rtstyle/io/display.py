"""The live loop's window (OpenCV highgui): showing frames, the fps/latency overlay, and the keys.

Opening a window where there is no display makes OpenCV's Qt backend abort the whole process, so
`check_display` first makes sure one is reachable (an X server socket, or Wayland) and that this OpenCV
build has a GUI at all (`opencv-python-headless` has none), and raises `DisplayUnavailable` with what to do
instead (`--no-show`, or a virtual display).
"""

from __future__ import annotations

from ..errors import UserError
import os
import socket
import sys

import cv2
import numpy as np

# key code -> action; '=' and '_' are the unshifted '+' and '-' keys
KEYS = {ord("q"): "quit", 27: "quit", ord("s"): "snapshot", ord(" "): "toggle", ord("+"): "bigger",
        ord("="): "bigger", ord("-"): "smaller", ord("_"): "smaller", ord("o"): "overlay"}
KEY_HELP = "keys: q/Esc quit, s snapshot, space original/translated, +/- processing size, o overlay"


class DisplayUnavailable(UserError, RuntimeError):
    """No window can be opened here; the message says why and what to use instead."""


def _gui_backend() -> str:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip()
    return "UNKNOWN"


def _x_server_reachable(display: str) -> bool:
    """Connect to the X server `display` names (':0', 'unix:1', 'host:0.0') without speaking X."""
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return False
    try:
        if host in ("", "unix"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                try:
                    s.connect(f"/tmp/.X11-unix/X{number}")
                except OSError:
                    if not sys.platform.startswith("linux"):
                        raise
                    s.connect(f"\0/tmp/.X11-unix/X{number}")  # Linux abstract socket (Xvfb, XWayland)
            return True
        with socket.create_connection((host, 6000 + int(number)), timeout=2):
            return True
    except OSError:
        return False


def check_display() -> None:
    """Raise DisplayUnavailable unless a window can open here."""
    hint = ("run headless with --no-show (add --record out.mp4 to keep the result), "
            "or start a virtual display (e.g. `xvfb-run python cli.py webcam ...`)")
    gui = _gui_backend()
    if gui.upper().startswith("NONE"):
        raise DisplayUnavailable(f"this OpenCV build has no GUI support (GUI: {gui}; opencv-python-headless?): "
                                 f"install opencv-python, or {hint}")
    if sys.platform.startswith(("win", "darwin")):
        return
    display = os.environ.get("DISPLAY", "")
    if display:
        if not _x_server_reachable(display):
            raise DisplayUnavailable(f"cannot connect to the X display DISPLAY={display!r}; {hint}")
        return
    if not os.environ.get("WAYLAND_DISPLAY"):
        raise DisplayUnavailable(f"no display to open a window on (DISPLAY is not set); {hint}")


class Window:
    """One OpenCV window; `show(rgb)` draws a frame, `poll()` returns the action of a pressed key."""

    def __init__(self, title: str = "rtstyle") -> None:
        check_display()
        self.title = title
        try:
            # GUI_NORMAL: no Qt toolbar/status bar, the window is exactly the picture
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as e:
            raise DisplayUnavailable(f"OpenCV could not open a window: {e}") from e
        self._shown = False

    def show(self, rgb: np.ndarray) -> None:
        cv2.imshow(self.title, np.ascontiguousarray(rgb[:, :, ::-1]))
        self._shown = True

    def poll(self, wait_ms: int = 1) -> str | None:
        """The action of a key pressed within `wait_ms` (this also lets the window repaint); 'quit' if closed."""
        key = cv2.waitKey(wait_ms)
        if key != -1:
            return KEYS.get(key & 0xFF)
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return "quit"  # closed with the window manager's button
        return None

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


def draw_overlay(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """A copy of `rgb` with `lines` of text on a dark box in the top-left corner."""
    out = rgb.copy()
    scale = max(0.4, min(out.shape[0], out.shape[1]) / 720)
    thickness = 1
    height = int(22 * scale) + 4
    width = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for line in lines) + 10
    box = out[: height * len(lines) + 6, :width]
    box[:] = (box * 0.35).astype(np.uint8)  # darken, so the text reads on any picture
    for i, line in enumerate(lines):
        cv2.putText(out, line, (5, (i + 1) * height), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
    return out


def compose(original: np.ndarray, translated: np.ndarray, side_by_side: bool, show_original: bool) -> np.ndarray:
    """The view: translated (or original when toggled), or original | translated side by side."""
    right = original if show_original else translated
    if side_by_side:
        return np.concatenate([original, right], axis=1)  # (h, 2w, 3)
    return right
