"""The pure frame/tensor conversions every stage shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtstyle import transforms as T


def test_uint8_tensor_round_trip_is_exact():
    frames = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = T.frames_to_tensor(frames)
    assert x.shape == (2, 3, 5, 7) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert np.array_equal(T.tensor_to_frames(x), frames)
    assert np.array_equal(T.tensor_to_frames(T.frames_to_tensor(frames, bgr=True), bgr=True), frames)


def test_bgr_flag_swaps_channels():
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    x = T.frames_to_tensor(frame, bgr=True)
    assert x[0, 2].min() == 1 and x[0, 0].max() == -1


@pytest.mark.parametrize("image,expected", [
    (np.full((3, 4), 7, np.uint8), (3, 4, 3)),
    (np.full((3, 4, 4), 9, np.uint8), (3, 4, 3)),
    (np.full((3, 4, 2), 9, np.uint8), (3, 4, 3)),
    (np.full((3, 4, 3), 65535, np.uint16), (3, 4, 3)),
])
def test_to_rgb_uint8_converts_gray_alpha_and_16bit(image, expected):
    out = T.to_rgb_uint8(image)
    assert out.shape == expected and out.dtype == np.uint8
    if image.dtype == np.uint16:
        assert out.max() == 255


def test_to_rgb_uint8_refuses_odd_layouts():
    with pytest.raises(ValueError, match="expected"):
        T.to_rgb_uint8(np.zeros((2, 2, 5), np.uint8))


@pytest.mark.parametrize("h,w", [(250, 250), (257, 300), (3, 5), (64, 64)])
def test_pad_to_multiple_and_crop_back(h, w):
    x = torch.rand(1, 3, h, w)
    padded, size = T.pad_to_multiple(x)
    assert padded.shape[-2] % 4 == 0 and padded.shape[-1] % 4 == 0
    assert torch.equal(T.crop_to(padded, size), x)


def test_size_policy():
    assert T.parse_size("native") is None
    assert T.parse_size("256") == 256
    assert T.parse_size(258) == 260 or T.parse_size(258) == 256  # rounded to a multiple of 4
    with pytest.raises(ValueError, match="native"):
        T.parse_size("big")
    plan = T.plan_for(360, 640, 256)
    assert plan.resized == (256, 456) and plan.padded == (256, 456) and plan.source == (360, 640)
    assert T.plan_for(362, 642, None).padded == (364, 644)


def test_preprocess_postprocess_round_trip_keeps_source_size():
    frames = np.random.default_rng(1).integers(0, 256, (1, 362, 642, 3), dtype=np.uint8)
    x, plan = T.preprocess(frames, None)
    assert x.shape == (1, 3, 364, 644)
    assert np.array_equal(T.postprocess(x, plan), frames)
    x, plan = T.preprocess(frames, 128)
    assert min(x.shape[-2:]) == 128
    assert T.postprocess(x, plan).shape == frames.shape


def test_shrinking_never_skips_source_pixels():
    """Shrinking averages: a one-pixel checkerboard comes out flat grey at every ratio, never as a moire
    pattern, and a natural frame as the area filter makes it (the cheaper path below 2x included)."""
    import cv2

    board = np.indices((360, 640)).sum(0) % 2 * 255
    frames = np.repeat(board[None, ..., None], 3, -1).astype(np.uint8)
    for h, w in ((256, 456), (180, 320), (90, 160), (64, 114)):  # 1.4x, 2x, 4x, 5.6x
        out = T.resize_frames(frames, h, w)[0].astype(float)
        assert out.shape == (h, w, 3) and abs(out.mean() - 127.5) < 2 and out.std() < 15, (h, w, out.std())
    natural = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8), (0, 0), 2)
    ours = T.resize_frames(natural[None], 256, 456)[0].astype(float)
    area = cv2.resize(natural, (456, 256), interpolation=cv2.INTER_AREA).astype(float)
    assert 10 * np.log10(255 ** 2 / ((ours - area) ** 2).mean()) > 45  # as the area filter makes it
