#!/usr/bin/env bash
# Installs what the project needs and is missing; skips what is already there.
# Only the package registries are used (crates.io, npm, PyPI).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
step() { printf '\n== setup: %s\n' "$*"; }

# The lints of scripts/check.sh (CI runs it).
for component in clippy rustfmt; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    step "rustup component add $component"
    rustup component add "$component"
  fi
done

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  step "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(worker-build --version 2>/dev/null | awk '{print $NF}')" != "$WORKER_BUILD_VERSION" ]; then
  step "cargo install worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION"
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $NF}')" != "$WASM_BINDGEN_VERSION" ]; then
  step "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# npm packages pinned by package-lock.json: wrangler (workerd), binaryen (wasm-opt), esbuild,
# uplot (the dashboard's chart library), playwright-core (its browser tests) and the official
# Node SDKs (openai, @anthropic-ai/sdk: tests/sdk/test_sdks.mjs).
stamp="node_modules/.package-lock.json"
if [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/wasm-opt ] || [ ! -f node_modules/uplot/package.json ] \
  || [ ! -f node_modules/playwright-core/package.json ] || [ ! -f node_modules/openai/package.json ] \
  || [ ! -f node_modules/@anthropic-ai/sdk/package.json ] || [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  step "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# The browser of the dashboard's tests: Debian's chromium, driven by playwright-core (which
# downloads no browser of its own).
if [ ! -x /usr/bin/chromium ]; then
  step "apt-get install chromium (the dashboard's browser tests)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi

# Python packages of the SDK compatibility tests (official openai and anthropic SDKs, LiteLLM).
if [ -f tests/sdk/requirements.txt ]; then
  # Each at the version pinned there (read from the installed metadata: importing LiteLLM
  # takes seconds); another version is replaced.
  if ! python3 - tests/sdk/requirements.txt >/dev/null 2>&1 <<'PY'
import importlib.metadata, sys
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if "==" in line:
        name, version = line.split("==")
        assert importlib.metadata.version(name) == version, name
PY
  then
    step "pip install tests/sdk/requirements.txt"
    python3 -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
  fi
fi
echo "setup: ok (worker-build $WORKER_BUILD_VERSION, wasm-bindgen $WASM_BINDGEN_VERSION, wrangler $(node -p "require('./node_modules/wrangler/package.json').version"), $(/usr/bin/chromium --version 2>/dev/null | head -1 | awk '{print $1, $2}'))"
