# Source this before running rayscribe, its tests or its demo on a machine that must not reach the internet.
# Ray probes cloud metadata addresses and posts usage reports unless told not to (see docs/design.md "Pitfalls").
# It gives Ray a HOME that holds ~/ray_bootstrap_config.yaml (which stops the metadata probe) under .cache/.
_rs_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export RAYSCRIBE_HOME_DIR="${RAYSCRIBE_HOME_DIR:-$_rs_root/.cache/home}"
mkdir -p "$RAYSCRIBE_HOME_DIR"
[ -f "$RAYSCRIBE_HOME_DIR/ray_bootstrap_config.yaml" ] || echo '{}' > "$RAYSCRIBE_HOME_DIR/ray_bootstrap_config.yaml"
export UV_CACHE_DIR="${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}"
export HOME="$RAYSCRIBE_HOME_DIR"
export RAY_USAGE_STATS_ENABLED=0
export RAY_USAGE_STATS_REPORT_URL="http://127.0.0.1:9/"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
export AWS_EC2_METADATA_DISABLED=true
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export PYANNOTE_METRICS_ENABLED=0
export DO_NOT_TRACK=1
