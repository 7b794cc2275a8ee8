# Sourced by the other scripts: the toolchain paths of TOOLCHAIN.md (no download from
# anywhere but the package registries).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$ROOT/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$CARGO_BIN/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WRANGLER_SEND_METRICS=false
export WRANGLER_LOG="${WRANGLER_LOG:-warn}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The worker-build version this project is built with (matches the worker crate).
WORKER_BUILD_VERSION="0.8.7"
# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' "$ROOT/Cargo.lock")"
export WORKER_BUILD_VERSION WASM_BINDGEN_VERSION
