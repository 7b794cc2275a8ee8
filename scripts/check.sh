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
echo "check: ok"
