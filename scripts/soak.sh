#!/usr/bin/env bash
# The soak: a stack of its own (free ports, fresh state on tmpfs, stopped by its process group,
# like scripts/bench.sh), then a bounded run of mixed load on loopback (scripts/soak.py: /v1/ask
# hits, misses and streams, both drop-ins JSON and streamed, 429s, 402s, revocations, account
# deletions), then the checks: zero 5xx and no hung request, the workerd processes' RSS flat
# after warm-up (the curve is printed), and per-account conservation of credits.
#   soak.sh [minutes]        (default 10; fractions such as 0.5 work)
# Env: SOAK_THREADS (concurrent clients, default 4), SOAK_SAMPLE_S (RSS sampling, default 10),
#      SOAK_ONLY (a part of the mix only: hit,miss,stream,chat,messages,free,poor,revoke,delete,read),
#      SOAK_STATE_ROOT (default /dev/shm if writable, else target/soak-state),
#      SOAK_KEEP_INSPECTOR (1: leave wrangler's DevTools Network tracing on).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
minutes="${1:-10}"
seconds=$(python3 -c "import sys; m=float(sys.argv[1]); assert 0 < m <= 240; print(int(m*60))" "$minutes") \
  || { echo "usage: soak.sh [minutes] (0 < minutes <= 240)" >&2; exit 2; }
if [ -z "${SOAK_STATE_ROOT:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then SOAK_STATE_ROOT=/dev/shm; else SOAK_STATE_ROOT="$ROOT/target/soak-state"; fi
fi
export ADMIN_TOKEN="soak-admin-$$-$RANDOM"

bash scripts/setup.sh >/dev/null
[ -f build/worker/entry.mjs ] && [ -f broker/build/worker/entry.mjs ] || bash scripts/build.sh --dev-hooks all
[ -x target/release/mock-provider ] || cargo build --release -p mock-provider

stack=""; work=""
cleanup() {
  if [ -n "$stack" ]; then kill -- -"$stack" 2>/dev/null || true; wait "$stack" 2>/dev/null || true; fi
  if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); mock_port=$(free_port); inspector=$(free_port)
work="$SOAK_STATE_ROOT/edge-gateway-soak-$$"
rm -rf "$work"; mkdir -p "$work"
# A private copy of what the stack runs, so a rebuild meanwhile does not reload it mid-run.
snap="$work/root"
mkdir -p "$snap/broker" "$snap/target/release"
cp -r scripts migrations wrangler.toml Cargo.lock build "$snap/"
cp -r broker/build broker/wrangler.*.toml "$snap/broker/"
cp target/release/mock-provider "$snap/target/release/"
ln -s "$ROOT/node_modules" "$snap/node_modules"
WRANGLER_LOG_PATH="$work/wrangler-logs" \
  setsid bash "$snap/scripts/stack.sh" "$work/state" "$port" "$mock_port" "$inspector" >"$work/stack.log" 2>&1 &
stack=$!
base="http://127.0.0.1:$port"
up=0
for _ in $(seq 1 600); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then up=1; break; fi
  kill -0 "$stack" 2>/dev/null || break
  sleep 0.5
done
if [ "$up" != 1 ]; then echo "the stack did not come up on $base:" >&2; tail -50 "$work/stack.log" >&2; exit 1; fi
# wrangler's inspector proxy enables DevTools Network tracing on one of the stack's Workers
# (docs/DECISIONS.md, load benchmarks); as in bench.sh it is turned off, unless
# SOAK_KEEP_INSPECTOR=1, so the figures are the Workers' own.
tracing="left on (SOAK_KEEP_INSPECTOR=1)"
if [ "${SOAK_KEEP_INSPECTOR:-0}" != 1 ]; then
  tracing=$(node -e '
    const [wsPath, port] = process.argv.slice(1);
    const ws = new (require(wsPath))(`ws://127.0.0.1:${port}/ws`);
    const timer = setTimeout(() => { console.log("NOT disabled (timeout)"); process.exit(0); }, 20000);
    ws.on("open", () => ws.send(JSON.stringify({ id: 1, method: "Network.disable" })));
    ws.on("message", (m) => {
      const d = JSON.parse(m);
      if (d.id !== 1) return;
      console.log(d.error ? "NOT disabled: " + JSON.stringify(d.error) : "disabled");
      clearTimeout(timer); ws.close();
    });
    ws.on("error", (e) => { console.log("NOT disabled: " + e.message); process.exit(0); });
  ' "$ROOT/node_modules/ws" "$inspector" 2>&1 || echo "NOT disabled")
fi
echo "== soak: $minutes min of mixed load on $base (stack process group $stack, state in $work; inspector Network tracing: $tracing)"
status=0
python3 scripts/soak.py "$base" "$ADMIN_TOKEN" "$seconds" "$stack" "$work" || status=$?
mkdir -p target
cp "$work/soak-result.json" target/soak-result.json 2>/dev/null || true
if grep -q "Uncaught\|panicked" "$work/stack.log"; then
  echo "the stack's log has uncaught errors or panics:"; grep -m5 "Uncaught\|panicked" "$work/stack.log"
  status=1
fi
exit "$status"
