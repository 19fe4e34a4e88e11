#!/usr/bin/env bash
# Time the README demo's search + export as a new user meets them: a fresh clone of this checkout's HEAD, an empty
# caption cache (the world's captions encoded as on a new machine), this checkout's .venv for the packages (pip's
# install time is not the demo's). Stop other jobs first: the figure is only meaningful on idle cores.
#   bash bench/demo_time.sh            (WORKERS=1 for the one-process search)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/unetnas-demo-time}
rm -rf "$WORK" && mkdir -p "$WORK" && git clone -q "$ROOT" "$WORK/clone" && cd "$WORK/clone"
. "$ROOT/.venv/bin/activate"
export PYTHONPATH=$PWD UNETNAS_CACHE=$WORK/cache
uptime
t0=$(date +%s)
unetnas search --budget 3e13 --study demo --workers "${WORKERS:-2}" --json > "$WORK/search.json" 2> "$WORK/search.err"
t1=$(date +%s)
unetnas export --study demo --out runs/demo/exported > "$WORK/export.out" 2>&1
t2=$(date +%s)
uptime
echo "search_s=$((t1 - t0)) export_s=$((t2 - t1)) total_s=$((t2 - t0))"
python -c "import json, sys; d = json.load(open(sys.argv[1])); print({k: d.get(k) for k in ('budget', 'spent', 'n_trials', 'n_complete', 'n_pruned', 'reason', 'workers')})" "$WORK/search.json"
