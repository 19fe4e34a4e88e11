#!/usr/bin/env bash
# Create .venv-peers: unetnas with the peers' schedulers (Syne Tune, SMAC3, DEHB) for the search-efficiency
# benchmark (bench/peers/). A venv of its own because DEHB pins numpy < 2 (the project's .venv keeps numpy 2).
# torch goes in first as the CPU build (torch==2.13.0), so pip never pulls a multi-GB CUDA wheel. Then:
#   .venv-peers/bin/python -m bench search-efficiency --methods all ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-peers/bin/python ] || "$PY" -m venv .venv-peers
. .venv-peers/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e '.[test,peers]'
python -c "from importlib.metadata import version as v; print('peers:', *(p + ' ' + v(p) for p in ('syne-tune', 'smac', 'dehb')))"
