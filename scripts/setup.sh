#!/usr/bin/env bash
# Create .venv from the lock file with uv. Usage: scripts/setup.sh [extra ...]  (e.g. dev whisperx)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi
args=()
for extra in "$@"; do args+=(--extra "$extra"); done
uv sync --frozen --inexact --python "${RAYSCRIBE_PYTHON:-3.11}" "${args[@]}"
