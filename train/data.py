"""Unpaired training data: the reference's UnalignedDataset, its preprocessing, and a resumable sampler.

Pairing (reference `data/unaligned_dataset.py`): item i is image i % |A| of domain A with a uniformly random
image of domain B (or image i % |B| with `serial_batches`); an epoch has max(|A|, |B|) items, A shuffled
unless `serial_batches`. Preprocessing is the reference's torchvision pipeline (`data/base_dataset.py`
`get_transform`) done with the same PIL calls: `Resize([load, load], BICUBIC)` is PIL
`img.resize((load, load), BICUBIC)`, `RandomCrop` draws the row then the column offset, `RandomHorizontalFlip`
flips when a uniform draw is < 0.5, and `ToTensor` + `Normalize(0.5, 0.5)` maps to [-1, 1]. One deviation:
modes without a crop (`scale_width`, `none`) end with the reference's `__make_power_2(base=4)` resize, so
the generator's output always has its input's size (the reference applies it to `none` only). Files are
decoded by `rtstyle.io.images.read_image`, the runtime's decoder (gray, alpha, 16-bit and EXIF orientation
handled), where the reference uses PIL's `convert('RGB')`.

Randomness is a pure function of (seed, epoch, index): every item draws its B partner, crops and flips from
its own generator and each epoch's order from its own permutation, so the stream is the same with any number
of loader workers, and a resumed run restarts mid-epoch by skipping the batches already done.

With `--direction BtoA` each pair is returned swapped, trainB's image as real_a, after the same draws (the
reference swaps in `CycleGANModel.set_input`).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rtstyle.io.images import read_image
from rtstyle.io.inputs import IMAGE_SUFFIXES, InputError, files_in
from rtstyle.transforms import MULTIPLE, frames_to_tensor

from .config import TrainConfig

SAMPLE_EPOCH = 2**31  # "epoch" whose draws pick the fixed pairs shown in the sample grids
ORDER_INDEX = 2**32  # "index" (beyond any item) whose draws give an epoch's permutation


@dataclass
class DomainImages:
    """The usable images of one domain folder and the files excluded from it (path, reason)."""

    folder: Path
    paths: list[Path]
    sizes: list[tuple[int, int]]  # (h, w) of each usable image
    excluded: list[tuple[Path, str]] = field(default_factory=list)


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted (the reference's make_dataset walks the tree too)."""
    if not folder.is_dir():
        raise InputError(f"training folder not found: {folder} (expected DATAROOT/trainA and DATAROOT/trainB "
                         "holding the images of domains A and B)")
    files = files_in(folder, IMAGE_SUFFIXES, recursive=True)
    if not files:
        raise InputError(f"training folder {folder} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files


def _probe(path: Path) -> tuple[int, int] | str:
    """(h, w) of a fully decodable image, or why it is not one."""
    try:
        image = read_image(path)
    except Exception as e:  # decoders raise assorted types; any failure excludes the file
        return str(e).removeprefix(f"{path}: ") or type(e).__name__
    return int(image.shape[0]), int(image.shape[1])


def scan_domain(folder: Path, config: TrainConfig) -> DomainImages:
    """Decode every candidate once before training, so a broken file is reported by name, not mid-epoch."""
    candidates = list_images(folder)
    limit = config.max_dataset_size or len(candidates)
    result = DomainImages(folder, [], [])
    position = 0
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        while len(result.paths) < limit and position < len(candidates):
            chunk = candidates[position:position + limit - len(result.paths)]
            position += len(chunk)
            for path, probe in zip(chunk, pool.map(_probe, chunk)):
                if isinstance(probe, str):
                    result.excluded.append((path, probe))
                elif config.preprocess == "crop" and min(probe) < config.crop_size:
                    result.excluded.append((path, f"{probe[1]}x{probe[0]} is smaller than --crop-size "
                                                  f"{config.crop_size} (--preprocess crop does not resize)"))
                else:
                    result.paths.append(path)
                    result.sizes.append(probe)
    if not result.paths:
        raise InputError(f"training folder {folder} holds no readable image: {len(result.excluded)} file(s) "
                         f"excluded, e.g. {result.excluded[0][0].name}: {result.excluded[0][1]}")
    return result


def load_domains(config: TrainConfig) -> tuple[DomainImages, DomainImages]:
    root = Path(config.dataroot).expanduser()
    if not config.dataroot or not root.is_dir():
        raise InputError(f"--dataroot {config.dataroot!r} is not a folder (expected one with trainA/ and trainB/)")
    domains = scan_domain(root / "trainA", config), scan_domain(root / "trainB", config)
    if config.batch_size > 1 and "crop" not in config.preprocess:
        shapes = {output_shape(s, config) for d in domains for s in d.sizes}
        if len(shapes) > 1:
            raise ValueError(f"--preprocess {config.preprocess} keeps each image's aspect ratio, and these images "
                             f"come out in {len(shapes)} different sizes, which cannot share a batch: "
                             "use --batch-size 1 or a cropping --preprocess")
    return domains


# --- the reference's transforms (data/base_dataset.py), on PIL images ----------------------------------------
def _scale_width(img: Image.Image, target: int, crop: int) -> Image.Image:
    ow, oh = img.size
    if ow == target and oh >= crop:
        return img
    return img.resize((target, int(max(target * oh / ow, crop))), Image.BICUBIC)


def _make_multiple(img: Image.Image, base: int = MULTIPLE) -> Image.Image:
    ow, oh = img.size
    w, h = max(base, int(round(ow / base) * base)), max(base, int(round(oh / base) * base))
    return img if (w, h) == (ow, oh) else img.resize((w, h), Image.BICUBIC)


def output_shape(size: tuple[int, int], config: TrainConfig) -> tuple[int, int]:
    """(h, w) an image of (h, w) `size` has after preprocessing."""
    if "crop" in config.preprocess:
        return config.crop_size, config.crop_size
    img = Image.new("L", (size[1], size[0]))
    if config.preprocess == "scale_width":
        img = _scale_width(img, config.load_size, config.crop_size)
    img = _make_multiple(img)
    return img.size[1], img.size[0]


def transform(rgb: np.ndarray, config: TrainConfig, gen: torch.Generator, flip: bool | None = None) -> torch.Tensor:
    """uint8 (h, w, 3) -> float (3, H, W) in [-1, 1], drawing crop and flip from `gen` like torchvision does."""
    img = Image.fromarray(rgb)
    mode = config.preprocess
    if "resize" in mode:
        img = img.resize((config.load_size, config.load_size), Image.BICUBIC)
    elif "scale_width" in mode:
        img = _scale_width(img, config.load_size, config.crop_size)
    if "crop" in mode:
        w, h, size = img.width, img.height, config.crop_size
        top = left = 0
        if (w, h) != (size, size):  # torchvision RandomCrop.get_params: no draw when the sizes already match
            top = int(torch.randint(0, h - size + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - size + 1, (1,), generator=gen))
        img = img.crop((left, top, left + size, top + size))
    else:
        img = _make_multiple(img)
    if config.flip if flip is None else flip:
        if float(torch.rand(1, generator=gen)) < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return frames_to_tensor(np.array(img))[0]  # (3, H, W)


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


class UnalignedDataset(torch.utils.data.Dataset):
    """Map-style dataset keyed by (epoch, index) -> (real_a (3, H, W), real_b (3, H, W)).

    `paths_a`, `paths_b` are the files of trainA and trainB; real_a and real_b are the run's domains A and B,
    i.e. the same with --direction AtoB and swapped with BtoA.
    """

    def __init__(self, paths_a: list[Path], paths_b: list[Path], config: TrainConfig) -> None:
        self.paths_a, self.paths_b, self.config = list(paths_a), list(paths_b), config
        self.swap = config.direction == "BtoA"

    def __len__(self) -> int:
        return max(len(self.paths_a), len(self.paths_b))

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        gen = torch.Generator().manual_seed(item_seed(self.config.seed, epoch, index))
        path_a = self.paths_a[index % len(self.paths_a)]
        if self.config.serial_batches:
            index_b = index % len(self.paths_b)
        else:  # reference: random.randint(0, B_size - 1), drawn before the transforms
            index_b = int(torch.randint(0, len(self.paths_b), (1,), generator=gen))
        image_a = transform(read_image(path_a), self.config, gen)  # trainA's, drawn first as in the reference
        image_b = transform(read_image(self.paths_b[index_b]), self.config, gen)
        return (image_b, image_a) if self.swap else (image_a, image_b)

    def fixed_pair(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The i-th pair shown in sample grids: image i of A and of B, fixed crop, no flip."""
        gen = torch.Generator().manual_seed(item_seed(self.config.seed, SAMPLE_EPOCH, i))
        a = transform(read_image(self.paths_a[i % len(self.paths_a)]), self.config, gen, flip=False)
        b = transform(read_image(self.paths_b[i % len(self.paths_b)]), self.config, gen, flip=False)
        return (b, a) if self.swap else (a, b)


class EpochSampler(torch.utils.data.Sampler):
    """Keys (epoch, index) of one rank's shard of one epoch, starting at item `start`.

    Like DistributedSampler: the epoch's order (a seeded permutation, or file order) is padded by repeating
    its head to a multiple of `world`, and rank r takes items r, r + world, ...; so every rank has the same
    number of batches and together they see each item once.
    """

    def __init__(self, n: int, epoch: int, seed: int, shuffle: bool, rank: int = 0, world: int = 1,
                 start: int = 0) -> None:
        self.n, self.epoch, self.seed, self.shuffle = n, epoch, seed, shuffle
        self.rank, self.world, self.start = rank, world, start

    def order(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, ORDER_INDEX))
            order = torch.randperm(self.n, generator=gen).tolist()
        else:
            order = list(range(self.n))
        total = shard_length(self.n, self.world) * self.world
        order = (order * math.ceil(total / self.n))[:total]
        return order[self.rank::self.world]

    def __iter__(self):
        return iter([(self.epoch, i) for i in self.order()[self.start:]])

    def __len__(self) -> int:
        return shard_length(self.n, self.world) - self.start


def shard_length(n: int, world: int) -> int:
    return math.ceil(n / world)


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return math.ceil(shard_length(n, world) / batch_size)


def make_loader(dataset: UnalignedDataset, sampler: EpochSampler, batch_size: int, num_workers: int,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    # drop_last False, like the reference's DataLoader: the last batch of an epoch may be smaller. The
    # loader's own generator: otherwise each new iterator draws its worker base seed from the global torch
    # RNG, and a run resumed mid-epoch (one extra iterator) would continue with a shifted stream.
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                       pin_memory=pin_memory, drop_last=False, generator=torch.Generator())
