"""PyTorch inference backend: the generator run eagerly (fp32) on the chosen device."""

from __future__ import annotations

import torch

from ..models import ResnetGenerator
from ..weights import ModelInfo
from .base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, generator: ResnetGenerator, info: ModelInfo, device: str = "cpu") -> None:
        super().__init__(info)
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()

    def describe(self) -> str:
        return f"torch eager fp32 on {self.device}"

    @torch.inference_mode()
    def infer(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x.to(self.device)).float().cpu()
