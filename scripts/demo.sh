#!/usr/bin/env bash
# Set up the core install and transcribe the bundled sample clips on an embedded local Ray cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/offline-env.sh
.venv/bin/rayscribe transcribe samples/ --out out/samples --print --overwrite "$@"
