#!/usr/bin/env bash
# Set up (idempotent) and run the test suite on 2 workers. GPU-only tests skip without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export UNETNAS_CACHE=${UNETNAS_CACHE:-$HOME/.cache/unetnas}
ruff check . && ruff format --check .  # the house style (pyproject.toml [tool.ruff])
python -m pytest -n 2 -q -m "not slow" "$@"  # `-m slow`: 85 more paper-space cost checks
