"""Flow-guided temporal stabilisation of translated frames (`--stabilize`): less flicker, same content.

A per-frame model draws each frame independently, so textures it invents flicker (the reference's issue
#443). Following blind temporal consistency (Bonneel et al., SIGGRAPH Asia 2015) and the short-term term of
Lai et al. (ECCV 2018), each output is blended with the previous *output* warped to the current frame along
the optical flow of the *input* frames:

    out_t = a * warp(out_{t-1}, flow_{t->t-1}) + (1 - a) * translated_t

The weight `a` is `strength` where the flow can be trusted and falls to 0 where it cannot: pixels where the
previous input frame, moved along the flow, does not match the new one (occlusion, disocclusion, a wrong
flow: the warped-input agreement Bonneel et al. weigh by; `check="forward-backward"` uses Ruder et al.'s
2016 round-trip test instead, at the cost of a second flow), and pixels where the new translation differs
strongly from the warped one (new content the flow did not see). A scene cut (most of the frame
inconsistent, or the input far from its own warped predecessor) resets the history. Being recursive, this is
an exponential moving average along motion trajectories.

The work is split in two so it overlaps with inference: `MotionEstimator` (input frames only: luma at a
reduced size, DIS flow, trust mask, cut test) runs in the decode/capture stage; `Blender` (needs the
translated frame) runs in the encode/display stage. `Stabilizer` chains them for a caller that handles one
frame at a time; the live loop runs the motion in a flow thread beside inference (`steady.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import UserError
from .temporal import consistency_mask, gray, inside, make_flow, warp


DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


CHECKS = ("forward-backward", "photometric")


DEFAULT_STRENGTH = 0.93  # on by default since issue 13's figures (BENCHMARKS.md, "The stabiliser ... tuned")


def stabilize_option():
    """The `--stabilize [STRENGTH]` field of the video, webcam and demo options: on by default, 0 is off."""
    return field(default=DEFAULT_STRENGTH, metadata={
        "nargs": "?", "const": DEFAULT_STRENGTH, "metavar": "STRENGTH",
        "help": "steady the output: blend it with the previous output warped along the input's optical flow, where "
                "the flow is trusted (rtstyle/stabilize.py); STRENGTH in [0, 1), 0 for plain per-frame output"})


def stabilize_options(strength: float | None) -> StabilizeOptions | None:
    """--stabilize STRENGTH as the options the pipeline takes: None when off (None or 0); a UserError out of
    [0, 1). The one place video, webcam, demo, serve and benchmark turn the option into options."""
    return StabilizeOptions(strength=strength) if strength else None


@dataclass(frozen=True)
class StabilizeOptions:
    """How strongly and at what cost outputs are steadied (the `--stabilize [STRENGTH]` option)."""

    strength: float = DEFAULT_STRENGTH  # weight of the warped previous output where the flow is trusted, in [0, 1)
    flow_size: int = 144  # short side of the luma the flow is computed on (the input, downscaled; measured)
    flow_preset: str = "medium"  # DIS preset: ultrafast, fast or medium (measured: the faster ones jitter)
    difference: float = 0.3  # luma difference (0..1, after a blur) at which the warped output's weight halves
    cut_inconsistent: float = 0.6  # a frame with more than this share of inconsistent flow is a cut
    cut_difference: float = 0.2  # ... or whose luma differs this much (mean abs, 0..1) from its warped predecessor
    # How the flow is checked: "forward-backward" (a second flow, t-1 -> t, must undo the first; Ruder et al.
    # 2016) or "photometric" (the input frame t-1 moved along the flow must match frame t; one flow, half the
    # cost, as Bonneel et al. 2015 weigh by warped-input agreement).
    check: str = "photometric"  # measured: steadier and cheaper than forward-backward (BENCHMARKS.md)
    # check photometric: a pixel is untrusted where the blurred luma mismatch exceeds this fraction of the frame's
    # contrast (its mean absolute luma deviation), so a low-contrast scene is judged by its own scale
    photometric: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength < 1.0:
            raise UserError(f"--stabilize {self.strength:g}: expected a strength in [0, 1) (0: off)")
        if self.flow_size < 16:
            raise ValueError(f"stabilize flow_size must be at least 16, got {self.flow_size}")
        if self.check not in CHECKS:
            raise ValueError(f"stabilize check must be one of {', '.join(CHECKS)}, got {self.check!r}")
        if self.flow_preset not in DIS_PRESETS:
            raise ValueError(f"stabilize flow_preset must be one of {', '.join(DIS_PRESETS)}, got {self.flow_preset!r}")


@dataclass
class Motion:
    """How input frame t relates to t-1, at the reduced size: what `Blender` needs besides the translation."""

    flow: np.ndarray | None  # (h', w', 2) float32, pixel of t -> its place in t-1; None: no predecessor
    confidence: np.ndarray | None  # (h', w') float32 in [0, 1]: the consistency mask, softened
    cut: bool = False  # scene cut, first frame or size change: start over
    reason: str = ""


@dataclass
class MotionEstimator:
    """Input frames (h, w, 3) uint8 RGB, in order -> `Motion` per frame. Runs in the decode/capture stage."""

    options: StabilizeOptions = field(default_factory=StabilizeOptions)
    cuts: int = 0

    def __post_init__(self) -> None:
        self._flow = make_flow("dis", DIS_PRESETS[self.options.flow_preset])
        self._prev: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None

    def reset(self) -> None:
        self._prev = self._shape = None

    def __call__(self, rgb: np.ndarray) -> Motion:
        g = gray(rgb, min(self.options.flow_size, min(rgb.shape[:2])))
        prev, shape = self._prev, self._shape
        self._prev, self._shape = g, rgb.shape
        if prev is None:
            return Motion(None, None, cut=True, reason="first frame")
        if shape != rgb.shape:
            self.cuts += 1
            return Motion(None, None, cut=True, reason=f"size changed {shape[:2]} -> {rgb.shape[:2]}")
        back = self._flow(g, prev)  # (h', w', 2)
        moved = warp(prev, back).astype(np.float32)
        if self.options.check == "forward-backward":
            mask = consistency_mask(back, self._flow(prev, g))
        else:
            mismatch = cv2.GaussianBlur(np.abs(moved - g), (5, 5), 1.0)
            contrast = max(float(np.mean(np.abs(g - g.mean()))), 1.0)
            mask = (mismatch < self.options.photometric * contrast) & inside(back)
        inconsistent = 1.0 - float(mask.mean())
        change = float(np.mean(np.abs(moved[mask] - g[mask]))) / 255.0 if mask.any() else 1.0
        if inconsistent > self.options.cut_inconsistent or change > self.options.cut_difference:
            self.cuts += 1
            return Motion(None, None, cut=True, reason=f"cut ({inconsistent:.0%} inconsistent, change {change:.2f})")
        # soften the mask so a blend does not show the mask's staircase edges after upscaling
        confidence = cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 1.0)
        return Motion(back, confidence)


def upscale_flow(flow: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h', w', 2) flow -> (h, w, 2): resized, and its vectors scaled to the new pixel size."""
    h, w = hw
    sy, sx = h / flow.shape[0], w / flow.shape[1]
    big = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
    big[..., 0] *= sx
    big[..., 1] *= sy
    return big


def blend_weight(translated: np.ndarray, warped: np.ndarray, confidence: np.ndarray,
                 options: StabilizeOptions) -> np.ndarray:
    """(h', w') weight of the warped previous output: strength x confidence x agreement of the two outputs.

    Agreement is 1 / (1 + (d / difference)^2) on their luma difference d (0..1), taken at the confidence's size
    after a blur: flicker (small, fine-grained differences) is blended away, new content (large differences)
    keeps the new translation.
    """
    d = cv2.cvtColor(cv2.absdiff(translated, warped), cv2.COLOR_RGB2GRAY)  # (h, w) uint8
    d = cv2.resize(d, confidence.shape[::-1], interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    d = cv2.GaussianBlur(d, (5, 5), 1.0)
    agreement = 1.0 / (1.0 + (d / options.difference) ** 2)
    return options.strength * confidence * agreement


@dataclass
class Blender:
    """Translated frames (h, w, 3) uint8 + their `Motion`, in order -> stabilised frames. Encode/display stage."""

    options: StabilizeOptions = field(default_factory=StabilizeOptions)

    def __post_init__(self) -> None:
        self._prev: np.ndarray | None = None

    def __call__(self, translated: np.ndarray, motion: Motion) -> np.ndarray:
        prev = self._prev
        if motion.cut or prev is None or prev.shape != translated.shape or motion.flow is None:
            self._prev = translated
            return translated
        hw = translated.shape[:2]
        translated = np.ascontiguousarray(translated)
        warped = warp(prev, upscale_flow(motion.flow, hw))  # (h, w, 3) uint8
        # the weight is found at the flow's size (cheap, and blind to pixel noise), then upscaled
        weight = blend_weight(translated, warped, motion.confidence, self.options)
        weight = cv2.resize(weight, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)  # (h, w) float32
        # out = weight * warped + (1 - weight) * translated, in one pass over the uint8 frames
        self._prev = out = cv2.blendLinear(warped, translated, weight, 1.0 - weight)
        return out

    def reuse(self, motion: Motion) -> np.ndarray | None:
        """The previous output moved along `motion` (a skipped frame, `--skip-similar`); None without one."""
        if self._prev is None:
            return None
        if motion.cut or motion.flow is None:
            return self._prev
        self._prev = warp(self._prev, upscale_flow(motion.flow, self._prev.shape[:2]))
        return self._prev


@dataclass
class Stabilizer:
    """Both halves in one call, for a loop that handles one frame at a time: (input, translated) -> output."""

    options: StabilizeOptions = field(default_factory=StabilizeOptions)

    def __post_init__(self) -> None:
        self.motion = MotionEstimator(self.options)
        self.blender = Blender(self.options)

    @property
    def cuts(self) -> int:
        return self.motion.cuts

    def __call__(self, rgb: np.ndarray, translated: np.ndarray) -> np.ndarray:
        return self.blender(translated, self.motion(rgb))
