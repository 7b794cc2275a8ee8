#!/usr/bin/env bash
# Lints: rustfmt and clippy (-D warnings) for the native crates and, for wasm32, the two Workers and
# what they share.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
cargo fmt --all -- --check
cargo clippy -p gateway-core -p mock-provider -p gateway-benches -p integration-tests --all-targets -- -D warnings
cargo clippy --target wasm32-unknown-unknown -p edge-gateway -p provider-broker -p worker-shared -- -D warnings
echo "check: ok"
