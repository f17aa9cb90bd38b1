"""cli.py: every subcommand answers --help, runs once for real, and tells user errors from bugs.

The deeper checks of each command live with the module it calls (test_video.py, test_export.py, ...);
here each `COMMANDS` entry is run end to end on tiny inputs as a user would, through `run_cli`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cli
from conftest import ROOT, StaticServer, run_cli
from media_helpers import make_clip, probe, tiny_model  # noqa: F401 (a fixture)
from rtstyle.errors import UserError

TORCH = ("--backend", "torch", "--precision", "fp32")  # auto could start background int8 builds


@pytest.fixture
def tiny(tiny_model) -> Path:
    """media_helpers' seeded ngf-8 generator, under the short name these tests use."""
    return tiny_model


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: rtstyle {command}" in capsys.readouterr().out  # in-process: the installed name


def test_the_command_map_is_what_the_parser_offers():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(cli.COMMANDS)


def test_user_errors_are_one_line_and_bugs_show_their_traceback(tmp_path):
    user = run_cli("translate", tmp_path / "nothing.png", "--model", "demo", "--out", tmp_path)
    assert user.returncode == 2 and "error:" in user.stderr and "Traceback" not in user.stderr
    assert UserError in cli.user_errors("translate") and ValueError not in cli.user_errors("translate")
    assert ValueError in cli.user_errors("train")  # train/ predates UserError (see cli.TRAIN_COMMANDS)
    # A command with a bug: a KeyError must surface as a traceback, not as "error: 'boom'".
    code = ("import sys, cli\n"
            "import dataclasses\n"
            "cli.COMMANDS['models'] = dataclasses.replace(cli.COMMANDS['models'], run=lambda args: {}['boom'])\n"
            "sys.exit(cli.main(['models']))\n")
    bug = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "KeyError: 'boom'" in bug.stderr


def test_models_lists_the_store(tiny, tmp_path):
    env = {**os.environ, "RTSTYLE_HOME": str(tmp_path / "home")}
    (tmp_path / "home" / "models").mkdir(parents=True)
    (tmp_path / "home" / "models" / "mine.safetensors").write_bytes(tiny.read_bytes())
    result = run_cli("models", env=env)
    assert result.returncode == 0 and "mine\ta->b\tngf=8 blocks=2" in result.stdout
    demo = next(line for line in result.stdout.splitlines() if line.startswith("demo\t"))
    assert "student of " in demo and "not in the store" in demo  # the bundled student; its teacher is not here


def test_import_weights_then_translate(tiny, tmp_path):
    from rtstyle.weights import load_model

    generator, _ = load_model(tiny)
    pth = tmp_path / "latest_net_G_A.pth"
    torch.save(generator.state_dict(), pth)
    env = {**os.environ, "RTSTYLE_HOME": str(tmp_path / "home")}
    imported = run_cli("import-weights", pth, "--name", "mine", "--direction", "x->y", env=env)
    assert imported.returncode == 0 and "2 blocks, x->y" in imported.stderr
    again = run_cli("import-weights", pth, "--name", "mine", env=env)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    from rtstyle.io.images import write_image

    write_image(tmp_path / "in.png", (torch.rand(36, 44, 3) * 255).byte().numpy())
    done = run_cli("translate", tmp_path / "in.png", "--model", "mine", "--out", tmp_path / "out", *TORCH, env=env)
    assert done.returncode == 0 and (tmp_path / "out" / "in.png").is_file()


def test_download_from_a_mirror(tiny, tmp_path):
    from rtstyle.weights import load_model

    served = tmp_path / "served"
    served.mkdir()
    torch.save(load_model(tiny)[0].state_dict(), served / "horse2zebra.pth")
    server = StaticServer(served)
    try:
        env = {**os.environ, "RTSTYLE_HOME": str(tmp_path / "home"), "RTSTYLE_MODEL_URL": server.url}
        result = run_cli("download", "horse2zebra", env=env)
    finally:
        server.close()
    assert result.returncode == 0 and (tmp_path / "home" / "models" / "horse2zebra.safetensors").is_file()


def test_video_and_webcam_on_a_file(tiny, tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=4)
    video = run_cli("video", clip, "--model", tiny, "--out", tmp_path / "o.mp4", "--size", "32", *TORCH)
    assert video.returncode == 0 and probe(tmp_path / "o.mp4").frames == 4
    live = run_cli("webcam", "--model", tiny, "--source", clip, "--no-show", "--record", tmp_path / "r.mp4",
                   "--max-frames", "3", "--size", "32", *TORCH)
    assert live.returncode == 0 and probe(tmp_path / "r.mp4").frames == 3


def test_export_then_run_the_artifact(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "t.onnx"
    exported = run_cli("export", "--model", tiny, "--format", "onnx", "--dynamic", "--out", out)
    assert exported.returncode == 0 and out.is_file() and "max abs error" in exported.stderr
    clip = make_clip(tmp_path / "c.mp4", frames=2)
    ran = run_cli("video", clip, "--model", out, "--out", tmp_path / "o.mp4", "--size", "32",
                  "--backend", "onnxruntime")
    assert ran.returncode == 0 and probe(tmp_path / "o.mp4").frames == 2


def test_benchmark_writes_its_json(tiny, tmp_path):
    out = tmp_path / "b.json"
    result = run_cli("benchmark", "--model", tiny, "--backends", "torch:fp32", "--sizes", "32", "--rounds", "1",
                     "--per-round", "1", "--warmup", "0", "--device", "cpu", "--json", out)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert [r["variant"] for r in document["records"]] == ["torch:fp32"] and document["settings"]["rounds"] == 1


def test_datasets_train_plot_and_evaluate(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    data, runs = tmp_path / "d", tmp_path / "runs"
    made = run_cli("datasets", "make-demo", "--out", data, "--train-per-domain", "2", "--test-count", "1",
                   "--crop", "32")
    assert made.returncode == 0, made.stderr
    trained = run_cli("train", "--dataroot", data, "--name", "t", "--out", runs, "--ngf", "8", "--n-blocks", "2",
                      "--ndf", "8", "--load-size", "36", "--crop-size", "32", "--num-workers", "0",
                      "--precision", "fp32", "--max-steps", "1", env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert trained.returncode == 0, trained.stderr
    plotted = run_cli("plot", runs / "t", "--out", tmp_path / "l.png")
    assert plotted.returncode == 0 and (tmp_path / "l.png").is_file()
    scored = run_cli("evaluate", "--model", runs / "t" / "G_A.safetensors", "--dataroot", data, *TORCH,
                     "--json", tmp_path / "s.json")
    assert scored.returncode == 0 and "psnr" in json.loads((tmp_path / "s.json").read_text())


def test_demo_runs_headless(tmp_path):
    result = run_cli("demo", "--out", tmp_path, "--no-show", "--size", "64", *TORCH)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo_clip_translated.mp4").is_file() and (tmp_path / "side_by_side.png").is_file()


# --- what a newcomer meets first (issue 15, "Newcomer details") ---------------------------------------------
def test_no_arguments_lists_the_commands_and_version_answers():
    bare = run_cli()
    assert bare.returncode == 0 and "usage: cli.py" in bare.stdout
    assert all(name in bare.stdout for name in cli.COMMANDS)
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"rtstyle {cli.__version__}"


def test_usage_names_the_program_the_user_typed():
    assert "usage: cli.py video" in run_cli("video", "--help").stdout
    installed = Path(sys.executable).with_name("rtstyle")  # the console script `pip install` makes
    if not installed.exists():
        pytest.skip(f"no installed `rtstyle` command beside {sys.executable}")
    ran = subprocess.run([str(installed), "video", "--help"], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and "usage: rtstyle video" in ran.stdout


def subcommand_parsers():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        yield name, p
        for action in p._actions:  # datasets' own actions
            if isinstance(action, argparse._SubParsersAction):
                yield from ((f"{name} {n}", q) for n, q in action.choices.items())


def test_one_vocabulary_across_commands():
    for name, p in subcommand_parsers():
        text = p.format_help()
        assert "[]" not in text and "[None]" not in text, f"{name} shows an empty default"
        options = {o: a for a in p._actions for o in a.option_strings}
        if "--overwrite" in options:  # the same plain flag everywhere
            assert isinstance(options["--overwrite"], argparse._StoreTrueAction), name
            assert "--no-overwrite" not in options, name
        if "--model" in options:
            help_text = options["--model"].help
            assert all(form in help_text for form in (".safetensors", ".pth", ".onnx", ".engine", ".xml", "demo",
                                                       "download")), name
        if "--size" in options:
            assert "[" in options["--size"].help or "default" in options["--size"].help, f"{name}: --size default"
        assert "--verbose" in options, name
    datasets_download = dict(subcommand_parsers())["datasets download"]
    assert "--out" in {o for a in datasets_download._actions for o in a.option_strings}


def test_library_noise_stays_out_unless_verbose(tmp_path):
    # A camera index with no device: OpenCV prints [ WARN]/[ERROR] lines before rtstyle's own message.
    quiet = run_cli("webcam", "--model", "demo", "--source", "9", "--no-show", *TORCH)
    assert quiet.returncode == 2 and "could not open camera 9" in quiet.stderr
    assert "[ WARN" not in quiet.stderr and "[ERROR" not in quiet.stderr, quiet.stderr
    verbose = run_cli("webcam", "--model", "demo", "--source", "9", "--no-show", "--verbose", *TORCH)
    assert verbose.returncode == 2 and ("[ WARN" in verbose.stderr or "[ERROR" in verbose.stderr), verbose.stderr
