"""The one map of inference backends: name -> the module that runs it, the pip extra it needs, what it runs.

Adding a backend is one entry here and its own module, which defines the backend class and a
`create(path, choice, options, log) -> Backend` function; `create_backend`, `--backend`'s choices,
`select` (which extra to suggest, which artifact kinds a backend accepts) and the tests read this map.
Modules are named, not imported, so a backend's heavy library loads only when that backend is asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


def _always(env) -> bool:
    return True


@dataclass(frozen=True)
class BackendEntry:
    module: str  # under rtstyle.backends
    extra: str | None  # pyproject.toml [project.optional-dependencies] key; None: a core dependency
    runs: tuple[str, ...]  # artifact kinds it runs (rtstyle.formats.FORMATS kinds; weights are converted on the fly)
    # Precisions it runs, each with when a machine (a `select.Environment`) runs it: `benchmark --backends all`.
    precisions: tuple[tuple[str, Callable], ...] = (("fp32", _always),)

    def create(self):
        """The module's `create(path, choice, options, log)` function (imports the module now)."""
        return importlib.import_module(f"rtstyle.backends.{self.module}").create


REGISTRY: dict[str, BackendEntry] = {
    "torch": BackendEntry("torch_backend", None, ("weights",), (
        ("fp32", _always), ("bf16", lambda env: env.torch_bf16), ("fp16", lambda env: env.cuda))),
    "onnxruntime": BackendEntry("onnxruntime_backend", "onnx", ("weights", "onnx")),
    "openvino": BackendEntry("openvino_backend", "openvino", ("weights", "onnx", "openvino"), (
        ("fp32", _always), ("bf16", lambda env: env.openvino_bf16), ("int8", lambda env: env.openvino_int8))),
    "tensorrt": BackendEntry("tensorrt_backend", "tensorrt", ("weights", "onnx", "tensorrt"),
                             (("fp16", lambda env: env.cuda),)),
}
