#!/usr/bin/env bash
# Screenshot of a study's HTML report for docs/: writes the report, then renders it in headless Chromium.
#   bash scripts/report_screenshot.sh [STUDY] [OUT.png] [STORAGE_URL]
# Defaults: study "demo", docs/report.png, the study's default storage (runs/<study>/study.db).
# Needs Chromium (Debian: apt-get install -y chromium). WIDTH and HEIGHT (pixels) size the page.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY=${1:-demo}
OUT=${2:-docs/report.png}
STORAGE=${3:-}
WIDTH=${WIDTH:-1400}
HEIGHT=${HEIGHT:-2600}
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "error: chromium not found: install it (apt-get install -y chromium)" >&2
  exit 2
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
HTML="$WORK/report.html"
unetnas report --study "$STUDY" ${STORAGE:+--storage "$STORAGE"} --out "$HTML" >/dev/null
mkdir -p "$(dirname "$OUT")"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$WORK/profile" \
  --window-size="$WIDTH,$HEIGHT" --virtual-time-budget=10000 --screenshot="$OUT" "file://$HTML" >/dev/null 2>&1
test -s "$OUT"
echo "wrote $OUT"
