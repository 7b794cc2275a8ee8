#!/usr/bin/env bash
# Fuzzes the pure parsers on stable Rust (core/tests/fuzz): the /v1/ask body parser, both drop-in
# validators, normalization + cache key, the provider response adapters, the SSE parser and
# watchers, the stream synthesizer, the scrubber and canonical JSON, each for a given time.
#   fuzz.sh [seconds-per-target] [target,target,...]      (default 60 s, every target)
# Seeds are fixtures/fuzz/<target>/ (and their regressions/); a failing input is written to
# target/fuzz/crashes/<target>/ and the script exits non-zero. FUZZ_SEED=<n> replays a run (the
# seed is printed first). FUZZ_PROFILE=dev reuses the ordinary test build (no extra compile,
# slower runs: what CI's short pass uses); the default builds optimized, with debug assertions
# and overflow checks on (no LTO, so it builds in about a minute).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
seconds="${1:-60}"
targets="${2:-${FUZZ_TARGETS:-}}"
case "$seconds" in ''|*[!0-9]*) echo "usage: fuzz.sh [seconds-per-target] [targets]" >&2; exit 2 ;; esac
args=()
if [ "${FUZZ_PROFILE:-release}" != dev ]; then
  export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=3 CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
    CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
  args=(--release)
fi
echo "== fuzzing, $seconds s per target${targets:+ ($targets)}"
FUZZ_SECONDS="$seconds" FUZZ_TARGETS="$targets" \
  cargo test -p gateway-core ${args[@]+"${args[@]}"} --test fuzz -- \
  --ignored --exact fuzz_for_a_while --nocapture --test-threads 1
