#!/usr/bin/env bash
# Reproduces the bundled demo model rtstyle/assets/demo.safetensors (photo -> thermal) on a CPU: a distilled
# student (ngf 16, 6 blocks, resize upsampler) of a full-size teacher (ngf 64, 9 blocks, resize upsampler)
# that `cli.py train` learnt on the demo dataset the CycleGAN way (issue 12).
#
# One thread per job: on a 2-core machine with anything else running, PyTorch's two OpenMP threads spend most
# of each small step waiting for each other. The budget as run (2026-12-02, AMD EPYC Zen 4, bf16 by
# --precision auto, on one core while the other did lighter work): the teacher 47 minutes (1,155 of its
# 1,200 scheduled steps at 96 px crops; --max-minutes stopped it near the end of its decay), the student 16
# minutes (6,000 steps). Training is deterministic on the CPU for a given number of steps; --max-minutes makes
# the step count depend on the machine, so pass TEACHER_STEPS=1155 to stop the teacher exactly where the
# bundled one stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DATA=${DATA:-datasets/demo}
OUT=${OUT:-runs}
export OMP_NUM_THREADS=1
case "$OUT" in /*) out_dir=$OUT ;; *) out_dir=$PWD/$OUT ;; esac
export RTSTYLE_HOME="${RTSTYLE_HOME:-$out_dir/home}"  # the student is installed here, not in the user's store

[ -d "$DATA" ] || $PY cli.py datasets make-demo --out "$DATA" --seed 0
if [ -n "${TEACHER_STEPS:-}" ]; then stop=(--max-steps "$TEACHER_STEPS"); else stop=(--max-minutes 47); fi
$PY cli.py train --dataroot "$DATA" --name t64 --out "$OUT" --names photo,thermal --ngf 64 --n-blocks 9 \
  --upsample resize --load-size 104 --crop-size 96 --lambda-identity 2.0 --precision auto --epochs 1 \
  --epochs-decay 2 --num-workers 0 --seed 0 --save-every 200 --sample-every 1000 --log-every 50 \
  "${stop[@]}"
$PY cli.py distill --teacher "$OUT/t64/G_A.safetensors" --dataroot "$DATA" --name s16 \
  --out "$OUT" --student-ngf 16 --student-blocks 6 --upsample resize --load-size 104 --crop-size 96 --holdout 16 \
  --eval-size 144 --num-workers 0 --max-steps 6000 --lr-decay-steps 3000 --eval-every 500 --save-every 500 \
  --sample-every 1000 --log-every 100
$PY - "$OUT/s16/student.safetensors" rtstyle/assets/demo.safetensors <<'PYEOF'
import sys
from dataclasses import replace
from rtstyle import load_model, save_generator
generator, info = load_model(sys.argv[1])
command = ("scripts/make_demo_model.sh (datasets make-demo --seed 0; train --name t64 --ngf 64 "
           "--upsample resize ...; distill --name s16 ...)")
save_generator(generator, sys.argv[2], replace(info, name="demo", train_size=96, extra={**info.extra, "command": command}))
print(f"bundled {sys.argv[1]} as {sys.argv[2]} ({info.direction})")
PYEOF
$PY cli.py evaluate --model demo --dataroot "$DATA" --backend torch --precision fp32
