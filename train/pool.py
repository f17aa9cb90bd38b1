"""The history of generated images the discriminators are trained on (Shrivastava et al., CVPR 2017).

CycleGAN section 4 ("we update the discriminators using a history of generated images rather than the ones
produced by the latest generators"); the rule is the reference's `util/image_pool.py`: while the pool holds
fewer than `size` images, each new image is stored and returned as it is; once full, each image is, with
probability 0.5, swapped for a randomly chosen stored one (which is returned, the new one taking its place),
else returned as it is. The random choices come from the pool's own `random.Random`, so a checkpoint can
save and restore them exactly.
"""

from __future__ import annotations

import random

import torch


class ImagePool:
    """Pool of up to `size` images, each (c, h, w); `query` takes and returns batches (b, c, h, w)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []  # each (1, c, h, w), detached
        self.rng = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:  # (b, c, h, w) -> (b, c, h, w)
        if self.size == 0:
            return images
        returned = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                returned.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                slot = self.rng.randint(0, self.size - 1)
                returned.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                returned.append(image)
        return torch.cat(returned, 0)

    def state_dict(self) -> dict:
        return {"size": self.size, "images": [t.cpu() for t in self.images], "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        if state["size"] != self.size:
            raise ValueError(f"image pool of size {state['size']} cannot be restored into one of size {self.size}")
        self.images = [t.to(device) for t in state["images"]]
        self.rng.setstate(_as_random_state(state["rng"]))


def _as_random_state(state) -> tuple:
    # random.getstate() is (version, tuple of 625 ints, gauss_next); serialisation may turn tuples into lists.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
