#!/usr/bin/env bash
# The image's entrypoint: one container, one role.
#
#   worker [ARGS]   rayscribe worker ARGS  (the SQS queue worker)
#   serve [ARGS]    rayscribe serve ARGS   (the HTTP API; the default)
#   ray [ARGS]      ray ARGS               (the Ray CLI, e.g. `ray start --head --block`; a health endpoint on
#                                           RAYSCRIBE_HEALTH_PORT beside it)
#   COMMAND [ARGS]  any other command on PATH, run as is (the Ray cluster launcher starts the container with
#                   `bash`, then runs its commands with `docker exec`)
#
# The mode and the main process id go to $RAYSCRIBE_STATE_DIR/rayscribe-mode so the health check knows what to
# check (serve: GET /health on RAYSCRIBE_SERVE_PORT; worker and ray: on RAYSCRIBE_HEALTH_PORT, default 8080); `exec`
# keeps that process id and lets signals (docker stop) reach the program.
set -euo pipefail

state_dir="${RAYSCRIBE_STATE_DIR:-/tmp}"
usage="modes: worker | serve | ray | a command on PATH (e.g. bash)"

# A model baked in at build time (docker build --build-arg WHISPER_MODEL=...), unless RAYSCRIBE_MODEL is set.
model_profile="${RAYSCRIBE_MODEL_PROFILE:-/etc/profile.d/rayscribe-model.sh}"
if [ -r "$model_profile" ]; then
  # shellcheck source=/dev/null
  . "$model_profile"
fi

mode="${1:-serve}"
[ "$#" -gt 0 ] && shift

record() {
  mkdir -p "$state_dir"
  printf '%s %s\n' "$1" "$$" > "$state_dir/rayscribe-mode"
}

case "$mode" in
  worker|serve)
    record "$mode"
    echo "rayscribe-entrypoint: starting rayscribe $mode" >&2
    exec rayscribe "$mode" "$@"
    ;;
  ray)
    record ray
    # The node's health endpoint (rayscribe/node_health.py) on RAYSCRIBE_HEALTH_PORT (0: off), in the background;
    # it watches this process id, which `exec` hands to ray.
    health_port="${RAYSCRIBE_HEALTH_PORT:-8080}"
    if [ "$health_port" != "0" ]; then
      "${RAYSCRIBE_PYTHON:-python}" -m rayscribe.node_health --pid "$$" --port "$health_port" &
    fi
    exec ray "$@"
    ;;
  -h|--help|help)
    echo "usage: rayscribe-entrypoint MODE [ARGS...]; $usage" >&2
    exit 0
    ;;
  *)
    if command -v -- "$mode" >/dev/null 2>&1; then
      record exec
      exec "$mode" "$@"
    fi
    echo "rayscribe-entrypoint: unknown mode or command '$mode'; $usage" >&2
    exit 64
    ;;
esac
