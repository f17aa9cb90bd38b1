"""The resize-convolution upsampler (issue 12): nearest x2 + conv3x3 instead of ConvTranspose2d.

The reference layout must stay as it was (keys, metadata, outputs); the resize layout must save and load,
train, export to ONNX and OpenVINO, and quantise to int8, each checked against eager PyTorch fp32 at sizes
that are neither square nor powers of two, from one dynamic export, within each runtime's tolerance:
ONNX Runtime 1e-4 and OpenVINO f32 5e-4 max abs (`engines.onnx_export`, `engines.openvino_export`), int8
>= 30 dB worst-frame PSNR on the held-out real frames (`rtstyle.formats.int8.quantize`). Tiny generators (ngf 8, 2
blocks) at 32-68 px.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from rtstyle.backends import BackendOptions, create_backend
from rtstyle.models import GeneratorConfig, ResizeConv2d, ResnetGenerator
from rtstyle.transforms import postprocess, preprocess
from rtstyle.weights import METADATA_KEY, ModelInfo, load_model, save_generator

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
HAS_INT8 = HAS_OPENVINO and importlib.util.find_spec("nncf") is not None
RESIZE = GeneratorConfig(ngf=8, n_blocks=2, upsample="resize")
SHAPES = [(1, 3, 36, 52), (2, 3, 68, 44)]  # off-square, not powers of two, batch 1 and 2


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("rtstyle-home")
    torch.manual_seed(3)
    save_generator(ResnetGenerator(RESIZE).eval(), home / "models" / "tinyr.safetensors",
                   ModelInfo(config=RESIZE, direction="photo->print", train_size=64, name="tinyr"))
    return home


@pytest.fixture
def store(home, monkeypatch):
    monkeypatch.setenv("RTSTYLE_HOME", str(home))
    return home / "models"


def header(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()[METADATA_KEY])


# --- the module and the reference layout -------------------------------------------------------------------
def test_resize_layout_keeps_the_reference_numbering_and_only_the_up_convs_change():
    deconv, resize = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=2)), ResnetGenerator(RESIZE)
    d, r = deconv.state_dict(), resize.state_dict()
    assert d.keys() == r.keys()
    changed = sorted(k for k in d if d[k].shape != r[k].shape)
    # model.12 and model.15 are the two upsampling convolutions of a 2-block generator: (cin, cout, 3, 3)
    # weights become (cout, cin, 3, 3).
    assert changed == ["model.12.weight", "model.15.weight"]
    assert r["model.12.weight"].shape == d["model.12.weight"].transpose(0, 1).shape
    assert [type(resize.model[i]) for i in (12, 15)] == [ResizeConv2d, ResizeConv2d]
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in resize.modules())
    for shape in SHAPES:
        assert resize(torch.rand(shape) * 2 - 1).shape == shape


def test_resize_conv_has_no_checkerboard_where_the_transposed_conv_does():
    """On a constant input a stride-2 ConvTranspose2d(k3) gives the four output phases 4, 2, 2 and 1 taps
    (Odena et al. 2016), so its interior alternates; the resize conv's interior is flat."""
    torch.manual_seed(0)
    convt = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1)
    resize = ResizeConv2d(4, 4, bias=True)
    x = torch.ones(1, 4, 8, 8)
    with torch.no_grad():
        a, b = convt(x)[..., 2:-2, 2:-2], resize(x)[..., 2:-2, 2:-2]
    assert float(a.std(dim=(2, 3)).min()) > 1e-2  # every channel shows the pattern
    assert float(b.std(dim=(2, 3)).max()) < 1e-6


def test_metadata_records_resize_and_the_reference_layout_writes_what_it_always_did(tmp_path):
    torch.manual_seed(1)
    reference = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=2)).eval()
    save_generator(reference, tmp_path / "ref.safetensors")
    assert header(tmp_path / "ref.safetensors")["generator"] == {  # no new key: older readers still load it
        "ngf": 8, "n_blocks": 2, "norm": "instance", "dropout": False, "input_nc": 3, "output_nc": 3}
    resize = ResnetGenerator(RESIZE).eval()
    save_generator(resize, tmp_path / "r.safetensors")
    assert header(tmp_path / "r.safetensors")["generator"]["upsample"] == "resize"
    loaded, info = load_model(tmp_path / "r.safetensors")
    assert info.config == RESIZE
    x = torch.rand(1, 3, 36, 52) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), resize(x))
    with pytest.raises(ValueError, match="upsample must be one of"):
        GeneratorConfig(upsample="bilinear-ish")


def test_train_accepts_upsample_resize(tmp_path):
    from PIL import Image

    from train.config import TrainConfig
    from train.loop import train

    rng = np.random.default_rng(0)
    for domain in ("trainA", "trainB"):
        (tmp_path / "d" / domain).mkdir(parents=True)
        for i in range(2):
            rgb = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(tmp_path / "d" / domain / f"{i}.png")
    with pytest.raises(ValueError, match="--upsample must be one of"):
        TrainConfig(upsample="pixelshuffle")
    torch.set_num_threads(1)
    config = TrainConfig(dataroot=str(tmp_path / "d"), name="r", out=str(tmp_path / "runs"), ngf=4, n_blocks=1, ndf=4,
                         load_size=36, crop_size=32, num_workers=0, max_steps=2, upsample="resize")
    train(config)
    _, info = load_model(tmp_path / "runs" / "r" / "G_A.safetensors")
    assert info.config.upsample == "resize" and info.config.ngf == 4


# --- every backend against eager fp32 ---------------------------------------------------------------------
@pytest.mark.skipif(not HAS_ONNX, reason="needs onnx and onnxruntime (the [onnx] extra)")
def test_onnx_export_and_onnxruntime_at_odd_and_dynamic_sizes(store):
    import onnx

    from engines import ExportOptions, export_model

    result = export_model("tinyr", "onnx", ExportOptions(dynamic=True))
    assert result.max_abs_error <= 1e-4
    ops = Counter(node.op_type for node in onnx.load(str(result.path)).graph.node)
    assert ops["Resize"] == 2 and "ConvTranspose" not in ops and ops["InstanceNormalization"] == 9
    generator, info = load_model("tinyr")
    runner = create_backend(str(result.path), BackendOptions(backend="onnxruntime"), log=None)
    assert runner.info == info
    for shape in SHAPES:
        x = torch.rand(shape) * 2 - 1
        with torch.no_grad():
            assert float((runner.infer(x) - generator(x)).abs().max()) <= 1e-4
    # An odd-sized image through the runtime's own transform (padded to 40x56, cropped back to 37x53).
    rgb = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    x, plan = preprocess(rgb, None)
    with torch.no_grad():
        expected = postprocess(generator(x), plan)
    got = postprocess(runner.infer(x), plan)
    assert got.shape == (1, 37, 53, 3) and int(np.abs(got.astype(int) - expected).max()) <= 1


@pytest.mark.skipif(not HAS_OPENVINO, reason="needs openvino (the [openvino] extra)")
def test_openvino_f32_at_odd_and_dynamic_sizes(store):
    from engines import ExportOptions, export_model

    result = export_model("tinyr", "openvino", ExportOptions(dynamic=True))
    assert result.max_abs_error <= 5e-4
    generator, _ = load_model("tinyr")
    runner = create_backend(str(result.path), BackendOptions(backend="openvino", precision="fp32"), log=None)
    for shape in SHAPES:
        x = torch.rand(shape) * 2 - 1
        with torch.no_grad():
            assert float((runner.infer(x) - generator(x)).abs().max()) <= 5e-4


@pytest.mark.skipif(not HAS_INT8, reason="needs openvino and nncf (the [openvino] extra)")
def test_int8_quantises_the_resize_convs_and_passes_its_psnr_check(store):
    import openvino as ov

    from engines import ExportOptions, export_model
    from rtstyle.formats.int8.calibration import heldout_frames
    from rtstyle.formats.int8.quantize import psnr_db
    from rtstyle.transforms import frames_to_tensor, tensor_to_frames

    hw = (36, 52)
    result = export_model("tinyr", "openvino", ExportOptions(int8=True, size=f"{hw[0]}x{hw[1]}"))
    assert result.psnr_db >= 30
    ops = Counter(op.get_type_name() for op in ov.Core().read_model(str(result.path)).get_ops())
    # Every convolution is quantised (NNCF may add quantisers around the two Interpolates as well).
    assert ops["Convolution"] == 10 and ops["FakeQuantize"] >= 10 and ops["Interpolate"] == 2
    assert "ConvolutionBackpropData" not in ops
    generator, _ = load_model("tinyr")
    runner = create_backend(str(result.path), BackendOptions(backend="openvino"), log=None)
    assert runner.precision == "int8"
    _, frames = heldout_frames(hw)
    x = frames_to_tensor(frames)
    with torch.no_grad():
        expected = tensor_to_frames(generator(x))
    got = tensor_to_frames(torch.cat([runner.infer(x[i:i + 1]) for i in range(len(x))]))
    assert min(psnr_db(e, g) for e, g in zip(expected, got)) >= 30


# --- TensorRT: the graph checks that run anywhere, and the build that needs a GPU ---------------------------
@pytest.mark.skipif(not HAS_ONNX, reason="needs onnx and onnxruntime (the [onnx] extra)")
@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic", "fixed"])
def test_both_layouts_export_graphs_the_tensorrt_parser_takes(store, dynamic, tmp_path):
    """TensorRT builds from the same ONNX graph; the parser's documented restrictions (Resize modes, constant
    weights and InstanceNorm parameters) are checked on it here, where no TensorRT runs."""
    import onnx
    from onnx import helper

    from engines import ExportOptions, export_model
    from rtstyle.formats.tensorrt import parser_problems

    torch.manual_seed(4)
    deconv = GeneratorConfig(ngf=8, n_blocks=2)
    save_generator(ResnetGenerator(deconv).eval(), store / "tinyd.safetensors",
                   ModelInfo(config=deconv, direction="a->b", train_size=64, name="tinyd"))
    options = ExportOptions(dynamic=dynamic, size="" if dynamic else "36x52")
    graphs = {name: onnx.load(str(export_model(name, "onnx", options, out=tmp_path / f"{name}.onnx").path))
              for name in ("tinyr", "tinyd")}
    for name, model in graphs.items():
        assert parser_problems(model) == [], name
    # The check is not vacuous: the same graph with a mode TensorRT lacks, or a computed weight, is named.
    model = graphs["tinyr"]
    resize = next(node for node in model.graph.node if node.op_type == "Resize")
    for attribute in list(resize.attribute):
        if attribute.name == "mode":
            resize.attribute.remove(attribute)
    resize.attribute.append(helper.make_attribute("mode", "cubic"))
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    conv.input[1] = model.graph.input[0].name
    problems = parser_problems(model)
    assert len(problems) == 2 and any("Resize mode='cubic'" in p for p in problems)
    assert any("Conv input 1 (input) is computed" in p for p in problems)


@pytest.mark.cuda
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
                    reason="needs the tensorrt package and a CUDA GPU")
def test_tensorrt_fp16_runs_the_resize_layout_within_its_tolerance(store):
    from engines import ExportOptions, export_model

    result = export_model("tinyr", "tensorrt", ExportOptions(dynamic=True, half=True, size="64"))
    assert result.max_abs_error <= 5e-2
    generator, _ = load_model("tinyr")
    runner = create_backend(str(result.path), BackendOptions(backend="auto"), log=None)
    for shape in SHAPES:
        x = torch.rand(shape) * 2 - 1
        with torch.no_grad():
            assert float((runner.infer(x) - generator(x)).abs().max()) <= 5e-2
