"""`benchmark`: interleaved records with the eager fp32 baseline, accuracy on real frames, machine info, JSON.

Tiny generator at 32-48 px, one round: these check the records' content and invariants (the baseline's
ratio is 1.0 and its PSNR infinite against itself, fps = batch / median, accuracy against fp32 within each
backend's bound), never a speed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch

import cli
from rtstyle.stabilize import StabilizeOptions
from conftest import ROOT
from rtstyle.backends.select import Environment
from conftest import TINY
from rtstyle.benchmark import BASELINE, Variant, available_variants, measure, sample_frames
from rtstyle.macs import generator_macs
from rtstyle.models import GeneratorConfig, ResnetGenerator
from rtstyle.weights import ModelInfo, save_generator
from rtstyle.store import DEMO_CLIP
from rtstyle.transforms import parse_hw as parse_size  # the one HxW parser, which --sizes uses

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_INT8 = all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))
FIELDS = {"variant", "backend", "size", "batch", "ms_median", "ms_p10", "ms_p90", "fps", "ratio_vs_fp32",
          "max_abs_err", "psnr_db", "psnr_min_db", "added_mib", "peak_rss_mib", "peak_cuda_mib", "setup_s",
          "timed_calls", "error", "extra", "model"}


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
    # The baseline's own check: the same generator in a plain torch.no_grad() loop, timed in the same rounds.
    check = records[0]["extra"]
    assert check["plain_no_grad_ms"] > 0
    assert check["baseline_vs_plain"] == pytest.approx(records[0]["ms_median"] / check["plain_no_grad_ms"])
    assert "plain torch.no_grad() loop" in err.err and "cpu_class" in document["machine"]
    assert all("baseline_vs_plain" not in r["extra"] for r in records[1:])


def test_measure_batches_and_a_video_end_to_end(tiny_model_path):
    records = measure(str(tiny_model_path), [BASELINE, "torch:bf16"], (32, 48), batch=2, rounds=2, per_round=1,
                      warmup=1, video=DEMO_CLIP, e2e_frames=6, bare_seconds=0.1, stabilize=StabilizeOptions(),
                      video_rounds=3)
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
        # three conversions, each between two bare timings; the median ratio, with the bare figures around it
        rounds, bares = video["e2e_vs_bare_rounds"], video["bare_fps_rounds"]
        assert len(rounds) == 3 and len(bares) == 4 and video["e2e_vs_bare"] == sorted(rounds)[1]
        i = rounds.index(video["e2e_vs_bare"])
        assert (video["bare_fps_before"], video["bare_fps_after"]) == (bares[i], bares[i + 1])
        assert video["preset"] == "ultrafast"  # auto, for the tiny (light) model
        assert video["pipeline_infer_fps"] == pytest.approx(1000 / video["stage_ms_per_frame"]["infer"])
        assert {"decode", "infer", "encode"} <= set(video["stage_ms_per_frame"])
        assert video["stabilize"] == 0.93 and {"flow", "blend"} <= set(video["stage_ms_per_frame"])  # as cli video
    assert records[1].error is None and 30 <= records[1].psnr_min_db < math.inf  # bf16: close, not identical


def test_compare_times_a_second_model_in_the_same_rounds(tiny_model_path, tmp_path, capsys):
    """`--compare STUDENT`: both models' variants in one interleaved run, each against its own fp32 baseline,
    and the fps ratio of each model's fastest variant (issue 12's student-vs-teacher figure)."""
    torch.manual_seed(1)
    small = GeneratorConfig(ngf=4, n_blocks=1, upsample="resize")
    student = tmp_path / "student.safetensors"
    save_generator(ResnetGenerator(small).eval(), student, ModelInfo(config=small, direction="a->b", train_size=64,
                                                                      name="student"))
    out = tmp_path / "bench.json"
    assert cli.main(["benchmark", "--model", str(tiny_model_path), "--compare", str(student), "--backends",
                     "torch:fp32,torch:bf16", "--sizes", "32,32x48", "--rounds", "2", "--per-round", "1",
                     "--warmup", "0", "--settle", "1", "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["settings"]["settle"] == 1
    records = document["records"]
    assert [(r["model"], r["variant"], r["size"]) for r in records] == [
        (m, v, size) for size in ("32x32", "32x48") for m in ("", str(student)) for v in (BASELINE, "torch:bf16")]
    for r in records:
        assert r["error"] is None and r["timed_calls"] == 2
        assert r["extra"]["macs"] == generator_macs(small if r["model"] else TINY, *parse_size(r["size"]))
    for baseline in (r for r in records if r["variant"] == BASELINE):
        _check_baseline(baseline)  # the student's baseline is its own fp32, not the teacher's
    assert sum("baseline_vs_plain" in r["extra"] for r in records) == 2  # the plain check: main model only
    rows = document["comparison"]
    assert [row["size"] for row in rows] == [[32, 32], [32, 48]]
    for row, size in zip(rows, ("32x32", "32x48")):
        best = {m: max((r for r in records if r["model"] == m and r["size"] == size), key=lambda r: r["fps"])
                for m in ("", str(student))}
        assert row["model_best"] == best[""]["variant"] and row["compare_best"] == best[str(student)]["variant"]
        assert row["fps_ratio"] == pytest.approx(best[str(student)]["fps"] / best[""]["fps"])
        assert row["macs_ratio"] == pytest.approx(generator_macs(TINY, 32, 32) / generator_macs(small, 32, 32),
                                                  rel=0.05)
    shown = capsys.readouterr()
    assert "fastest at 32x48 batch 1" in shown.err and "x the fps for" in shown.err
    assert "student.safetensors" in shown.out  # the model column
    # The benchmarked model itself is not a comparison: refused before anything is measured.
    assert cli.main(["benchmark", "--model", str(tiny_model_path), "--compare", str(tiny_model_path)]) == 2
    assert "the benchmarked model itself" in capsys.readouterr().err


def test_sample_frames_from_video_and_default():
    frames = sample_frames(4, (40, 48), DEMO_CLIP)
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
    gpu = Environment(cuda=True, installed=frozenset({"tensorrt"}))
    assert available_variants(gpu) == [BASELINE, "torch:fp16", "tensorrt:fp16"]


def test_cli_refuses_misspelt_variants(tiny_model_path, capsys):
    assert cli.main(["benchmark", "--model", str(tiny_model_path), "--backends", "openvino:int4"]) == 2
    assert "backend[:precision][+compile]" in capsys.readouterr().err
    assert cli.main(["benchmark", "--model", str(tiny_model_path), "--settle", "-1"]) == 2
    assert "--settle" in capsys.readouterr().err


def test_each_round_settles_each_variant_before_timing_it(tiny_model_path, monkeypatch):
    """--settle N: N untimed calls at the start of every variant's turn in every round, on top of the
    warm-up and the timed calls (so a small model is not timed just after a big one evicted the caches)."""
    import rtstyle.benchmark as bench

    calls = []
    real_create = bench.create_backend

    def counting(model, options, log=None):
        backend = real_create(model, options, log=log)
        infer = backend.infer
        backend.infer = lambda x: calls.append(options.precision) or infer(x)
        return backend

    monkeypatch.setattr(bench, "create_backend", counting)
    for settle in (0, 2):
        calls.clear()
        records = measure(str(tiny_model_path), ["torch:fp32"], (32, 32), 1, device="cpu", warmup=1, rounds=3,
                          per_round=2, settle=settle)
        assert records[0].timed_calls == 6
        accuracy_calls = 5  # _outputs: the five accuracy frames, one batch each
        assert len(calls) == 1 + accuracy_calls + 3 * (settle + 2)


GPU_CHECK = ROOT / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_gpu_check_refuses_cleanly_without_a_gpu(tmp_path):
    out = subprocess.run([sys.executable, str(GPU_CHECK), "--out", str(tmp_path / "g.json")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2 and "no CUDA GPU" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "g.json").exists()


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_gpu_check_dry_run_exercises_every_section_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSTYLE_HOME", str(tmp_path / "home"))
    code = ("import runpy, sys\n"
            "for m in ('cv2', 'av'): sys.modules[m] = None  # the GPU machine may lack OpenCV and PyAV\n"
            f"sys.argv = ['gpu_check.py', '--dry-run', '--budget', '0.05', '--out', {str(tmp_path / 'g.json')!r}]\n"
            f"runpy.run_path({str(GPU_CHECK)!r}, run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "g.json").read_text())
    rows = report["torch"]
    assert {(r["precision"], r["cudnn_benchmark"]) for r in rows} == {(p, b) for p in ("bf16", "fp32")
                                                                     for b in (False, True)}
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    assert all(r["max_abs"] == 0.0 and r["fps"] > 0 for r in fp32)  # CPU fp32 against itself: identical
    assert report["onnxruntime"]["providers"][0] == "CPUExecutionProvider"
    assert report["onnxruntime"]["max_abs"] < 1e-4


def test_busy_cores_spin_only_inside_the_block():
    from rtstyle.bench_live import BusyCores

    with BusyCores(2) as busy:
        procs = list(busy.procs)
        assert len(procs) == 2 and all(p.poll() is None for p in procs)  # spinning
    assert all(p.poll() is not None for p in procs)  # and gone afterwards
    with BusyCores(0) as idle:
        assert idle.procs == []


def test_median_round_pairs_each_round_with_the_bare_timings_around_it():
    """A machine that speeds up between rounds: against a bare figure taken once, the last round would look 3x
    better than the first; against its neighbours each round is within 1.0-1.33."""
    from rtstyle.bench_live import median_round

    middle, ratios, bare = median_round([10.0, 20.0, 30.0], [10.0, 10.0, 20.0, 30.0])
    assert ratios == pytest.approx([1.0, 20 / 15, 30 / 25]) and middle == 2  # the median ratio, 1.2
    assert bare == pytest.approx(25.0)  # the bare figures around that round


def test_measure_with_a_busy_core_and_the_live_loop(tiny_model_path, tmp_path):
    """--busy times each round idle and busy; --live runs the live loop on a real clip next to the bare fps."""
    from media_helpers import make_clip

    clip = make_clip(tmp_path / "live.mp4", frames=12)
    records = measure(str(tiny_model_path), ["torch:fp32"], (32, 32), 1, device="cpu", warmup=0, rounds=2,
                      per_round=1, busy=1, live=str(clip), live_seconds=30.0, bare_seconds=0.1, live_rounds=3)
    busy, live = records[0].extra["busy"], records[0].extra["live"]
    assert busy["cores"] == 1 and busy["ms_median"] > 0 and busy["busy_vs_idle"] > 0
    assert records[0].timed_calls == 2  # the idle rounds only: the busy ones are reported apart
    assert live["frames"] == 12 and live["ended"] == "source ended"  # a file: every frame, as fast as it goes
    assert 0 < live["latency_median_ms"] <= live["latency_p95_ms"]
    assert live["live_fps"] > 0 and live["bare_fps"] > 0
    assert live["live_vs_bare"] == pytest.approx(live["live_fps"] / live["bare_fps"])
    # three live loops, each between two bare timings: the median round's figures, every round's ratio
    rounds, bares = live["live_vs_bare_rounds"], live["bare_fps_rounds"]
    assert len(rounds) == 3 and len(bares) == 4 and live["live_vs_bare"] == sorted(rounds)[1]
    i = rounds.index(live["live_vs_bare"])
    assert live["bare_fps"] == pytest.approx((bares[i] + bares[i + 1]) / 2) and live["live_fps_rounds"][i] == live["live_fps"]
    assert live["stage_ms_per_frame"]["infer"] > 0
    assert "bare_frames_fps" not in live  # torch converts with the pure transforms: one bare figure


@pytest.mark.skipif(not HAS_INT8, reason="needs openvino")
def test_live_record_of_a_backend_that_converts_frames_in_its_graph(tiny_model_path, tmp_path):
    """OpenVINO runs the loop on uint8 frames (`infer_frames`); both bare figures are reported beside it."""
    from media_helpers import make_clip
    from rtstyle.backends import BackendOptions, create_backend
    from rtstyle.bench_live import live_record

    backend = create_backend(str(tiny_model_path), BackendOptions(backend="openvino", precision="fp32"), log=None)
    calls = []
    original = backend.infer_frames
    backend.infer_frames = lambda frames: calls.append(frames.shape) or original(frames)
    live = live_record(backend, str(make_clip(tmp_path / "live.mp4", frames=6)), 32, seconds=30, bare_seconds=0.1)
    assert live["frames"] == 6 and live["bare_fps"] > 0 and live["bare_frames_fps"] > 0
    assert calls and all(shape[:2] == (1, 32) and shape[3] == 3 for shape in calls)  # short side 32, RGB


@pytest.mark.parametrize("setting", [{"live_rounds": 0}, {"video_rounds": 0}, {"live_seconds": 0.0}])
def test_benchmark_settings_refuse_rounds_below_one(setting):
    from rtstyle.benchmark import BenchmarkSettings
    from rtstyle.errors import UserError

    with pytest.raises(UserError, match="--live-rounds must be at least 1"):
        BenchmarkSettings(**setting).check()
    BenchmarkSettings(live_rounds=5).check()  # accepted
