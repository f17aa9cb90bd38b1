"""Every registered artifact format (rtstyle.formats.FORMATS): made from weights, read back, resolved once;
the TensorRT engine file, cache key and version rules, which need no tensorrt and no GPU.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_store
from rtstyle.formats import FORMATS, open_model
from rtstyle.formats.metadata import ArtifactError, ArtifactMeta, artifact_kind
from rtstyle.formats.tensorrt import (BUILD_RECIPE_VERSION, MAGIC, EngineKey, Profile, cuda_major_of, engine_cache_path,
                                      read_engine, read_engine_header, stale_reason, version_problem, write_engine)
from rtstyle.models import GeneratorConfig
from rtstyle.weights import ModelInfo

HAS_TRT_GPU = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
# What each format's runtime needs here; a format missing from this map fails the first test below.
NEEDS = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino",), "int8": ("openvino", "nncf"),
         "tensorrt": ("tensorrt",)}


def _skip(name: str) -> str | None:
    missing = [m for m in NEEDS[name] if importlib.util.find_spec(m) is None]
    if missing:
        return f"needs {', '.join(missing)}"
    if name == "tensorrt" and not torch.cuda.is_available():
        return "needs a CUDA GPU"
    return None


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("rtstyle-home"), seed=3, direction="a->b")


def test_every_format_has_its_requirements_listed():
    assert sorted(NEEDS) == sorted(FORMATS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.skipif(_skip(n) is not None, reason=_skip(n) or ""))
                                  for n in FORMATS])
def test_each_format_makes_from_weights_and_reads_back_what_it_made(name, home, monkeypatch):
    monkeypatch.setenv("RTSTYLE_HOME", str(home))
    weights = home / "models" / "tiny.safetensors"
    fmt = FORMATS[name]
    if name == "int8":  # built per input size; thresholds low enough for a random tiny generator
        from rtstyle.formats.int8.quantize import cached_int8

        made = cached_int8(weights, (32, 32), target_psnr=0, min_psnr=0, calibration_count=4).xml
    else:
        made = fmt.from_weights(weights, None)
    assert artifact_kind(made) == fmt.kind
    meta = fmt.read_meta(made)
    ref = open_model(made)
    assert ref.kind == fmt.kind and ref.meta == meta and ref.info == meta.info
    assert meta.info.direction == "a->b" and meta.info.config == open_model(weights).info.config
    assert made.suffix in fmt.suffixes
    if name != "int8":  # the int8 cache is checked in test_int8.py, with its thresholds in the key
        stamp = made.stat().st_mtime_ns
        assert fmt.from_weights(weights, None) == made and made.stat().st_mtime_ns == stamp  # cached, not remade


def test_a_model_value_is_resolved_once_into_one_typed_value(home, monkeypatch):
    monkeypatch.setenv("RTSTYLE_HOME", str(home))
    ref = open_model("tiny")  # a store name
    assert ref.path == home / "models" / "tiny.safetensors" and ref.kind == "weights" and ref.meta is None
    assert ref.info.direction == "a->b" and len(ref.sha256) == 64
    other = home / "notes.txt"
    other.write_text("not a model")
    with pytest.raises(ArtifactError, match="unknown model format"):
        open_model(other)


# --- TensorRT engine files: header, cache key, staleness (no tensorrt needed) ----------------------------
def _meta() -> ArtifactMeta:
    info = ModelInfo(config=GeneratorConfig(ngf=8, n_blocks=2), direction="a->b", name="tiny")
    return ArtifactMeta(info=info, format="tensorrt", dynamic=True, precision="fp16", source_sha256="ab" * 32)


def _key(**changes) -> EngineKey:
    fields = dict(gpu_name="NVIDIA H200", compute_capability="9.0", tensorrt_version="10.13.0", precision="fp16",
                  profile=Profile.for_shapes(3, (256, 256), dynamic=True), source_sha256="ab" * 32)
    fields.update(changes)
    return EngineKey(**fields)


def test_engine_header_round_trip(tmp_path):
    plan = bytes(range(256)) * 10  # any bytes: the header must not depend on the plan's content
    path = write_engine(tmp_path / "m.engine", plan, _meta(), _key())
    meta, key, offset = read_engine_header(path)
    assert meta == _meta() and key == _key()
    assert read_engine(path)[2] == plan
    assert path.read_bytes()[:len(MAGIC)] == MAGIC and offset == path.stat().st_size - len(plan)
    header = json.loads(path.read_bytes()[len(MAGIC) + 4:offset])
    assert header["engine_key"]["gpu_name"] == "NVIDIA H200" and header["metadata"]["rtstyle.direction"] == "a->b"


def test_foreign_or_broken_engine_files_are_refused(tmp_path):
    bare = tmp_path / "bare.engine"
    bare.write_bytes(b"\x00ftrt plan from trtexec")
    with pytest.raises(ArtifactError, match="no rtstyle header"):
        read_engine_header(bare)
    good = write_engine(tmp_path / "m.engine", b"plan", _meta(), _key())
    cut = tmp_path / "cut.engine"
    cut.write_bytes(good.read_bytes()[:len(MAGIC) + 10])
    with pytest.raises(ArtifactError, match="truncated"):
        read_engine_header(cut)
    empty = write_engine(tmp_path / "e.engine", b"", _meta(), _key())
    with pytest.raises(ArtifactError, match="plan is empty"):
        read_engine(empty)


@pytest.mark.parametrize("change,reason", [
    ({"gpu_name": "NVIDIA A100", "compute_capability": "8.0"}, "built for NVIDIA A100"),
    ({"compute_capability": "8.9"}, "compute capability 8.9"),
    ({"tensorrt_version": "10.0.1"}, "TensorRT 10.0.1"),
    ({"precision": "fp32"}, "built for fp32"),
    ({"source_sha256": "cd" * 32}, "other weights"),
    ({"profile": Profile.for_shapes(3, (256, 256), dynamic=False)}, "shape profile"),
])
def test_stale_engines_are_detected(change, reason):
    assert stale_reason(_key(), _key()) is None
    found = _key(**change)
    assert reason in stale_reason(found, _key())
    assert engine_cache_path("tiny", found) != engine_cache_path("tiny", _key())  # never the same cache file


def test_profiles():
    fixed = Profile.for_shapes(3, (360, 640), dynamic=False, max_batch=4)
    assert fixed.contains((4, 3, 360, 640)) and not fixed.contains((5, 3, 360, 640))
    assert not fixed.contains((1, 3, 256, 256))
    dynamic = Profile.for_shapes(3, (256, 256), dynamic=True)
    assert dynamic.contains((1, 3, 16, 16)) and dynamic.contains((8, 3, 1080, 1920))
    assert dynamic.opt == (1, 3, 256, 256) and not dynamic.contains((1, 3, 2160, 3840))
    with pytest.raises(ValueError, match="multiples of 4"):
        Profile((1, 3, 30, 30), (1, 3, 30, 30), (1, 3, 30, 30))



def test_cuda_major_and_recipe_version_are_part_of_the_key():
    assert "CUDA 11" in stale_reason(_key(cuda_major="11"), _key(cuda_major="12"))
    assert "recipe 1" in stale_reason(_key(recipe_version=1), _key())
    assert _key().recipe_version == BUILD_RECIPE_VERSION
    # An engine header from before these fields existed reads back as stale, so it is rebuilt, not trusted.
    old = {k: v for k, v in _key(cuda_major="12").to_dict().items() if k not in ("cuda_major", "recipe_version")}
    assert stale_reason(EngineKey.from_dict(old), _key(cuda_major="12")) is not None
    # The GPU index names the cache file (each GPU keeps its own) but identical GPUs may share an export.
    assert stale_reason(_key(device_index=1), _key()) is None
    assert engine_cache_path("tiny", _key(device_index=1)) != engine_cache_path("tiny", _key())


def test_only_tensorrt_10_is_accepted():
    assert version_problem("10.13.0.35") is None and version_problem("10.0.1") is None
    for bad in ("11.0.0", "8.6.1", "unknown"):
        assert f"TensorRT {bad} found" in version_problem(bad)
    assert "11" in version_problem("11.0.0") and "tensorrt-cu12" in version_problem("11.0.0")


def test_the_cuda_major_of_a_tensorrt_wheel_comes_from_its_distribution_name():
    assert cuda_major_of(["numpy", "tensorrt-cu12", "tensorrt_cu12_libs", "tensorrt_cu12_bindings"]) == "12"
    assert cuda_major_of(["tensorrt-cu11"]) == "11"
    assert cuda_major_of(["tensorrt"]) == ""  # the meta-package alone says nothing
    assert cuda_major_of(["tensorrt-cu11", "tensorrt-cu12"]) == ""  # two majors: ambiguous, so never equal


def test_dynamic_profiles_are_square_so_portrait_video_fits():
    dynamic = Profile.for_shapes(3, (256, 256), dynamic=True)
    assert dynamic.contains((1, 3, 1920, 1080)) and dynamic.contains((1, 3, 1080, 1920))
    assert dynamic.max[2] == dynamic.max[3] == 1920


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_on_the_fly_conversions_are_checked_against_pytorch_before_they_are_cached(kind, tmp_path, monkeypatch):
    if _skip(kind):
        pytest.skip(_skip(kind))
    from rtstyle.formats.metadata import cached_conversion
    from rtstyle.formats.onnx import ONNX_TOLERANCE, cached_onnx, generator_to_onnx, onnx_runner
    from rtstyle.formats.openvino import OPENVINO_TOLERANCE, cached_openvino, generator_to_openvino, openvino_runner
    from rtstyle.io.files import atomic_write
    from rtstyle.models import ResnetGenerator
    from rtstyle.store import cache_dir

    monkeypatch.setenv("RTSTYLE_HOME", str(tmp_path))
    weights = tiny_store(tmp_path, seed=5, direction="a->b") / "models" / "tiny.safetensors"
    assert (cached_onnx if kind == "onnx" else cached_openvino)(weights).is_file()  # the right graph passes
    torch.manual_seed(99)
    other = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=2)).eval()  # a graph that is not these weights'

    def wrong(target, generator, meta):
        if kind == "onnx":
            payload = generator_to_onnx(other, meta).SerializeToString()
            atomic_write(target, lambda tmp: Path(tmp).write_bytes(payload))
        else:
            from rtstyle.formats.openvino import save_openvino

            save_openvino(generator_to_openvino(other, meta), target)

    check = (onnx_runner, ONNX_TOLERANCE) if kind == "onnx" else (openvino_runner, OPENVINO_TOLERANCE)
    with pytest.raises(ArtifactError, match="differs from PyTorch .* nothing was cached"):
        cached_conversion(weights, f"{kind}-check", ".xml" if kind == "openvino" else ".onnx", wrong, None,
                          check=check)
    assert not list((cache_dir() / f"{kind}-check").iterdir())  # nothing half-checked is kept


@pytest.mark.skipif(_skip("openvino") is not None or _skip("onnx") is not None, reason="needs onnx and openvino")
def test_corrupt_or_incomplete_artifacts_are_one_line_errors_naming_the_file(home, tmp_path, monkeypatch, capsys):
    """Random bytes or half of a real export as .onnx, a broken .xml, an IR folder without its .bin: each is
    exit 2 with the file and what to do, never protobuf's DecodeError or OpenVINO's RuntimeError traceback."""
    import shutil

    from conftest import run_main
    from rtstyle.formats.onnx import cached_onnx
    from rtstyle.formats.openvino import cached_openvino
    from rtstyle.io.images import write_image

    monkeypatch.setenv("RTSTYLE_HOME", str(home))
    image = tmp_path / "in.png"
    write_image(image, torch.randint(0, 255, (24, 32, 3), dtype=torch.uint8).numpy())
    real_onnx = cached_onnx(home / "models" / "tiny.safetensors")
    real_xml = cached_openvino(home / "models" / "tiny.safetensors")
    random_onnx, half_onnx = tmp_path / "random.onnx", tmp_path / "half.onnx"
    random_onnx.write_bytes(b"\x08\x07" + bytes(range(256)) * 8)
    half_onnx.write_bytes(real_onnx.read_bytes()[: real_onnx.stat().st_size // 2])
    broken_xml = tmp_path / "broken.xml"
    broken_xml.write_text("<net name='x'><layers><layer")
    no_bin = tmp_path / "no_bin_openvino"
    no_bin.mkdir()
    shutil.copy(real_xml, no_bin / real_xml.name)
    short_bin = tmp_path / "short_bin_openvino"
    short_bin.mkdir()
    shutil.copy(real_xml, short_bin / real_xml.name)
    (short_bin / real_xml.with_suffix(".bin").name).write_bytes(real_xml.with_suffix(".bin").read_bytes()[:100])
    cases = {random_onnx: "not a readable ONNX model", half_onnx: "not a readable ONNX model",
             broken_xml: "OpenVINO cannot read this model", no_bin: "OpenVINO cannot read this model",
             short_bin: "OpenVINO cannot read this model"}
    for model, expected in cases.items():
        capsys.readouterr()
        assert run_main("translate", image, "--model", model, "--out", tmp_path / "out", "--backend", "auto") == 2
        err = capsys.readouterr().err
        assert expected in err and str(model.name) in err and "export" in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
