"""Loss curves of a run: `losses.csv` -> a PNG with the adversarial, cycle/identity and discriminator losses.

matplotlib (an optional dependency, extra `plot`) is imported only here, with its file-only Agg backend.
"""

from __future__ import annotations

import csv
from pathlib import Path

from rtstyle.io.files import atomic_write
from rtstyle.io.inputs import InputError

from .records import read_rows

PANELS = (
    ("generators, adversarial (LSGAN)", ("gan_ab", "gan_ba")),
    ("cycle and identity (L1, weighted)", ("cycle_a", "cycle_b", "idt_a", "idt_b")),
    ("discriminators", ("disc_a", "disc_b")),
)


def plot_losses(csv_path: str | Path, png_path: str | Path | None = None,
                panels: tuple[tuple[str, tuple[str, ...]], ...] | None = None) -> Path:
    """Draw the curves of `csv_path` (a run's losses.csv) into `png_path` (default: losses.png beside it).

    `panels`: (title, columns) per subplot; by default the CycleGAN panels for a `train` run, and for any
    other losses.csv (a `distill` run) one panel per loss column it holds."""
    csv_path = Path(csv_path)
    if csv_path.is_dir():
        csv_path = csv_path / "losses.csv"
    if not csv_path.is_file():
        raise InputError(f"no losses to plot: {csv_path} does not exist (expected a run folder or its losses.csv)")
    png_path = Path(png_path) if png_path else csv_path.with_name("losses.png")
    if panels is None:
        with open(csv_path, newline="") as f:
            header = next(csv.reader(f), [])
        losses = tuple(c for c in header if c not in ("step", "epoch", "lr", "elapsed_s"))
        trained = all(k in header for _, keys in PANELS for k in keys)
        panels = PANELS if trained or not losses else tuple((key, (key,)) for key in losses)
    rows = read_rows(csv_path, tuple(k for _, keys in panels for k in keys))
    if not rows:
        raise ValueError(f"{csv_path} has no logged steps yet (one row is written every --log-every steps)")
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plotting needs matplotlib: pip install 'rtstyle[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 9), sharex=True, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], panels):
        for key in keys:
            values = [float(r[key]) for r in rows]
            ax.plot(steps, values, label=key, linewidth=1.2, marker="." if len(rows) < 50 else None)
        ax.set_title(title, fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(f"{csv_path.parent.name}: losses over {steps[-1]} steps")
    fig.tight_layout()
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return png_path
