"""Resource guards (issue 15): the memory estimate, exact tiled translation, refusals with the size that fits,
and the short-side policy on extreme strips. Tiny generators and a real photo (the bundled bottle.jpg)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from conftest import TINY, run_main
from rtstyle.errors import UserError
from rtstyle.io.images import read_image, write_image
from rtstyle.models import GeneratorConfig, ResnetGenerator
from rtstyle.store import ASSETS_DIR
from rtstyle.tiling import estimate_bytes, parse_memory, tiled_generator_forward
from rtstyle.transforms import plan_for, preprocess


def photo(h: int, w: int) -> np.ndarray:
    import cv2

    return cv2.resize(read_image(ASSETS_DIR / "bottle.jpg"), (w, h), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("config", [TINY, GeneratorConfig(ngf=4, n_blocks=9), GeneratorConfig(ngf=4, n_blocks=3,
                                                                                              upsample="resize")],
                         ids=["tiny", "9-blocks", "resize-upsample"])
def test_tiled_forward_equals_the_untiled_one(config):
    torch.manual_seed(1)
    generator = ResnetGenerator(config).eval()
    x, _ = preprocess(photo(64, 100), None)  # (1, 3, 64, 100): a shorter last tile on both axes
    with torch.no_grad():
        full = generator(x)
        tiled = tiled_generator_forward(generator, x, core=36)
        # What plain tiles would give: InstanceNorm over one tile's own statistics moves the result a lot.
        alone = generator(x[:, :, :36, :36])
    assert float((tiled - full).abs().max()) < 1e-4
    assert float((alone - full[:, :, :36, :36]).abs().max()) > 1e-2
    assert not any(type(m).__name__ == "_FixedStatNorm" for m in generator.modules())


def test_budget_sizes_and_the_estimate():
    assert parse_memory("auto") is None and parse_memory("6G") == 6 * 2**30 and parse_memory("512MB") == 512 * 2**20
    assert parse_memory("1.5g") == int(1.5 * 2**30)
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(UserError, match="--max-memory"):
            parse_memory(bad)
    # The figures measured in rtstyle/tiling.py: the 9000x9000 (16.6 GB) and 128x128000 (4.1 GB) with
    # the demo model (ngf 16) are estimated at least that high.
    assert estimate_bytes(16, "torch", 1, 9000, 9000) >= 16.6e9
    assert estimate_bytes(16, "openvino", 1, 128, 128000) >= 4.1e9


def test_over_budget_translate_is_tiled_exactly_or_refused_with_the_size_that_fits(tiny_model_path, tmp_path,
                                                                                   capsys):
    write_image(tmp_path / "big.png", photo(256, 384))  # at once: about 19 MB with the tiny model on torch
    assert run_main("translate", tmp_path / "big.png", "--model", tiny_model_path, "--out", tmp_path / "whole") == 0
    capsys.readouterr()
    assert run_main("translate", tmp_path / "big.png", "--model", tiny_model_path, "--out", tmp_path / "tiled",
                    "--max-memory", "12M") == 0
    err = capsys.readouterr().err
    assert "384x256 at once would need about 18 MB" in err and "in tiles of" in err and "12 MB allowed" in err
    whole, tiled = (read_image(tmp_path / d / "big.png").astype(int) for d in ("whole", "tiled"))
    assert np.abs(whole - tiled).max() <= 1  # rounding of values a few 1e-6 apart
    assert run_main("translate", tmp_path / "big.png", "--model", tiny_model_path, "--out", tmp_path / "no",
                    "--max-memory", "3M") == 2
    err = capsys.readouterr().err
    assert "needs about 18 MB of memory, more than the 3 MB allowed here; use --size" in err
    size = int(err.split("use --size ")[1].split()[0])
    assert run_main("translate", tmp_path / "big.png", "--model", tiny_model_path, "--out", tmp_path / "fits",
                    "--max-memory", "3M", "--size", size) == 0  # the size it names does fit
    assert not (tmp_path / "no").exists() or not any((tmp_path / "no").iterdir())


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_an_artifact_over_budget_is_refused_since_tiling_needs_the_weights(tiny_model_path, tmp_path, capsys):
    from rtstyle.formats.onnx import cached_onnx

    write_image(tmp_path / "big.png", photo(256, 384))
    onnx = cached_onnx(tiny_model_path)
    assert run_main("translate", tmp_path / "big.png", "--model", onnx, "--out", tmp_path / "o", "--max-memory", "12M",
                    "--backend", "onnxruntime") == 2
    err = capsys.readouterr().err
    assert "onnx artifact cannot be tiled" in err and "use --size" in err


def test_extreme_strips_and_tiny_images_are_not_blown_up(tiny_model_path, tmp_path):
    # 4x4000 at --size 128 was processed at 128x128000 (4 GB); now the upscale stops at the strip's own length.
    assert plan_for(4, 4000, 128).padded == (8, 4000)
    assert plan_for(100, 150, 256).resized == (256, 384)  # ordinary upscales are unchanged
    assert plan_for(1000, 8000, 256).resized == (256, 2048)  # and so are downscales of panoramas
    assert plan_for(2, 3, None).padded == (8, 8)  # below the generator's smallest side: padded up, cropped back
    rng = np.random.default_rng(0)
    write_image(tmp_path / "strip.png", rng.integers(0, 256, (4, 4000, 3), dtype=np.uint8))
    write_image(tmp_path / "icon.png", rng.integers(0, 256, (2, 3, 3), dtype=np.uint8))
    for size in ("128", "native"):
        out = tmp_path / size
        assert run_main("translate", tmp_path / "strip.png", tmp_path / "icon.png", "--model", tiny_model_path,
                        "--out", out, "--size", size) == 0
        assert read_image(out / "strip.png").shape == (4, 4000, 3) and read_image(out / "icon.png").shape == (2, 3, 3)
