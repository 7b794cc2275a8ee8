#!/usr/bin/env bash
# Moves every stored BYOK key to the newest master key version, after a rotation
# (docs/OPERATIONS.md, "Rotate the BYOK master secret"): calls the gateway's
# POST /admin/byok/reseal/:provider page by page for openai and anthropic until each says
# `next: null`, and prints each page's report (counts only).
#   ADMIN_TOKEN=... scripts/reseal.sh https://edge-gateway.<you>.workers.dev
# Exits 1 when some keys must be visited again (`retry_later`: their access could not be
# recorded, or the write failed): run it again. Keys that do not open (`unusable`) are reported
# and left as they are: those accounts must register their key again.
set -euo pipefail
base="${1:-}"
if [ -z "$base" ] || [ -z "${ADMIN_TOKEN:-}" ]; then
  echo "usage: ADMIN_TOKEN=... scripts/reseal.sh GATEWAY_URL" >&2
  exit 2
fi
base="${base%/}"
retry=0
for provider in openai anthropic; do
  after=null
  while :; do
    # The token goes to curl on its standard input, never on its command line (which `ps`
    # shows every user of the machine).
    report="$(curl -sS --fail-with-body -X POST "$base/admin/byok/reseal/$provider" \
      -H @- -H 'Content-Type: application/json' \
      -d "{\"after\": $after, \"limit\": 50}" <<<"Authorization: Bearer $ADMIN_TOKEN")" \
      || { echo "reseal: $provider: $report" >&2; exit 1; }
    echo "$report"
    read -r after retry_later < <(python3 -c '
import json, sys
r = json.load(sys.stdin)
print(json.dumps(r.get("next")), r.get("retry_later", 0))' <<<"$report")
    [ "$retry_later" = 0 ] || retry=1
    [ "$after" = null ] && break
  done
done
if [ "$retry" = 1 ]; then
  echo "reseal: some keys must be visited again (retry_later > 0): run this again" >&2
  exit 1
fi
echo "reseal: done"
