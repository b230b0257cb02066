#!/usr/bin/env bash
# Set up every extra the tests need, then run lint, types, the import contracts (lint-imports) and the test
# suite (which starts its own Ray cluster and stops it). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev whisperx voxtral
source scripts/offline-env.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
