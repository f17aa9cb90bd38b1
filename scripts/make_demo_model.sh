#!/usr/bin/env bash
# Reproduces the bundled demo model rtstyle/assets/demo.safetensors (photo -> vintage) on a CPU.
#
# One thread: on a 2-core machine with anything else running, PyTorch's two OpenMP threads spend most of
# each small step waiting for each other (measured: 1.8 s/step with 2 threads vs 0.16-0.33 s/step with 1).
# The run is seeded and `train` is deterministic on the CPU (resume included), so these commands give the
# same weights.
#
# Two phases, because that is how the model was made: a 15 + 15 epoch schedule (12,000 steps) was planned,
# and at step 9,000 its linear decay was stretched to 30 epochs (18,000 steps in all) with --resume, since
# quality was still improving. Phase 1 stops exactly where that happened.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DATA=${DATA:-datasets/demo}
OUT=${OUT:-runs}

[ -d "$DATA" ] || $PY cli.py datasets make-demo --out "$DATA" --seed 0
OMP_NUM_THREADS=1 $PY cli.py train --dataroot "$DATA" --name demo --out "$OUT" --names photo,vintage \
  --ngf 16 --n-blocks 6 --ndf 32 --load-size 104 --crop-size 96 --lambda-identity 2.0 --precision auto \
  --epochs 15 --epochs-decay 15 --num-workers 0 --seed 0 --save-every 1000 --sample-every 2000 --max-steps 9000
OMP_NUM_THREADS=1 $PY cli.py train --resume --dataroot "$DATA" --name demo --out "$OUT" \
  --epochs-decay 30 --max-steps 18000
$PY - "$OUT/demo/G_A.safetensors" rtstyle/assets/demo.safetensors <<'PYEOF'
import sys
from dataclasses import replace
from rtstyle import load_model, save_generator
generator, info = load_model(sys.argv[1])
command = "scripts/make_demo_model.sh (datasets make-demo --seed 0; train --name demo ...; resume; G_A)"
save_generator(generator, sys.argv[2], replace(info, name="demo", train_size=96, extra={**info.extra, "command": command}))
print(f"bundled {sys.argv[1]} as {sys.argv[2]} ({info.direction})")
PYEOF
$PY cli.py evaluate --model demo --dataroot "$DATA" --backend torch --precision fp32
