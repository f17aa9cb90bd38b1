"""Training CycleGAN generators the reference way (Zhu et al., ICCV 2017; junyanz/pytorch-CycleGAN-and-pix2pix).

`config` holds the typed run configuration, `networks` the reference's discriminators and init, `data` the
unpaired dataset and its preprocessing, `pool` the image history, `trainer` the training state and its step,
`schedule` the lr policies, `finetune` starting from trained generators or a reference checkpoint folder,
`checkpoint` the resumable `last.pt` and the exported generators, `loop` the run itself (progress, budgets,
signals, torchrun), `records` the loss log and sample grids, `plot` the loss curves, `bench_step` the
step-time benchmark. Distillation (issue 12) has `distill_config`, `distill_data`, `distiller` (the losses
and the channel-selection init) and `distill` (the run, on the same machinery).
This package imports `rtstyle`; `rtstyle` never imports it.
"""

from .config import TrainConfig
from .trainer import LOSS_KEYS, CycleGANTrainer, lr_factor

__all__ = ["LOSS_KEYS", "CycleGANTrainer", "TrainConfig", "lr_factor"]
