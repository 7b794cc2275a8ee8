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
source "$(dirname "$0")/private-stack.sh"
cd "$ROOT"
minutes="${1:-10}"
seconds=$(python3 -c "import sys; m=float(sys.argv[1]); assert 0 < m <= 240; print(int(m*60))" "$minutes") \
  || { echo "usage: soak.sh [minutes] (0 < minutes <= 240)" >&2; exit 2; }
if [ -z "${SOAK_STATE_ROOT:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then SOAK_STATE_ROOT=/dev/shm; else SOAK_STATE_ROOT="$ROOT/target/soak-state"; fi
fi
export ADMIN_TOKEN="soak-admin-$$-$RANDOM"

bash scripts/setup.sh >/dev/null
# Always built, as bench.sh and test.sh do: build/ may hold a production build (deploy.sh's
# dry run, bench.sh's section z), which has no test hooks.
bash scripts/build.sh --dev-hooks all
cargo build --release -q -p mock-provider

stack=""; work=""
cleanup() {
  if [ -n "$stack" ]; then kill -- -"$stack" 2>/dev/null || true; wait "$stack" 2>/dev/null || true; fi
  if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

work="$SOAK_STATE_ROOT/edge-gateway-soak-$$"
rm -rf "$work"; mkdir -p "$work"
start_private_stack "$work"
if ! wait_up "$base" "$stack" 600; then echo "the stack did not come up on $base:" >&2; tail -50 "$work/stack.log" >&2; exit 1; fi
# wrangler's inspector proxy enables DevTools Network tracing on one of the stack's Workers
# (docs/DECISIONS.md, load benchmarks); as in bench.sh it is turned off, unless
# SOAK_KEEP_INSPECTOR=1, so the figures are the Workers' own. (Debugger and Runtime stay on:
# the soak reads the Workers' console output in the stack's log.)
tracing="left on (SOAK_KEEP_INSPECTOR=1)"
if [ "${SOAK_KEEP_INSPECTOR:-0}" != 1 ]; then
  tracing=$(disable_devtools "$inspector" Network)
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
