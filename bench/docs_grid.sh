#!/usr/bin/env bash
# Train the tiny preset on the built-in world on CPU long enough to draw prompted colours and shapes,
# then sample a grid for docs/. About 30 minutes on 2 CPU cores.
#   bash bench/docs_grid.sh [HORIZON_FLOPS]
set -euo pipefail
HORIZON=${1:-1e14}
OUT=runs/docs-tiny
if [ -d "$OUT/checkpoint" ]; then RESUME=--resume; else RESUME=; fi
unetnas trial tiny --horizon "$HORIZON" --out "$OUT" $RESUME --json | tee "$OUT.json"
unetnas sample --checkpoint "$OUT" --steps 50 --cfg 4 -n 8 --seed 0 --out docs/tiny-samples.png \
  --prompt "a red circle" \
  --prompt "a large blue square" \
  --prompt "two green triangles" \
  --prompt "a yellow circle left of a red square" \
  --prompt "a small magenta diamond above a cyan circle"
