"""Datasets in the reference layout (trainA, trainB, testA, testB): the offline demo set and official downloads.

`make_demo_dataset` builds an unpaired set from real photographs that ship inside scikit-image and
scikit-learn, so it works with no internet. Domains A and B are separate random crops of the same photos
(unpaired), B's passed through `thermal`, a documented transformation (auto-levels, the inferno colour map
of the brightness, mixed with the photo). Because the transformation is known, testB holds the transformed
versions of exactly the testA crops (same file names), cut from photos no training crop comes from: a paired
ground truth that makes quality measurable (`train.evaluate`).
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

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, OpenCV's RGB -> grey weights
THERMAL_MIX = 0.8  # share of the false colour; the rest is the (levelled) photo, so colour survives the round trip

OFFICIAL_DATASETS = ("apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo",
                     "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower",
                     "ae_photos", "mini")
# Reference: datasets/download_cyclegan_dataset.sh. RTSTYLE_DATASET_URL points at a mirror of NAME.zip files.
OFFICIAL_DATASET_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"


def thermal(rgb: np.ndarray) -> np.ndarray:
    """Domain B's transformation, a thermal-camera look: auto-levels, the brightness through the inferno
    colour map (black, purple, red, orange, pale yellow; matplotlib's, as OpenCV's COLORMAP_INFERNO table),
    80% of it over 20% of the levelled photo. Deterministic: uint8 RGB (h, w, 3) -> uint8 RGB (h, w, 3).

    A style rather than a tint (issue 12): the first target, an old photo-lab print (sepia toning and an
    S-curve), kept every edge and its contrast, so the identity baseline's SSIM was 0.79 and only a
    generator that reproduced all fine detail could beat it. The colour map moves the channels' contrast
    (blue rises, falls and rises again with brightness), so doing nothing scores 0.62, while the exact map
    of a photo blurred by sigma 1 still scores 0.90: SSIM measures the translation, not the detail.
    Each output pixel is a fixed function of its input pixel and of the image's black and white points,
    which the generator can represent: auto-levels first (one black and white point for all three
    channels, the 0.5th and 99.5th percentiles) makes thermal(a * x + c) == thermal(x) for a > 0, the
    invariance its first InstanceNorm has. The 20% of the photo keeps the colour recoverable, which
    CycleGAN's cycle loss needs (a pure map of brightness would lose the hue, and the generators would
    hide it in the image as faint patterns).
    """
    x = rgb.astype(np.float32) / 255.0
    black, white = np.percentile(x, [0.5, 99.5])
    x = np.clip((x - black) / max(white - black, 1e-3), 0.0, 1.0)
    level = (np.clip(x @ LUMA, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    false_colour = cv2.applyColorMap(level, cv2.COLORMAP_INFERNO)[:, :, ::-1].astype(np.float32) / 255.0
    y = THERMAL_MIX * false_colour + (1.0 - THERMAL_MIX) * x
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
    """Domain A: crops of photos from scikit-image/scikit-learn; domain B: other crops of the same photos through
    the 'thermal' transform; testB is the transformed testA (paired ground truth). Needs the [data] extra."""

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
        "trainB": [thermal(c) for c in _crops_from(PHOTOS_B, train_per_domain, size, rng)],
    }
    test = _crops_from(PHOTOS_TEST, test_count, size, rng)
    splits["testA"], splits["testB"] = test, [thermal(c) for c in test]
    with tempfile.TemporaryDirectory(dir=_parent(out)) as tmp:
        staging = Path(tmp) / "dataset"
        for split, crops in splits.items():
            for i, crop in enumerate(crops):
                write_image(staging / split / f"{i:04d}.png", crop)
        summary = {
            "name": "demo-thermal",
            "seed": seed,
            "size": size,
            "counts": {k: len(v) for k, v in splits.items()},
            "transform": "train.datasets.thermal: auto-levels, brightness through the inferno map, 80% over 20% of the photo",
            "paired_test": "testB/NAME is thermal(testA/NAME)",
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
