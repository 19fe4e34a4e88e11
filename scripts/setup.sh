#!/usr/bin/env bash
# Create .venv and install unetnas with its test extras. On machines without CUDA, torch is installed first as the
# CPU build (torch==2.13.0), so pip never pulls a multi-GB CUDA wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then pip install -q torch; else pip install -q torch==2.13.0; fi
fi
pip install -q -e '.[test,postgres]'
