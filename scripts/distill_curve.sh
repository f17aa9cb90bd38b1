#!/bin/sh
# Issue 12 measurement recipe (run 2026-12-01 on the 2-core AMD EPYC, one job at a time, one thread):
# a full-size teacher trained by `cli.py train` for 30 min, then two resize students distilled for 27 min each.
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
[ -d runs/datasets/demo ] || .venv/bin/python cli.py datasets make-demo --out runs/datasets/demo
.venv/bin/python cli.py train --dataroot runs/datasets/demo --name teacher64 --out runs --ngf 64 --n-blocks 9 \
  --load-size 112 --crop-size 96 --precision bf16 --num-workers 0 --max-minutes 30 \
  --save-every 50 --sample-every 100 --log-every 10
export RTSTYLE_HOME="$PWD/runs/home"
for spec in "s16 16" "s8 8"; do
  set -- $spec
  .venv/bin/python cli.py distill --teacher runs/teacher64/G_A.safetensors --dataroot runs/datasets/demo \
    --name "$1" --out runs --student-ngf "$2" --student-blocks 6 --upsample resize --load-size 112 --crop-size 96 \
    --holdout 16 --eval-size 144 --num-workers 0 --max-minutes 27 --eval-every 200 --save-every 200 \
    --sample-every 400 --log-every 50
done
