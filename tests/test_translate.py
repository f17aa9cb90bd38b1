"""`python cli.py translate`: sizes come back unchanged, odd formats convert, bad files are skipped loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import cli_in_process, run_cli, run_main
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
    result = cli_in_process("translate", tmp_path / "nope.png", "--model", tiny_model_path, "--out", tmp_path / "o")
    assert result.returncode == 2 and "input not found" in result.stderr
    _write(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    result = cli_in_process("translate", tmp_path / "a.png", "--model", "horse2zebra", "--out", tmp_path / "o")
    assert result.returncode == 2
    assert "python cli.py download horse2zebra" in result.stderr


# --- what the machine refuses, and --out mistakes (issue 15) -------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, options) -> a fresh tmpfs folder (a read-only or a tiny one); skipped where mount is refused."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


def test_read_only_output_folder_is_one_line_naming_the_file(tmp_path, tiny_model_path, tmpfs, capsys):
    _write(tmp_path / "a.png", np.zeros((20, 20, 3), np.uint8))
    out = tmpfs("ro", "ro,size=64k")
    assert run_main("translate", tmp_path / "a.png", "--model", tiny_model_path, "--out", out / "sub") == 2
    err = capsys.readouterr().err
    assert f"cannot write {out / 'sub' / 'a.png'}: it is on a read-only file system; choose an output folder" in err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "error" in line]) == 1


def test_full_disk_fails_that_file_and_the_batch_goes_on(tmp_path, tiny_model_path, tmpfs, capsys):
    rng = np.random.default_rng(0)
    _write(tmp_path / "a_small.png", np.zeros((16, 16, 3), np.uint8))
    _write(tmp_path / "b_noise.png", rng.integers(0, 256, (160, 160, 3), dtype=np.uint8))  # ~75 kB as PNG
    _write(tmp_path / "c_small.png", np.zeros((16, 20, 3), np.uint8))
    out = tmpfs("full", "size=40k")
    assert run_main("translate", tmp_path / "a_small.png", tmp_path / "b_noise.png", tmp_path / "c_small.png",
                    "--model", tiny_model_path, "--out", out) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "b_noise.png" in err and "the disk is full" in err and "Traceback" not in err
    assert "2 written" in err and "1 failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_small.png", "c_small.png"]  # no temp file left behind


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and setpriv to drop "
                    "CAP_DAC_OVERRIDE (root otherwise writes anywhere; a plain user cannot read this venv here)")
def test_folder_without_write_permission_is_one_line(tmp_path, tiny_model_path):
    _write(tmp_path / "a.png", np.zeros((20, 20, 3), np.uint8))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    no_override = ("setpriv", "--inh-caps=-dac_override,-dac_read_search",
                   "--bounding-set=-dac_override,-dac_read_search")
    result = run_cli("translate", tmp_path / "a.png", "--model", tiny_model_path, "--out", locked, "--backend", "torch",
                     prefix=no_override)
    assert result.returncode == 2, result.stderr
    assert f"cannot write {locked / 'a.png'}: no permission" in result.stderr and "Traceback" not in result.stderr


def test_out_mistakes_are_refused_before_anything_is_written(tmp_path, tiny_model_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _write(src / "a.png", np.full((20, 20, 3), 7, np.uint8))
    _write(src / "b.jpg", np.zeros((20, 20, 3), np.uint8))
    before = (src / "a.png").read_bytes()
    cases = [((src / "a.png",), src / "a.png", "would be the input"),  # even with --overwrite: never the source
             ((src / "a.png",), src, "would be the input"),
             ((src,), src, "also an input folder"),
             ((str(src / "*.png"),), src, "also an input folder"),
             ((src / "a.png",), tiny_model_path, "is an existing file, not a folder"),
             ((src / "a.png", src / "b.jpg"), tmp_path / "one.png", "names one image file")]
    for inputs, out, expected in cases:
        capsys.readouterr()
        assert run_main("translate", *inputs, "--model", tiny_model_path, "--out", out, "--overwrite") == 2, expected
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and "image(s) with" not in err, err
    assert (src / "a.png").read_bytes() == before and sorted(p.name for p in src.iterdir()) == ["a.png", "b.jpg"]
    # An image file name as --out with one input is that file, not a folder of that name.
    assert run_main("translate", src / "b.jpg", "--model", tiny_model_path, "--out", tmp_path / "result.png") == 0
    assert (tmp_path / "result.png").is_file() and read_image(tmp_path / "result.png").shape == (20, 20, 3)


def test_skipped_file_is_named_once(tmp_path, tiny_model_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert run_main("translate", tmp_path / "broken.png", "--model", tiny_model_path, "--out", tmp_path / "o") == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("skipped "))
    assert line.count("broken.png") == 1 and "not a readable image" in line


def test_other_writers_on_a_read_only_disk_are_one_line_too(tmp_path, tiny_model_path, tmpfs, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    _write(frames / "f0.png", np.zeros((24, 32, 3), np.uint8))
    ro = tmpfs("ro", "ro,size=64k")
    blocker = tmp_path / "afile"
    blocker.write_bytes(b"x")
    commands = {"demo": ("demo", "--out", ro / "demo", "--no-show"),
                "webcam": ("webcam", "--model", tiny_model_path, "--source", frames, "--no-show",
                           "--record", ro / "rec.mp4")}
    for name, argv in commands.items():
        capsys.readouterr()
        assert run_main(*argv) == 2, name
        err = capsys.readouterr().err
        assert "cannot write" in err and "read-only file system" in err and "Traceback" not in err, (name, err)
    r = run_cli("export", "--model", tiny_model_path, "--format", "onnx", "--out", ro / "m.onnx")  # no --backend
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert run_main("translate", frames / "f0.png", "--model", tiny_model_path, "--out", blocker / "sub") == 2
    assert f"{blocker} is a file" in capsys.readouterr().err
