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
# Two pytest workers, a test file each at a time (--dist loadfile keeps a module's fixtures in one process): one
# overlaps the other's waits on processes, clusters and servers (on 2 cores, 19-21 min instead of 25; they contend for
# the CPU the rest of the time). Each worker has its own session: its own Ray head, moto server and Serve
# instance. RAYSCRIBE_TEST_WORKERS=0 runs in one process.
.venv/bin/python -m pytest -n "${RAYSCRIBE_TEST_WORKERS:-2}" --dist loadfile "$@"
