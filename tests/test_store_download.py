"""Model store lookups, `import-weights`, and `download` against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from conftest import StaticServer, cli_in_process
from rtstyle import ResnetGenerator, load_model


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    torch.manual_seed(0)
    torch.save(ResnetGenerator(ngf=4, n_blocks=9).state_dict(), served / "horse2zebra.pth")
    (served / "zebra2horse.pth").write_bytes(b"<html>not a model</html>")
    s = StaticServer(served)
    yield s
    s.close()


def _store_files(store: Path) -> list[str]:
    return sorted(p.name for p in store.rglob("*")) if store.exists() else []


def test_download_from_mirror_verifies_and_stores_native_weights(server, isolated_store):
    result = cli_in_process("download", "horse2zebra", env=_env(server.url))
    assert result.returncode == 0, result.stderr
    assert _store_files(isolated_store) == ["horse2zebra.safetensors"]
    generator, info = load_model("horse2zebra")
    assert info.direction == "horse->zebra" and info.config.ngf == 4
    assert info.extra["source_url"].endswith("/horse2zebra.pth") and len(info.extra["sha256"]) == 64
    # Named models now resolve for other commands, and a second download refuses to overwrite.
    assert cli_in_process("download", "horse2zebra", env=_env(server.url)).returncode == 2


@pytest.mark.parametrize("base", ["{url}/missing", "{url}/truncated", "http://127.0.0.1:{closed}"])
def test_download_failures_exit_nonzero_explain_and_leave_nothing(server, isolated_store, base):
    url = base.format(url=server.url, closed=_closed_port())
    result = cli_in_process("download", "horse2zebra", env=_env(url))
    assert result.returncode == 2
    assert "could not download" in result.stderr and "import-weights" in result.stderr
    assert _store_files(isolated_store) == []


def test_download_of_something_that_is_not_a_generator_leaves_nothing(server, isolated_store):
    result = cli_in_process("download", "zebra2horse", env=_env(server.url))
    assert result.returncode == 2 and "not a CycleGAN generator" in result.stderr
    assert _store_files(isolated_store) == []


def test_download_without_network_says_what_to_do(isolated_store):
    # The default URL: unreachable on this machine (no internet) and in CI.
    result = cli_in_process("download", "style_monet", env=_env(None))
    assert result.returncode == 2
    assert "could not download" in result.stderr and "import-weights" in result.stderr
    assert _store_files(isolated_store) == []


def test_import_weights_then_use_by_name(tmp_path, isolated_store):
    g = ResnetGenerator(ngf=4, n_blocks=6)
    torch.save({f"module.{k}": v for k, v in g.state_dict().items()}, tmp_path / "latest_net_G_A.pth")
    result = cli_in_process("import-weights", tmp_path / "latest_net_G_A.pth", "--name", "mine", "--direction", "cat->dog")
    assert result.returncode == 0, result.stderr
    _, info = load_model("mine")
    assert info.direction == "cat->dog" and info.config.n_blocks == 6
    again = cli_in_process("import-weights", tmp_path / "latest_net_G_A.pth", "--name", "mine")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    listing = cli_in_process("models")
    assert listing.returncode == 0 and "mine\tcat->dog" in listing.stdout


def _env(url: str | None) -> dict:
    import os

    env = dict(os.environ)
    env.pop("RTSTYLE_MODEL_URL", None)
    if url:
        env["RTSTYLE_MODEL_URL"] = url
    return env


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_is_checked_against_a_known_sha256_or_says_it_could_not_be(server, isolated_store, tmp_path):
    """Issue 15: model downloads are plain http and were checked only by loading."""
    import hashlib

    good = hashlib.sha256((tmp_path / "served" / "horse2zebra.pth").read_bytes()).hexdigest()
    # No hash known anywhere: stored, and the console says it could not be verified, with the sha256 it got.
    r = cli_in_process("download", "horse2zebra", env=_env(server.url))
    assert r.returncode == 0 and "could not be verified" in r.stderr and good in r.stderr, r.stderr
    assert load_model("horse2zebra")[1].extra["verified_by"] is None
    # A hash the user trusts: a match is said so, a mismatch stores nothing (and keeps what was stored).
    r = cli_in_process("download", "horse2zebra", "--overwrite", "--sha256", good.upper(), env=_env(server.url))
    assert r.returncode == 0 and f"verified horse2zebra.pth: sha256 {good} matches --sha256" in r.stderr
    before = (isolated_store / "horse2zebra.safetensors").read_bytes()
    r = cli_in_process("download", "horse2zebra", "--overwrite", "--sha256", "0" * 64, env=_env(server.url))
    assert r.returncode == 2 and "not the expected file" in r.stderr and good in r.stderr
    assert (isolated_store / "horse2zebra.safetensors").read_bytes() == before
    assert _store_files(isolated_store) == ["horse2zebra.safetensors"]  # no temporary file left
    # A mirror that publishes NAME.pth.sha256: checked against it, a wrong one refused.
    (tmp_path / "served" / "horse2zebra.pth.sha256").write_text(f"{good}  horse2zebra.pth\n")
    r = cli_in_process("download", "horse2zebra", "--overwrite", env=_env(server.url))
    assert r.returncode == 0 and "horse2zebra.pth.sha256" in r.stderr and "verified" in r.stderr
    (tmp_path / "served" / "horse2zebra.pth.sha256").write_text("f" * 64 + "\n")
    r = cli_in_process("download", "horse2zebra", "--overwrite", env=_env(server.url))
    assert r.returncode == 2 and "not the expected file" in r.stderr
    r = cli_in_process("download", "horse2zebra", "--overwrite", "--sha256", "abc", env=_env(server.url))
    assert r.returncode == 2 and "64 hexadecimal digits" in r.stderr
