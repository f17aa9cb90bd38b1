"""Datasets in the reference layout (trainA, trainB, testA, testB): the offline demo set and official downloads.

`make_demo_dataset` builds an unpaired set from real photographs that ship inside scikit-image and
scikit-learn, so it works with no internet. Domain A is crops of some photos; domain B is crops of *other*
photos (disjoint sources, so training is truly unpaired) passed through `vintage`, a documented colour
transformation (auto-levels, sepia toning, S-curve). Because the transformation is known, testB holds the transformed versions of exactly the
testA crops (same file names): a paired ground truth that makes quality measurable (`train.evaluate`).
`download_dataset` fetches the official CycleGAN datasets.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from rtstyle.download import DownloadError, download_file
from rtstyle.io.images import write_image

# (package, path inside it) of the colour photographs used. Domains A and B are cut from the same photos
# (separate random crops, so the data stay unpaired): when A held astronaut and motorcycles and B coffee,
# china and flower, the discriminator told the domains apart by their content, and the CycleGAN teacher
# learned to paint B's textures (blotches, fur) onto A: SSIM 0.715 against the exact transform on its own
# training crops, identity 0.907. With the same content on both sides, only the tone separates them, which
# is the translation to learn (the paper's own failure cases, section 5.2, are content changes of this kind).
# Only everyday scenes: the Hubble deep field and the retina fundus image are mostly black, which taught
# domain B "dark background" rather than "tone".
PHOTOS_TRAIN = [("skimage", "data/astronaut.png"), ("skimage", "data/motorcycle_left.png"),
                ("skimage", "data/motorcycle_right.png"), ("skimage", "data/coffee.png"),
                ("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg")]
PHOTOS_A = PHOTOS_B = PHOTOS_TRAIN
PHOTOS_TEST = [("skimage", "data/chelsea.png"), ("skimage", "data/rocket.jpg")]

# Classic sepia matrix (rows give output R, G, B from input R, G, B).
SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)

OFFICIAL_DATASETS = ("apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo",
                     "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower",
                     "ae_photos", "mini")
# Reference: datasets/download_cyclegan_dataset.sh. RTSTYLE_DATASET_URL points at a mirror of NAME.zip files.
OFFICIAL_DATASET_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"


def vintage(rgb: np.ndarray) -> np.ndarray:
    """Domain B's transformation, an old photo-lab print: auto-levels, 85% sepia toning blended with 15% of
    the original, then a gentle S-curve. Deterministic: uint8 RGB (h, w, 3) -> uint8 RGB (h, w, 3).

    Auto-levels first (one black and white point for all three channels, the 0.5th and 99.5th percentiles
    of the image) makes the result independent of the exposure: vintage(a * x + c) == vintage(x) for a > 0.
    The reference generator has the same invariance (its first convolution is followed by InstanceNorm,
    which removes a per-image gain and offset), so a target that depended on absolute exposure could not be
    learned by it exactly, whatever the training.
    """
    x = rgb.astype(np.float32) / 255.0
    black, white = np.percentile(x, [0.5, 99.5])
    x = np.clip((x - black) / max(white - black, 1e-3), 0.0, 1.0)
    y = 0.85 * np.clip(x @ SEPIA.T, 0.0, 1.0) + 0.15 * x
    y = y - 0.12 * np.sin(2 * np.pi * y) / (2 * np.pi)  # S-curve: darker shadows, brighter highlights
    return (np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def load_photo(package: str, rel: str) -> np.ndarray:
    """A photograph shipped inside `package`, as RGB uint8."""
    try:
        path = resources.files(package) / rel
        data = np.frombuffer(path.read_bytes(), np.uint8)
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise ModuleNotFoundError(
            f"the demo dataset needs photos from {package} ({rel}): install them with "
            "`pip install -e '.[data]'` (scikit-image, scikit-learn)"
        ) from e
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def random_crops(photo: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` square crops of random scale (window size..2*size, capped by the photo), resized to size."""
    h, w = photo.shape[:2]
    crops = []
    for _ in range(count):
        window = int(rng.integers(size, min(2 * size, h, w) + 1)) if min(h, w) > size else min(h, w)
        y = int(rng.integers(0, h - window + 1))
        x = int(rng.integers(0, w - window + 1))
        crop = photo[y:y + window, x:x + window]
        crops.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if window != size else crop)
    return crops


@dataclass
class DemoDatasetOptions:
    """Domain A: crops of photos from scikit-image/scikit-learn; domain B: crops of other photos through the
    'vintage' colour transform; testB is the transformed testA (paired ground truth). Needs the [data] extra."""

    out: Path | None = field(default=None, metadata={"required": True, "help": "dataset folder to create"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed, same dataset)"})
    train_per_domain: int = field(default=400, metadata={"help": "training crops per domain"})
    test_count: int = field(default=40, metadata={"help": "paired test crops"})
    crop: int = field(default=144, metadata={"help": "crop side in pixels"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing non-empty --out"})


def make_demo_dataset(out: Path, seed: int = 0, train_per_domain: int = 400, test_count: int = 40,
                      size: int = 144, overwrite: bool = False) -> dict:
    """Write the demo dataset to `out` (trainA, trainB, testA, testB + dataset.json); returns its summary."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    rng = np.random.default_rng(seed)
    splits: dict[str, list[np.ndarray]] = {
        "trainA": _crops_from(PHOTOS_A, train_per_domain, size, rng),
        "trainB": [vintage(c) for c in _crops_from(PHOTOS_B, train_per_domain, size, rng)],
    }
    test = _crops_from(PHOTOS_TEST, test_count, size, rng)
    splits["testA"], splits["testB"] = test, [vintage(c) for c in test]
    with tempfile.TemporaryDirectory(dir=_parent(out)) as tmp:
        staging = Path(tmp) / "dataset"
        for split, crops in splits.items():
            for i, crop in enumerate(crops):
                write_image(staging / split / f"{i:04d}.png", crop)
        summary = {
            "name": "demo-vintage",
            "seed": seed,
            "size": size,
            "counts": {k: len(v) for k, v in splits.items()},
            "transform": "train.datasets.vintage: auto-levels, 85% sepia + 15% original, then an S-curve",
            "paired_test": "testB/NAME is vintage(testA/NAME)",
            "sources": {"A": [p for _, p in PHOTOS_A], "B": [p for _, p in PHOTOS_B],
                        "test": [p for _, p in PHOTOS_TEST]},
        }
        (staging / "dataset.json").write_text(json.dumps(summary, indent=2))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return summary


def _crops_from(photos, total: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    per_photo = [total // len(photos) + (i < total % len(photos)) for i in range(len(photos))]
    crops: list[np.ndarray] = []
    for (package, rel), n in zip(photos, per_photo):
        crops += random_crops(load_photo(package, rel), n, size, rng)
    return crops


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def download_dataset(name: str, root: Path, base_url: str | None = None, quiet: bool = False) -> Path:
    """Fetch official dataset `name` into `root/name` (trainA, trainB, testA, testB); nothing partial is left."""
    import os

    if name not in OFFICIAL_DATASETS:
        raise DownloadError(f"unknown dataset {name!r}; choose one of: {', '.join(OFFICIAL_DATASETS)}")
    target = Path(root) / name
    if target.exists():
        raise DownloadError(f"{target} already exists; remove it or choose another --root")
    base = base_url or os.environ.get("RTSTYLE_DATASET_URL") or OFFICIAL_DATASET_URL
    url = f"{base.rstrip('/')}/{name}.zip"
    manual = (f"To install it by hand, download {url} on a machine with internet access and unzip it so that "
              f"{target}/trainA and {target}/trainB exist.")
    with tempfile.TemporaryDirectory(dir=_parent(target)) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            download_file(url, archive, quiet=quiet)
        except DownloadError as e:
            raise DownloadError(f"{e}. {manual}") from e
        staging = Path(tmp) / "extract"
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise DownloadError(f"{url}: archive member {bad} is corrupt. {manual}")
                _safe_extract(zf, staging)
        except zipfile.BadZipFile as e:
            raise DownloadError(f"{url}: not a zip archive ({e}). {manual}") from e
        inner = staging / name if (staging / name).is_dir() else staging
        missing = [d for d in ("trainA", "trainB") if not (inner / d).is_dir()]
        if missing:
            raise DownloadError(f"{url}: archive lacks {missing}; expected the reference layout. {manual}")
        inner.rename(target)
    return target


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    """Extract refusing members that would land outside `dest` (zip-slip)."""
    dest = dest.resolve()
    for member in zf.namelist():
        if not (dest / member).resolve().is_relative_to(dest):
            raise DownloadError(f"archive member {member!r} would be written outside the dataset folder")
    zf.extractall(dest)
