"""Distillation (issue 12): a few-step run writes a loadable, self-describing student; resume after SIGKILL is
bit-identical; fidelity to a fixed teacher improves; channel selection; --fast; bad input refused cleanly.

Tiny teachers made here (ngf 8, 3 blocks), tiny students (ngf 4, 2 blocks), 32-48 px crops of
scikit-image's sample photos, frames of the bundled clip; one thread, as in tests/test_train.py.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import cli_in_process
from rtstyle.formats.metadata import sha256_file
from rtstyle.macs import generator_macs
from rtstyle.models import GeneratorConfig, ResnetGenerator
from rtstyle.io.inputs import InputError
from rtstyle.store import ASSETS_DIR, ModelNotFound
from rtstyle.students import estimated_fps, fast_model, speed_hint
from rtstyle.weights import ModelInfo, WeightsError, load_model, read_info, save_generator
from train.distill import distill
from train.distill_config import DistillConfig
from train.distiller import select_channels, stage_pairs

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    """The environment now (RTSTYLE_HOME is each test's own store), one thread per subprocess."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
TEACHER = GeneratorConfig(ngf=8, n_blocks=3)
TINY = dict(student_ngf=4, student_blocks=2, load_size=40, crop_size=32, num_workers=0, holdout=2, eval_size=48,
            video_frames=3, precision="fp32")
TINY_ARGS = ["--student-ngf", "4", "--student-blocks", "2", "--load-size", "40", "--crop-size", "32",
             "--num-workers", "0", "--holdout", "2", "--eval-size", "48", "--video-frames", "3", "--precision", "fp32"]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def teacher(isolated_store) -> Path:
    """A tiny teacher in the test's own store, as `teach`."""
    torch.manual_seed(5)
    generator = ResnetGenerator(TEACHER).eval()
    return save_generator(generator, isolated_store / "teach.safetensors",
                          ModelInfo(config=TEACHER, direction="photo->ink", train_size=48, name="teach"))


def photos(folder: Path, names=PHOTOS, size: int = 48) -> Path:
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        img = getattr(skimage.data, name)()
        im = Image.fromarray(img[..., :3] if img.ndim == 3 else img)
        im.thumbnail((size * 2, size), Image.BICUBIC)
        im.save(folder / f"{name}.png")
    return folder


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=timeout)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- a run end to end ------------------------------------------------------------------------------------
def test_few_steps_write_a_loadable_student_with_its_provenance(teacher, tmp_path, isolated_store):
    data = photos(tmp_path / "data" / "trainA")
    out = tmp_path / "runs"
    r = cli("distill", "--teacher", "teach", "--dataroot", tmp_path / "data", "--name", "teach_fast", "--out", out,
            *TINY_ARGS, "--videos", ASSETS_DIR / "demo_clip.mp4", "--max-steps", "6", "--log-every", "2",
            "--sample-every", "3", "--eval-every", "3")
    assert r.returncode == 0, r.stderr
    run = out / "teach_fast"
    assert "6 images in" in r.stderr and "+ 3 frames of 1 video(s)" in r.stderr and "7 for training" in r.stderr
    assert len(list((run / "frames").glob("*.png"))) == 3
    student, info = load_model(run / "student.safetensors")
    assert info.config == GeneratorConfig(ngf=4, n_blocks=2) and info.direction == "photo->ink"
    source = info.extra["distilled_from"]
    assert source["name"] == "teach" and source["sha256"] == sha256_file(teacher)
    assert info.extra["macs_256"] == {"teacher": generator_macs(TEACHER), "student": generator_macs(info.config)}
    fidelity = info.extra["fidelity"]
    assert fidelity["images"] == 2 and fidelity["step"] == 6 and 0 < fidelity["ssim"] <= 1 and fidelity["psnr_db"] > 5
    assert [int(row["step"]) for row in rows(run / "losses.csv")] == [1, 2, 4, 6]
    assert [int(row["step"]) for row in rows(run / "fidelity.csv")] == [3, 6]
    assert float(rows(run / "fidelity.csv")[-1]["psnr_db"]) == fidelity["psnr_db"]
    grid = np.asarray(Image.open(run / "samples" / "step_0000006.png"))
    assert grid.shape == (2 * 32, 3 * 32, 3)  # input | teacher | student, two held-out crops
    assert (run / "losses.png").stat().st_size > 1000
    # Installed in the store, listed as the teacher's student, and what --fast runs.
    assert read_info(isolated_store / "teach_fast.safetensors") == info
    listing = cli("models").stdout
    assert "student of teach" in listing and "students: teach_fast" in listing
    row = next(line for line in listing.splitlines() if line.startswith("teach_fast\t"))
    assert "student of teach" in row and "not in the store" not in row  # its teacher is listed beside it
    t = cli("translate", data / "coffee.png", "--model", "teach", "--fast", "--out", tmp_path / "t",
            "--backend", "torch")
    assert t.returncode == 0 and "--fast: running teach_fast, the student of teach" in t.stderr, t.stderr
    shape = np.asarray(Image.open(data / "coffee.png")).shape
    assert np.asarray(Image.open(tmp_path / "t" / "coffee.png")).shape == shape
    with torch.no_grad():
        x = torch.rand(1, 3, 36, 52) * 2 - 1
        assert torch.equal(student(x), load_model("teach_fast")[0](x))


def all_tensors(run: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(run / "last.pt", weights_only=True)
    flat: dict[str, torch.Tensor] = {}

    def walk(prefix, obj):
        if isinstance(obj, torch.Tensor):
            flat[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{prefix}/{i}", v)

    walk("", {"distiller": payload["distiller"], "ranks": payload["ranks"]})
    return flat


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted_run(teacher, tmp_path):
    photos(tmp_path / "data", PHOTOS[:4])
    out = tmp_path / "runs"
    # With the adversarial term, so the PatchGAN, its optimiser and the trainB draws resume exactly too.
    photos(tmp_path / "data" / "trainB", PHOTOS[4:])
    common = ["--teacher", "teach", "--dataroot", tmp_path / "data", "--out", out, *TINY_ARGS, "--max-steps", "12",
              "--log-every", "1", "--save-every", "2", "--eval-every", "4", "--seed", "3", "--lambda-gan", "0.5",
              "--ndf", "4", "--no-install", "--lr-decay-steps", "8"]
    assert cli("distill", "--name", "straight", *common).returncode == 0

    proc = subprocess.Popen([sys.executable, "cli.py", "distill", "--name", "killed", *map(str, common)], cwd=ROOT,
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "killed" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    saved = torch.load(out / "killed" / "last.pt", weights_only=True)["position"]["step"]
    assert 2 <= saved < 12

    r = cli("distill", "--name", "killed", "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"resuming at step {saved}" in r.stderr
    straight, resumed = all_tensors(out / "straight"), all_tensors(out / "killed")
    assert straight.keys() == resumed.keys() and any("disc" in k for k in straight)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    a, b = load_model(out / "straight" / "student.safetensors"), load_model(out / "killed" / "student.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a[0].state_dict().values(), b[0].state_dict().values()))
    assert a[1].extra["fidelity"] == b[1].extra["fidelity"]
    assert [int(row["step"]) for row in rows(out / "killed" / "losses.csv")] == list(range(1, 13))
    assert rows(out / "killed" / "losses.csv") != [] and [r["l1"] for r in rows(out / "killed" / "losses.csv")] == \
        [r["l1"] for r in rows(out / "straight" / "losses.csv")]
    assert [int(row["step"]) for row in rows(out / "killed" / "fidelity.csv")] == [4, 8, 12]
    # --lr-decay-steps 8 of 12: constant for 4 steps, then linear to 0 (step s runs at lr * (12 - (s - 1)) / 8),
    # the same after the resume, since it is a function of the step alone.
    expected = [2e-4 * min(1.0, (12 - (step - 1)) / 8) for step in range(1, 13)]
    assert [float(row["lr"]) for row in rows(out / "killed" / "losses.csv")] == pytest.approx(expected)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_the_student_with_its_fidelity_then_exits(teacher, tmp_path, sig, code):
    photos(tmp_path / "data", PHOTOS[:3])
    out, log = tmp_path / "runs", tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "cli.py", "distill", "--teacher", "teach", "--dataroot",
                                 str(tmp_path / "data"), "--name", "sig", "--out", str(out), *TINY_ARGS,
                                 "--log-every", "1", "--save-every", "100000", "--max-steps", "100000"],
                                cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not (out / "sig" / "losses.csv").exists()
                                               or len(rows(out / "sig" / "losses.csv")) < 2):
            time.sleep(0.01)
        proc.send_signal(sig)
        proc.wait(60)
    err = log.read_text()
    assert proc.returncode == code, err
    step = torch.load(out / "sig" / "last.pt", weights_only=True)["position"]["step"]
    assert step >= 2 and f"stopped by {sig.name} at step {step}" in err and "--resume" in err
    info = read_info(out / "sig" / "student.safetensors")
    assert info.extra["step"] == step and info.extra["fidelity"]["step"] == step


def test_fidelity_to_a_fixed_teacher_improves_over_steps(teacher, tmp_path):
    photos(tmp_path / "data")
    config = DistillConfig(teacher="teach", dataroot=str(tmp_path / "data"), name="f", out=str(tmp_path / "runs"),
                           **TINY, lr=1e-3, max_steps=60, eval_every=10, log_every=10, sample_every=0, install=False)
    result = distill(config)
    assert result.step == 60 and result.stopped_by == "max-steps" and result.installed is None
    curve = [(float(r["psnr_db"]), float(r["ssim"])) for r in rows(tmp_path / "runs" / "f" / "fidelity.csv")]
    assert len(curve) == 6
    assert curve[-1][0] > curve[0][0] + 1.0 and curve[-1][1] > curve[0][1], curve
    losses = [float(r["l1"]) for r in rows(tmp_path / "runs" / "f" / "losses.csv")]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.slow
def test_ddp_two_processes_match_single_process_global_batch(teacher, tmp_path):
    photos(tmp_path / "data", PHOTOS[:5])
    out = tmp_path / "runs"
    common = ["--teacher", "teach", "--dataroot", tmp_path / "data", "--out", out, *TINY_ARGS, "--holdout", "1",
              "--max-steps", "4", "--log-every", "1", "--device", "cpu", "--no-install"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "cli.py", "distill", "--name", "ddp", "--batch-size", "1", *map(str, common)],
                       cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("stopped by max-steps at step 4") == 1  # rank 0 alone reports and writes
    payload = torch.load(out / "ddp" / "last.pt", weights_only=True)
    assert payload["world_size"] == 2 and len(payload["ranks"]) == 2
    # The same global batches in one process (batch 2 = ranks 0 and 1 with batch 1): the same steps up to
    # float rounding (Adam turns float-noise gradients into +-lr steps on a few weights).
    assert cli("distill", "--name", "single", "--batch-size", "2", *common).returncode == 0
    for a, b in zip(rows(out / "ddp" / "losses.csv"), rows(out / "single" / "losses.csv")):
        for key in ("l1", "feat"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=2e-3, abs=1e-4), (a["step"], key)
    ddp = load_model(out / "ddp" / "student.safetensors")[0].state_dict()
    single = load_model(out / "single" / "student.safetensors")[0].state_dict()
    diff = torch.cat([(ddp[k] - single[k]).abs().flatten() for k in ddp])
    assert (diff > 1e-5).float().mean() < 0.02 and diff.max() < 4 * 2 * 2e-4


# --- channel selection -----------------------------------------------------------------------------------
def test_channel_selection_keeps_the_largest_channels_and_is_exact_at_full_width():
    torch.manual_seed(0)
    teacher = ResnetGenerator(GeneratorConfig(ngf=8, n_blocks=3)).eval()
    x = torch.rand(2, 3, 36, 52) * 2 - 1
    with torch.no_grad():
        assert torch.equal(select_channels(teacher, teacher.config)(x), teacher(x))  # everything kept: the teacher
    student = select_channels(teacher, GeneratorConfig(ngf=4, n_blocks=2))
    norms = teacher.model[1].weight.detach().abs().sum(dim=(1, 2, 3))
    kept = sorted(torch.topk(norms, 4).indices.tolist())
    assert torch.equal(student.model[1].weight, teacher.model[1].weight[kept])
    resize = select_channels(teacher, GeneratorConfig(ngf=4, n_blocks=2, upsample="resize"))
    assert resize(x).shape == x.shape
    with pytest.raises(ValueError, match="no wider or deeper than the teacher"):
        select_channels(teacher, GeneratorConfig(ngf=16, n_blocks=2))
    # GAN Compression's stages for the full generator: the encoder output and the stream after 3, 6, 9 blocks.
    assert stage_pairs(GeneratorConfig(ngf=16, n_blocks=6), GeneratorConfig()) == [(9, 9), (11, 12), (13, 15),
                                                                                    (15, 18)]


# --- --fast and the auto hint ----------------------------------------------------------------------------
def test_fast_fails_clearly_without_a_student_and_a_student_runs_as_itself(teacher, isolated_store, tmp_path):
    with pytest.raises(ModelNotFound, match="no student of teach .*python cli.py distill --teacher teach"):
        fast_model("teach")
    image = photos(tmp_path / "p", PHOTOS[:1]) / "astronaut.png"
    r = cli("translate", image, "--model", "teach", "--fast", "--out", tmp_path / "t")
    assert r.returncode == 2 and "python cli.py distill --teacher teach" in r.stderr and not (tmp_path / "t").exists()
    student = ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1)).eval()
    extra = {"distilled_from": {"name": "teach", "sha256": sha256_file(teacher)}}
    save_generator(student, isolated_store / "old.safetensors", ModelInfo(config=student.config, extra=extra))
    time.sleep(0.01)
    save_generator(student, isolated_store / "new.safetensors", ModelInfo(config=student.config, extra=extra))
    said = []
    assert fast_model("teach", said.append) == str(isolated_store / "new.safetensors")  # the newest student
    assert "running new, the student of teach" in said[0]
    assert fast_model("old", said.append) == str(isolated_store / "old.safetensors")
    assert "already a distilled student" in said[1]


def test_auto_hint_on_a_cpu_for_full_size_models_only(teacher):
    full = ModelInfo(config=GeneratorConfig(), train_size=256)
    # 22 GMAC/s (eager fp32 on 2 cores) over 56.8 GMACs, int8 at 155 GMAC/s: both under 5 fps.
    assert estimated_fps(full, "torch", "fp32", cores=2) == pytest.approx(22 / 56.8, rel=1e-3)
    said = []
    speed_hint("horse2zebra", Path("missing.pth"), full, "openvino", "int8", said.append, cores=2)
    assert "about 2.7 fps" in said[0] and "python cli.py distill --teacher horse2zebra" in said[0]
    small = ModelInfo(config=GeneratorConfig(ngf=16, n_blocks=6), train_size=256)
    speed_hint("demo", ASSETS_DIR / "demo.safetensors", small, "openvino", "int8", said.append, cores=2)
    assert len(said) == 1  # 54 fps: nothing to say


# --- bad input: a clear message and nothing written --------------------------------------------------------
def _refused(tmp_path, isolated_store, *args) -> str:
    r = cli_in_process("distill", "--name", "bad", "--out", tmp_path / "runs", *TINY_ARGS, *args)
    assert r.returncode == 2, r.stderr
    assert not (tmp_path / "runs").exists() and not (isolated_store / "bad.safetensors").exists()
    return r.stderr


def test_bad_teacher_data_and_student_are_refused_before_anything_is_written(teacher, tmp_path, isolated_store):
    good = photos(tmp_path / "data", PHOTOS[:3])
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "classifier.pth")
    err = _refused(tmp_path, isolated_store, "--teacher", tmp_path / "plain.safetensors", "--dataroot", good)
    assert "without rtstyle metadata" in err
    err = _refused(tmp_path, isolated_store, "--teacher", tmp_path / "classifier.pth", "--dataroot", good)
    assert "not a ResNet generator" in err
    err = _refused(tmp_path, isolated_store, "--teacher", "nonexistent", "--dataroot", good)
    assert "no model named 'nonexistent'" in err

    (tmp_path / "empty").mkdir()
    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", tmp_path / "empty")
    assert "holds no readable image or video" in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    (tmp_path / "broken" / "b.mp4").write_bytes(b"not a video")
    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", tmp_path / "broken")
    assert "b.mp4: not a readable video" in err
    (tmp_path / "broken" / "b.mp4").unlink()
    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", tmp_path / "broken")
    assert "holds no readable image" in err and "a.png" in err
    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", tmp_path / "missing")
    assert "is not a folder" in err
    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", good, "--holdout", "3")
    assert "too few to hold 3 out" in err
    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", good, "--lambda-gan", "1")
    assert "trainB" in err and "does not exist" in err

    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", good, "--student-ngf", "0")
    assert "--student-ngf must be >= 1" in err
    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", good, "--student-ngf", "16")
    assert "does not fit in the teacher (ngf 8, 3 blocks)" in err and "--init normal" in err
    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", good, "--crop-size", "30")
    assert "--crop-size must be a positive multiple of 4" in err
    err = _refused(tmp_path, isolated_store, "--teacher", "teach", "--dataroot", good, "--max-steps", "10",
                   "--lr-decay-steps", "20")
    assert "--lr-decay-steps must be between 0 and --max-steps (10), got 20" in err


def test_a_teacher_artifact_and_an_occupied_store_name_are_refused(teacher, tmp_path, isolated_store):
    from train.distill import load_teacher

    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(WeightsError, match="onnx artifact has no trainable weights"):
        load_teacher(str(tmp_path / "model.onnx"))
    good = photos(tmp_path / "data", PHOTOS[:3])
    save_generator(ResnetGenerator(GeneratorConfig(ngf=4, n_blocks=1)), isolated_store / "taken.safetensors")
    with pytest.raises(FileExistsError, match="not a student of this teacher"):
        distill(DistillConfig(teacher="teach", dataroot=str(good), name="taken", out=str(tmp_path / "runs"), **TINY))
    assert not (tmp_path / "runs").exists()
    with pytest.raises(InputError, match="holds no readable image or video"):
        (tmp_path / "e").mkdir()
        distill(DistillConfig(teacher="teach", dataroot=str(tmp_path / "e"), name="x", out=str(tmp_path / "runs"),
                              **TINY))
