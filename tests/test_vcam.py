"""The virtual-camera output (issue 14): frame conversion (sizes, colour order, I420, rate) and the failure at
start when no virtual camera exists. The device itself (v4l2loopback, OBS) cannot exist on CI machines."""

from __future__ import annotations

import glob
from fractions import Fraction

import cv2
import numpy as np
import pytest

from conftest import run_cli
from media_helpers import REAL_CLIP, read_frames, tiny_model  # noqa: F401
from rtstyle.errors import UserError
from rtstyle.io import vcam


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return read_frames(REAL_CLIP)[0]  # (360, 640, 3) RGB


def test_rgb_and_bgr_keep_the_size_and_order_the_channels(frame):
    rgb = vcam.device_frame(frame, (360, 640), "RGB")
    assert rgb.shape == (360, 640, 3) and rgb.flags.c_contiguous and np.array_equal(rgb, frame)
    bgr = vcam.device_frame(frame, (360, 640), "BGR")
    assert np.array_equal(bgr[..., 0], frame[..., 2]) and np.array_equal(bgr[..., 2], frame[..., 0])


def test_i420_is_planar_and_decodes_back(frame):
    yuv = vcam.device_frame(frame, (360, 640), "I420")
    assert yuv.shape == (540, 640) and yuv.dtype == np.uint8  # Y (360 rows) then U and V (90 rows each)
    back = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
    assert np.abs(back.astype(int) - frame.astype(int)).mean() < 4  # chroma subsampling only


def test_another_size_is_letterboxed_into_the_camera(frame):
    out = vcam.device_frame(frame[:, :320], (360, 640), "RGB")  # a half-width view (e.g. the next image)
    assert out.shape == (360, 640, 3)
    assert out[:, :150].max() == 0 and out[:, -150:].max() == 0 and out[:, 200:440].mean() > 20
    with pytest.raises(ValueError, match="RGB, BGR, I420"):
        vcam.device_frame(frame, (360, 640), "NV21")


def test_camera_size_is_even_and_rate_follows_the_source():
    assert vcam.camera_size((360, 640)) == (360, 640)
    assert vcam.camera_size((361, 641)) == (360, 640)  # I420 needs even sides
    assert vcam.camera_rate(Fraction(30000, 1001)) == pytest.approx(29.97, abs=1e-3)
    assert vcam.camera_rate(None) == 30.0


def has_loopback_device() -> bool:
    return any("loopback" in open(p).read().lower() for p in glob.glob("/sys/class/video4linux/*/name"))


@pytest.mark.skipif(has_loopback_device(), reason="a virtual camera exists here: the no-device message can't show")
def test_no_virtual_camera_fails_at_start_with_what_to_install(tiny_model):
    with pytest.raises(UserError) as e:
        vcam.check_virtual_camera()
    assert "v4l2loopback" in str(e.value)
    # The command fails before the model loads or a frame is read, with the same message and exit 2.
    result = run_cli("webcam", "--model", tiny_model, "--source", REAL_CLIP, "--no-show", "--virtual-cam",
                     "--backend", "torch")
    assert result.returncode == 2, result.stderr
    assert "modprobe v4l2loopback" in result.stderr and "Traceback" not in result.stderr
    assert "frames" not in result.stderr  # nothing ran


@pytest.mark.skipif(not has_loopback_device(),
                    reason="no v4l2loopback device here (needs `modprobe v4l2loopback devices=1 exclusive_caps=1`, "
                           "a kernel module CI containers cannot load)")
def test_frames_reach_the_loopback_device(tiny_model, tmp_path):
    device = sorted(glob.glob("/dev/video*"))[-1]
    result = run_cli("webcam", "--model", tiny_model, "--source", REAL_CLIP, "--no-show", "--virtual-cam",
                     "--virtual-cam-device", device, "--max-frames", 10, "--backend", "torch", "--size", 64)
    assert result.returncode == 0, result.stderr
    assert f"virtual camera {device}: 640x360" in result.stderr
