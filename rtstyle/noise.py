"""Library noise: what the libraries underneath print that a user did not ask for.

OpenCV's `[ WARN]`/`[ERROR]` lines (a camera probe, a codec it lacks), FFmpeg's log, torch's "No CUDA runtime
is found" (a logger in torch.utils.cpp_extension, reached through NNCF), NNCF's INFO lines and Python
warnings from torch, ONNX and NNCF (pickle protocols, deprecations) all reach the console of a command that
handled the situation itself. The commands call `quiet_libraries()` once at start; `--verbose` keeps them.
rtstyle's own messages go through the command's console and are never filtered here.
"""

from __future__ import annotations

import logging
import warnings

LIBRARY_LOGGERS = ("torch", "nncf", "openvino", "onnxscript", "onnx", "onnxruntime", "PIL", "matplotlib")
LIBRARY_MODULES = r"(torch|torchvision|nncf|openvino|onnx|onnxscript|onnxruntime|cv2|av|safetensors|skimage)(\.|$)"


def quiet_libraries(verbose: bool = False) -> None:
    """Silence the libraries' logs and warnings (errors still raise); with `verbose`, leave everything on."""
    import cv2

    # In this process only (an environment variable would reach child processes, and tests run commands in-process).
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING if verbose else cv2.utils.logging.LOG_LEVEL_SILENT)
    if verbose:
        return
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=LIBRARY_MODULES)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
