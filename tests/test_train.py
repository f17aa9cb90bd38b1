"""Training (issue 3): the step against the reference formulas, the pool, the schedule, the data pipeline,
resume after SIGKILL, signals, a real-photo run through `cli.py translate`, torchrun DDP and bad data.

Tiny networks (ngf 8, 2 blocks, ndf 8) on 32 px crops. The photo dataset is made in each test from
scikit-image's bundled sample photos: domain A is astronaut, chelsea, coffee and the left motorcycle view;
domain B is rocket, immunohistochemistry, hubble_deep_field and colorwheel with the red and blue channels
swapped (the documented transform B is made of), all shrunk to about 48 px.
"""

from __future__ import annotations

import copy
import functools
import csv
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import run_cli
from rtstyle.config import add_dataclass_args, dataclass_from_args
from rtstyle.io.inputs import InputError
from rtstyle.weights import load_model
from train.checkpoint import CheckpointError
from train.config import TrainConfig
from train.data import EpochSampler, UnalignedDataset, load_domains, steps_per_epoch, transform
from train.loop import resolve_config, train
from train.networks import build_discriminator
from train.pool import ImagePool
from train.trainer import LOSS_KEYS, CycleGANTrainer, lr_factor

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(ngf=8, n_blocks=2, ndf=8, load_size=40, crop_size=32, num_workers=0, precision="fp32")
TINY_ARGS = ["--ngf", "8", "--n-blocks", "2", "--ndf", "8", "--load-size", "40", "--crop-size", "32",
             "--num-workers", "0", "--precision", "fp32"]
# One thread per subprocess: the machine is shared, and the resume test compares runs bit for bit.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
PHOTOS_A = ("astronaut", "chelsea", "coffee", "stereo_motorcycle")
PHOTOS_B = ("rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets gain nothing from threads, and on a busy shared machine OpenMP threads waiting for each
    other at every op make a step several times slower; restored afterwards for other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_photo_dataset(root: Path, n_a: int = 4, n_b: int = 4, size: int = 48) -> Path:
    """root/trainA (photos) and root/trainB (other photos, red and blue swapped); PNG and JPEG mixed."""
    import skimage.data

    def photo(name: str) -> np.ndarray:
        img = getattr(skimage.data, name)()
        return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)

    for folder, names, swap in (("trainA", PHOTOS_A[:n_a], False), ("trainB", PHOTOS_B[:n_b], True)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            rgb = photo(name)[..., :3]
            im = Image.fromarray(np.ascontiguousarray(rgb[..., ::-1] if swap else rgb))
            im.thumbnail((size * 2, size), Image.BICUBIC)
            im.save(root / folder / f"{name}.{'jpg' if i % 2 else 'png'}", quality=95)
    return root


cli = functools.partial(run_cli, timeout=900, env=ENV)  # the one subprocess helper, one thread per run


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def read_losses(run: Path) -> list[dict[str, str]]:
    with open(run / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- networks, step, pool, schedule ----------------------------------------------------------------------
def reference_discriminator(ndf: int) -> nn.Module:
    """The reference's n_layers=3 PatchGAN written out layer by layer (instance norm, biased convs)."""
    seq = nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1), nn.InstanceNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1), nn.InstanceNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 1, 1), nn.InstanceNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 1))
    holder = nn.Module()
    holder.model = seq
    holder.forward = seq.forward
    return holder


def test_patchgan_layout_shape_and_init():
    torch.manual_seed(0)
    disc = build_discriminator(ndf=64)
    keys = [k for k in disc.state_dict()]
    assert keys == [f"model.{i}.{p}" for i in (0, 2, 5, 8, 11) for p in ("weight", "bias")]
    assert disc(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # 70x70 PatchGAN on 256 px
    weights = torch.cat([disc.state_dict()[f"model.{i}.weight"].flatten() for i in (0, 2, 5, 8, 11)])
    assert abs(weights.mean().item()) < 1e-3 and abs(weights.std().item() - 0.02) < 1e-3
    assert all(disc.state_dict()[f"model.{i}.bias"].abs().max() == 0 for i in (0, 2, 5, 8, 11))
    batch = build_discriminator(ndf=8, norm="batch")
    bn = batch.model[3]
    assert isinstance(bn, nn.BatchNorm2d) and batch.model[2].bias is None
    assert abs(bn.weight.mean().item() - 1) < 0.05 and bn.bias.abs().max() == 0


def test_one_step_equals_reference_formulas():
    cfg = TrainConfig(**TINY, lambda_a=10.0, lambda_b=7.0, lambda_identity=0.5)  # unequal: catches swaps
    torch.manual_seed(0)
    trainer = CycleGANTrainer(cfg)
    G_A, G_B = copy.deepcopy(trainer.gen_ab), copy.deepcopy(trainer.gen_ba)  # reference names
    D_A, D_B = reference_discriminator(8), reference_discriminator(8)
    D_A.load_state_dict(trainer.disc_b.state_dict())  # the reference's D_A judges domain B
    D_B.load_state_dict(trainer.disc_a.state_dict())
    real_A, real_B = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1

    losses = trainer.train_step(real_A.clone(), real_B.clone())
    assert list(losses) == list(LOSS_KEYS)

    # Reference CycleGANModel.optimize_parameters, computed here from the formulas.
    opt_G = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    fake_B = G_A(real_A)
    rec_A = G_B(fake_B)
    fake_A = G_B(real_B)
    rec_B = G_A(fake_A)
    for p in itertools.chain(D_A.parameters(), D_B.parameters()):
        p.requires_grad_(False)
    lam_A, lam_B, lam_idt = 10.0, 7.0, 0.5
    loss_idt_A = (G_A(real_B) - real_B).abs().mean() * lam_B * lam_idt
    loss_idt_B = (G_B(real_A) - real_A).abs().mean() * lam_A * lam_idt
    loss_G_A = ((D_A(fake_B) - 1) ** 2).mean()
    loss_G_B = ((D_B(fake_A) - 1) ** 2).mean()
    loss_cycle_A = (rec_A - real_A).abs().mean() * lam_A
    loss_cycle_B = (rec_B - real_B).abs().mean() * lam_B
    (loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B).backward()
    opt_G.step()
    for p in itertools.chain(D_A.parameters(), D_B.parameters()):
        p.requires_grad_(True)
    loss_D_A = 0.5 * (((D_A(real_B) - 1) ** 2).mean() + (D_A(fake_B.detach()) ** 2).mean())  # empty pool: as is
    loss_D_B = 0.5 * (((D_B(real_A) - 1) ** 2).mean() + (D_B(fake_A.detach()) ** 2).mean())
    (loss_D_A + loss_D_B).backward()
    opt_D.step()

    expected = {"gan_ab": loss_G_A, "gan_ba": loss_G_B, "cycle_a": loss_cycle_A, "cycle_b": loss_cycle_B,
                "idt_a": loss_idt_B, "idt_b": loss_idt_A, "disc_a": loss_D_B, "disc_b": loss_D_A}
    for key, value in expected.items():
        assert losses[key] == pytest.approx(value.item(), rel=1e-5), key
    for mine, ref in ((trainer.gen_ab, G_A), (trainer.gen_ba, G_B), (trainer.disc_b, D_A), (trainer.disc_a, D_B)):
        for (name, a), b in zip(mine.state_dict().items(), ref.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_step_with_identity_off_and_mixed_precision():
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    losses = CycleGANTrainer(TrainConfig(**TINY, lambda_identity=0)).train_step(a, b)
    assert losses["idt_a"] == 0 and losses["idt_b"] == 0
    for precision in ("bf16", "fp16"):
        trainer = CycleGANTrainer(TrainConfig(**{**TINY, "precision": precision}, memory_format="channels_last"))
        losses = trainer.train_step(a, b)
        assert all(np.isfinite(v) for v in losses.values()), precision
        assert trainer.scaler.is_enabled() == (precision == "fp16")
        assert all(p.dtype == torch.float32 for p in trainer.gen_ab.parameters())  # master weights stay fp32


def test_image_pool_rule():
    assert torch.equal(ImagePool(0).query(x := torch.randn(3, 1, 2, 2)), x)
    pool, size = ImagePool(3, seed=5), 3
    images = [torch.full((1, 1, 2, 2), float(i)) for i in range(400)]
    # Independent simulation of the rule with the same random stream.
    rng, stored, expected = random.Random(5), [], []
    for i in range(400):
        if len(stored) < size:
            stored.append(i)
            expected.append(i)
        elif rng.uniform(0, 1) > 0.5:
            slot = rng.randint(0, size - 1)
            expected.append(stored[slot])
            stored[slot] = i
        else:
            expected.append(i)
    got = [int(pool.query(img)[0, 0, 0, 0]) for img in images[:200]]
    state = pool.state_dict()
    got += pool.query(torch.cat(images[200:202]))[:, 0, 0, 0].int().tolist()  # a batch of two
    restored = ImagePool(3)
    restored.load_state_dict(state)
    again = restored.query(torch.cat(images[200:202]))[:, 0, 0, 0].int().tolist()
    got += [int(pool.query(img)[0, 0, 0, 0]) for img in images[202:]]
    assert got == expected and again == expected[200:202]
    assert got[:3] == [0, 1, 2]
    swapped = sum(g != i for i, g in enumerate(got[3:], 3))
    assert 0.5 * 397 - 5 * 10 < swapped < 0.5 * 397 + 5 * 10  # p = 0.5 within 5 sigma


@pytest.mark.parametrize("epochs,decay", [(100, 100), (3, 4)])
def test_lr_schedule_is_the_reference_linear_rule(epochs, decay):
    def reference(epoch, epoch_count=1):  # networks.get_scheduler, lr_policy 'linear'
        return 1.0 - max(0, epoch + epoch_count - epochs) / float(decay + 1)

    for e in (0, 1, epochs - 1, epochs, epochs + 1, epochs + decay - 1):
        assert lr_factor(e, epochs, decay) == reference(e)
    trainer = CycleGANTrainer(TrainConfig(**TINY, epochs=epochs, epochs_decay=decay))
    seen = []
    for e in range(epochs + decay):
        seen.append(trainer.lr)
        assert trainer.lr == pytest.approx(2e-4 * reference(e), abs=1e-15)
        assert trainer.opt_d.param_groups[0]["lr"] == trainer.lr
        trainer.end_epoch()
    assert seen[:epochs] == [2e-4] * epochs and seen[-1] == pytest.approx(2e-4 / (decay + 1))


# --- data ------------------------------------------------------------------------------------------------
def test_transform_matches_reference_torchvision_pipeline():
    import torchvision.transforms as T
    import torchvision.transforms.functional as TF

    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    cfg = TrainConfig(load_size=40, crop_size=32)
    gen = torch.Generator().manual_seed(3)
    got = transform(rgb, cfg, gen)
    gen = torch.Generator().manual_seed(3)
    top, left = (int(torch.randint(0, 40 - 32 + 1, (1,), generator=gen)) for _ in range(2))
    flip = float(torch.rand(1, generator=gen)) < 0.5
    img = T.Resize([40, 40], T.InterpolationMode.BICUBIC)(Image.fromarray(rgb))
    img = TF.crop(img, top, left, 32, 32)
    img = TF.hflip(img) if flip else img
    ref = T.Normalize((0.5,) * 3, (0.5,) * 3)(T.ToTensor()(img))
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    # scale_width: width to load_size keeping the aspect, height at least crop_size; none: sides to multiples of 4
    cfg = TrainConfig(load_size=40, crop_size=32, preprocess="scale_width", flip=False)
    assert transform(rgb, cfg, torch.Generator()).shape == (3, 32, 40)  # 40 * 50 / 70 = 28.6 -> crop floor 32
    cfg = TrainConfig(preprocess="none", flip=False)
    assert transform(rgb, cfg, torch.Generator()).shape == (3, 48, 72)  # round(12.5) * 4, round(17.5) * 4


def test_unaligned_pairing_epoch_length_and_shards(tmp_path):
    root = make_photo_dataset(tmp_path / "d", n_a=2, n_b=4, size=40)
    cfg = TrainConfig(dataroot=str(root), **TINY)
    a, b = load_domains(cfg)
    ds = UnalignedDataset(a.paths, b.paths, cfg)
    assert len(ds) == 4 and steps_per_epoch(len(ds), 3) == 2
    x, y = ds[(0, 3)]
    assert x.shape == y.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(ds[(0, 3)][0], x) and not torch.equal(ds[(1, 3)][0], x)  # per (epoch, index) draws
    serial = UnalignedDataset(a.paths, b.paths, TrainConfig(dataroot=str(root), serial_batches=True, flip=False,
                                                            preprocess="none", **{**TINY}))
    assert torch.equal(serial[(0, 1)][1], serial[(5, 1)][1])  # B image 1 % 4, no random draw
    shards = [list(EpochSampler(5, 2, 0, True, rank=r, world=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 3
    assert {i for s in shards for _, i in s} == set(range(5))
    assert list(EpochSampler(5, 2, 0, True, world=1))[2:] == list(EpochSampler(5, 2, 0, True, start=2))


def test_bad_data(tmp_path):
    with pytest.raises(InputError, match="trainA"):
        load_domains(TrainConfig(dataroot=str(tmp_path), **TINY))
    (tmp_path / "trainA").mkdir()
    (tmp_path / "trainB").mkdir()
    with pytest.raises(InputError, match=r"trainA holds no images"):
        load_domains(TrainConfig(dataroot=str(tmp_path), **TINY))
    r = cli("train", "--dataroot", str(tmp_path / "missing"), "--name", "x", "--out", str(tmp_path / "runs"))
    assert r.returncode == 2 and "missing" in r.stderr and "Traceback" not in r.stderr

    root = make_photo_dataset(tmp_path / "d", n_a=2, n_b=2, size=40)
    (root / "trainA" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "trainB" / "empty.jpg").write_bytes(b"")
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(root / "trainB" / "gray.png")
    Image.fromarray(np.full((40, 40, 4), 200, np.uint8)).save(root / "trainB" / "rgba.png")
    (root / "trainB" / "notes.txt").write_text("not an image, not listed")
    r = cli("train", "--dataroot", str(root), "--name", "bad", "--out", str(tmp_path / "runs"), *TINY_ARGS,
            "--max-steps", "2", "--epochs", "1", "--epochs-decay", "0")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("broken.png") == 1 and r.stderr.count("empty.jpg") == 1
    assert "trainA: 2 images, 1 excluded" in r.stderr and "trainB: 4 images, 1 excluded" in r.stderr
    assert (tmp_path / "runs" / "bad" / "G_A.safetensors").is_file()


# --- runs ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_photo_training_lowers_cycle_loss_and_translates(tmp_path):
    root = make_photo_dataset(tmp_path / "photo2swapped")
    out = tmp_path / "runs"
    # Whole images (load = crop = 32, no flip) and lr 1e-3 so that 100 steps of the tiny nets show the trend.
    r = cli("train", "--dataroot", str(root), "--name", "photo", "--out", str(out), *TINY_ARGS, "--load-size", "32",
            "--no-flip", "--lr", "1e-3", "--epochs", "20", "--epochs-decay", "5", "--log-every", "1",
            "--sample-every", "50", "--save-every", "1000")
    assert r.returncode == 0, r.stderr
    run = out / "photo"
    rows = read_losses(run)
    assert [int(row["step"]) for row in rows] == list(range(1, 101))
    cycle = [float(row["cycle_a"]) + float(row["cycle_b"]) for row in rows]
    assert np.mean(cycle[-20:]) < 0.8 * np.mean(cycle[:20]), cycle
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000050.png", "step_0000100.png"]
    grid = np.asarray(Image.open(run / "samples" / "step_0000100.png"))
    assert grid.shape == (2 * 32, 6 * 32, 3)
    assert (run / "losses.png").stat().st_size > 1000
    _, info = load_model(run / "G_A.safetensors")
    assert info.direction == "photo->swapped" and info.train_size == 32 and info.config.ngf == 8
    assert load_model(run / "G_B.safetensors")[1].direction == "swapped->photo"
    assert TrainConfig.load_json(run / "config.json").epochs == 20

    src = root / "trainA" / "astronaut.png"
    r = cli("translate", str(src), "--model", str(run / "G_A.safetensors"), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    translated = np.asarray(Image.open(tmp_path / "out" / "astronaut.png"))
    assert translated.shape == np.asarray(Image.open(src)).shape
    r = cli("plot", str(run), "--out", str(tmp_path / "curves.png"))
    assert r.returncode == 0 and (tmp_path / "curves.png").stat().st_size > 1000


def all_tensors(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a run's last.pt except the RNG/pool bookkeeping ordering, flattened by key path."""
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

    walk("", {"trainer": payload["trainer"], "ranks": payload["ranks"]})
    return flat


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    root = make_photo_dataset(tmp_path / "d", n_a=3, n_b=2, size=40)
    out = tmp_path / "runs"
    common = ["--dataroot", str(root), "--out", str(out), *TINY_ARGS, "--pool-size", "2", "--epochs", "3",
              "--epochs-decay", "3", "--max-steps", "14", "--log-every", "1", "--save-every", "2", "--seed", "7",
              "--dropout"]  # dropout draws from the global torch RNG, which must resume exactly too
    assert cli("train", "--name", "straight", *common).returncode == 0

    proc = subprocess.Popen([sys.executable, "cli.py", "train", "--name", "killed", *common], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not (out / "killed" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL  # killed mid-run, not finished
    saved_step = torch.load(out / "killed" / "last.pt", weights_only=True)["position"]["step"]
    assert 2 <= saved_step < 14
    # what a kill during torch.save leaves (issue 15): the resume removes it, and says so
    stale = out / "killed" / f".last.pt.rtstyle{proc.pid}.k1ll3d.tmp"
    stale.write_bytes(b"")

    r = cli("train", "--name", "killed", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert f"resuming at step {saved_step}" in r.stderr
    assert not stale.exists() and f"removed {stale}" in " ".join(r.stderr.split()), r.stderr
    straight, resumed = all_tensors(out / "straight"), all_tensors(out / "killed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    for which in ("A", "B"):
        a = tensors_of(out / "straight" / f"G_{which}.safetensors")
        b = tensors_of(out / "killed" / f"G_{which}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert [int(row["step"]) for row in read_losses(out / "killed")] == list(range(1, 15))
    assert read_losses(out / "killed")[-1]["gan_ab"] == read_losses(out / "straight")[-1]["gan_ab"]


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_then_exits(tmp_path, sig, code):
    root = make_photo_dataset(tmp_path / "d", n_a=2, n_b=2, size=40)
    out, log = tmp_path / "runs", tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "cli.py", "train", "--dataroot", str(root), "--name", "sig", "--out",
                                 str(out), *TINY_ARGS, "--log-every", "1", "--save-every", "100000"],
                                cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and (not (out / "sig" / "losses.csv").exists()
                                               or len(read_losses(out / "sig")) < 2):
            time.sleep(0.01)
        proc.send_signal(sig)
        proc.wait(300)
    err = log.read_text()
    assert proc.returncode == code, err
    step = torch.load(out / "sig" / "last.pt", weights_only=True)["position"]["step"]
    assert step >= 2 and f"stopped by {sig.name} at step {step}" in err
    assert (out / "sig" / "G_A.safetensors").is_file() and "--resume" in err


def test_resume_refuses_corrupt_or_mismatched_checkpoint(tmp_path):
    root = make_photo_dataset(tmp_path / "d", n_a=2, n_b=2, size=40)
    out = tmp_path / "runs"
    config = TrainConfig(dataroot=str(root), name="r", out=str(out), **TINY, max_steps=2, epochs=1, epochs_decay=1)
    result = train(config)
    assert result.step == 2 and result.stopped_by == "max-steps"
    last = out / "r" / "last.pt"
    with pytest.raises(CheckpointError, match="already holds a run"):  # a fresh start never overwrites
        train(config)
    # The saved config comes back on --resume; budgets may change, architecture may not.
    resumed = resolve_config({**TrainConfig().to_dict(), "name": "r", "out": str(out), "max_steps": 3}, True)
    assert resumed.ngf == 8 and resumed.max_steps == 3 and resumed.dataroot == str(root)
    assert train(resumed, resume=True).step == 3
    with pytest.raises(ValueError, match="--ngf 16"):
        resolve_config({**TrainConfig().to_dict(), "name": "r", "out": str(out), "ngf": 16}, True)
    good = last.read_bytes()
    with pytest.raises(CheckpointError, match="does not belong to this run"):
        train(TrainConfig(**{**config.to_dict(), "ngf": 16}), resume=True)
    assert last.read_bytes() == good

    last.write_bytes(good[: len(good) // 2])  # as if truncated by a full disk
    r = cli("train", "--name", "r", "--out", str(out), "--resume")
    assert r.returncode == 2 and "not a readable checkpoint" in r.stderr and "left untouched" in r.stderr
    assert last.read_bytes() == good[: len(good) // 2]
    r = cli("train", "--name", "nothing", "--out", str(out), "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_max_minutes_stops_with_checkpoint(tmp_path):
    root = make_photo_dataset(tmp_path / "d", n_a=2, n_b=2, size=40)
    config = TrainConfig(dataroot=str(root), name="m", out=str(tmp_path / "runs"), **TINY, max_minutes=0.04)
    result = train(config)
    assert result.stopped_by == "max-minutes" and result.step >= 1
    payload = torch.load(tmp_path / "runs" / "m" / "last.pt", weights_only=True)
    assert payload["position"]["step"] == result.step


def test_cli_options_map_onto_config():
    import argparse

    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, TrainConfig)
    args = parser.parse_args(["--dataroot", "d", "--name", "n", "--no-flip", "--lambda-a", "5", "--precision",
                              "bf16", "--max-steps", "9", "--names", "horse,zebra"])
    cfg = dataclass_from_args(TrainConfig, args)
    assert (cfg.flip, cfg.lambda_a, cfg.precision, cfg.max_steps) == (False, 5.0, "bf16", 9)
    assert cfg.domain_names() == ("horse", "zebra")
    assert TrainConfig(dataroot="/x/horse2zebra").domain_names() == ("horse", "zebra")
    assert TrainConfig(dataroot="/x/photos").domain_names() == ("A", "B")
    with pytest.raises(ValueError, match="multiple of 4"):
        TrainConfig(crop_size=30)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.slow
def test_ddp_two_processes_match_single_process_global_batch(tmp_path):
    root = make_photo_dataset(tmp_path / "d", n_a=4, n_b=4, size=40)
    out = tmp_path / "runs"
    common = ["--dataroot", str(root), "--out", str(out), *TINY_ARGS, "--pool-size", "0", "--epochs", "1",
              "--epochs-decay", "1", "--log-every", "1", "--device", "cpu"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "cli.py", "train", "--name", "ddp", "--batch-size", "1", *common],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run = out / "ddp"
    assert sorted(p.name for p in run.iterdir()) == ["G_A.safetensors", "G_B.safetensors", "config.json",
                                                     "last.pt", "losses.csv", "losses.png"]
    assert r.stderr.count("finished at step 4") == 1  # rank 0 alone reports and writes
    payload = torch.load(run / "last.pt", weights_only=True)
    assert payload["world_size"] == 2 and len(payload["ranks"]) == 2

    # Same global batches in one process: batch 2 sees items (0, 1), (2, 3) of each epoch's order, like
    # ranks 0 and 1 with batch 1; averaged gradients make the steps equal up to float rounding.
    single = train(TrainConfig(**{**TrainConfig(**TINY).to_dict(), "dataroot": str(root), "out": str(out),
                                  "name": "single", "batch_size": 2, "pool_size": 0, "epochs": 1,
                                  "epochs_decay": 1, "log_every": 1, "device": "cpu"}))
    assert single.step == 4
    for a, b in zip(read_losses(run), read_losses(out / "single")):
        for key in LOSS_KEYS:
            assert float(a[key]) == pytest.approx(float(b[key]), rel=2e-3, abs=1e-4), (a["step"], key)
    # The batches are the same if most weights agree to 1e-5: with different global batches about 98% differ.
    # The rest is float rounding, which Adam amplifies: a conv bias that an InstanceNorm (affine=False, as in
    # the reference) cancels has a true gradient of 0, so it gets noise whose sign follows the CPU's
    # summation order, and Adam's first steps move a weight by about +-lr whatever its gradient's size. So
    # any weight may differ by up to 2 lr a step. How many do is the CPU's: under 2% on AMD Zen, 8% (and
    # nearly every cancelled bias) on an Intel AVX-512 Xeon (issue 10).
    ddp_g, single_g = tensors_of(run / "G_A.safetensors"), tensors_of(out / "single" / "G_A.safetensors")
    cancelled = norm_cancelled_biases(load_model(run / "G_A.safetensors")[0])
    assert cancelled and len(cancelled) < len(ddp_g) // 2
    diff = {k: (ddp_g[k] - single_g[k]).abs().flatten() for k in ddp_g}
    learnt = torch.cat([d for k, d in diff.items() if k not in cancelled])
    assert (learnt > 1e-5).float().mean() < 0.25 and learnt.max() < 4 * 2 * 2e-4
    assert torch.cat([diff[k] for k in cancelled]).max() < 4 * 2 * 2e-4


def norm_cancelled_biases(generator: nn.Module) -> set[str]:
    """State-dict keys of the conv biases that an InstanceNorm right after the conv subtracts again."""
    keys = set()
    for name, module in generator.named_modules():
        if isinstance(module, nn.Sequential):
            for i, (layer, after) in enumerate(itertools.pairwise(module)):
                if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and layer.bias is not None \
                        and isinstance(after, nn.InstanceNorm2d) and not after.affine:
                    keys.add(f"{name}.{i}.bias")
    return keys


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_step_matches_cpu_and_mixed_precision_runs():
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    losses = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        losses[device] = CycleGANTrainer(TrainConfig(**TINY, device=device), device).train_step(a, b)
    for key in LOSS_KEYS:
        assert losses["cuda"][key] == pytest.approx(losses["cpu"][key], rel=1e-3, abs=1e-4), key
    for precision in ("bf16", "fp16"):
        config = TrainConfig(**{**TINY, "precision": precision}, memory_format="channels_last")
        trainer = CycleGANTrainer(config, "cuda")
        assert all(np.isfinite(v) for v in trainer.train_step(a, b).values()), precision


def test_resume_compares_the_options_typed_even_at_their_default_value(tmp_path):
    """Issue 15: `--resume --ngf 64 --crop-size 256` on an ngf-8 run used to be ignored silently (64 and 256 are
    the defaults) while `--ngf 16` was refused: what was typed counts, not what differs from the defaults."""
    import cli
    from rtstyle.config import given_options

    out = tmp_path / "runs"
    TrainConfig(dataroot="d", name="r", out=str(out), flip=False, **TINY).save_json(out / "r" / "config.json")
    parser = cli.build_parser()

    def resolve(*extra):
        args = parser.parse_args(["train", "--name", "r", "--out", str(out), "--resume", *extra])
        options = {name: getattr(args, name) for name in TrainConfig().to_dict()}
        return resolve_config(options, resume=True, given=given_options(args))

    assert given_options(parser.parse_args(["train", "--ngf", "64", "--no-flip"])) == {"ngf", "flip"}
    with pytest.raises(ValueError) as err:
        resolve("--ngf", "64", "--crop-size", "256")
    assert f"--ngf 64 (run has {TINY['ngf']})" in str(err.value) and "--crop-size 256 (run has 32)" in str(err.value)
    with pytest.raises(ValueError, match=r"--flip True \(run has False\)"):  # a boolean at its default value too
        resolve("--flip", "--ngf", str(TINY["ngf"]))
    resumed = resolve("--ngf", str(TINY["ngf"]), "--max-steps", "5")  # the run's own value is no change
    assert resumed.ngf == TINY["ngf"] and resumed.max_steps == 5 and resumed.crop_size == 32
    r = run_cli("train", "--name", "r", "--out", out, "--resume", "--ngf", "64")
    assert r.returncode == 2 and "--ngf 64" in r.stderr and "Traceback" not in r.stderr
