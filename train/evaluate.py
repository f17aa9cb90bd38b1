"""Quality evaluation of a generator on a dataset's test split.

With paired ground truth (testB/NAME is the translation of testA/NAME, as in the demo dataset) it reports
PSNR and SSIM of the model's output against the ground truth next to the identity baseline (input vs
ground truth). Without it, given the reverse generator, it reports cycle consistency: how well
G_BA(G_AB(a)) reproduces a (L1 on [-1, 1], and PSNR). Metrics are scikit-image's reference
implementations (`peak_signal_noise_ratio`, `structural_similarity`), on uint8 RGB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rtstyle.backends import Backend
from rtstyle.io.images import read_image
from rtstyle.io.inputs import IMAGE_SUFFIXES, files_in
from rtstyle.tiling import guarded_infer
from rtstyle.transforms import SIZE_HELP, postprocess, preprocess


@dataclass
class EvaluateOptions:
    """With paired ground truth (testB/NAME = translation of testA/NAME) reports PSNR and SSIM next to the
    identity baseline; otherwise, given --model-back, the cycle-consistency error on testA. --video SOURCE
    TRANSLATED reports the warping error (Lai et al. 2018) instead; no model needed."""

    dataroot: Path | None = field(default=None, metadata={"help": "dataset folder with testA (and testB)"})
    video: list[Path] | None = field(default=None, metadata={
        "nargs": 2, "metavar": ("SOURCE", "TRANSLATED"),
        "help": "warping error of TRANSLATED along SOURCE's optical flow, SOURCE's own as the floor, ratio"})
    per_frame: Path | None = field(default=None, metadata={
        "metavar": "PERFRAME", "help": "with --video: the per-frame translation, for the SSIM of TRANSLATED against it"})
    flow: str = field(default="dis", metadata={"choices": ("dis", "farneback"), "help": "with --video: optical flow"})
    model_back: str | None = field(default=None, metadata={
        "help": "the reverse generator (B->A), for the cycle-consistency score"})
    size: str = field(default="native", metadata={"help": SIZE_HELP})
    json: Path | None = field(default=None, metadata={"help": "also write the scores as JSON here"})


@dataclass
class PairedScores:
    images: int
    psnr: float  # dB, mean over images (inf when every output equals its ground truth)
    ssim: float
    identity_psnr: float  # the input itself scored against the ground truth
    identity_ssim: float

    def columns(self) -> dict[str, str]:
        return {"images": str(self.images), "PSNR model": f"{self.psnr:.2f} dB",
                "PSNR identity": f"{self.identity_psnr:.2f} dB", "SSIM model": f"{self.ssim:.4f}",
                "SSIM identity": f"{self.identity_ssim:.4f}"}


@dataclass
class CycleScores:
    images: int
    cycle_l1: float  # mean |a - G_BA(G_AB(a))| on the [-1, 1] scale
    cycle_psnr: float

    def columns(self) -> dict[str, str]:
        return {"images": str(self.images), "cycle L1": f"{self.cycle_l1:.4f}", "cycle PSNR": f"{self.cycle_psnr:.2f} dB"}


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


def evaluate_dataset(load: Callable[[], Backend], dataroot: Path, size: int | None = None,
                     back: Callable[[], Backend] | None = None) -> PairedScores | CycleScores:
    """Paired scores of the generator `load()` makes where `dataroot` has paired ground truth, else the cycle
    error with the reverse generator `back()` makes; neither possible: a UserError saying what the folder
    lacks. The folder is checked before any model loads."""
    from rtstyle.errors import UserError

    paired = has_paired_ground_truth(dataroot)  # a missing folder or testA is said here, before loading
    if not paired and back is None:
        raise UserError(f"{dataroot} has no paired ground truth (testB with testA's file names); "
                        "pass --model-back with the reverse generator to score cycle consistency")
    backend = load()
    return evaluate_paired(backend, dataroot, size) if paired else evaluate_cycle(backend, back(), dataroot, size)


def evaluate(options: EvaluateOptions, model: str | None,
             backend_for: Callable[[str], Backend]) -> tuple[str, dict[str, str], dict]:
    """The `evaluate` command: a translated video's flicker (--video) or a model's scores on a dataset;
    returns (title, formatted columns, JSON record)."""
    from rtstyle.errors import UserError
    from rtstyle.temporal import score_videos
    from rtstyle.transforms import parse_size

    if options.video:
        source, translated = options.video
        scores = score_videos(source, translated, options.per_frame, options.flow)
        record = scores.as_record() | {"source": str(source), "translated": str(translated),
                                       "per_frame": str(options.per_frame) if options.per_frame else None}
        return (f"temporal consistency of {translated} along {source}'s flow ({scores.flow})", scores.columns(),
                record)
    if not model or not options.dataroot:
        raise UserError("evaluate needs --model and --dataroot (or --video SOURCE TRANSLATED)")
    size = parse_size(options.size)  # before a model loads: a bad --size is said at once
    back = (lambda: backend_for(options.model_back)) if options.model_back else None
    paired = evaluate_dataset(lambda: backend_for(model), options.dataroot, size, back)
    record = as_record(paired) | {"model": str(model), "dataroot": str(options.dataroot)}
    return f"{model} on {options.dataroot}", paired.columns(), record
