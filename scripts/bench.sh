#!/usr/bin/env bash
# Benchmarks: the criterion benches of the pure hot paths (skip with --no-criterion), then the
# load benchmarks against a local stack of our own (free ports, fresh state, stopped by process
# group at exit), each bounded in time and loopback only, each beside its baseline measured in
# the same run:
#   a. L1 cache hit of POST /v1/ask vs the bare GET /healthz route (target >= 0.7x rps)
#   b. rate-limit decisions through one key's TokenBucket vs a bare TokenBucket round trip
#      (target >= 0.8x)
#   c. miss-path overhead: POST /v1/ask (one provider, no-store) vs the mock upstream called
#      directly with the equivalent body (target <= 2 ms added at p50)
# The summary goes to stdout and target/bench-report.txt.
# Usage: bench.sh [--no-criterion]
# Env: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 2), BENCH_CONCURRENCY (8, for a and b),
#      BENCH_MISS_CONCURRENCY (space-separated, "1 4", for c).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

criterion=1
for arg in "$@"; do
  case "$arg" in
    --no-criterion) criterion=0 ;;
    *) echo "usage: bench.sh [--no-criterion]" >&2; exit 2 ;;
  esac
done
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONC="${BENCH_CONCURRENCY:-8}"
MISS_CONC="${BENCH_MISS_CONCURRENCY:-1 4}"
export ADMIN_TOKEN="${ADMIN_TOKEN:-dev-admin-token}"

mkdir -p "$ROOT/target"
report="$ROOT/target/bench-report.txt"
summary="$(mktemp)"
say() { echo "$*" | tee -a "$summary"; }

bash scripts/setup.sh >/dev/null

say "# bench.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "load at start: $(uptime)"

if [ "$criterion" = 1 ]; then
  crit_log="$ROOT/target/bench-criterion.txt"
  cargo bench -p gateway-benches -- --warm-up-time 1 --measurement-time 3 2>&1 | tee "$crit_log"
  say ""
  say "## criterion (mean time per iteration; full output in target/bench-criterion.txt)"
  python3 - "$ROOT/target/criterion" <<'PY' | tee -a "$summary"
import glob, json, os, sys
base = sys.argv[1]
means = {}
for f in sorted(glob.glob(os.path.join(base, "**", "new", "estimates.json"), recursive=True)):
    bench = os.path.relpath(os.path.dirname(os.path.dirname(f)), base)
    with open(f) as fh:
        means[bench] = json.load(fh)["mean"]["point_estimate"]
def fmt(ns):
    return f"{ns:.1f} ns" if ns < 1e3 else f"{ns / 1e3:.2f} us"
for bench, ns in means.items():
    print(f"{bench}: {fmt(ns)}")
for kind in ("ascii", "non_ascii"):
    for size in ("100B", "2KB", "20KB"):
        d = means.get(f"cache_key_{kind}/ask_cache_key/{size}")
        s = means.get(f"cache_key_{kind}/sha256_raw/{size}")
        if d and s:
            print(f"cache_key {kind} {size}: derivation throughput / raw SHA-256 = {s / d:.2f}"
                  + ("  (target >= 0.50)" if (kind, size) == ("ascii", "20KB") else ""))
PY
fi

# Build what the stack runs, and the load tool.
bash scripts/build.sh all
cargo build --release -q -p mock-provider -p gateway-benches
loadgen="$ROOT/target/release/loadgen"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); mock_port=$(free_port); inspector=$(free_port)
state="$ROOT/target/bench-state/$$"
rm -rf "$state"; mkdir -p "$state"

setsid bash scripts/stack.sh "$state" "$port" "$mock_port" "$inspector" >"$state.log" 2>&1 &
stack=$!
cleanup() {
  kill -- -"$stack" 2>/dev/null || true
  wait "$stack" 2>/dev/null || true
  rm -rf "$state" "$state.log"
  if [ -f "$summary" ]; then cp "$summary" "$report"; rm -f "$summary"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

base="http://127.0.0.1:$port"
mock="http://127.0.0.1:$mock_port"
up=0
for _ in $(seq 1 240); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then up=1; break; fi
  kill -0 "$stack" 2>/dev/null || break
  sleep 0.5
done
if [ "$up" != 1 ]; then echo "the stack did not come up on $base:" >&2; tail -50 "$state.log" >&2; exit 1; fi

jget() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }
admin=(-H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json")
account=$(curl -fsS "${admin[@]}" -d '{"tier":"enterprise","credits":1000000000000}' "$base/admin/accounts" | jget account_id)
curl -fsS "${admin[@]}" -X PATCH -d '{"tier":"enterprise","limits":{"burst":1000000,"per_second":100000}}' \
  "$base/admin/accounts/$account" >/dev/null
key=$(curl -fsS "${admin[@]}" -d '{"name":"bench","mode":"live"}' "$base/admin/accounts/$account/keys" | jget key)
nonce="$$-$(date +%s)"

# One loadgen run; prints its line (also to the summary) and stores it in $last.
last=""
load() {
  local label="$1"; shift
  last=$("$loadgen" --label "$label" --duration "$DURATION" --warmup "$WARMUP" "$@" 2>"$state/err") || true
  [ -n "$last" ] || last="$label requests=0 rps=0 p50_ms=0 p90_ms=0 p99_ms=0 max_ms=0 errors=failed"
  say "$last"
  if [ -s "$state/err" ]; then sed 's/^/  /' "$state/err" | tee -a "$summary" >&2; fi
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
ratio() { python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f"{a/b:.2f}" if b else "n/a")' "$1" "$2"; }
verdict() { python3 -c 'import sys; v,op,t=sys.argv[1],sys.argv[2],float(sys.argv[3])
try: v=float(v)
except ValueError: print("n/a"); sys.exit()
print("MET" if (v>=t if op==">=" else v<=t) else "MISSED")' "$1" "$2" "$3"; }

# a. issue 3: an L1 hit of POST /v1/ask vs the bare route.
say ""
say "## a. L1 cache hit vs bare route (concurrency $CONC, ${WARMUP}s warmup + ${DURATION}s)"
ask_body="{\"prompt\":\"bench l1 hit $nonce\",\"providers\":[\"openai\"],\"params\":{\"max_tokens\":16}}"
auth=(-H "Authorization: Bearer $key" -H "Content-Type: application/json")
curl -fsS "${auth[@]}" -d "$ask_body" "$base/v1/ask" >/dev/null
tier=""
for _ in $(seq 1 40); do
  tier=$(curl -fsS "${auth[@]}" -d "$ask_body" "$base/v1/ask" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cache"].get("tier",""))')
  [ "$tier" = l1 ] && break
  sleep 0.25
done
say "warm-up call answered from cache tier: ${tier:-none}"
load bare_healthz --url "$base/healthz" --concurrency "$CONC" --expect '"ok":true'
bare="$last"
load l1_hit --url "$base/v1/ask" --method POST --header "Authorization: Bearer $key" \
  --header "Content-Type: application/json" --body "$ask_body" --expect '"tier":"l1"' --concurrency "$CONC"
l1="$last"
r=$(ratio "$(field "$l1" rps)" "$(field "$bare" rps)")
say "RATIO l1_hit/bare_healthz rps = $r  (target >= 0.70: $(verdict "$r" '>=' 0.7))"

# b. issue 4: rate-limit decisions through one key's bucket vs a bare DO round trip.
say ""
say "## b. TokenBucket decision vs bare Durable Object round trip (concurrency $CONC)"
load do_ping --url "$base/__dev/bench/do-ping/bench-ping-$nonce" --method POST --concurrency "$CONC" --expect '{}'
ping="$last"
load bucket_take --url "$base/__dev/bench/bucket/bench-take-$nonce" --method POST --concurrency "$CONC" \
  --expect '"outcome":"admitted"'
take="$last"
r=$(ratio "$(field "$take" rps)" "$(field "$ping" rps)")
say "RATIO bucket_take/do_ping rps = $r  (target >= 0.80: $(verdict "$r" '>=' 0.8))"

# c. issue 5: the gateway's miss path with one provider vs the mock upstream directly.
say ""
say "## c. miss-path overhead: POST /v1/ask (openai only, no-store) vs the mock upstream directly"
prompt="bench miss path $nonce"
miss_body="{\"prompt\":\"$prompt\",\"providers\":[\"openai\"],\"params\":{\"max_tokens\":16}}"
direct_body="{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$prompt\"}],\"max_completion_tokens\":16}"
for c in $MISS_CONC; do
  load "mock_direct_c$c" --url "$mock/openai/v1/chat/completions" --method POST --header "Authorization: Bearer x" \
    --header "Content-Type: application/json" --body "$direct_body" --concurrency "$c"
  direct="$last"
  load "ask_miss_c$c" --url "$base/v1/ask" --method POST --header "Authorization: Bearer $key" \
    --header "Content-Type: application/json" --header "Cache-Control: no-store" --body "$miss_body" \
    --expect '"status":"bypass"' --concurrency "$c"
  miss="$last"
  d50=$(python3 -c 'import sys; print(f"{float(sys.argv[1])-float(sys.argv[2]):.3f}")' "$(field "$miss" p50_ms)" "$(field "$direct" p50_ms)")
  d99=$(python3 -c 'import sys; print(f"{float(sys.argv[1])-float(sys.argv[2]):.3f}")' "$(field "$miss" p99_ms)" "$(field "$direct" p99_ms)")
  say "OVERHEAD c=$c: p50 +$d50 ms, p99 +$d99 ms  (target p50 <= 2 ms: $(verdict "$d50" '<=' 2))"
done

say ""
say "load at end: $(uptime)"
echo "report: $report"
