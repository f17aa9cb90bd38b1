"""Distillation data: the teacher's input domain as images, frames sampled from videos, and a held-out split.

`find_sources` looks at DIR/trainA (the reference layout) or DIR itself, and at `--videos`; every image is
decoded once up front (a broken file is reported by name and excluded, as `train` does) and every video
is opened, so that bad input fails before anything is written. `extract_frames` then samples
`video_frames` frames evenly from each video into OUT/NAME/frames/ (PNG, written once; a resumed run reads
them back). `split` keeps `holdout` images, spread evenly over the sorted list, out of training: fidelity
to the teacher is measured on them (a held-out video frame has trained neighbours in its clip, so for
video it measures fidelity on that footage, not on unseen scenes). `DistillDataset` yields crops made by
`train.data.transform` with the randomness of (seed, epoch, index), so `train.data.EpochSampler` resumes it
mid-epoch exactly; with `lambda_gan` it also yields a random DIR/trainB crop for the PatchGAN.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rtstyle.io.images import read_image, write_image
from rtstyle.io.inputs import IMAGE_SUFFIXES, VIDEO_SUFFIXES, InputError

from .data import SAMPLE_EPOCH, _probe, item_seed, transform
from .distill_config import DistillConfig


@dataclass
class Sources:
    """What the data folder and --videos hold, checked; frames are not extracted yet."""

    folder: Path  # DIR/trainA or DIR
    images: list[Path]
    videos: list[Path]
    domain_b: list[Path] = field(default_factory=list)  # DIR/trainB, for the adversarial term
    excluded: list[tuple[Path, str]] = field(default_factory=list)


def _listing(folder: Path, suffixes: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                  and not any(part in skip for part in p.relative_to(folder).parts[:-1]))


def _usable_images(paths: list[Path], config: DistillConfig) -> tuple[list[Path], list[tuple[Path, str]]]:
    usable, excluded = [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for path, probe in zip(paths, pool.map(_probe, paths)):
            if isinstance(probe, str):
                excluded.append((path, probe))
            elif config.preprocess == "crop" and min(probe) < config.crop_size:
                excluded.append((path, f"{probe[1]}x{probe[0]} is smaller than --crop-size {config.crop_size}"))
            else:
                usable.append(path)
    return usable, excluded


def find_sources(config: DistillConfig) -> Sources:
    """Images and videos of the teacher's input domain; InputError when there is nothing usable."""
    from rtstyle.io.video import VideoReader

    root = Path(config.dataroot).expanduser()
    if not config.dataroot or not root.is_dir():
        raise InputError(f"--dataroot {config.dataroot!r} is not a folder (expected DIR/trainA or a folder of "
                         "images or videos of the teacher's input domain)")
    folder = root / "trainA" if (root / "trainA").is_dir() else root
    skip = ("trainB", "testB", "valB") if folder == root else ()  # DIR's other domain is never an input
    candidates = _listing(folder, IMAGE_SUFFIXES, skip)
    if config.max_dataset_size:
        candidates = candidates[:config.max_dataset_size]
    videos = _listing(folder, VIDEO_SUFFIXES, skip)
    for item in config.video_list():
        path = Path(item).expanduser()
        if path.is_dir():
            videos += _listing(path, VIDEO_SUFFIXES)
        elif path.is_file():
            videos.append(path)
        else:
            raise InputError(f"--videos: {item} is neither a video file nor a folder")
    videos = list(dict.fromkeys(videos))
    images, excluded = _usable_images(candidates, config)
    for video in videos:  # opening decodes the first frame: an unreadable video fails here, by name
        with VideoReader(video):
            pass
    if not images and not videos:
        detail = f"; {len(excluded)} file(s) excluded, e.g. {excluded[0][0].name}: {excluded[0][1]}" if excluded else ""
        raise InputError(f"{folder} holds no readable image or video (looked for {', '.join(IMAGE_SUFFIXES)} and "
                         f"{', '.join(VIDEO_SUFFIXES)}){detail}")
    domain_b: list[Path] = []
    if config.lambda_gan > 0:
        if not (root / "trainB").is_dir():
            raise InputError(f"--lambda-gan {config.lambda_gan:g} needs real images of the target domain in "
                             f"{root / 'trainB'}, which does not exist (or leave --lambda-gan at 0)")
        domain_b, bad_b = _usable_images(_listing(root / "trainB", IMAGE_SUFFIXES), config)
        excluded += bad_b
        if not domain_b:
            raise InputError(f"{root / 'trainB'} holds no readable image (needed by --lambda-gan)")
    return Sources(folder, images, videos, domain_b, excluded)


def frame_indices(count: int, wanted: int) -> list[int]:
    """`wanted` frame numbers spread evenly over `count` frames (the middle of each of `wanted` equal spans)."""
    if count <= wanted:
        return list(range(count))
    return sorted({int((i + 0.5) * count / wanted) for i in range(wanted)})


def extract_frames(videos: list[Path], folder: Path, per_video: int) -> list[Path]:
    """Sample `per_video` frames of each video into `folder` as PNGs, once: an existing `folder` is reused.

    Written into a temporary folder renamed at the end, so a run killed while extracting extracts again."""
    from rtstyle.io.video import VideoReader

    if not videos:
        return []
    if not folder.is_dir():
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for n, video in enumerate(videos):
                with VideoReader(video) as reader:
                    count = reader.info.frames
                    if not count:  # no frame count in the header: count by decoding once
                        count = sum(1 for _ in reader)
                with VideoReader(video) as reader:
                    wanted = set(frame_indices(count, per_video))
                    for i, (rgb, _) in enumerate(reader):
                        if i in wanted:
                            write_image(tmp / f"{n:03d}_{video.stem}_{i:06d}.png", rgb)
                        if i >= max(wanted, default=-1):
                            break
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return sorted(folder.glob("*.png"))


def split(paths: list[Path], holdout: int) -> tuple[list[Path], list[Path]]:
    """(training, held-out): `holdout` items spread evenly over the sorted list are held out."""
    paths = sorted(paths)
    if len(paths) <= holdout:
        raise InputError(f"{len(paths)} usable image(s)/frame(s) is too few to hold {holdout} out for the fidelity "
                         f"measurement and train on the rest: add images or videos, or lower --holdout")
    held = set(frame_indices(len(paths), holdout))
    return [p for i, p in enumerate(paths) if i not in held], [p for i, p in enumerate(paths) if i in held]


class DistillDataset(torch.utils.data.Dataset):
    """Map-style dataset keyed by (epoch, index) -> crop (3, H, W) in [-1, 1], or (crop, trainB crop)."""

    def __init__(self, paths: list[Path], config: DistillConfig, domain_b: list[Path] | None = None) -> None:
        self.paths, self.config, self.domain_b = list(paths), config, list(domain_b or [])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        gen = torch.Generator().manual_seed(item_seed(self.config.seed, epoch, index))
        crop = transform(read_image(self.paths[index % len(self.paths)]), self.config, gen)
        if not self.domain_b:
            return crop
        other = self.domain_b[int(torch.randint(0, len(self.domain_b), (1,), generator=gen))]
        return crop, transform(read_image(other), self.config, gen)


def fixed_crop(path: Path, config: DistillConfig, i: int) -> torch.Tensor:
    """The crop of `path` shown in sample grids: fixed position, no flip; (3, H, W)."""
    gen = torch.Generator().manual_seed(item_seed(config.seed, SAMPLE_EPOCH, i))
    return transform(read_image(path), config, gen, flip=False)


def heldout_inputs(paths: list[Path], size: int) -> list[torch.Tensor]:
    """Each held-out image at short side `size` (multiples of 4), as the runtime feeds it: (1, 3, h, w)."""
    from rtstyle.transforms import preprocess

    return [preprocess(np.ascontiguousarray(read_image(p)), size)[0] for p in paths]
