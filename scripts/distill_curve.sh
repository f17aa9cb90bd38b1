#!/bin/sh
# Issue 12 measurement recipe (run 2026-12-01/02 on the 2-core AMD EPYC Zen 4, one thread per job, two jobs
# side by side): two teachers trained by `cli.py train` on the demo dataset with the resize upsampler (the
# full-size ngf-64 9-block generator and an ngf-32 one), then students distilled from them with a linear
# learning-rate decay. fidelity.csv in each student's run folder is the curve (PSNR/SSIM of the student's
# output against the teacher's on held-out images, against minutes). BENCHMARKS.md has the figures; they were
# measured on the demo dataset as it was then (commit 7aa7842: domain B other photos through the sepia
# 'vintage' print transform, since replaced by `thermal`), so this script reproduces them at that commit.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs}
DATA=${DATA:-$OUT/datasets/demo}
export OMP_NUM_THREADS=1
case "$OUT" in /*) out_dir=$OUT ;; *) out_dir=$PWD/$OUT ;; esac
export RTSTYLE_HOME="${RTSTYLE_HOME:-$out_dir/home}"
[ -d "$DATA" ] || $PY cli.py datasets make-demo --out "$DATA" --seed 0

teacher() {  # NAME NGF EPOCHS: EPOCHS constant + EPOCHS decaying (400 steps each), at most 55 minutes
  $PY cli.py train --dataroot "$DATA" --name "$1" --out "$OUT" --names photo,thermal --ngf "$2" --n-blocks 9 \
    --upsample resize --load-size 104 --crop-size 96 --lambda-identity 2.0 --precision auto --epochs "$3" \
    --epochs-decay "$3" --num-workers 0 --seed 0 --save-every 200 --sample-every 1000 --log-every 50 --max-minutes 55
}
student() {  # NAME TEACHER NGF STEPS: STEPS steps, the second half decaying, at most 30 minutes
  $PY cli.py distill --teacher "$OUT/$2/G_A.safetensors" --dataroot "$DATA" --name "$1" --out "$OUT" \
    --student-ngf "$3" --student-blocks 6 --upsample resize --load-size 104 --crop-size 96 --holdout 16 \
    --eval-size 144 --num-workers 0 --max-steps "$4" --lr-decay-steps $(($4 / 2)) --max-minutes 30 \
    --eval-every 500 --save-every 500 --sample-every 1000 --log-every 100
}

teacher t64 64 2 & teacher t32 32 5 & wait
student s16 t64 16 "${STEPS16:-8000}" & student s8 t64 8 "${STEPS8:-9000}" & wait
