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
# Cargo's build directory. With GATEWAY_SHARED_TARGET=1 (what .ci/run sets), a checkout with no
# `target` of its own gets a link to one build cache shared by the checkouts on this machine that
# ask for it, so a fresh clone compiles the workspace's own crates again but not its few hundred
# dependencies. A `target` already there (a directory, or this link) is left as it is. Cargo tells
# that a workspace crate changed by its files' times, not by their checkout's path: when another
# checkout built there last, this one's files are marked newer first, so cargo rebuilds the
# workspace's crates from them rather than take the other checkout's.
shared_target="${XDG_CACHE_HOME:-$HOME/.cache}/edge-llm-gateway/target"
if [ "${GATEWAY_SHARED_TARGET:-0}" = 1 ] && [ ! -e "$ROOT/target" ] && [ ! -L "$ROOT/target" ]; then
  mkdir -p "$shared_target" && ln -s "$shared_target" "$ROOT/target"
fi
if [ "$(readlink "$ROOT/target" 2>/dev/null)" = "$shared_target" ] \
  && [ "$(cat "$shared_target/.checkout" 2>/dev/null)" != "$ROOT" ]; then
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r touch -c --)
  printf '%s\n' "$ROOT" > "$shared_target/.checkout"
fi
export WRANGLER_LOG="${WRANGLER_LOG:-warn}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The worker-build version this project is built with (matches the worker crate).
WORKER_BUILD_VERSION="0.8.7"
# The wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' "$ROOT/Cargo.lock")"
export WORKER_BUILD_VERSION WASM_BINDGEN_VERSION
