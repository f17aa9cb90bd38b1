"""Real frames for post-training quantisation and accuracy checks, from the media bundled in `rtstyle/assets`.

Quantisation calibrates activation ranges on frames; random noise has other statistics than video (a
generator's InstanceNorm inputs differ), so only real frames are used: the bundled 4 s clip of bottles on
a table (`demo_clip.mp4`) and the webcam frame (`webcam.jpg`, a person in front of a laptop camera), all
Intel sample videos, CC-BY 4.0 (rtstyle/assets/ATTRIBUTION.md). The held-out set on which a quantised
model's PSNR is checked shares no frame with the calibration set: other clip frames, the bottle photo
(`bottle.jpg`) and a second webcam frame from later in the same recording (`webcam_f45.jpg`), so the check
also covers the scene it was not calibrated on frame for frame. Frames are brought to the generator's
(h, w) the way inference brings them there (`rtstyle.transforms`): centre crop to the target aspect,
`resize_frames`, `frames_to_tensor`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...store import ASSETS_DIR, DEMO_CLIP  # the clip: 120 frames, 640x360
from ...transforms import frames_to_tensor, resize_frames

CALIBRATION_PHOTO = "webcam.jpg"
HELDOUT_PHOTOS = ("bottle.jpg", "webcam_f45.jpg")
HELDOUT_CLIP_FRAMES = (17, 57, 97)  # between the calibration frames, never one of them
BOTTLE_PHOTO_CLIP_FRAME = 60  # bottle.jpg is frame 300 of the source video, the clip starts at frame 240
CALIBRATION_COUNT = 20  # NNCF's statistics settle well before this on the generator (issue 6 research)


def read_clip(path: Path = DEMO_CLIP) -> list[np.ndarray]:
    """Every frame of a short clip as RGB uint8 (h, w, 3), decoded by `rtstyle.io.video` (the clip is small)."""
    from ...io.video import read_frames

    return read_frames(path)


def fit_frame(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (h, w, 3): centre crop to the aspect of `hw`, then `resize_frames`."""
    height, width = frame.shape[:2]
    h, w = hw
    if height * w > width * h:  # too tall for the target aspect: crop rows
        keep = max(1, round(width * h / w))
        top = (height - keep) // 2
        frame = frame[top:top + keep]
    else:
        keep = max(1, round(height * w / h))
        left = (width - keep) // 2
        frame = frame[:, left:left + keep]
    return resize_frames(np.ascontiguousarray(frame)[None], h, w)[0]


def calibration_indices(clip_length: int, count: int) -> list[int]:
    """`count` clip frame indices spread over the clip, avoiding the held-out ones."""
    held = set(HELDOUT_CLIP_FRAMES) | {BOTTLE_PHOTO_CLIP_FRAME}
    candidates = [i for i in range(clip_length) if all(abs(i - j) > 2 for j in held)]
    picks = np.linspace(0, len(candidates) - 1, max(count, 1)).round().astype(int)
    return sorted({candidates[i] for i in picks})


def calibration_frames(hw: tuple[int, int], count: int = CALIBRATION_COUNT) -> list[np.ndarray]:
    """`count` calibration inputs, each (1, 3, h, w) float32 in [-1, 1]: clip frames and the webcam photo."""
    clip = read_clip()
    frames = [clip[i] for i in calibration_indices(len(clip), count - 1)]
    from ...io.images import read_image

    frames.append(read_image(ASSETS_DIR / CALIBRATION_PHOTO))
    return [frames_to_tensor(fit_frame(f, hw)).numpy() for f in frames[:count]]


def heldout_frames(hw: tuple[int, int]) -> tuple[list[str], np.ndarray]:
    """(names, uint8 frames (n, h, w, 3)) for accuracy checks; none of them is a calibration frame."""
    from ...io.images import read_image

    clip = read_clip()
    names = [f"demo_clip.mp4#{i}" for i in HELDOUT_CLIP_FRAMES] + list(HELDOUT_PHOTOS)
    frames = [clip[i] for i in HELDOUT_CLIP_FRAMES] + [read_image(ASSETS_DIR / n) for n in HELDOUT_PHOTOS]
    return names, np.stack([fit_frame(f, hw) for f in frames])
