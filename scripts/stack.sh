#!/usr/bin/env bash
# Runs the whole local system in the foreground: the mock provider server and one `wrangler dev`
# with the gateway and the four brokers, local D1/KV/Cache/Durable Objects under STATE_DIR.
# Usage: stack.sh STATE_DIR GATEWAY_PORT MOCK_PORT INSPECTOR_PORT
# Stops everything it started when it is signalled, or when its parent process goes away.
set -euo pipefail
source "$(dirname "$0")/env.sh"
state="$1"; port="$2"; mock_port="$3"; inspector="$4"
parent="$PPID"
# Workers' console output (scrubbed by the code) goes to the stack's log (STACK_WRANGLER_LOG=warn:
# only their warnings and errors; the benchmark's stack). env.sh's quieter default is for the
# project's other wrangler commands.
export WRANGLER_LOG="${STACK_WRANGLER_LOG:-log}"
# A private dev registry: other wrangler dev processes on the machine (another test run, the
# dev server, one that just exited) must not make this one reload its Workers mid-request.
export WRANGLER_REGISTRY_PATH="$state/registry"
mkdir -p "$state"
cd "$ROOT"

"$ROOT/target/release/mock-provider" --port "$mock_port" &
mock_pid=$!
read -r -a configs <<<"$(python3 scripts/devconfig.py "$state/config" "http://127.0.0.1:$mock_port")"
args=()
for c in "${configs[@]}"; do args+=(-c "$c"); done

wrangler d1 migrations apply DB --local --persist-to "$state/persist" -c "${configs[0]}" >"$state/migrations.log" 2>&1 \
  || { cat "$state/migrations.log" >&2; kill "$mock_pid"; exit 1; }

wrangler dev "${args[@]}" --local --ip 127.0.0.1 --port "$port" --inspector-port "$inspector" \
  --persist-to "$state/persist" --test-scheduled --show-interactive-dev-session=false &
wrangler_pid=$!

stop() {
  trap - INT TERM EXIT
  kill "$wrangler_pid" "$mock_pid" 2>/dev/null || true
  # wrangler's workerd children share our process group.
  kill -- -"$$" 2>/dev/null || true
}
trap stop INT TERM EXIT
while kill -0 "$parent" 2>/dev/null && kill -0 "$wrangler_pid" 2>/dev/null && kill -0 "$mock_pid" 2>/dev/null; do
  sleep 1
done
