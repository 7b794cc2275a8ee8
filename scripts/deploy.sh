#!/usr/bin/env bash
# Deploys the gateway and its four brokers to your Cloudflare account, or checks that they would.
#   bash scripts/deploy.sh --dry-run   no network, no account: builds the five production bundles
#                                      (wrangler deploy --dry-run --outdir) and checks them
#   bash scripts/deploy.sh             needs CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID:
#                                      the same checks, then D1 + KV (found or created), remote
#                                      migrations, missing secrets, brokers, then the gateway
# Options: --update-provider-keys (set PROVIDER_API_KEY on each broker from $OPENAI_API_KEY,
# $ANTHROPIC_API_KEY, $GEMINI_API_KEY, $PERPLEXITY_API_KEY even where one is already set),
# --force (deploy a Worker even when this machine last deployed the same bundle and config).
# Provider keys come from those variables, each to its own broker only; ADMIN_TOKEN, if set, is
# used as the admin token of a first deploy (otherwise one is generated and printed once).
# Idempotent: a second run changes nothing that is already right. What it generates lives in
# target/deploy/ (configs, bundles, the record of what was deployed; never a secret).
# docs/OPERATIONS.md explains each step, and how to rotate every secret afterwards.
set -euo pipefail
dry=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    --update-provider-keys|--force) ;;
    *) echo "usage: deploy.sh [--dry-run] [--update-provider-keys] [--force]" >&2; exit 2 ;;
  esac
done
if [ "$dry" = 0 ]; then
  missing=()
  [ -n "${CLOUDFLARE_API_TOKEN:-}" ] || missing+=(CLOUDFLARE_API_TOKEN)
  [ -n "${CLOUDFLARE_ACCOUNT_ID:-}" ] || missing+=(CLOUDFLARE_ACCOUNT_ID)
  if [ "${#missing[@]}" -gt 0 ]; then
    cat >&2 <<EOF
deploy: ${missing[*]} not set: nothing was done.
  A deploy needs a Cloudflare API token (dashboard: My Profile > API Tokens, template "Edit
  Cloudflare Workers", plus D1 Edit) and your account id (dashboard: Workers & Pages, right
  column). Then:
    export CLOUDFLARE_API_TOKEN=... CLOUDFLARE_ACCOUNT_ID=...
    bash scripts/deploy.sh
  To check the production build without an account: bash scripts/deploy.sh --dry-run
EOF
    exit 1
  fi
fi
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# The toolchain (scripts/setup.sh installs what is missing; run only when something is).
if ! command -v worker-build >/dev/null || ! command -v wasm-bindgen >/dev/null \
  || [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/wasm-opt ]; then
  bash scripts/setup.sh
fi
exec python3 scripts/deploy.py "$@"
