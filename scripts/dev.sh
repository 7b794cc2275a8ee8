#!/usr/bin/env bash
# The README's run command: sets up the toolchain if needed, builds, then runs the gateway and
# the four brokers in one `wrangler dev` (local D1/KV/Cache/Durable Objects under .state/dev)
# with the mock provider server beside it, at http://127.0.0.1:8787 with ADMIN_TOKEN=dev-admin-token.
# Prints a demo account's API key, a curl line and the dashboard's URL. Ctrl-C stops everything.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh --dev-hooks all
cargo build --release -p mock-provider -q

PORT="${PORT:-8787}"
MOCK_PORT="${MOCK_PORT:-8790}"
STATE="$ROOT/.state/dev"
export ADMIN_TOKEN="${ADMIN_TOKEN:-dev-admin-token}"
# This command alone sends a provider's calls to its real API when its key is set
# (scripts/devconfig.py); the test, benchmark and soak stacks never do.
export DEV_REAL_PROVIDER_KEYS=1

base="http://127.0.0.1:$PORT"
# Another server on the port would be taken for this one (and given the demo account).
if curl -fsS -m 2 "$base/healthz" >/dev/null 2>&1 || curl -sS -m 2 -o /dev/null "$base/" 2>/dev/null; then
  echo "port $PORT is already in use: stop what runs there, or run with PORT=<another port>" >&2
  exit 1
fi

setsid bash scripts/stack.sh "$STATE" "$PORT" "$MOCK_PORT" "${INSPECTOR_PORT:-9239}" &
stack=$!
trap 'kill -- -"$stack" 2>/dev/null || true; wait "$stack" 2>/dev/null || true' INT TERM EXIT

for _ in $(seq 1 120); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$stack" 2>/dev/null || { echo "the stack failed to start" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$base/healthz" >/dev/null || { echo "gateway did not come up on $base" >&2; exit 1; }

admin=(-H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json")
account=$(curl -fsS "${admin[@]}" -d '{"tier":"pro","credits":100000}' "$base/admin/accounts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["account_id"])')
key=$(curl -fsS "${admin[@]}" -d '{"name":"demo","mode":"live"}' "$base/admin/accounts/$account/keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

# An admin token of the caller's own (exported, perhaps a production one) is not printed.
shown_token="$ADMIN_TOKEN"
[ "$ADMIN_TOKEN" = dev-admin-token ] || shown_token='$ADMIN_TOKEN, as exported'

cat <<MSG

Gateway: $base  (admin token: $shown_token; mock providers unless real *_API_KEY are set)
Demo account: $account
Demo API key: $key
Dashboard: $base/dashboard  (log in with the demo API key)

Try:
curl -s $base/v1/ask -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d '{"prompt":"What is the capital of France?","providers":["openai","anthropic","gemini","perplexity"]}'

Ctrl-C stops the gateway, the brokers and the mock server.
MSG
wait "$stack"
