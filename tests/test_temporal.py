"""The temporal metric (rtstyle/temporal.py, `cli.py evaluate --video`): warping error, occlusion mask, SSIM."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import cli
from rtstyle.temporal import consistency_mask, make_flow, pair_flow, gray, ssim, temporal_scores, warping_error


def textured(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (5, 5), 1.5)


def moving_square(n: int = 12, h: int = 96, w: int = 128, step: int = 3) -> list[np.ndarray]:
    """A textured square sliding right over a still textured background: real motion, known occlusions."""
    bg, square = textured(h, w, 0), textured(32, 32, 1)
    frames = []
    for i in range(n):
        f = bg.copy()
        x = 16 + step * i
        f[32:64, x:x + 32] = square
        frames.append(f)
    return frames


def colour_map(frames: list[np.ndarray]) -> list[np.ndarray]:
    """A fixed colour map: channels swapped and inverted, the same for every frame (a steady 'translation')."""
    return [255 - f[..., ::-1] for f in frames]


def noisy(frames: list[np.ndarray], sigma: float, seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


def write_clip(path: Path, frames: list[np.ndarray], rate: int = 25) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate, options={"crf": "10", "preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    return path


def test_fixed_colour_map_is_steady_and_noise_is_not():
    src = moving_square()
    steady = temporal_scores(src, colour_map(src))
    assert steady.pairs == len(src) - 1
    assert 0.9 < steady.ratio < 1.1, steady
    flicker = temporal_scores(src, noisy(colour_map(src), 8))
    assert flicker.ratio > 3 * steady.ratio, (steady.ratio, flicker.ratio)


def test_mask_excludes_the_background_an_occluder_uncovers():
    """The sliding square uncovers a strip of background that frame t-1 did not show: no flow is valid there."""
    prev, cur = moving_square(n=2, step=4)
    back, mask = pair_flow(gray(prev), gray(cur), make_flow("dis"))
    uncovered = mask[34:62, 16:20]  # the strip left of the square's new position (x 20..52)
    assert uncovered.mean() < 0.6, uncovered.mean()
    assert mask[36:60, 22:50].mean() > 0.95  # the square itself moves consistently
    assert mask[70:, :].mean() > 0.9  # the still background
    assert abs(float(np.median(back[36:60, 22:50, 0])) + 4) < 0.5  # the square's pixels came from 4 px left
    strip = np.zeros(mask.shape, bool)
    strip[34:62, 16:20] = True
    # what the mask leaves out is where warping fails: far larger errors there than on what it keeps
    assert warping_error(prev, cur, back, strip & ~mask) > 10 * warping_error(prev, cur, back, mask)


def test_consistency_mask_on_known_flows():
    back = np.full((20, 30, 2), 2.0, np.float32)  # every pixel of t was 2 px right/down in t-1
    fwd = np.full((20, 30, 2), -2.0, np.float32)  # and comes back: consistent
    fwd[5:10, 5:10] = 3.0  # except here, where t-1's pixels go elsewhere (an occlusion)
    mask = consistency_mask(back, fwd)
    assert not mask[4:7, 4:7].any()  # x + 2 lands in the inconsistent patch
    assert mask[12:17, 12:20].all()
    assert not mask[:, -2:].any() and not mask[-2:, :].any()  # flow leaves the frame


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    a = textured(64, 80, 5)
    b = noisy([a], 20)[0]
    ours = ssim(a, b)
    theirs = metrics.structural_similarity(a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False)
    assert abs(ours - theirs) < 0.02, (ours, theirs)
    assert ssim(a, a) == pytest.approx(1.0)


def test_evaluate_video_cli_table_and_json(tmp_path, capsys):
    src = moving_square()
    source = write_clip(tmp_path / "src.mp4", src)
    steady = write_clip(tmp_path / "steady.mp4", colour_map(src))
    flicker = write_clip(tmp_path / "flicker.mp4", noisy(colour_map(src), 8))
    out = tmp_path / "scores.json"
    assert cli.main(["evaluate", "--video", str(source), str(flicker), "--per-frame", str(steady),
                     "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["frames"] == len(src) and record["ratio"] > 2
    assert 0.3 < record["ssim_vs_per_frame"] < 0.95
    assert "ratio" in capsys.readouterr().out


def test_evaluate_video_bad_input(tmp_path, capsys):
    src = moving_square(n=6)
    source = write_clip(tmp_path / "src.mp4", src)
    shorter = write_clip(tmp_path / "short.mp4", colour_map(src)[:4])
    one = write_clip(tmp_path / "one.mp4", src[:1])
    assert cli.main(["evaluate", "--video", str(source), str(shorter)]) == 2
    assert "same frames" in capsys.readouterr().err
    assert cli.main(["evaluate", "--video", str(one), str(one)]) == 2
    assert "at least 2 frames" in capsys.readouterr().err
    assert cli.main(["evaluate", "--video", str(source), str(tmp_path / "missing.mp4")]) == 2
    assert "no such video" in capsys.readouterr().err
    assert cli.main(["evaluate", "--model", "x"]) == 2  # neither --dataroot nor --video
    assert "--dataroot" in capsys.readouterr().err
