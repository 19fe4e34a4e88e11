#!/usr/bin/env bash
# The ground truth v2 (issue 18), resumable: rerun this script after any interruption and it continues where the
# runs stopped (per-run checkpoints and rows in runs/ground-truth-v2/, keyed by spec, recipe and seed).
#   1. the pilot: 5 reading designs spread over GMACs + the text-blind control, seeds 0 and 1, breadth-first over
#      the checkpoints (every run to 512 samples, then every run to 1024, ...) -> bench/data/gt-tiny-plus-v2-pilot.json
#   2. the full table: every member of space/tiny-plus.yaml (69 reading + the control), seeds 0 and 1, a third seed
#      for 12 designs spread over GMACs, seed 0 of every design first -> bench/data/gt-tiny-plus-v2.json
#      (the pilot's 12 runs are the full table's first runs: same specs, recipe, seeds and checkpoints, reused).
# Equal training samples (trials/samples.yaml), checkpoints 512 .. 16,384 samples (ratio 2), validation loss at all
# six, alignment (128 prompts) from 2,048 samples on. Why: bench/data/README.md, "gt-tiny-plus-v2".
# Cost: `python -m bench ground-truth --space space/tiny-plus.yaml --align-from 2 --dry-run` (~2.3e15 FLOPs).
# One thread: on 2 shared, loaded cores OpenMP's spinning team of 2 is far slower (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} UNETNAS_THREADS=${UNETNAS_THREADS:-1}
COMMON=(--space space/tiny-plus.yaml --unit samples --horizon 16384 --checkpoints 6 --ratio 2 --prompts 128
        --align-from 2)
python -m bench ground-truth "${COMMON[@]}" --pilot 5
python -m bench ground-truth "${COMMON[@]}" --seeds 2 --extra-seeds 12
