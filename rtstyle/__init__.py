"""rtstyle: CycleGAN image-to-image translation at interactive rates.

The runtime package: the generator (`models`), its weights (`weights`, `store`, `download`), the pure frame
transforms (`transforms`), frames in and out (`io`: images, video, sources, display, inputs, files), the
artifact formats (`formats`: metadata, onnx, openvino, int8, tensorrt), inference backends (`backends`),
the image translator (`translate`), and the streaming runtime: video files (`video`), the staged pipeline
(`pipeline`) and the live loop (`live`). It never imports `train`, `engines` or `cli`.
"""

import os

# Before torch loads its OpenMP runtime (libgomp reads this once): waiting threads sleep instead of spinning.
# Measured on a 2-core Zen 4 (benchmarks/contention.py, BENCHMARKS.md "Threads under a busy core"): with the
# default spin-wait, one busy core made torch's 2 OpenMP threads 3.5-3.7x slower; passive waiting keeps it to
# 1.5-1.6x for 15-29% on an idle machine. These machines are shared, so passive is the default; a user's own
# OMP_WAIT_POLICY (ACTIVE for a dedicated machine) wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .models import GeneratorConfig, ResnetGenerator  # noqa: E402
from .store import ModelNotFound, resolve_model
from .weights import ModelInfo, WeightsError, load_generator, load_model, read_info, save_generator

__version__ = "0.1.0"

__all__ = [
    "GeneratorConfig",
    "ModelInfo",
    "ModelNotFound",
    "ResnetGenerator",
    "WeightsError",
    "load_generator",
    "load_model",
    "read_info",
    "resolve_model",
    "save_generator",
]
