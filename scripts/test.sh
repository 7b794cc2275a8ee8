#!/usr/bin/env bash
# The README's test command: sets up what is missing, builds the Workers and the mock server,
# then runs every test: native unit and property tests of the pure crates, the mock server's
# tests, and the integration tests (which start their own stack on free ports with fresh state
# and stop it when they finish; the official SDKs' and the browser's tests run among them). Extra arguments go to the integration test binary.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
started=$(date +%s)
bash scripts/setup.sh
bash scripts/build.sh --dev-hooks all
cargo build --release -p mock-provider
echo "== unit, property and fixture tests (native)"
cargo test -p gateway-core -p gateway-canonical -p mock-provider -p gateway-benches
echo "== integration tests (wrangler dev + mock providers)"
cargo test -p integration-tests -- "$@"
echo "== all tests passed in $(( $(date +%s) - started )) s"
