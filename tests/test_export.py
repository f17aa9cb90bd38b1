"""`export`: ONNX and OpenVINO artifacts checked (graph, metadata, outputs vs PyTorch), run back through the
backends at 256x256 and 360x640 from one dynamic export, used by `translate`; TensorRT skips without a GPU.
Tiny generator (ngf 8, 2 blocks) so the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import cli
from conftest import tiny_store
from engines import ExportError, ExportOptions, export_model, parse_hw
from engines.onnx_export import check_instance_norm
from rtstyle.backends import BackendOptions, create_backend
from rtstyle.formats.metadata import ArtifactError, new_meta
from rtstyle.formats.onnx import generator_to_onnx
from rtstyle.io.images import read_image, write_image
from rtstyle.models import GeneratorConfig, ResnetGenerator
from rtstyle.store import resolve_model
from rtstyle.weights import ModelInfo, load_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("rtstyle-home"), seed=1, direction="photo->ink")


@pytest.fixture
def store(home, monkeypatch):
    monkeypatch.setenv("RTSTYLE_HOME", str(home))
    return home / "models"


@pytest.fixture(scope="module")
def dynamic_onnx(home):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RTSTYLE_HOME", str(home))
        return export_model("tiny", "onnx", ExportOptions(dynamic=True))


def test_dynamic_onnx_graph_metadata_and_error(dynamic_onnx, store):
    assert dynamic_onnx.path == store / "tiny.onnx"
    assert dynamic_onnx.max_abs_error <= 1e-4 == dynamic_onnx.tolerance
    assert any("360x640" in c.label for c in dynamic_onnx.comparisons)  # dynamic exports are checked off-square
    assert any(c.label.startswith("real") for c in dynamic_onnx.comparisons)
    model = onnx.load(str(dynamic_onnx.path))
    onnx.checker.check_model(model, full_check=True)
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["InstanceNormalization"] == 9 and "BatchNormalization" not in ops  # 5 + 2 per block
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["rtstyle.direction"] == "photo->ink" and '"dynamic": true' in props["rtstyle.size_policy"]
    assert '"range": [-1.0, 1.0]' in props["rtstyle.input"] and '"torch"' in props["rtstyle.versions"]


@pytest.mark.parametrize("backend,tolerance", [
    ("onnxruntime", 1e-4),
    pytest.param("openvino", 5e-4, marks=pytest.mark.skipif(not HAS_OPENVINO, reason="openvino not installed")),
])
def test_one_dynamic_export_runs_256_and_360x640(dynamic_onnx, store, backend, tolerance):
    generator, info = load_model(store / "tiny.safetensors")
    runner = create_backend("tiny.onnx", BackendOptions(backend=backend, precision="fp32"), log=None)
    assert runner.info == info
    for shape in [(1, 3, 256, 256), (2, 3, 360, 640)]:
        x = torch.rand(shape) * 2 - 1
        with torch.no_grad():
            expected = generator(x)
        assert float((runner.infer(x) - expected).abs().max()) <= tolerance


def test_fixed_size_export_refuses_other_sizes(store):
    result = export_model("tiny", "onnx", ExportOptions(size="64x96"))
    assert result.path == store / "tiny-64x96.onnx"
    runner = create_backend(str(result.path), BackendOptions(backend="onnxruntime"), log=None)
    assert runner.infer(torch.zeros(2, 3, 64, 96)).shape == (2, 3, 64, 96)  # batch stays dynamic
    with pytest.raises(ArtifactError, match="fixed 64x96.*--dynamic"):
        runner.infer(torch.zeros(1, 3, 64, 64))
    before = result.path.read_bytes()
    with pytest.raises(ValueError, match="--overwrite"):
        export_model("tiny", "onnx", ExportOptions(size="64x96"))
    assert result.path.read_bytes() == before


def test_export_fails_above_tolerance_and_writes_nothing(store, tmp_path):
    with pytest.raises(ExportError, match="tolerance"):
        export_model("tiny", "onnx", ExportOptions(size="32", tolerance=1e-12), out=tmp_path / "t.onnx")
    assert not (tmp_path / "t.onnx").exists()


def test_graphs_without_per_image_norm_are_rejected(dynamic_onnx):
    instance_info = ModelInfo(config=GeneratorConfig(ngf=8, n_blocks=2))
    # A BatchNorm generator in eval mode: the exporter folds the running statistics into the convs.
    generator = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=2, norm="batch")).eval()
    folded = generator_to_onnx(generator, new_meta(ModelInfo(config=generator.config), "onnx", False, 32, 32))
    with pytest.raises(ExportError, match="expected 9 InstanceNormalization nodes .* found 0"):
        check_instance_norm(folded, instance_info)
    # A graph where one norm became BatchNormalization (what a train/eval mix-up produces).
    model = onnx.load(str(dynamic_onnx.path))
    next(n for n in model.graph.node if n.op_type == "InstanceNormalization").op_type = "BatchNormalization"
    with pytest.raises(ExportError, match="1 BatchNormalization node"):
        check_instance_norm(model, instance_info)
    assert "9 InstanceNormalization" in check_instance_norm(onnx.load(str(dynamic_onnx.path)), instance_info)


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino not installed")
def test_cli_openvino_export_then_translate(store, tmp_path, capsys):
    assert cli.main(["export", "--model", "tiny", "--format", "openvino", "--dynamic"]) == 0
    err = capsys.readouterr().err
    assert "max abs error vs PyTorch fp32" in err and "MVN" in err
    folder = store / "tiny_openvino"
    assert (folder / "tiny.xml").is_file() and (folder / "tiny.bin").is_file()
    import openvino as ov

    ops = Counter(op.get_type_name() for op in ov.Core().read_model(str(folder / "tiny.xml")).get_ops())
    assert ops["MVN"] == 9 and "BatchNormInference" not in ops
    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    write_image(tmp_path / "in" / "frame.png", image)
    for model in (str(folder), str(folder / "tiny.xml"), "tiny_openvino"):
        out = tmp_path / f"out-{len(model)}"
        assert cli.main(["translate", str(tmp_path / "in"), "--model", model, "--out", str(out),
                         "--backend", "openvino"]) == 0
        assert read_image(out / "frame.png").shape == (50, 70, 3)
    err = capsys.readouterr().err
    assert "openvino bf16 on CPU" in err or "openvino fp32 on CPU" in err


def test_cli_translate_with_onnxruntime(dynamic_onnx, store, tmp_path, capsys):
    write_image(tmp_path / "in" / "a.png", np.full((40, 60, 3), 90, np.uint8))
    assert cli.main(["translate", str(tmp_path / "in"), "--model", "tiny.onnx", "--out", str(tmp_path / "o"),
                     "--backend", "onnxruntime"]) == 0
    assert "onnxruntime fp32 on CPU" in capsys.readouterr().err
    assert read_image(tmp_path / "o" / "a.png").shape == (40, 60, 3)


def test_cli_errors_are_clear(store, capsys):
    assert cli.main(["export", "--model", "tiny", "--format", "onnx", "--half"]) == 2
    assert "--half applies to --format tensorrt" in capsys.readouterr().err
    assert cli.main(["export", "--model", "tiny", "--format", "onnx", "--size", "30"]) == 2
    assert "multiples of 4" in capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:
        assert cli.main(["export", "--model", "tiny", "--format", "tensorrt", "--half"]) == 2
        assert "pip install -e '.[tensorrt]'" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
                    reason="needs the tensorrt package and a CUDA GPU")
def test_tensorrt_export_fp16(store):
    result = export_model("tiny", "tensorrt", ExportOptions(dynamic=True, half=True, size="64"))
    assert result.path == store / "tiny-fp16.engine" and result.max_abs_error <= 5e-2
    runner = create_backend("tiny-fp16.engine", BackendOptions(backend="auto"), log=None)
    assert runner.infer(torch.zeros(2, 3, 360, 640)).shape == (2, 3, 360, 640)


def test_parse_hw_and_store_lookup(dynamic_onnx, store):
    assert parse_hw("256") == (256, 256) and parse_hw("360x640") == (360, 640)
    with pytest.raises(ValueError):
        parse_hw("wide")
    assert resolve_model("tiny.onnx") == store / "tiny.onnx"


def test_runtime_imports_no_engines_and_no_heavy_libraries():
    code = ("import sys, rtstyle, rtstyle.backends, rtstyle.formats, rtstyle.formats.onnx, rtstyle.formats.tensorrt, "
            "rtstyle.formats.metadata; "
            "print([m for m in ('engines', 'cli', 'onnx', 'onnxruntime', 'openvino', 'tensorrt') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
