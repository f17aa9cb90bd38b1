"""Import direction: `rtstyle` works without optional extras and never imports train, engines or cli."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"train", "engines", "cli"}
HEAVY = ("onnxruntime", "openvino", "tensorrt", "torch_tensorrt", "onnx")


def test_rtstyle_source_never_imports_train_engines_or_cli():
    offenders = []
    for path in (ROOT / "rtstyle").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_import_rtstyle_works_with_optional_extras_blocked():
    # Make the heavy extras unimportable, then import the whole runtime package tree.
    code = (
        "import sys\n"
        f"for name in {HEAVY!r}: sys.modules[name] = None\n"
        "import importlib, pkgutil, rtstyle\n"
        "for m in pkgutil.walk_packages(rtstyle.__path__, 'rtstyle.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [n for n in sys.modules if n.split('.')[0] in {sorted(FORBIDDEN)!r}]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
