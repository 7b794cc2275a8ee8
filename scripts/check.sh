#!/usr/bin/env bash
# Lints: rustfmt and clippy (-D warnings) for the native crates and, for wasm32, the two Workers
# (the gateway both as deployed and with its `dev-hooks` test build's feature), and what they share.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
cargo fmt --all -- --check
cargo clippy -p gateway-core -p gateway-canonical -p mock-provider -p gateway-benches -p integration-tests --all-targets -- -D warnings
cargo clippy -p gateway-core --all-targets --features dev-hooks -- -D warnings
cargo clippy --target wasm32-unknown-unknown -p edge-gateway -p provider-broker -p worker-shared -p bench-reference-rust -- -D warnings
cargo clippy --target wasm32-unknown-unknown -p edge-gateway --features dev-hooks -- -D warnings
# The production build (what `wrangler deploy` runs) holds no test hook: none of the dev-only
# names a `dev-hooks` build carries (scripts/dev-hooks.txt, shared with deploy.sh) is in its wasm.
bash scripts/build.sh gateway >/dev/null
while read -r hook; do
  if grep -a -q -- "$hook" build/index_bg.wasm; then
    echo "check: the production build holds the test hook $hook" >&2
    exit 1
  fi
done < <(grep -v -e '^#' -e '^$' scripts/dev-hooks.txt)
echo "check: ok"
