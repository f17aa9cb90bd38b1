"""Fine-tuning (issue 16): --init-from-a/-b from generators --model accepts, --continue-from a reference folder.

Sources are made here: a reference-layout `.pth` with the legacy keys official files carry (InstanceNorm
buffers of PyTorch < 0.4, a DataParallel `module.` prefix), a native model in the store named by name, and a
reference checkpoint folder (`latest_net_{G_A,G_B,D_A,D_B}.pth`) written from a trainer's networks. Tiny
networks (ngf 4, 1 block, ndf 4) at 32 px on the photo dataset of test_train.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from conftest import run_cli
from rtstyle.models import GeneratorConfig, ResnetGenerator
from rtstyle.store import ModelNotFound
from rtstyle.weights import ModelInfo, WeightsError, read_info, save_generator
from test_train import all_tensors, make_photo_dataset, one_thread, read_losses, tensors_of  # noqa: F401
from train.config import TrainConfig
from train.finetune import apply_initial_weights, load_initial_weights
from train.loop import resolve_config, train
from train.trainer import CycleGANTrainer

# ngf and n_blocks left at their defaults: they come from the models
DATA = dict(ndf=4, load_size=40, crop_size=32, num_workers=0, sample_every=0, epochs=2, epochs_decay=2)
SOURCE = GeneratorConfig(ngf=4, n_blocks=1)


def legacy_reference_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """`net`'s state dict as an old reference .pth: InstanceNorm running stats and DataParallel's prefix."""
    state = dict(net.state_dict())
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm2d):
            channels = module.num_features
            state.update({f"{name}.running_mean": torch.zeros(channels), f"{name}.running_var": torch.ones(channels),
                          f"{name}.num_batches_tracked": torch.tensor(0)})
    return {f"module.{k}": v for k, v in state.items()}


def source_generator(seed: int, config: GeneratorConfig = SOURCE) -> ResnetGenerator:
    torch.manual_seed(seed)
    return ResnetGenerator(config).eval()


def plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                                         "num_batches_tracked"))}


def assert_same(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    mine = net.state_dict()
    assert mine.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(mine[key], value), key


def test_init_from_legacy_pth_and_store_name(tmp_path, isolated_store):
    root = make_photo_dataset(tmp_path / "horse2zebra", n_a=2, n_b=2, size=40)
    gen_a, gen_b = source_generator(1), source_generator(2)
    pth = tmp_path / "official" / "horse2zebra.pth"
    pth.parent.mkdir()
    torch.save(legacy_reference_state(gen_a), pth)
    save_generator(gen_b, isolated_store / "z2h.safetensors", ModelInfo(config=SOURCE, direction="zebra->horse"))
    config = TrainConfig(dataroot=str(root), name="ft", out=str(tmp_path / "runs"), **DATA,
                         init_from_a=str(pth), init_from_b="z2h", max_steps=1)

    initial = load_initial_weights(config)
    assert (initial.config.ngf, initial.config.n_blocks) == (4, 1)  # taken from the models
    assert initial.config.init_from_a == str(pth.resolve()) and initial.config.init_from_b == "z2h"
    torch.manual_seed(0)
    trainer = CycleGANTrainer(initial.config)
    apply_initial_weights(trainer, initial)
    assert_same(trainer.gen_ab, plain(gen_a.state_dict()))
    assert_same(trainer.gen_ba, gen_b.state_dict())
    torch.manual_seed(0)
    fresh = CycleGANTrainer(initial.config)  # the discriminators start as a fresh run's
    for name in ("disc_a", "disc_b"):
        assert_same(trainer.nets[name], fresh.nets[name].state_dict())
    assert set(initial.states) == {"gen_ab", "gen_ba"}

    result = train(config)
    assert result.step == 1
    saved = TrainConfig.load_json(result.run_dir / "config.json")
    assert (saved.ngf, saved.n_blocks, saved.init_from_a) == (4, 1, str(pth.resolve()))
    info_a, info_b = read_info(result.run_dir / "G_A.safetensors"), read_info(result.run_dir / "G_B.safetensors")
    assert info_a.extra["init_from"] == str(pth.resolve()) and info_b.extra["init_from"] == "z2h"
    assert (info_a.direction, info_b.direction) == ("horse->zebra", "zebra->horse")
    assert info_a.config == SOURCE


def test_mismatched_or_unusable_models_are_refused(tmp_path, isolated_store):
    save_generator(source_generator(1), isolated_store / "small.safetensors", ModelInfo(config=SOURCE))
    save_generator(source_generator(2, GeneratorConfig(ngf=8, n_blocks=1)), isolated_store / "wide.safetensors",
                   ModelInfo(config=GeneratorConfig(ngf=8, n_blocks=1)))
    with pytest.raises(WeightsError, match=r"--init-from-a small: .*differs: ngf 4 \(run: 16\)"):
        load_initial_weights(TrainConfig(ngf=16, init_from_a="small"))
    with pytest.raises(WeightsError, match=r"differs: dropout False \(run: True\).*--norm, --dropout"):
        load_initial_weights(TrainConfig(dropout=True, init_from_a="small"))
    with pytest.raises(WeightsError, match=r"differs: norm instance \(run: batch\)"):
        load_initial_weights(TrainConfig(norm="batch", init_from_b="small"))
    # The two models disagree on ngf, so it is not adopted (n_blocks is) and the first one is named with it.
    with pytest.raises(WeightsError, match=r"--init-from-a small: .*differs: ngf 4 \(run: 64\)\. "):
        load_initial_weights(TrainConfig(init_from_a="small", init_from_b="wide"))
    assert load_initial_weights(TrainConfig(n_blocks=1, init_from_b="wide")).config.ngf == 8

    with pytest.raises(ModelNotFound, match="--init-from-b: no model named 'nothing'"):
        load_initial_weights(TrainConfig(init_from_b="nothing"))
    torch.save({"model.0.weight": torch.zeros(4, 3, 4, 4)}, tmp_path / "disc.pth")  # not a generator
    with pytest.raises(WeightsError, match="--init-from-a: .*not a ResNet generator"):
        load_initial_weights(TrainConfig(init_from_a=str(tmp_path / "disc.pth")))
    folder = tmp_path / "checkpoints" / "run"
    folder.mkdir(parents=True)
    torch.save(legacy_reference_state(source_generator(1)), folder / "latest_net_G_A.pth")
    with pytest.raises(ValueError, match="is a reference checkpoint folder: use --continue-from"):
        load_initial_weights(TrainConfig(init_from_a=str(folder)))


def test_resumed_finetune_is_bit_identical(tmp_path):
    root = make_photo_dataset(tmp_path / "d", n_a=3, n_b=2, size=40)
    source = tmp_path / "source.safetensors"
    save_generator(source_generator(3), source, ModelInfo(config=SOURCE, direction="a->b"))
    out = tmp_path / "runs"
    common = dict(dataroot=str(root), out=str(out), **DATA, pool_size=2, save_every=2, log_every=1, seed=4,
                  init_from_a=str(source))
    assert train(TrainConfig(name="straight", max_steps=5, **common)).step == 5
    assert train(TrainConfig(name="split", max_steps=2, **common)).step == 2
    moved = source.rename(tmp_path / "moved.safetensors")  # a resume takes everything from last.pt
    resumed = resolve_config({**TrainConfig().to_dict(), "name": "split", "out": str(out), "max_steps": 5}, True)
    assert resumed.init_from_a == str(source) and not source.exists() and moved.exists()
    assert train(resumed, resume=True).step == 5
    straight, split = all_tensors(out / "straight"), all_tensors(out / "split")
    assert straight.keys() == split.keys()
    for key in straight:
        assert torch.equal(straight[key], split[key]), key
    for which in ("A", "B"):
        a, b = (tensors_of(out / run / f"G_{which}.safetensors") for run in ("straight", "split"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), which
    assert read_info(out / "split" / "G_A.safetensors").extra["init_from"] == str(source)
    assert "init_from" not in read_info(out / "split" / "G_B.safetensors").extra  # G_B started fresh
    assert [r["gan_ab"] for r in read_losses(out / "split")] == [r["gan_ab"] for r in read_losses(out / "straight")]


def write_reference_folder(folder, seed: int = 1) -> CycleGANTrainer:
    """A reference run's checkpoints/NAME: the four latest_net_*.pth of a tiny trainer, with legacy keys."""
    torch.manual_seed(seed)
    source = CycleGANTrainer(TrainConfig(ngf=4, n_blocks=1, ndf=4, crop_size=32, load_size=40))
    folder.mkdir(parents=True)
    # The reference's names: G_A translates A -> B; D_A opposes G_A, so it judges images of domain B.
    for file, net in (("latest_net_G_A.pth", source.gen_ab), ("latest_net_G_B.pth", source.gen_ba),
                      ("latest_net_D_A.pth", source.disc_b), ("latest_net_D_B.pth", source.disc_a)):
        torch.save(legacy_reference_state(net), folder / file)
    return source


def test_continue_from_reference_checkpoint_folder(tmp_path):
    root = make_photo_dataset(tmp_path / "d", n_a=2, n_b=2, size=40)
    folder = tmp_path / "checkpoints" / "h2z"
    source = write_reference_folder(folder)
    config = TrainConfig(dataroot=str(root), name="cont", out=str(tmp_path / "runs"), continue_from=str(folder),
                         **{**DATA, "ndf": 64, "epochs": 2, "epochs_decay": 3}, epoch_count=3, max_steps=1)

    initial = load_initial_weights(config)
    assert (initial.config.ngf, initial.config.n_blocks, initial.config.ndf) == (4, 1, 4)  # from the files
    trainer = CycleGANTrainer(initial.config)
    apply_initial_weights(trainer, initial)
    for name in ("gen_ab", "gen_ba", "disc_a", "disc_b"):  # G_A -> gen_ab, ..., D_A (judges B) -> disc_b
        assert_same(trainer.nets[name], source.nets[name].state_dict())
    assert trainer.lr == pytest.approx(2e-4 * (1 - (2 + 1 - 2) / 4))  # epoch 3 of the linear schedule

    result = train(config)
    assert result.step == 1
    row = read_losses(result.run_dir)[0]
    assert row["epoch"] == "3" and float(row["lr"]) == pytest.approx(1.5e-4)
    assert read_info(result.run_dir / "G_A.safetensors").extra["init_from"] == str(folder / "latest_net_G_A.pth")
    assert read_info(result.run_dir / "G_B.safetensors").extra["init_from"] == str(folder / "latest_net_G_B.pth")

    with pytest.raises(WeightsError, match=r"latest_net_D_B.pth: does not match this run's discriminator "
                                           r"\(--netd basic, --ndf 8.*wrong shapes"):
        load_initial_weights(TrainConfig(**{**config.to_dict(), "ndf": 8, "name": "x"}))
    with pytest.raises(WeightsError, match=r"missing \['net.0.weight'"):
        load_initial_weights(TrainConfig(**{**config.to_dict(), "netd": "pixel", "name": "x"}))


def test_reference_folder_missing_a_file_names_it(tmp_path):
    root = make_photo_dataset(tmp_path / "d", n_a=2, n_b=2, size=40)
    folder = tmp_path / "checkpoints" / "h2z"
    write_reference_folder(folder)
    (folder / "latest_net_D_B.pth").unlink()
    r = run_cli("train", "--dataroot", root, "--name", "x", "--out", tmp_path / "runs", "--continue-from", folder,
                "--crop-size", "32", "--load-size", "40", "--num-workers", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "latest_net_D_B.pth missing" in r.stderr and "latest_net_G_A.pth, latest_net_G_B.pth" in r.stderr
    assert not (tmp_path / "runs" / "x").exists()  # refused before the run folder is made
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError, match="--continue-from .*h2z: not a folder"):
        load_initial_weights(TrainConfig(continue_from=str(folder)))
