#!/usr/bin/env bash
# Builds the Workers for wasm32 with worker-build: `gateway`, `broker` or `all` (default).
set -euo pipefail
source "$(dirname "$0")/env.sh"
what="${1:-all}"
# Bake the running commit into the gateway (GET /version).
GIT_COMMIT="$(git -C "$ROOT" rev-parse --verify -q HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -v '^??' || true)" ]; then GIT_COMMIT="$GIT_COMMIT-dirty"; fi
export GIT_COMMIT
build() { (cd "$1" && worker-build --release); }
# Each Worker's entry module wraps the generated one (src/entry.mjs, broker/src/entry.mjs).
worker() { build "$1" && cp "$1/src/entry.mjs" "$1/build/worker/entry.mjs"; }
case "$what" in
  gateway) worker "$ROOT" ;;
  broker) worker "$ROOT/broker" ;;
  all) worker "$ROOT"; worker "$ROOT/broker" ;;
  *) echo "usage: build.sh [gateway|broker|all]" >&2; exit 2 ;;
esac
