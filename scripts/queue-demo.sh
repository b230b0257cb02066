#!/usr/bin/env bash
# The queue path on this machine: moto (a local SQS + S3 stand-in) on 127.0.0.1, then
# `rayscribe infra up`, `submit` the bundled samples, `worker --drain` on an embedded Ray cluster, `status`.
# Nothing leaves the machine. See docs/queue.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/offline-env.sh

PORT="${MOTO_PORT:-$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
MOTO_LOG="$(mktemp -t rayscribe-moto.XXXXXX)"
.venv/bin/moto_server -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  .venv/bin/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/moto-api/data.json', timeout=2)" 2>/dev/null && break
  kill -0 "$MOTO_PID" 2>/dev/null || { cat "$MOTO_LOG"; exit 1; }
  sleep 0.2
done

# Standard AWS variables pointing at moto; production sets real credentials and no endpoint.
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
export RAYSCRIBE_INPUT_BUCKET=rayscribe-demo-in RAYSCRIBE_OUTPUT_BUCKET=rayscribe-demo-out
export RAYSCRIBE_QUEUE_NAME=rayscribe-demo RAYSCRIBE_HIGH_PRIORITY_QUEUE_NAME=rayscribe-demo-high
export RAYSCRIBE_DLQ_NAME=rayscribe-demo-dlq

RS=.venv/bin/rayscribe
$RS infra up
$RS infra validate
JOBS=$($RS submit samples/ | cut -f1)
$RS worker --drain "$@"
# shellcheck disable=SC2086
$RS status $JOBS
$RS dlq list
