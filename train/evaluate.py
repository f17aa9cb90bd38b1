"""Quality evaluation of a generator on a dataset's test split.

With paired ground truth (testB/NAME is the translation of testA/NAME, as in the demo dataset) it reports
PSNR and SSIM of the model's output against the ground truth next to the identity baseline (input vs
ground truth). Without it, given the reverse generator, it reports cycle consistency: how well
G_BA(G_AB(a)) reproduces a (L1 on [-1, 1], and PSNR). Metrics are scikit-image's reference
implementations (`peak_signal_noise_ratio`, `structural_similarity`), on uint8 RGB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rtstyle.backends import Backend
from rtstyle.io.images import read_image
from rtstyle.io.inputs import IMAGE_SUFFIXES, files_in
from rtstyle.tiling import guarded_infer
from rtstyle.transforms import postprocess, preprocess


@dataclass
class PairedScores:
    images: int
    psnr: float  # dB, mean over images (inf when every output equals its ground truth)
    ssim: float
    identity_psnr: float  # the input itself scored against the ground truth
    identity_ssim: float


@dataclass
class CycleScores:
    images: int
    cycle_l1: float  # mean |a - G_BA(G_AB(a))| on the [-1, 1] scale
    cycle_psnr: float


def _metrics():
    try:
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("evaluate needs scikit-image: `pip install -e '.[data]'`") from e
    return peak_signal_noise_ratio, structural_similarity


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found: expected the reference layout DIR/testA (and DIR/testB)")
    files = files_in(folder, IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder} holds no images")
    return files


def translate_one(backend: Backend, rgb: np.ndarray, size: int | None = None) -> np.ndarray:
    x, plan = preprocess(rgb, size)
    return postprocess(guarded_infer(backend, x), plan)[0]


def has_paired_ground_truth(dataroot: Path) -> bool:
    """True when testB holds exactly testA's file names (the demo dataset's paired test split).

    A dataroot that does not exist, or has no testA, is an error saying so (not "no paired ground truth")."""
    if not Path(dataroot).is_dir():
        raise FileNotFoundError(f"--dataroot {dataroot} not found: expected a dataset folder holding testA (and "
                                "testB), e.g. one made by `python cli.py datasets make-demo --out DIR`")
    a, b = Path(dataroot) / "testA", Path(dataroot) / "testB"
    names_a = {p.name for p in _images(a)}  # raises when testA is missing or empty
    return b.is_dir() and names_a == {p.name for p in _images(b)}


def _psnr(psnr, truth: np.ndarray, test: np.ndarray) -> float:
    return float("inf") if np.array_equal(truth, test) else float(psnr(truth, test, data_range=255))


def evaluate_paired(backend: Backend, dataroot: Path, size: int | None = None) -> PairedScores:
    psnr, ssim = _metrics()
    rows = []
    for src in _images(Path(dataroot) / "testA"):
        real, truth = read_image(src), read_image(Path(dataroot) / "testB" / src.name)
        fake = translate_one(backend, real, size)
        rows.append((_psnr(psnr, truth, fake), ssim(truth, fake, channel_axis=2, data_range=255),
                     _psnr(psnr, truth, real), ssim(truth, real, channel_axis=2, data_range=255)))
    m = np.array(rows, dtype=np.float64).mean(axis=0)
    return PairedScores(len(rows), *map(float, m))


def evaluate_cycle(forward: Backend, backward: Backend, dataroot: Path, size: int | None = None) -> CycleScores:
    psnr, _ = _metrics()
    l1s, psnrs = [], []
    for src in _images(Path(dataroot) / "testA"):
        real = read_image(src)
        rec = translate_one(backward, translate_one(forward, real, size), size)
        l1s.append(np.abs(real.astype(np.float64) - rec.astype(np.float64)).mean() / 127.5)
        psnrs.append(_psnr(psnr, real, rec))
    return CycleScores(len(l1s), float(np.mean(l1s)), float(np.mean(psnrs)))


def as_record(scores: PairedScores | CycleScores) -> dict:
    return {k: (None if isinstance(v, float) and np.isinf(v) else v) for k, v in asdict(scores).items()} | {
        "kind": "paired" if isinstance(scores, PairedScores) else "cycle"}
