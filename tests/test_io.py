"""rtstyle.io: frames in and out, with no inference runtime behind them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IO_DIR = ROOT / "rtstyle" / "io"
ABOVE_IO = ("backends", "formats")


def _imported_modules(path: Path) -> list[str]:
    """Every module `path` imports, relative imports resolved against its package."""
    package = ["rtstyle", "io"]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names += [module] if node.module else [f"{module}.{a.name}" for a in node.names]
    return names


def test_io_source_never_imports_backends_or_formats():
    offenders = [f"{path.name}: {name}" for path in sorted(IO_DIR.glob("*.py")) for name in _imported_modules(path)
                 if name.split(".")[:2] in (["rtstyle", part] for part in ABOVE_IO)]
    assert offenders == []


def test_importing_io_loads_no_backend_or_format():
    # The static check above misses an indirect path (io -> some rtstyle module -> backends); this one does not.
    code = (
        "import importlib, pkgutil, sys, rtstyle.io\n"
        "for m in pkgutil.walk_packages(rtstyle.io.__path__, 'rtstyle.io.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [n for n in sys.modules if n.split('.')[:2] in [['rtstyle', p] for p in {list(ABOVE_IO)!r}]]\n"
        "assert not bad, bad\n"
        "print(len([n for n in sys.modules if n.startswith('rtstyle.io.')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(list(IO_DIR.glob("*.py"))) - 1  # every module but __init__ was imported
