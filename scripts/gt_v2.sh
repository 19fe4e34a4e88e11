#!/usr/bin/env bash
# The ground truth v2 (issue 18), resumable: rerun this script after any interruption and it continues where the
# runs stopped (per-run checkpoints and rows in runs/ground-truth-v2-fp32/, keyed by spec, recipe and seed; the pilot:
# runs/ground-truth-v2/). On the GPU machine of this workplace: scripts/device/gt_v2_gpu.sh (467 s for 96 runs).
#   1. the pilot: 5 reading designs spread over GMACs + the text-blind control, seeds 0 and 1, breadth-first over
#      the checkpoints (every run to 512 samples, then every run to 1024, ...) -> bench/data/gt-tiny-plus-v2-pilot.json
#      (`scripts/gt_v2.sh pilot`)
#   2. the full table: every member of space/tiny-plus.yaml (69 reading + the control), seeds 0 and 1, a third seed
#      for 12 designs spread over GMACs, seed 0 of every design first -> bench/data/gt-tiny-plus-v2.json
# Equal training samples (trials/samples.yaml), checkpoints 256 .. 8,192 samples (ratio 2), validation loss at all
# six, alignment (128 prompts) from 1,024 samples on. Why: bench/data/README.md, "gt-tiny-plus-v2".
# Extra arguments go to the full table (e.g. --processes 2, --deadline-s 3600). --seed-rows: a fresh clone resumes
# from the committed table (its runs are written into runs/ first, not trained again).
# Cost: `scripts/gt_v2.sh --dry-run` (1.3e15 FLOPs: ~37 h at 10 GFLOP/s on CPU; 96 runs took 467 s on one H200).
# One thread: on 2 shared, loaded cores OpenMP's spinning team of 2 is far slower (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} UNETNAS_THREADS=${UNETNAS_THREADS:-1}
# GT: how the table is run (scripts/device/gt_v2_gpu.sh runs it through its encoder guard, same protocol)
read -r -a GT <<< "${GT:-python -m bench ground-truth}"
COMMON=(--space space/tiny-plus.yaml --unit samples --prompts 128)
if [ "${1:-}" = pilot ]; then  # the pilot as it ran (fp32 on CPU by the recipe's "auto"), checkpoints 512 .. 16,384
  "${GT[@]}" "${COMMON[@]}" --horizon 16384 --checkpoints 6 --ratio 2 --align-from 2 --pilot 5
  exit
fi
# the full table: checkpoints 256 .. 8,192 (the pilot: the ranking holds to 8,192 and is gone at 16,384), fp32 on
# any device (runs measured on the H200 by scripts/device/gt_v2_gpu.sh and here share keys and rows)
"${GT[@]}" "${COMMON[@]}" --horizon 8192 --checkpoints 6 --ratio 2 --align-from 2 --seeds 2 \
  --extra-seeds 12 --precision fp32 --work runs/ground-truth-v2-fp32 --seed-rows "$@"
