"""The offline demo dataset, official dataset download, and `evaluate`'s paired and cycle scores."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import StaticServer, run_cli
from rtstyle import ModelInfo
from rtstyle.backends import Backend
from rtstyle.io.images import read_image
from rtstyle.transforms import frames_to_tensor, tensor_to_frames
from train import datasets
from train.evaluate import evaluate_paired

SMALL = dict(train_per_domain=8, test_count=4, size=32)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_make_demo_is_deterministic_for_a_seed_and_laid_out_like_the_reference(tmp_path):
    a = datasets.make_demo_dataset(tmp_path / "a", seed=3, **SMALL)
    datasets.make_demo_dataset(tmp_path / "b", seed=3, **SMALL)
    datasets.make_demo_dataset(tmp_path / "c", seed=4, **SMALL)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(tmp_path / "a") != _tree(tmp_path / "c")
    assert a["counts"] == {"trainA": 8, "trainB": 8, "testA": 4, "testB": 4}
    for split in ("trainA", "trainB", "testA", "testB"):
        assert len(list((tmp_path / "a" / split).glob("*.png"))) == a["counts"][split]
    assert read_image(tmp_path / "a" / "trainA" / "0000.png").shape == (32, 32, 3)


def test_demo_domains_share_their_photos_but_not_their_crops_and_test_photos_are_held_out(tmp_path):
    """Same content on both sides (only the tone tells A from B), unpaired crops, unseen test photos."""
    a, b, t = ({p for _, p in s} for s in (datasets.PHOTOS_A, datasets.PHOTOS_B, datasets.PHOTOS_TEST))
    assert a == b and not (a & t)
    datasets.make_demo_dataset(tmp_path / "d", seed=0, **SMALL)
    train_a = [read_image(p) for p in sorted((tmp_path / "d" / "trainA").glob("*.png"))]
    train_b = [read_image(p) for p in sorted((tmp_path / "d" / "trainB").glob("*.png"))]
    assert not any(np.array_equal(datasets.thermal(x), y) for x in train_a for y in train_b)


def test_testb_is_the_thermal_transform_of_testa(tmp_path):
    datasets.make_demo_dataset(tmp_path / "d", seed=0, **SMALL)
    for src in sorted((tmp_path / "d" / "testA").glob("*.png")):
        assert np.array_equal(read_image(tmp_path / "d" / "testB" / src.name), datasets.thermal(read_image(src)))


def test_thermal_is_a_visible_change():
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = datasets.thermal(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() > 20


def test_thermal_ignores_exposure_like_the_generator_does():
    """Auto-levels make thermal(a*x + c) == thermal(x): what InstanceNorm makes the generator blind to cannot
    decide the ground truth. The colour map alone (no auto-levels) would not pass this."""
    photo = datasets.load_photo("skimage", "data/chelsea.png")[:96, :96]
    dim = np.clip(photo.astype(np.float32) * 0.6 + 30, 0, 255).round().astype(np.uint8)  # flatter and darker
    assert np.abs(dim.astype(int) - photo).mean() > 15
    assert np.abs(datasets.thermal(dim).astype(int) - datasets.thermal(photo)).mean() < 2.0
    map_only = lambda x: cv2.applyColorMap(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.COLORMAP_INFERNO)  # noqa: E731
    assert np.abs(map_only(dim).astype(int) - map_only(photo)).mean() > 15


def test_make_demo_refuses_to_replace_a_nonempty_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    result = run_cli("datasets", "make-demo", "--out", tmp_path / "d", "--train-per-domain", "2", "--test-count", "1")
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "d" / "keep.txt").read_text() == "mine"


class _Identity(Backend):
    name = "identity"

    def infer(self, x):
        return x


class _Thermal(Backend):
    """The known transform as a backend: a perfect model of the demo dataset."""

    name = "thermal"

    def infer(self, x):
        return frames_to_tensor(np.stack([datasets.thermal(f) for f in tensor_to_frames(x)]))


def test_identity_scores_exactly_the_baseline_and_the_known_transform_is_perfect(tmp_path, tiny_generator):
    datasets.make_demo_dataset(tmp_path / "d", seed=0, **SMALL)
    info = ModelInfo(config=tiny_generator.config)
    ident = evaluate_paired(_Identity(info), tmp_path / "d")
    assert ident.images == 4
    assert ident.psnr == ident.identity_psnr and ident.ssim == ident.identity_ssim
    assert 10 < ident.identity_psnr < 40
    perfect = evaluate_paired(_Thermal(info), tmp_path / "d")
    assert perfect.psnr == float("inf") and perfect.ssim == pytest.approx(1.0)


def test_evaluate_cli_paired_and_cycle(tmp_path, tiny_model_path):
    datasets.make_demo_dataset(tmp_path / "d", seed=0, **SMALL)
    out = tmp_path / "scores.json"
    result = run_cli("evaluate", "--model", tiny_model_path, "--dataroot", tmp_path / "d", "--json", out)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["kind"] == "paired" and record["images"] == 4 and record["identity_psnr"] > 10
    # Without paired ground truth: cycle consistency needs the reverse model.
    (tmp_path / "d" / "testB" / "0000.png").unlink()
    result = run_cli("evaluate", "--model", tiny_model_path, "--dataroot", tmp_path / "d")
    assert result.returncode == 2 and "--model-back" in result.stderr
    result = run_cli("evaluate", "--model", tiny_model_path, "--model-back", tiny_model_path, "--dataroot",
                     tmp_path / "d", "--json", out)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["kind"] == "cycle" and record["images"] == 4 and record["cycle_l1"] > 0


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_dataset_download_from_mirror_and_its_failures(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    png = (tmp_path / "x.png")
    from rtstyle.io.images import write_image

    write_image(png, np.zeros((4, 4, 3), np.uint8))
    _zip(served / "mini.zip", {f"mini/{d}/a.png": png.read_bytes() for d in ("trainA", "trainB", "testA", "testB")})
    _zip(served / "facades.zip", {"facades/trainA/a.png": png.read_bytes()})  # no trainB
    (served / "maps.zip").write_bytes(b"not a zip")
    server = StaticServer(served)
    try:
        env = _env(server.url)
        root = tmp_path / "datasets"
        ok = run_cli("datasets", "download", "mini", "--root", root, env=env)
        assert ok.returncode == 0, ok.stderr
        assert sorted(p.name for p in (root / "mini").iterdir()) == ["testA", "testB", "trainA", "trainB"]
        for name, message in [("facades", "lacks ['trainB']"), ("maps", "not a zip"), ("horse2zebra", "404")]:
            bad = run_cli("datasets", "download", name, "--root", root, env=env)
            assert bad.returncode == 2 and message in bad.stderr, bad.stderr
            assert "by hand" in bad.stderr
        assert sorted(p.name for p in root.iterdir()) == ["mini"]  # nothing partial left
    finally:
        server.close()


def _env(url: str) -> dict:
    import os

    return dict(os.environ, RTSTYLE_DATASET_URL=url)


def test_tiny_generator_fixture_is_deterministic(tiny_generator):
    torch.manual_seed(0)
    from rtstyle import ResnetGenerator

    assert torch.equal(ResnetGenerator(tiny_generator.config).model[1].weight, tiny_generator.model[1].weight)


def test_evaluate_on_a_missing_dataroot_says_it_is_missing(tmp_path, tiny_model_path):
    """Issue 15: `--dataroot /nothere` said the folder 'has no paired ground truth'."""
    from train.evaluate import has_paired_ground_truth

    with pytest.raises(FileNotFoundError, match="--dataroot .*nothere not found"):
        has_paired_ground_truth(tmp_path / "nothere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="testA not found"):
        has_paired_ground_truth(tmp_path / "empty")
    r = run_cli("evaluate", "--model", tiny_model_path, "--dataroot", tmp_path / "nothere", "--backend", "torch")
    assert r.returncode == 2 and "nothere not found" in r.stderr and "paired" not in r.stderr.split("error:")[-1]
