#!/usr/bin/env bash
# Set up (idempotent) and run the CPU demo: a complete FLOPs-budgeted search of space/tiny.yaml on the built-in
# world (no GPU, network or database server), then export the Pareto designs, on 2 worker processes: 7.4 min of
# search and export from a fresh clone on 2 idle cores (one process took 14.1 min of search before; BENCHMARKS.md).
# The budget buys candidates (Hyperband brackets; `unetnas search --budget 3e13 --dry-run` shows them), never longer
# trials: the horizons come from trials/short.yaml. About a fifth of 3e13 pays for encoding the world's captions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
BUDGET=${BUDGET:-3e13}
STUDY=${STUDY:-demo}
# two single-thread worker processes use 2 cores better than one 2-thread trial (BENCHMARKS.md, issue 16)
WORKERS=${WORKERS:-$(( $(nproc) >= 2 ? 2 : 1 ))}
unetnas search --budget "$BUDGET" --study "$STUDY" --workers "$WORKERS" "$@"
unetnas export --study "$STUDY" --out "runs/$STUDY/exported"
echo "open the study in a browser: . .venv/bin/activate && unetnas dashboard --study $STUDY"
