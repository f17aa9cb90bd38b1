"""`python cli.py translate`: sizes come back unchanged, odd formats convert, bad files are skipped loudly."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from conftest import run_cli
from rtstyle import load_generator
from rtstyle.io.images import read_image
from rtstyle.transforms import frames_to_tensor, tensor_to_frames


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def test_odd_sizes_and_formats_come_back_at_their_own_size(tmp_path, tiny_model_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    _write(src / "square.png", rng.integers(0, 256, (250, 250, 3), dtype=np.uint8))
    _write(src / "odd.jpg", rng.integers(0, 256, (257, 300, 3), dtype=np.uint8))
    _write(src / "gray.png", rng.integers(0, 256, (33, 47), dtype=np.uint8))
    _write(src / "rgba.png", rng.integers(0, 256, (40, 41, 4), dtype=np.uint8))
    _write(src / "deep.png", rng.integers(0, 65536, (21, 30, 3), dtype=np.uint16))
    out = tmp_path / "out"
    result = run_cli("translate", str(src), "--model", tiny_model_path, "--out", out)
    assert result.returncode == 0, result.stderr
    for name, shape in [("square", (250, 250)), ("odd", (257, 300)), ("gray", (33, 47)), ("rgba", (40, 41)),
                        ("deep", (21, 30))]:
        img = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (*shape, 3) and img.dtype == np.uint8, name


def test_native_output_equals_the_generator_applied_directly(tmp_path, tiny_model_path):
    rgb = np.random.default_rng(2).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    _write(tmp_path / "x.png", rgb[:, :, ::-1])
    result = run_cli("translate", tmp_path / "x.png", "--model", tiny_model_path, "--out", tmp_path / "o",
                     "--backend", "torch", "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = tensor_to_frames(load_generator(tiny_model_path)(frames_to_tensor(rgb)))[0]
    assert np.array_equal(read_image(tmp_path / "o" / "x.png"), expected)


def test_size_option_resizes_and_scales_back(tmp_path, tiny_model_path):
    _write(tmp_path / "wide.png", np.random.default_rng(3).integers(0, 256, (90, 160, 3), dtype=np.uint8))
    result = run_cli("translate", tmp_path / "wide.png", "--model", tiny_model_path, "--out", tmp_path / "o",
                     "--size", "32")
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(tmp_path / "o" / "wide.png")).shape == (90, 160, 3)


def test_corrupt_file_among_good_ones_is_named_and_exit_code_says_so(tmp_path, tiny_model_path):
    _write(tmp_path / "good1.png", np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    _write(tmp_path / "good2.png", np.zeros((20, 24, 3), np.uint8))
    result = run_cli("translate", str(tmp_path / "*.png"), "--model", tiny_model_path, "--out", tmp_path / "o")
    assert result.returncode == 1
    assert "broken.png" in result.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["good1.png", "good2.png"]


def test_existing_output_is_not_overwritten_without_flag(tmp_path, tiny_model_path):
    _write(tmp_path / "a.png", np.zeros((20, 20, 3), np.uint8))
    out = tmp_path / "o"
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    result = run_cli("translate", tmp_path / "a.png", "--model", tiny_model_path, "--out", out)
    assert result.returncode == 1 and "--overwrite" in result.stderr
    assert (out / "a.png").read_bytes() == b"precious"
    result = run_cli("translate", tmp_path / "a.png", "--model", tiny_model_path, "--out", out, "--overwrite")
    assert result.returncode == 0 and (out / "a.png").read_bytes() != b"precious"


def test_missing_input_and_unknown_model_fail_with_guidance(tmp_path, tiny_model_path):
    result = run_cli("translate", tmp_path / "nope.png", "--model", tiny_model_path, "--out", tmp_path / "o")
    assert result.returncode == 2 and "input not found" in result.stderr
    _write(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    result = run_cli("translate", tmp_path / "a.png", "--model", "horse2zebra", "--out", tmp_path / "o")
    assert result.returncode == 2
    assert "python cli.py download horse2zebra" in result.stderr
