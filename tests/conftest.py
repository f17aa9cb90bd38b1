"""Shared fixtures: tiny generators saved to disk, an isolated model store, small images made on the fly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rtstyle import GeneratorConfig, ModelInfo, ResnetGenerator, save_generator

ROOT = Path(__file__).resolve().parents[1]
TINY = GeneratorConfig(ngf=8, n_blocks=2)


@pytest.fixture(autouse=True)
def isolated_store(tmp_path_factory, monkeypatch):
    """Every test gets its own empty model store (RTSTYLE_HOME), never the user's."""
    home = tmp_path_factory.mktemp("rtstyle_home")
    monkeypatch.setenv("RTSTYLE_HOME", str(home))
    return home / "models"


@pytest.fixture
def tiny_generator() -> ResnetGenerator:
    torch.manual_seed(0)
    return ResnetGenerator(TINY).eval()


@pytest.fixture
def tiny_model_path(tmp_path, tiny_generator) -> Path:
    path = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, path, ModelInfo(config=TINY, direction="a->b", train_size=64, name="tiny"))
    return path


def run_cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run `python cli.py ARGS` as a user would, from the project root."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=kwargs.pop("cwd", ROOT), **kwargs)
