#!/usr/bin/env bash
# Lints: rustfmt and clippy (-D warnings) for the native crates and, for wasm32, the two Workers
# (the gateway both as deployed and with its `dev-hooks` test build's feature), and what they share.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
cargo fmt --all -- --check
cargo clippy -p gateway-core -p mock-provider -p gateway-benches -p integration-tests --all-targets -- -D warnings
cargo clippy -p gateway-core --all-targets --features dev-hooks -- -D warnings
cargo clippy --target wasm32-unknown-unknown -p edge-gateway -p provider-broker -p worker-shared -- -D warnings
cargo clippy --target wasm32-unknown-unknown -p edge-gateway --features dev-hooks -- -D warnings
# The production build (what `wrangler deploy` runs) holds no test hook: none of the dev-only
# names a `dev-hooks` build carries is in its wasm.
bash scripts/build.sh gateway >/dev/null
for hook in x-dev-fail x-dev-auth-cache-delay-ms x-dev-flight DEV_MODE DEV_D1_VALUE_LIMIT DEV_MAX_KEYS_PER_ACCOUNT fail_batches; do
  if grep -a -q -- "$hook" build/index_bg.wasm; then
    echo "check: the production build holds the test hook $hook" >&2
    exit 1
  fi
done
echo "check: ok"
