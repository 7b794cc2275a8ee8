#!/usr/bin/env bash
# Builds the Workers for wasm32 with worker-build: `gateway`, `broker` or `all` (default), or
# `reference`, the load benchmark's Rust reference (benches/reference-rust, scripts/bench.sh d.).
#   build.sh [--dev-hooks] [gateway|broker|all|reference]
# Without `--dev-hooks` this is the production build (what wrangler.toml's `[build]` command runs
# for a deploy): the gateway has no test hooks at all. `--dev-hooks` builds the gateway with its
# cargo feature `dev-hooks` (the /__dev routes, the Durable Objects' test-only operations, the
# x-dev-* headers and DEV_* overrides, each still gated at run time by DEV_MODE=1): the build the
# test, dev and bench scripts run. The broker has no such feature and builds the same either way.
set -euo pipefail
source "$(dirname "$0")/env.sh"
gateway_args=()
production=1
what=all
for arg in "$@"; do
  case "$arg" in
    # worker-build passes what follows `--` to `cargo build`.
    --dev-hooks) gateway_args=(-- --features dev-hooks); production=0 ;;
    gateway|broker|all|reference) what="$arg" ;;
    *) echo "usage: build.sh [--dev-hooks] [gateway|broker|all|reference]" >&2; exit 2 ;;
  esac
done
# Bake the running commit into the gateway (GET /version).
GIT_COMMIT="$(git -C "$ROOT" rev-parse --verify -q HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -v '^??' || true)" ]; then GIT_COMMIT="$GIT_COMMIT-dirty"; fi
export GIT_COMMIT
build() { local dir="$1"; shift; (cd "$dir" && worker-build --release "$@") && strip_names "$dir/build/index_bg.wasm"; }
# worker-build's wasm-opt pass keeps the module's names section (`--debuginfo`), which only
# stack traces read: a production build drops it (about 10% of the gateway's gzip size,
# docs/DECISIONS.md, "Bundle size"); the test, dev and bench builds keep it for their traces.
strip_names() {
  [ "$production" = 1 ] || return 0
  "$WASM_OPT_BIN" "$1" -o "$1.stripped" --strip-debug --strip-producers \
    --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling \
    && mv "$1.stripped" "$1"
}
# Each Worker's entry module wraps the generated one (src/entry.mjs, broker/src/entry.mjs).
worker() { local dir="$1"; shift; build "$dir" "$@" && cp "$dir/src/entry.mjs" "$dir/build/worker/entry.mjs"; }
# The dashboard's static assets (build/assets, `[assets]` in wrangler.toml) beside the gateway.
dashboard() {
  if [ -f "$ROOT/scripts/build-dashboard.sh" ]; then bash "$ROOT/scripts/build-dashboard.sh"
  else mkdir -p "$ROOT/build/assets/dashboard"; fi
}
gateway() { worker "$ROOT" ${gateway_args[@]+"${gateway_args[@]}"} && dashboard; }
case "$what" in
  gateway) gateway ;;
  broker) worker "$ROOT/broker" ;;
  all) gateway; worker "$ROOT/broker" ;;
  reference) worker "$ROOT/benches/reference-rust" ;;
esac
