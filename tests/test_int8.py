"""The int8 CPU fast path (issue 6): exact sub-pixel rewrite, NNCF int8 IR checked by PSNR on real frames,
the fallback rules, metadata read back, `--backend auto` choosing it and caching its per-size builds.

Stated accuracy bound for an accepted int8 model: worst-frame PSNR >= 30 dB (issue 6) of its uint8 output
against eager fp32 on the held-out real frames (`rtstyle.formats.int8.calibration`), mean abs error <= 0.03 on the
[-1, 1] scale (about 4 uint8 levels). Tiny generator (ngf 8, 2 blocks) at 32-64 px: a build takes seconds.
"""

from __future__ import annotations

import importlib.util
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_store
from rtstyle.backends import BackendOptions, BackendUnavailable, create_backend
from rtstyle.backends.openvino_int8_backend import STREAM_BATCHES
from rtstyle.backends.select import Environment, choose_backend
from rtstyle.formats.int8.calibration import (HELDOUT_CLIP_FRAMES, calibration_frames, calibration_indices,
                                              heldout_frames)
from rtstyle.formats.int8.quantize import psnr_db, run_hint
from rtstyle.formats.int8.rewrites import SubPixelConvTranspose, rewrite_error, subpixel_generator
from rtstyle.transforms import frames_to_tensor, tensor_to_frames
from rtstyle.weights import load_model

HAS_INT8 = all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))
needs_int8 = pytest.mark.skipif(not HAS_INT8, reason="needs openvino and nncf (the [openvino] extra)")
HW = (48, 64)


# --- the sub-pixel rewrite is exact ------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_subpixel_equals_conv_transpose(bias):
    torch.manual_seed(0)
    convt = nn.ConvTranspose2d(5, 7, 3, stride=2, padding=1, output_padding=1, bias=bias)
    sub = SubPixelConvTranspose(convt)
    for shape in [(2, 5, 8, 8), (1, 5, 7, 13), (1, 5, 1, 1)]:  # odd sides and a single pixel: edges matter
        x = torch.randn(shape)
        with torch.no_grad():
            assert float((convt(x) - sub(x)).abs().max()) < 1e-5, shape


def test_subpixel_generator_is_exact_and_leaves_the_original_alone(tiny_generator):
    rewritten = subpixel_generator(tiny_generator)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in rewritten.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in tiny_generator.modules()) == 2
    x = torch.rand(2, 3, 36, 52) * 2 - 1
    assert rewrite_error(tiny_generator, rewritten, x) < 1e-5


def test_other_transposed_convolutions_are_refused():
    with pytest.raises(ValueError, match="only ConvTranspose2d"):
        SubPixelConvTranspose(nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1))


# --- calibration and held-out frames: real, disjoint, preprocessed like inference --------------------------
def test_calibration_and_heldout_frames_are_real_and_disjoint():
    indices = calibration_indices(120, 19)
    assert len(indices) == 19 and not set(indices) & set(HELDOUT_CLIP_FRAMES)
    calib = calibration_frames(HW, 6)
    assert len(calib) == 6 and all(c.shape == (1, 3, *HW) and c.dtype == np.float32 for c in calib)
    assert all(-1 <= c.min() and c.max() <= 1 and c.std() > 0.05 for c in calib)  # real content, not blank
    names, frames = heldout_frames(HW)
    assert frames.shape == (len(names), *HW, 3) and "webcam_f45.jpg" in names
    # Exactly the tensor inference makes from those uint8 frames.
    assert torch.equal(frames_to_tensor(frames[:1]), torch.from_numpy(frames[:1]).permute(0, 3, 1, 2) / 127.5 - 1)


# --- the int8 export --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("rtstyle-home"), seed=2, direction="day->dusk")


@pytest.fixture
def store(home, monkeypatch):
    monkeypatch.setenv("RTSTYLE_HOME", str(home))
    return home / "models"


@pytest.fixture(scope="module")
def int8_export(home):
    from engines import ExportOptions, export_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RTSTYLE_HOME", str(home))
        return export_model("tiny", "openvino", ExportOptions(int8=True, size=f"{HW[0]}x{HW[1]}"))


def _heldout_psnr(runner, generator) -> tuple[float, float]:
    _, frames = heldout_frames(HW)
    x = frames_to_tensor(frames)
    with torch.no_grad():
        expected = generator(x)
    got = torch.cat([runner.infer(x[i:i + 1]) for i in range(len(x))])
    worst = min(psnr_db(tensor_to_frames(e[None]), tensor_to_frames(g[None])) for e, g in zip(expected, got))
    return worst, float((got - expected).abs().mean())


@needs_int8
def test_int8_export_is_quantised_close_to_fp32_and_self_describing(int8_export, store):
    import openvino as ov

    from rtstyle.formats.openvino import read_openvino_meta

    assert int8_export.path == store / f"tiny-{HW[0]}x{HW[1]}-int8_openvino" / "tiny.xml"
    model = ov.Core().read_model(str(int8_export.path))
    ops = Counter(op.get_type_name() for op in model.get_ops())
    assert ops["Convolution"] == 10 and ops["FakeQuantize"] == 10  # every convolution's input is quantised
    assert any(op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "i8"
               for op in model.get_ops())  # and its weights are stored as int8
    assert "ConvolutionBackpropData" not in ops  # the sub-pixel rewrite is in: 10 ordinary convolutions
    assert ops["MVN"] == 9  # InstanceNorm kept per image
    meta = read_openvino_meta(model)
    generator, info = load_model(store / "tiny.safetensors")
    assert meta.info == info and meta.precision == "int8" and not meta.dynamic and (meta.height, meta.width) == HW
    record = meta.extra["int8"]
    assert record["recipe"] in ("convs", "convs-keep-ends") and record["psnr_min_db"] >= 30
    assert "webcam_f45.jpg" in record["heldout"] and record["calibration_frames"] == 20
    assert record["overflow_fix"] == "first_layer_only" and record["rest_precision"] == run_hint()
    assert int8_export.psnr_db == record["psnr_min_db"]
    runner = create_backend(str(int8_export.path), BackendOptions(backend="openvino"), log=None)
    assert runner.precision == "int8" and runner.info == info and "int8" in runner.describe()
    worst, mean_abs = _heldout_psnr(runner, generator)
    assert worst >= 30 and mean_abs <= 0.03, (worst, mean_abs)
    assert runner.infer(torch.zeros(3, 3, *HW)).shape == (3, 3, *HW)  # another batch size: recompiled, same IR
    # uint8 frames in and out, converted inside the graph (what FrameTranslator runs): as close to fp32
    _, frames = heldout_frames(HW)
    expected = tensor_to_frames(generator(frames_to_tensor(frames)).detach())
    got = np.concatenate([runner.infer_frames(frames[i:i + 1]) for i in range(len(frames))])
    assert got.dtype == np.uint8 and got.shape == frames.shape
    assert min(psnr_db(e[None], g[None]) for e, g in zip(expected, got)) >= 30


@needs_int8
def test_int8_export_refuses_dynamic_and_other_formats(store):
    from engines import ExportOptions, export_model

    with pytest.raises(ValueError, match="fixed-size"):
        export_model("tiny", "openvino", ExportOptions(int8=True, dynamic=True))
    with pytest.raises(ValueError, match="--int8 applies to --format openvino"):
        export_model("tiny", "onnx", ExportOptions(int8=True))


@needs_int8
def test_rebuild_without_first_and_last_conv_below_target(store, tmp_path):
    from engines import ExportOptions, export_model

    said: list[str] = []
    result = export_model("tiny", "openvino", ExportOptions(int8=True, size="32", target_psnr=1000, min_psnr=0),
                          out=tmp_path / "ends", log=said.append)
    import openvino as ov

    from rtstyle.formats.openvino import read_openvino_meta

    model = ov.Core().read_model(str(result.path))
    meta = read_openvino_meta(model)
    assert meta.extra["int8"]["recipe"] == "convs-keep-ends" and meta.precision == "int8"
    ops = Counter(op.get_type_name() for op in model.get_ops())
    assert ops["FakeQuantize"] == ops["Convolution"] - 2  # first and last convolution not quantised
    assert any("needs 1000 dB" in s for s in said) and any("except the first and last" in s for s in said)


@needs_int8
def test_fallback_to_bf16_is_explained_not_silent(store, tmp_path):
    from engines import ExportOptions, export_model

    said: list[str] = []
    result = export_model("tiny", "openvino", ExportOptions(int8=True, size="32", target_psnr=1000, min_psnr=999),
                          out=tmp_path / "fallback", log=said.append)
    assert result.format == "openvino" and result.psnr_db is None
    assert any("int8 NOT written" in s and "below 999 dB" in s for s in said)
    assert "fell back" in result.notes[0]
    runner = create_backend(str(result.path), BackendOptions(backend="openvino"), log=None)
    assert runner.precision in ("bf16", "fp32")


# --- int8 from weights, built per size on first use (what --backend auto runs) ----------------------------
@needs_int8
def test_on_the_fly_int8_is_cached_and_falls_back_per_size(store):
    from rtstyle.backends.openvino_int8_backend import OpenVinoInt8Backend
    from rtstyle.formats.int8.quantize import cached_int8

    said: list[str] = []
    runner = OpenVinoInt8Backend(store / "tiny.safetensors", log=said.append, target_psnr=1000, min_psnr=999,
                                 calibration_count=4)
    out = runner.infer(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 3, 32, 32)
    assert any("first use" in s for s in said) and any("int8 not used at 32x32" in s for s in said)
    assert "int8 fell below" in runner.describe()
    again = cached_int8(store / "tiny.safetensors", (32, 32), target_psnr=1000, min_psnr=999, calibration_count=4)
    assert not again.built and again.xml is None and "999" in again.explanation  # the decision is cached too


@needs_int8
def test_auto_picks_int8_says_why_builds_in_the_background_and_reuses_the_cache(store):
    generator, _ = load_model(store / "tiny.safetensors")
    said: list[str] = []
    runner = create_backend("tiny", BackendOptions(), log=said.append)
    assert (runner.choice.backend, runner.choice.precision) == ("openvino", "int8")
    assert said[0].startswith("backend auto -> openvino (int8, cpu)") and "falls back" in said[0]
    for hw in [(32, 36), (36, 32)]:  # one-off sizes (a folder of assorted photos): bf16, no quantisation
        runner.infer(torch.zeros(1, 3, *hw))
    assert not runner.builds and f"{run_hint()} at 32x36 (no int8 build yet)" in runner.describe()
    assert any("int8 built in the background if this size keeps coming (30 batches)" in s for s in said)
    x = torch.zeros(1, 3, *HW)
    for _ in range(STREAM_BATCHES):  # the size keeps coming: a stream; its build starts, bf16 goes on meanwhile
        assert not runner.builds
        runner.infer(x)
    assert any("building its int8 model in the background" in s for s in said)
    assert "int8 building in the background" in runner.describe()
    assert runner.builds[HW].wait(timeout=300) == 0  # a child process: `python -m rtstyle.formats.int8.quantize`
    worst, _ = _heldout_psnr(runner, generator)  # the next batch picks the finished build up
    assert worst >= 30 and f"int8 at {HW[0]}x{HW[1]}" in runner.describe()
    assert any(f"switches from {run_hint()} to the int8 model" in s for s in said)
    said.clear()
    second = create_backend("tiny", BackendOptions(), log=said.append)
    second.infer(x)  # cached: int8 from the first batch
    assert not second.builds and not any("no int8 build yet" in s for s in said)
    assert f"int8 at {HW[0]}x{HW[1]}" in second.describe()


CPU_INT8 = Environment(installed=frozenset({"onnxruntime", "openvino"}), openvino_bf16=True, openvino_int8=True,
                       torch_bf16=True)


@pytest.mark.parametrize("kind,device,precision,expected", [
    ("weights", "auto", "auto", ("openvino", "cpu", "int8")),
    ("weights", "auto", "bf16", ("openvino", "cpu", "bf16")),
    ("weights", "auto", "int8", ("openvino", "cpu", "int8")),
    ("onnx", "auto", "auto", ("openvino", "cpu", "bf16")),  # int8 is built from weights only
    ("openvino", "auto", "int8", ("openvino", "cpu", "int8")),
])
def test_auto_choice_with_int8(kind, device, precision, expected):
    choice = choose_backend(kind, "auto", device, precision, CPU_INT8)
    assert (choice.backend, choice.device, choice.precision) == expected


def test_int8_choice_reasons_and_refusals():
    reason = choose_backend("weights", "auto", "auto", "auto", CPU_INT8).reason
    assert "int8" in reason and "30 dB" in reason and "falls back" in reason
    no_nncf = Environment(installed=frozenset({"openvino"}), openvino_bf16=True)
    assert "int8 needs nncf" in choose_backend("weights", "auto", "auto", "auto", no_nncf).reason
    with pytest.raises(BackendUnavailable, match="nncf"):
        choose_backend("weights", "openvino", "auto", "int8", no_nncf)
    with pytest.raises(BackendUnavailable, match="built from weights"):
        choose_backend("onnx", "auto", "auto", "int8", CPU_INT8)
    with pytest.raises(BackendUnavailable, match="offered by openvino"):
        choose_backend("weights", "onnxruntime", "auto", "int8", CPU_INT8)
    gpu = Environment(cuda=True, gpu_name="g", installed=frozenset({"openvino"}), openvino_int8=True)
    assert choose_backend("weights", "auto", "auto", "int8", gpu).backend == "openvino"
    with pytest.raises(BackendUnavailable, match="runs on the CPU"):
        choose_backend("weights", "auto", "cuda", "int8", gpu)


@needs_int8
def test_prepare_builds_a_known_size_up_front_and_caches_it(store):
    """What the demo does for its short clip: a background build would be stopped unfinished at exit."""
    from rtstyle.backends.openvino_int8_backend import OpenVinoInt8Backend
    from rtstyle.formats.int8.quantize import cached_int8

    said: list[str] = []
    runner = OpenVinoInt8Backend(store / "tiny.safetensors", log=said.append, background=True,
                                 build_after=STREAM_BATCHES, calibration_count=4)
    assert cached_int8(store / "tiny.safetensors", HW, build=False, calibration_count=4) is None
    runner.prepare(HW)
    assert not runner.builds and f"int8 at {HW[0]}x{HW[1]}" in runner.describe()  # no child process, no waiting
    assert cached_int8(store / "tiny.safetensors", HW, build=False, calibration_count=4).xml is not None
    runner.infer(torch.zeros(1, 3, *HW))  # the first batch already runs the int8 model
    assert not any("no int8 build yet" in s for s in said)
