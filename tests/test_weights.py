"""Native weights round trip, reference .pth import (official quirks), and clear refusals of bad files."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from rtstyle import GeneratorConfig, ModelInfo, ResnetGenerator, WeightsError, load_generator, load_model, read_info
from rtstyle.weights import infer_config, load_reference_pth


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_native_round_trip_rebuilds_architecture_from_file_alone(tmp_path):
    cfg = GeneratorConfig(ngf=8, n_blocks=3, dropout=True)
    g = ResnetGenerator(cfg)
    from rtstyle import save_generator

    path = save_generator(g, tmp_path / "g.safetensors",
                          ModelInfo(config=cfg, direction="horse->zebra", train_size=128, name="g"))
    info = read_info(path)
    assert info.config == cfg and info.direction == "horse->zebra" and info.train_size == 128
    assert info.format_version == 1
    loaded = load_generator(path)
    assert loaded.config == cfg and not loaded.training and _same(loaded, g)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def _official_style_state(g: ResnetGenerator, prefix: str = "") -> dict:
    """What old official files look like: InstanceNorm running stats saved by PyTorch < 0.4."""
    state = {prefix + k: v for k, v in g.state_dict().items()}
    for name, module in g.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            state[f"{prefix}{name}.running_mean"] = torch.zeros(module.num_features)
            state[f"{prefix}{name}.running_var"] = torch.ones(module.num_features)
    return state


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("cfg", [GeneratorConfig(ngf=8, n_blocks=9), GeneratorConfig(ngf=4, n_blocks=6, dropout=True)])
def test_reference_pth_loads_with_running_stats_prefix_and_dropout(tmp_path, prefix, cfg):
    g = ResnetGenerator(cfg)
    path = tmp_path / "latest_net_G.pth"
    torch.save(_official_style_state(g, prefix), path)
    loaded, info = load_model(path)
    assert info.config == cfg
    assert _same(loaded, g)


def test_official_name_gets_its_direction(tmp_path):
    g = ResnetGenerator(ngf=4, n_blocks=1)
    torch.save(g.state_dict(), tmp_path / "horse2zebra.pth")
    _, info = load_model(tmp_path / "horse2zebra.pth")
    assert info.direction == "horse->zebra"


def test_truncated_pth_fails_clearly(tmp_path):
    path = tmp_path / "g.pth"
    torch.save(ResnetGenerator(ngf=4, n_blocks=1).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated|not a readable"):
        load_generator(path)


def test_truncated_safetensors_fails_clearly(tmp_path, tiny_model_path):
    data = tiny_model_path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightsError, match="truncated|not a readable"):
        load_generator(bad)


def test_non_generator_state_dict_lists_what_the_file_holds(tmp_path):
    path = tmp_path / "classifier.pth"
    torch.save({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}, path)
    with pytest.raises(WeightsError) as err:
        load_generator(path)
    assert "not a ResNet generator" in str(err.value) and "fc.weight (10, 4)" in str(err.value)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = ResnetGenerator(ngf=4, n_blocks=9).state_dict()
    del state["model.26.bias"]
    state["model.99.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        load_generator(path)
    assert "missing keys ['model.26.bias']" in str(err.value)
    assert "model.99.weight" in str(err.value)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['RTSTYLE_PWNED']}",))


def test_pickle_that_would_execute_code_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("RTSTYLE_PWNED", str(marker))
    path = tmp_path / "evil.pth"
    torch.save({"model.1.weight": torch.zeros(1), "payload": _Exploit()}, path)
    with pytest.raises(WeightsError, match="refused") as err:
        load_generator(path)
    assert not marker.exists()
    assert "weights_only=False" not in str(err.value) and "GLOBAL" in str(err.value)  # never that advice


def test_random_bytes_are_not_a_pytorch_file_and_get_no_unsafe_advice(tmp_path):
    path = tmp_path / "random.pth"
    path.write_bytes(os.urandom(4096).replace(b"PK", b"pk").lstrip(b"\x80"))
    with pytest.raises(WeightsError, match="not a PyTorch file") as err:
        load_generator(path)
    assert "weights_only" not in str(err.value) and "Python objects" not in str(err.value)
    damaged = tmp_path / "damaged.pth"  # a pickle header, then garbage: damaged, not "Python objects"
    damaged.write_bytes(b"\x80\x02" + b"\xcd" * 100)
    with pytest.raises(WeightsError, match="damaged or truncated") as err:
        load_generator(damaged)
    assert "weights_only" not in str(err.value)


def test_missing_pth_says_so_not_truncated(tmp_path):
    with pytest.raises(WeightsError) as err:
        load_reference_pth(tmp_path / "nothere.pth")
    assert "no such file" in str(err.value) and "truncated" not in str(err.value)


def test_safetensors_without_metadata_says_how_to_convert(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in ResnetGenerator(ngf=4, n_blocks=1).state_dict().items()}, path)
    with pytest.raises(WeightsError, match="import-weights"):
        load_generator(path)


def test_newer_format_version_is_refused(tmp_path):
    g = ResnetGenerator(ngf=4, n_blocks=1)
    info = ModelInfo(config=g.config, format_version=99)
    from rtstyle import save_generator

    path = save_generator(g, tmp_path / "future.safetensors", info)
    with pytest.raises(WeightsError, match="newer"):
        load_generator(path)


def test_infer_config_reads_ngf_and_blocks():
    state = ResnetGenerator(ngf=12, n_blocks=5).state_dict()
    assert infer_config(state) == GeneratorConfig(ngf=12, n_blocks=5)
