#!/usr/bin/env bash
# Measures Palisade and Synapse side by side on this machine with palisade-bench.
#
#   bench/run.sh [palisade-bench options…]     e.g. --members 1000 --rooms 1000
#   SERVERS=synapse bench/run.sh …               only one of the two (default: both)
#   BIN_DIR=/tmp/a SERVERS=palisade bench/run.sh  prebuilt binaries (A/B of two commits)
#
# Builds Palisade in release mode, installs Synapse (PyPI matrix-synapse, SQLite) into a venv,
# starts each on loopback with open registration and no rate limits, runs the same scenarios
# against both, and prints the results (JSON lines start with "JSON ").
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/palisade/target}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# BIN_DIR=<dir holding palisade and palisade-bench> measures prebuilt binaries (an A/B of two
# commits) instead of building this checkout.
if [[ -n "${BIN_DIR:-}" ]]; then
  BIN="$BIN_DIR"
else
  cargo build --release -p palisade -p palisade-bench
  BIN="$CARGO_TARGET_DIR/release"
fi

SERVERS="${SERVERS:-palisade synapse}"
wants() { [[ " $SERVERS " == *" $1 "* ]]; }

ensure_free() {
  if curl -sf "$1/_matrix/client/versions" >/dev/null; then
    echo "something already listens at $1: stop it first" >&2; exit 1
  fi
}

wait_for() {
  for _ in $(seq 1 120); do
    curl -sf "$1/_matrix/client/versions" >/dev/null && return 0
    sleep 0.5
  done
  echo "server at $1 did not start" >&2; exit 1
}

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"

if wants palisade; then
# Palisade: embedded SQLite, open registration, no rate limits.
mkdir -p "$WORK/palisade"
cat > "$WORK/palisade.toml" <<TOML
registration = "open"
data_dir = "$WORK/palisade"
[listen]
client = "127.0.0.1:18008"
[rate_limits.login]
per_second = 100000.0
burst = 100000
[rate_limits.registration]
per_second = 100000.0
burst = 100000
[rate_limits.media_upload]
per_second = 100000.0
burst = 100000
[media]
max_upload_bytes = 4294967296
TOML
ensure_free http://127.0.0.1:18008
RUST_LOG=warn "$BIN/palisade" --config "$WORK/palisade.toml" serve > "$WORK/palisade.log" 2>&1 &
PIDS+=($!); PALISADE_PID=$!
wait_for http://127.0.0.1:18008
"$BIN/palisade-bench" --name palisade --base-url http://127.0.0.1:18008 --pid "$PALISADE_PID" --data "$WORK/palisade" "$@"
kill "$PALISADE_PID"
fi

if wants synapse; then
# Synapse: SQLite, open registration, rate limits out of the way.
PYTHON="$(scripts/synapse-venv.sh)"
mkdir -p "$WORK/synapse"
(cd "$WORK/synapse" && "$PYTHON" -m synapse.app.homeserver --server-name localhost \
  --config-path homeserver.yaml --generate-config --report-stats=no >/dev/null)
LIMIT='{per_second: 100000, burst_count: 100000}'
# The generated file ends without a newline.
echo >> "$WORK/synapse/homeserver.yaml"
cat >> "$WORK/synapse/homeserver.yaml" <<YAML
enable_registration: true
enable_registration_without_verification: true
suppress_key_server_warning: true
trusted_key_servers: []
bcrypt_rounds: 4
rc_message: $LIMIT
rc_registration: $LIMIT
rc_login: {address: $LIMIT, account: $LIMIT, failed_attempts: $LIMIT}
rc_joins: {local: $LIMIT, remote: $LIMIT}
rc_joins_per_room: $LIMIT
rc_invites: {per_room: $LIMIT, per_user: $LIMIT}
rc_presence: {per_user: $LIMIT}
rc_room_creation: $LIMIT
rc_media_create: $LIMIT
max_upload_size: 4G
YAML
sed -i 's/port: 8008/port: 18009/; s/bind_addresses: \[.::1., .127.0.0.1.\]/bind_addresses: ["127.0.0.1"]/' "$WORK/synapse/homeserver.yaml"
ensure_free http://127.0.0.1:18009
cd "$WORK/synapse"
"$PYTHON" -m synapse.app.homeserver --config-path "$WORK/synapse/homeserver.yaml" > "$WORK/synapse.log" 2>&1 &
PIDS+=($!); SYNAPSE_PID=$!
cd - >/dev/null
wait_for http://127.0.0.1:18009
"$BIN/palisade-bench" --name synapse --base-url http://127.0.0.1:18009 --pid "$SYNAPSE_PID" --data "$WORK/synapse/homeserver.db" "$@"
fi
