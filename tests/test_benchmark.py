"""`benchmark`: interleaved records with the eager fp32 baseline, accuracy on real frames, machine info, JSON.

Tiny generator at 32-48 px, one round: these check the records' content and invariants (the baseline's
ratio is 1.0 and its PSNR infinite against itself, fps = batch / median, accuracy against fp32 within each
backend's bound), never a speed.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

import cli
from rtstyle.backends.select import Environment
from conftest import TINY
from rtstyle.benchmark import BASELINE, Variant, available_variants, measure, parse_size, sample_frames
from rtstyle.macs import generator_macs
from rtstyle.store import ASSETS_DIR

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_INT8 = all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))
FIELDS = {"variant", "backend", "size", "batch", "ms_median", "ms_p10", "ms_p90", "fps", "ratio_vs_fp32",
          "max_abs_err", "psnr_db", "psnr_min_db", "added_mib", "peak_rss_mib", "peak_cuda_mib", "setup_s",
          "timed_calls", "error", "extra"}


def _check_baseline(record: dict) -> None:
    assert record["variant"] == BASELINE and record["error"] is None
    assert record["ratio_vs_fp32"] == 1.0 and record["max_abs_err"] == 0.0
    assert record["psnr_db"] == math.inf and record["psnr_min_db"] == math.inf


@pytest.mark.skipif(not (HAS_ORT and HAS_INT8), reason="needs onnxruntime, openvino and nncf")
def test_cli_benchmark_writes_records_for_every_variant(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = cli.main(["benchmark", "--model", str(tiny_model_path), "--backends",
                     "onnxruntime:fp32,openvino:int8,tensorrt:fp16", "--sizes", "32", "--batch", "1", "--rounds", "1",
                     "--per-round", "1", "--warmup", "0", "--json", str(out)])
    assert code == 0
    document = json.loads(out.read_text())
    assert {"cpu", "cores", "versions", "load_average", "cpu_flags"} <= set(document["machine"])
    assert document["machine"]["versions"]["torch"] and document["settings"]["rounds"] == 1
    records = document["records"]
    assert [r["variant"] for r in records] == [BASELINE, "onnxruntime:fp32", "openvino:int8", "tensorrt:fp16"]
    assert all(set(r) == FIELDS for r in records)
    _check_baseline(records[0])
    ort, int8, trt = records[1:]
    for r in (ort, int8):
        assert r["error"] is None and r["size"] == "32x32" and r["batch"] == 1 and r["timed_calls"] == 1
        assert r["fps"] == pytest.approx(1000.0 / r["ms_median"]) and r["ms_p10"] <= r["ms_median"] <= r["ms_p90"]
        assert r["ratio_vs_fp32"] == pytest.approx(records[0]["ms_median"] / r["ms_median"])
        assert r["extra"]["accuracy_frames"] == 5 and r["peak_rss_mib"] > 0
    assert ort["max_abs_err"] <= 1e-4 and ort["psnr_min_db"] >= 60
    assert int8["psnr_min_db"] >= 30 and "int8 at 32x32" in int8["backend"]  # the int8 bound, on real frames
    assert trt["error"] and trt["ms_median"] is None  # cannot run here: reported, not fatal
    err = capsys.readouterr()
    assert "x fp32" in err.out and "openvino:int8" in err.out


def test_measure_batches_and_a_video_end_to_end(tiny_model_path):
    records = measure(str(tiny_model_path), [BASELINE, "torch:bf16"], (32, 48), batch=2, rounds=2, per_round=1,
                      warmup=1, video=ASSETS_DIR / "demo_clip.mp4", e2e_frames=6, bare_seconds=0.1)
    assert [r.variant for r in records] == [BASELINE, "torch:bf16"]
    record = records[0]
    assert record.size == (32, 48) and record.batch == 2 and record.timed_calls == 2
    assert record.fps == pytest.approx(2000.0 / record.ms_median)
    assert record.extra["accuracy_frames"] == 6  # whole batches: 5 frames rounded up to 3 batches of 2
    assert record.extra["ratio_rounds"] == [1.0, 1.0]
    # MACs at the size it ran (rtstyle.macs), the same figure on every variant of the model.
    assert [r.extra["macs"] for r in records] == [generator_macs(TINY, 32, 48)] * 2
    _check_baseline({**record.__dict__, "error": None})
    for r in records:  # the 640x360 clip at short side 32: 32x57 rounded to multiples of 4
        video = r.extra["video"]
        assert video["processing"] == "32x56" and video["frames"] == 6
        assert video["e2e_fps"] > 0 and video["bare_fps"] > 0
        assert video["e2e_vs_bare"] == pytest.approx(video["e2e_fps"] / video["bare_fps"])
        assert video["pipeline_infer_fps"] == pytest.approx(1000 / video["stage_ms_per_frame"]["infer"])
        assert {"decode", "infer", "encode"} <= set(video["stage_ms_per_frame"])
    assert records[1].error is None and 30 <= records[1].psnr_min_db < math.inf  # bf16: close, not identical


def test_sample_frames_from_video_and_default():
    frames = sample_frames(4, (40, 48), ASSETS_DIR / "demo_clip.mp4")
    assert frames.shape == (4, 40, 48, 3) and frames.dtype.name == "uint8" and frames.std() > 10
    assert not (frames[0] == frames[-1]).all()  # spread over the clip
    assert sample_frames(7, (32, 32)).shape == (7, 32, 32, 3)  # the 5 held-out frames, cycled


def test_variant_specs_and_sizes():
    assert Variant("openvino:int8").options("cpu").precision == "int8"
    assert Variant("torch").options("auto").precision == "auto"
    for bad in ("torchx", "torch:int4", "torch:fp32+jit"):
        with pytest.raises(ValueError, match="backend\\[:precision\\]"):
            Variant(bad).options("cpu")
    assert parse_size("360x640") == (360, 640) and parse_size("256") == (256, 256)
    with pytest.raises(ValueError, match="multiples of 4"):
        parse_size("30")


def test_all_means_what_this_machine_runs():
    cpu = Environment(installed=frozenset({"onnxruntime", "openvino"}), openvino_bf16=True, openvino_int8=True)
    assert available_variants(cpu) == [BASELINE, "onnxruntime:fp32", "openvino:fp32", "openvino:bf16",
                                       "openvino:int8"]
    gpu = Environment(cuda=True, installed=frozenset({"tensorrt"}), torch_precisions=("fp32", "bf16", "fp16"))
    assert available_variants(gpu) == [BASELINE, "torch:fp16", "tensorrt:fp16"]


def test_cli_refuses_misspelt_variants(tiny_model_path, capsys):
    assert cli.main(["benchmark", "--model", str(tiny_model_path), "--backends", "openvino:int4"]) == 2
    assert "backend[:precision][+compile]" in capsys.readouterr().err
