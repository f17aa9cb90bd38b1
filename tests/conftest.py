"""Shared fixtures: tiny generators saved to disk, an isolated model store, small images made on the fly."""

from __future__ import annotations

import http.server
import signal
import re
import subprocess
import threading
import sys
from pathlib import Path

import pytest
import torch

from rtstyle import GeneratorConfig, ModelInfo, ResnetGenerator, save_generator

ROOT = Path(__file__).resolve().parents[1]

# A shell starts background jobs (`.ci/run &`, nohup) with SIGINT ignored, and children inherit an ignored
# signal: Python would then never raise KeyboardInterrupt, and every Ctrl-C test would fail for a reason
# that is not the code's. A handler (unlike "ignore") is reset to the default in each child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
TINY = GeneratorConfig(ngf=8, n_blocks=2)


def tiny_store(home: Path, seed: int, direction: str) -> Path:
    """`home` as a model store holding models/tiny.safetensors: a TINY generator seeded with `seed`."""
    torch.manual_seed(seed)
    generator = ResnetGenerator(TINY).eval()
    save_generator(generator, home / "models" / "tiny.safetensors",
                   ModelInfo(config=TINY, direction=direction, train_size=64, name="tiny"))
    return home


@pytest.fixture(autouse=True)
def isolated_store(tmp_path_factory, monkeypatch):
    """Every test gets its own empty model store (RTSTYLE_HOME), never the user's."""
    home = tmp_path_factory.mktemp("rtstyle_home")
    monkeypatch.setenv("RTSTYLE_HOME", str(home))
    return home / "models"


# The CPU classes this project's machines have (issue 10), as the probe's override writes them: AMD Zen 4,
# AMD Zen 3, and an Intel Xeon whose AVX-512 has VNNI but no bf16 (its hypervisor hides AMX and bf16).
CPU_CLASSES = {"avx512": "avx2 fma avx512f avx512_bf16 avx512_vnni", "avx2": "avx2 fma",
               "avx512-no-bf16": "avx2 fma avx512f avx512_vnni"}


@pytest.fixture(params=sorted(CPU_CLASSES))
def cpu_class(request, monkeypatch) -> str:
    """Runs a test once per CPU class, with `rtstyle.cpu`'s probe forced to it (child processes inherit it)."""
    from rtstyle.cpu import FLAGS_VARIABLE, cpu_features

    monkeypatch.setenv(FLAGS_VARIABLE, CPU_CLASSES[request.param])
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpu_features.cache_clear()
    yield request.param
    cpu_features.cache_clear()  # before monkeypatch restores the environment: the next read sees the real CPU


@pytest.fixture
def tiny_generator() -> ResnetGenerator:
    torch.manual_seed(0)
    return ResnetGenerator(TINY).eval()


@pytest.fixture
def tiny_model_path(tmp_path, tiny_generator) -> Path:
    path = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, path, ModelInfo(config=TINY, direction="a->b", train_size=64, name="tiny"))
    return path


# A hang guard, not a speed test: a busy 2-core AVX2-only machine must finish any command well inside it.
HANG_GUARD_S = 900


def run_cli(*args: str, timeout: float = HANG_GUARD_S, prefix: tuple[str, ...] = (), **kwargs
            ) -> subprocess.CompletedProcess:
    """Run `python cli.py ARGS` as a user would, from the project root (`prefix`: a wrapper such as setpriv)."""
    return subprocess.run([*prefix, sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=kwargs.pop("cwd", ROOT), **kwargs)


def run_main(*argv) -> int:
    """`cli.main` in this process, on the torch backend unless a test names one: what the video and webcam
    tests check does not depend on the backend, and `auto` could start background int8 builds
    (tests/test_int8.py covers those). `run_cli` is the same command as a user's subprocess."""
    import cli

    args = [str(a) for a in argv]
    return cli.main(args if "--backend" in args else [*args, "--backend", "torch"])


def cli_in_process(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """`cli.main(ARGS)` in this process with its output captured, as `run_cli` returns it: for the many checks
    that a mistake is refused with one line, where a fresh interpreter per case (~3 s of imports each) would
    dominate the suite. `env` replaces the environment for the call. Runs that do real work use `run_cli`."""
    import contextlib
    import io
    import os

    import cli

    out, err, saved = io.StringIO(), io.StringIO(), dict(os.environ)
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as e:  # argparse's own refusals
                code = e.code if isinstance(e.code, int) else 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["cli.py", *map(str, args)], code, out.getvalue(), err.getvalue())


class Started:
    """A `python cli.py ARGS` running in the background (a server): `match` is the line it was waited for."""

    def __init__(self, proc: subprocess.Popen, match: re.Match, lines: list[str]) -> None:
        self.proc, self.match, self.lines = proc, match, lines

    def stop(self, timeout: float = 20) -> str:
        """Ctrl-C, as a user would; returns everything it printed."""
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return "".join(self.lines)


def start_cli(*args: str, ready: str, timeout: float = 120) -> Started:
    """`run_cli` for commands that keep running (servers): start it and wait until a line of its output
    matches the regex `ready` (raises with the output if it exits or `timeout` passes first)."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    found = threading.Event()
    match: list[re.Match] = []

    def pump() -> None:  # keeps reading after the match, so the pipe never fills and blocks the server
        for line in proc.stdout:
            lines.append(line)
            if not found.is_set() and (m := re.search(ready, line)):
                match.append(m)
                found.set()
        found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout) or not match:
        proc.kill()
        proc.wait()
        raise AssertionError(f"cli.py {' '.join(map(str, args))} did not print /{ready}/:\n{''.join(lines)}")
    return Started(proc, match[0], lines)


class StaticServer:
    """A real HTTP server on 127.0.0.1 serving the files of a folder by name.

    Paths under /missing/ answer 404; paths under /truncated/ announce more bytes than they send.
    """

    def __init__(self, root: Path):
        root_dir = root

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                name = self.path.rsplit("/", 1)[-1]
                path = root_dir / name
                if not path.is_file() or self.path.startswith("/missing/"):
                    self.send_error(404)
                    return
                data = path.read_bytes()
                truncated = self.path.startswith("/truncated/")
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if truncated else data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
