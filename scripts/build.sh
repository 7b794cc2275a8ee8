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
case "$what" in
  gateway) build "$ROOT" ;;
  broker) build "$ROOT/broker" ;;
  all) build "$ROOT"; build "$ROOT/broker" ;;
  *) echo "usage: build.sh [gateway|broker|all]" >&2; exit 2 ;;
esac
