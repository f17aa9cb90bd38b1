"""rtstyle: CycleGAN image-to-image translation at interactive rates.

The runtime package: the generator (`models`), its weights (`weights`, `store`, `download`), the pure frame
transforms (`transforms`), frames in and out (`io`: images, video, sources, display, inputs, files), the
artifact formats (`formats`: metadata, onnx, openvino, int8, tensorrt), inference backends (`backends`),
the image translator (`translate`), and the streaming runtime: video files (`video`), the staged pipeline
(`pipeline`) and the live loop (`live`). It never imports `train`, `engines` or `cli`.
"""

from .models import GeneratorConfig, ResnetGenerator
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
