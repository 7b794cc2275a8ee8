#!/usr/bin/env bash
# Benchmarks: the criterion benches of the pure hot paths (skip with --no-criterion), then the
# load benchmarks against a local stack of our own (free ports, fresh state, stopped by process
# group at exit), each bounded in time and loopback only, each beside its baseline measured in
# the same run, the two alternating round by round:
#   a. L1 cache hit of POST /v1/ask vs the bare GET /healthz route (target >= 0.7x rps), beside
#      the Cache API read alone (a dev route), which bounds what any L1 hit can reach locally
#   b. rate-limit decisions through one key's TokenBucket vs a bare TokenBucket round trip
#      (target >= 0.8x)
#   c. miss-path overhead: POST /v1/ask (one provider, no-store) vs the mock upstream called
#      directly with the equivalent body (target <= 2 ms added at p50), measured at the
#      Worker's own socket and, for reference, through wrangler dev's proxy
#   e. streaming: a streamed L1 hit vs the JSON hit (target >= 0.9x rps), and a streamed miss vs
#      the mock's own stream at the Worker's socket (target <= 2 ms added at p50)
#   f. coalescing: N identical concurrent cacheable misses (N = 1, 10, 100; the mock takes
#      BENCH_FLIGHT_DELAY_MS, 300) with coalescing on vs off (`x-dev-flight: off`, the same
#      switch as the COALESCE=off var, per request so both run in this one stack): upstream calls
#      and p50/p99 latency, as a table
#   s. (BENCH_ONLY=s only) the scaling simulation of docs/SCALING.md: many keys and accounts,
#      one hot account, one hot key, over a limit, one shared cache key, usage rows under load
#   z. the gateway's production wasm module, raw and gzip (issue 21: 525 KB reference)
#   d. the references, JS Workers of a few lines (benches/reference-worker) under their own wrangler
#      dev with the same flags, once the gateway's stack is stopped: for a., a caches.default hit
#      vs its own bare route (what the local runtime allows any L1 hit), through its proxy and
#      at its runtime's socket, each beside the gateway's hits there; for c. and e., the miss
#      topology with no gateway code (two Durable Object round trips at once, then a broker
#      Worker's outbound fetch to a mock of its own, passed on as it arrives) vs that mock
#      directly (the runtime's own floor under the miss and first-event targets); then the same
#      miss topology written in Rust with the worker crate (benches/reference-rust), once handing
#      responses on through the crate's Response and once passing the runtime's own through: the
#      floor under a Rust Worker's miss, and what the binding adds to the JS floor
# The summary goes to stdout and target/bench-report.txt.
#
# Three properties of wrangler dev would otherwise swamp the figures with costs production does
# not have (docs/DECISIONS.md, "Load benchmarks"):
# - wrangler's inspector proxy attaches to one of the stack's Workers, picked at random at start
#   and again on every hot reload, and enables the DevTools Network, Debugger and Runtime
#   domains there. When that is the gateway: every subrequest it makes (Durable Object, KV, D1,
#   Cache API, service binding) is traced to wrangler, which writes each event to its debug log
#   (those routes run about 2x slower); with a debugger attached V8 runs the gateway's wasm in
#   its baseline tier (Liftoff) instead of optimized code; and every console.log captures a
#   stack trace for DevTools. No deployed Worker has any of that. Once the stack is up, the
#   script sends `Network.disable`, `Debugger.disable` and `Runtime.disable` through the
#   inspector port (as a DevTools client would; wrangler may then stop printing that Worker's
#   console output); BENCH_KEEP_INSPECTOR=1 skips that.
# - the stack runs from a private copy of the built Workers, so a rebuild by someone else
#   (which hot-reloads every wrangler dev watching build/, and re-enables that tracing) cannot
#   reach it mid-run;
# - local state goes to tmpfs (/dev/shm) when there is one: workerd's SQLite commits fsync,
#   and on a disk that fsync, not the gateway, dominates every write path;
# - wrangler prints the Workers' console output only at warning level and above
#   (STACK_WRANGLER_LOG=warn): the gateway still writes its line for every request, but wrangler's
#   printing of each one (node, beside the runtime on this machine's cores) held up the next
#   request at concurrency 1 by about 0.3 to 0.5 ms.
# - wrangler dev answers on its own ProxyWorker (a second workerd process, there for hot
#   reloads), which forwards every request to the Workers' runtime: about 1.1 ms per request at
#   concurrency 1. The latency figures of c. are therefore also taken at the runtime's own
#   socket (found among the listening sockets of the stack's workerd processes), where a
#   deployed Worker's request would arrive; both are printed.
#
# Usage: bench.sh [--no-criterion]
# Env: BENCH_ONLY (which of a, b, c, d, e, f, s, z to run; default abcdefz; d and z run last), BENCH_DURATION (s per run, default 5), BENCH_ROUNDS (alternations, 2), BENCH_WARMUP
#      (s per run, 2), BENCH_CONCURRENCY (a and b, 8), BENCH_MISS_CONCURRENCY ("1 4", for c),
#      BENCH_STATE_ROOT (default /dev/shm if writable, else target/bench-state),
#      BENCH_KEEP_INSPECTOR (1: leave wrangler's Network tracing on), BENCH_HOLD (a file: hold
#      the stack up for profiling instead, see below).
set -euo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/private-stack.sh"
cd "$ROOT"

criterion=1
for arg in "$@"; do
  case "$arg" in
    --no-criterion) criterion=0 ;;
    *) echo "usage: bench.sh [--no-criterion]" >&2; exit 2 ;;
  esac
done
DURATION="${BENCH_DURATION:-5}"
ROUNDS="${BENCH_ROUNDS:-2}"
WARMUP="${BENCH_WARMUP:-2}"
CONC="${BENCH_CONCURRENCY:-8}"
MISS_CONC="${BENCH_MISS_CONCURRENCY:-1 4}"
if [ -z "${BENCH_STATE_ROOT:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then BENCH_STATE_ROOT=/dev/shm; else BENCH_STATE_ROOT="$ROOT/target/bench-state"; fi
fi
export ADMIN_TOKEN="${ADMIN_TOKEN:-dev-admin-token}"

mkdir -p "$ROOT/target"
report="$ROOT/target/bench-report.txt"
summary="$(mktemp)"
say() { echo "$*" | tee -a "$summary"; }
stack=""; ref=""; work=""
stop_group() { # stop_group PGID: a process group we started, and wait for its leader
  kill -- -"$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  if [ -n "$stack" ]; then stop_group "$stack"; fi
  if [ -n "$ref" ]; then stop_group "$ref"; fi
  if [ -n "$work" ]; then rm -rf "$work"; fi
  if [ -f "$summary" ]; then cp "$summary" "$report"; rm -f "$summary"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/setup.sh >/dev/null

say "# bench.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$( [ -n "$(git status --porcelain 2>/dev/null | grep -v '^??' || true)" ] && echo ' (dirty tree)')"
say "machine: $(nproc) cores; load at start:$(uptime | sed 's/.*load average/ load average/')"

if [ "$criterion" = 1 ]; then
  crit_log="$ROOT/target/bench-criterion.txt"
  say ""
  if cargo bench -p gateway-benches -- --warm-up-time 1 --measurement-time 3 2>&1 | tee "$crit_log"; then
    say "## criterion (mean time per iteration; full output in target/bench-criterion.txt)"
  else
    say "## criterion: cargo bench FAILED (see target/bench-criterion.txt); figures below may be stale"
  fi
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
            target = {("ascii", "20KB"): 0.8, ("non_ascii", "20KB"): 0.5}.get((kind, size))
            print(f"cache_key {kind} {size}: derivation throughput / raw SHA-256 = {s / d:.2f}"
                  + (f"  (target >= {target:.2f}: {'MET' if s / d >= target else 'MISSED'})" if target else ""))
for dialect in ("messages", "chat"):
    for size in ("fixture", "4KB"):
        syn = means.get(f"stream_hit_{dialect}/synthesize/{size}")
        parse = means.get(f"stream_hit_{dialect}/parse_only/{size}")
        if syn and parse:
            print(f"stream_hit {dialect} {size}: synthesize / parsing the stored answer = {syn / parse:.1f}x ({fmt(syn)}, no target: what a streamed hit adds to a JSON hit's work)")
PY
fi

# Build what the stack runs, and the load tool.
bash scripts/build.sh --dev-hooks all
cargo build --release -q -p mock-provider -p gateway-benches
loadgen="$ROOT/target/release/loadgen"

work="$BENCH_STATE_ROOT/edge-gateway-bench-$$"
rm -rf "$work"; mkdir -p "$work/raw"
# Outside a shared-secret rotation, as a deployed broker is (scripts/devconfig.py).
export STACK_SECRET_ROTATION=0
# The request lines are written, not printed (see the header).
export STACK_WRANGLER_LOG=warn
start_private_stack "$work"
if ! wait_up "$base" "$stack" 300; then echo "the stack did not come up on $base:" >&2; tail -50 "$work/stack.log" >&2; exit 1; fi
say "stack: wrangler dev on $base, state under $BENCH_STATE_ROOT; each figure: $ROUNDS alternating runs of ${WARMUP}s warmup + ${DURATION}s"
# The runtime's own socket: a port of one of the stack's workerd processes, other than wrangler's
# proxy and inspector, that answers GET /healthz like the gateway.
direct=$(runtime_socket "$stack" "$port" "$inspector")
say "the Workers' runtime socket (behind wrangler's proxy): ${direct:-not found}"
attached=$(grep -ho '/core:user:[A-Za-z0-9_-]*' "$work"/wrangler-logs/* 2>/dev/null | tail -1 | sed 's|/core:user:||' || true)
if [ "${BENCH_KEEP_INSPECTOR:-0}" = 1 ]; then
  tracing="left on (BENCH_KEEP_INSPECTOR=1)"
else
  tracing=$(disable_devtools "$inspector" Network Debugger Runtime)
fi
say "wrangler inspector attached to: ${attached:-unknown}; its DevTools domains: $tracing"

jget() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }
admin=(-H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json")
account=$(curl -fsS "${admin[@]}" -d '{"tier":"enterprise","credits":1000000000000}' "$base/admin/accounts" | jget account_id)
curl -fsS "${admin[@]}" -X PATCH -d '{"tier":"enterprise","limits":{"burst":1000000,"per_second":100000,"input_tokens_per_minute":1000000000,"output_tokens_per_minute":1000000000,"account_calls_per_minute":1000000000,"account_input_tokens_per_minute":1000000000,"account_output_tokens_per_minute":1000000000}}' \
  "$base/admin/accounts/$account" >/dev/null
key=$(curl -fsS "${admin[@]}" -d '{"name":"bench","mode":"live"}' "$base/admin/accounts/$account/keys" | jget key)
nonce="$$-$(date +%s)"
# BENCH_HOLD=FILE: no benchmark; the stack stays up for profiling by hand (its addresses and a
# live key written to FILE) until FILE is removed.
if [ -n "${BENCH_HOLD:-}" ]; then
  printf 'base=%s\ndirect=%s\nmock=%s\ninspector=%s\nkey=%s\naccount=%s\n' \
    "$base" "$direct" "$mock" "$inspector" "$key" "$account" >"$BENCH_HOLD"
  while [ -f "$BENCH_HOLD" ]; do sleep 1; done
  exit 0
fi
# The body of the L1 hit figure (a.), and of its reference (d.).
ask_body="{\"prompt\":\"bench l1 hit $nonce\",\"providers\":[\"openai\"],\"params\":{\"max_tokens\":16}}"

# compare LABEL_1 ARRAY_1 LABEL_2 ARRAY_2 ...: runs each target (loadgen args in the named
# array) once per round, alternating, then prints one merged line per target; sets line_<LABEL>.
compare() {
  local -a labels=() arrays=()
  while [ $# -gt 0 ]; do labels+=("$1"); arrays+=("$2"); shift 2; done
  local r i
  for r in $(seq 1 "$ROUNDS"); do
    for i in "${!labels[@]}"; do
      local -n args="${arrays[$i]}"
      "$loadgen" --label "${labels[$i]}" --duration "$DURATION" --warmup "$WARMUP" \
        --raw "$work/raw/${labels[$i]}.$r" "${args[@]}" >/dev/null 2>"$work/raw/${labels[$i]}.$r.err" || true
      unset -n args
    done
  done
  for i in "${!labels[@]}"; do
    local l="${labels[$i]}" line
    local -a files=()
    for r in $(seq 1 "$ROUNDS"); do [ -f "$work/raw/$l.$r" ] && files+=("$work/raw/$l.$r"); done
    if [ ${#files[@]} -gt 0 ]; then
      line=$("$loadgen" --merge --label "$l" "${files[@]}" || true)
    else
      line="$l requests=0 rps=0 p50_ms=0 p90_ms=0 p99_ms=0 max_ms=0 errors=failed"
    fi
    say "$line"
    cat "$work/raw/$l".*.err 2>/dev/null | head -2 | sed 's/^/  /' | tee -a "$summary" >&2 || true
    printf -v "line_$l" '%s' "$line"
  done
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
calc() { python3 -c "import sys; a,b=(float(x) for x in sys.argv[2:4]); print(format($1, '.${4:-2}f'))" x "$2" "$3" 2>/dev/null || echo n/a; }
# p50_gap LINE_A LINE_B: LINE_A's p50 minus LINE_B's (two loadgen lines), ms.
p50_gap() { calc 'a-b' "$(field "$1" p50_ms)" "$(field "$2" p50_ms)" 3; }
# beside_floor FLOOR SECTION GATEWAY_LINE MOCK_LINE: the gateway's p50 over its mock in section
# SECTION and its own part of it beyond the runtime's FLOOR, as a clause of a FLOOR line; nothing
# when that section did not run in this invocation.
beside_floor() {
  [ -n "$3" ] && [ -n "$4" ] || return 0
  local gw; gw=$(p50_gap "$3" "$4")
  echo "; the gateway's ($2.): +$gw ms, of which its own beyond the floor: +$(calc 'a-b' "$gw" "$1" 3) ms"
}
# miss_target C: the miss-path target at concurrency C, ms (issue 5: 2 at c=1; issue 21: 3 at c=4).
miss_target() { if [ "$1" = 1 ]; then echo 2; else echo 3; fi; }
verdict() { python3 -c 'import sys; v,op,t=sys.argv[1],sys.argv[2],float(sys.argv[3])
try: v=float(v)
except ValueError: print("n/a"); sys.exit()
print("MET" if (v>=t if op==">=" else v<=t) else "MISSED")' "$1" "$2" "$3"; }
# start_reference DIR CONFIG...: a reference's Workers (their files already in DIR) under a
# wrangler dev of their own with the gateway stack's flags, beside a mock of their own; sets ref
# (the process group), ref_port, ref_inspector, ref_base and ref_mock. Its log: DIR.log.
start_reference() {
  local dir="$1"; shift
  local configs=() c mock_port
  for c in "$@"; do configs+=(-c "$c"); done
  ref_port=$(free_port); ref_inspector=$(free_port); mock_port=$(free_port)
  mkdir -p "$dir/assets"
  (cd "$dir" && WRANGLER_LOG=log WRANGLER_LOG_PATH="$dir/logs" WRANGLER_REGISTRY_PATH="$dir/registry" \
    exec setsid bash -c '"$1" --port "$2" & exec wrangler dev "${@:3}"' x \
    "$ROOT/target/release/mock-provider" "$mock_port" "${configs[@]}" --local --ip 127.0.0.1 --port "$ref_port" \
    --inspector-port "$ref_inspector" --persist-to "$dir/persist" --test-scheduled \
    --show-interactive-dev-session=false) >"$dir.log" 2>&1 &
  ref=$!
  ref_base="http://127.0.0.1:$ref_port"
  ref_mock="http://127.0.0.1:$mock_port"
}
# floor_gap LABEL c<C>|stream: the floor miss_floor measured under LABEL, its miss's p50 (at
# concurrency C, or a stream's first event) over its mock's, ms; n/a when it did not run.
floor_gap() {
  local miss="line_$1_miss_$2" mock="line_$1_mock_$2"
  if [ "$2" = stream ]; then miss="line_$1_stream_first_event" mock="line_$1_mock_stream_first_event"; fi
  p50_gap "${!miss:-}" "${!mock:-}"
}
# miss_floor LABEL WHAT DIRECT MOCK [ROUTE]: a reference's miss topology (POST ROUTE, /miss by
# default, at its runtime socket DIRECT: two object round trips at once, then a broker Worker's
# outbound fetch, its answer passed on as it arrives) against its mock MOCK called directly: the
# floor under the miss targets of c. (JSON, each concurrency of MISS_CONC) and e. (a stream's
# first event, c=1), the gateway's own figures of c. and e. beside it when they ran. Loadgen
# labels start with LABEL (see floor_gap); WHAT names the reference in the FLOOR lines.
miss_floor() {
  local label="$1" what="$2" direct="$3" mock="$4" route="${5:-/miss}" c fl
  local json="{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"reference miss $nonce\"}],\"max_completion_tokens\":16}"
  local stream="{\"model\":\"gpt-4o-mini\",\"max_completion_tokens\":16,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"reference miss $nonce\"}]}"
  local upstream="x-upstream: $mock/openai/v1/chat/completions"
  local -a mock_args miss_args
  for c in $MISS_CONC; do
    mock_args=(--url "$mock/openai/v1/chat/completions" --method POST --header "Authorization: Bearer x"
      --header "Content-Type: application/json" --body "$json" --expect '"chat.completion"' --concurrency "$c")
    miss_args=(--url "$direct$route" --method POST --header "$upstream"
      --header "Content-Type: application/json" --body "$json" --expect '"chat.completion"' --concurrency "$c")
    compare "${label}_mock_c$c" mock_args "${label}_miss_c$c" miss_args
    local gw="line_ask_miss_socket_c$c" m="line_mock_direct_socket_c$c"
    fl=$(floor_gap "$label" "c$c")
    say "FLOOR c=$c: $what miss topology - its mock: p50 +$fl ms (the gateway's target at c=$c: <= $(miss_target "$c") ms)$(beside_floor "$fl" c "${!gw:-}" "${!m:-}")"
  done
  mock_args=(--url "$mock/openai/v1/chat/completions" --method POST --header "Authorization: Bearer x"
    --header "Content-Type: application/json" --body "$stream" --expect '[DONE]' --concurrency 1 --first-byte)
  miss_args=(--url "$direct$route" --method POST --header "$upstream"
    --header "Content-Type: application/json" --body "$stream" --expect '[DONE]' --concurrency 1 --first-byte)
  compare "${label}_mock_stream_first_event" mock_args "${label}_stream_first_event" miss_args
  fl=$(floor_gap "$label" stream)
  say "FLOOR c=1: $what streamed miss, first event - its mock's: p50 +$fl ms (the gateway's target: <= 2 ms)$(beside_floor "$fl" e "${line_stream_miss_first_event:-}" "${line_mock_stream_first_event:-}")"
}

ONLY="${BENCH_ONLY:-abcdefz}"
# a. issue 3: an L1 hit of POST /v1/ask vs the bare route.
if [[ "$ONLY" == *a* ]]; then
say ""
say "## a. L1 cache hit of POST /v1/ask vs the bare route GET /healthz (concurrency $CONC)"
auth=(-H "Authorization: Bearer $key" -H "Content-Type: application/json")
curl -fsS "${auth[@]}" -d "$ask_body" "$base/v1/ask" >/dev/null
tier=""
for _ in $(seq 1 40); do
  tier=$(curl -fsS "${auth[@]}" -d "$ask_body" "$base/v1/ask" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cache"].get("tier",""))')
  [ "$tier" = l1 ] && break
  sleep 0.25
done
say "the warm-up call was answered from cache tier: ${tier:-none} (every measured call must say l1)"
l1_key=$(curl -fsS -D - -o /dev/null "${auth[@]}" -d "$ask_body" "$base/v1/ask" | tr -d '\r' | sed -n 's/^[Xx]-[Cc]ache-[Kk]ey: //p')
bare_args=(--url "$base/healthz" --concurrency "$CONC" --expect '"ok":true')
l1_args=(--url "$base/v1/ask" --method POST --header "Authorization: Bearer $key"
  --header "Content-Type: application/json" --body "$ask_body" --expect '"tier":"l1"' --concurrency "$CONC")
read_args=(--url "$base/__dev/bench/l1/$l1_key" --concurrency "$CONC" --expect '"tier":"l1"')
compare bare_healthz bare_args l1_hit l1_args l1_read_only read_args
r=$(calc 'a/b' "$(field "$line_l1_hit" rps)" "$(field "$line_bare_healthz" rps)")
say "RATIO l1_hit / bare_healthz rps = $r  (target >= 0.70: $(verdict "$r" '>=' 0.7))"
say "  reference: the Cache API read alone (GET route, no auth, no body, no writes) / bare = $(calc 'a/b' "$(field "$line_l1_read_only" rps)" "$(field "$line_bare_healthz" rps)")"
fi

# b. issue 4: rate-limit decisions through one key's bucket vs a bare DO round trip.
if [[ "$ONLY" == *b* ]]; then
say ""
say "## b. TokenBucket decision vs bare TokenBucket round trip (dev routes, concurrency $CONC)"
ping_args=(--url "$base/__dev/bench/do-ping/bench-ping-$nonce" --method POST --concurrency "$CONC" --expect '{}')
take_args=(--url "$base/__dev/bench/bucket/bench-take-$nonce" --method POST --concurrency "$CONC"
  --expect '"outcome":"admitted"')
compare do_ping ping_args bucket_take take_args
r=$(calc 'a/b' "$(field "$line_bucket_take" rps)" "$(field "$line_do_ping" rps)")
say "RATIO bucket_take / do_ping rps = $r  (target >= 0.80: $(verdict "$r" '>=' 0.8))"
# With token limits: the call token and the worst-case tokens in one reservation, settled after.
tokens_args=(--url "$base/__dev/bench/bucket-tokens/bench-tokens-$nonce" --method POST --concurrency "$CONC"
  --expect '"Ok"')
compare do_ping ping_args bucket_tokens tokens_args
r=$(calc 'a/b' "$(field "$line_bucket_tokens" rps)" "$(field "$line_do_ping" rps)")
say "RATIO bucket_reserve_tokens / do_ping rps = $r  (target >= 0.80: $(verdict "$r" '>=' 0.8))"
fi

# c. issue 5: the gateway's miss path with one provider vs the mock upstream directly.
if [[ "$ONLY" == *c* ]]; then
say ""
say "## c. miss-path overhead: POST /v1/ask (openai only, Cache-Control: no-store) vs the mock upstream directly"
prompt="bench miss path $nonce"
miss_body="{\"prompt\":\"$prompt\",\"providers\":[\"openai\"],\"params\":{\"max_tokens\":16}}"
direct_body="{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$prompt\"}],\"max_completion_tokens\":16}"
miss_one() { # miss_one LABEL_SUFFIX BASE CONCURRENCY: the three runs of one comparison
  local sfx="$1" b="$2" c="$3"
  direct_args=(--url "$mock/openai/v1/chat/completions" --method POST --header "Authorization: Bearer x"
    --header "Content-Type: application/json" --body "$direct_body" --concurrency "$c")
  miss_args=(--url "$b/v1/ask" --method POST --header "Authorization: Bearer $key"
    --header "Content-Type: application/json" --header "Cache-Control: no-store" --body "$miss_body"
    --expect '"status":"bypass"' --concurrency "$c")
  floor_args=(--url "$b/healthz" --concurrency "$c" --expect '"ok":true')
  # The same miss with the gate as it was before token limits (`x-dev-limits: calls-only`: the
  # key's call token and the credits only; credits still reserved and settled): what token
  # limits add, in the same rounds.
  calls_args=("${miss_args[@]}" --header "x-dev-limits: calls-only")
  compare "mock_direct_$sfx" direct_args "ask_miss_$sfx" miss_args "ask_miss_calls_only_$sfx" calls_args \
    "bare_healthz_$sfx" floor_args
  local direct_line="line_mock_direct_$sfx" miss_line="line_ask_miss_$sfx" floor_line="line_bare_healthz_$sfx"
  local calls_line="line_ask_miss_calls_only_$sfx"
  t50=$(p50_gap "${!miss_line}" "${!calls_line}")
  # Noise: how far one target's p50 moves from round to round in this run (the largest such
  # move of the two misses).
  tnoise=$(for l in "ask_miss_$sfx" "ask_miss_calls_only_$sfx"; do
    for r in $(seq 1 "$ROUNDS"); do
      [ -f "$work/raw/$l.$r" ] && field "$("$loadgen" --merge --label x "$work/raw/$l.$r")" p50_ms
    done | python3 -c 'import sys; v=[float(x) for x in sys.stdin.read().split()]; print(max(v)-min(v) if v else 0)'
  done | python3 -c 'import sys; print(format(max(float(x) for x in sys.stdin.read().split()), ".3f"))')
  d50=$(p50_gap "${!miss_line}" "${!direct_line}")
  d99=$(calc 'a-b' "$(field "${!miss_line}" p99_ms)" "$(field "${!direct_line}" p99_ms)" 3)
  f50=$(p50_gap "${!miss_line}" "${!floor_line}")
}
for c in $MISS_CONC; do
  if [ -n "$direct" ]; then
    miss_one "socket_c$c" "$direct" "$c"
    t=$(miss_target "$c")
    say "OVERHEAD c=$c at the Worker's socket: ask_miss - mock_direct: p50 +$d50 ms, p99 +$d99 ms  (target p50 <= $t ms: $(verdict "$d50" '<=' "$t"))"
    say "  the bare route there: p50 $(v="line_bare_healthz_socket_c$c"; field "${!v}" p50_ms) ms; the miss path beyond the bare route: p50 +$f50 ms"
    say "TOKEN LIMITS c=$c at the Worker's socket: ask_miss - ask_miss_calls_only: p50 $t50 ms; the round-to-round noise of either: $tnoise ms  (issue 18, unchanged within noise: $(python3 -c 'import sys; print("MET" if abs(float(sys.argv[1])) <= float(sys.argv[2]) else "MISSED")' "$t50" "$tnoise" 2>/dev/null || echo n/a))"
  fi
  miss_one "proxy_c$c" "$base" "$c"
  say "OVERHEAD c=$c through wrangler dev's proxy: ask_miss - mock_direct: p50 +$d50 ms, p99 +$d99 ms$([ -z "$direct" ] && echo "  (target p50 <= 2 ms: $(verdict "$d50" '<=' 2))")"
  say "  of which wrangler dev's own floor (bare route p50): $(v="line_bare_healthz_proxy_c$c"; field "${!v}" p50_ms) ms; the miss path beyond the bare route: p50 +$f50 ms"
done

fi

# e. streaming: each answering endpoint's streamed L1 hit vs its JSON hit of the same request
#    (one cache entry serves both forms), and the time to the first event of a streamed miss
#    (no-store) vs the mock's own stream of it at the Worker's socket (`loadgen --first-byte`:
#    latency up to the body's first bytes).
if [[ "$ONLY" == *e* ]]; then
say ""
say "## e. streaming: streamed L1 hit vs JSON L1 hit of each endpoint (concurrency $CONC); streamed miss vs the mock's stream (c=1)"
sprompt="bench stream $nonce"
json_body="{\"model\":\"gpt-4o-mini\",\"max_completion_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"$sprompt\"}]}"
stream_body="{\"model\":\"gpt-4o-mini\",\"max_completion_tokens\":16,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$sprompt\"}]}"
msg_body="{\"model\":\"claude-haiku-4-5\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"$sprompt\"}]}"
msg_stream_body="{\"model\":\"claude-haiku-4-5\",\"max_tokens\":16,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$sprompt\"}]}"
ask_stream_body="{\"prompt\":\"bench l1 hit $nonce\",\"providers\":[\"openai\"],\"params\":{\"max_tokens\":16},\"stream\":true}"
chat_auth=(-H "Authorization: Bearer $key" -H "Content-Type: application/json")
# warm_l1 PATH BODY [HEADER]: calls until the answer comes from L1 (Cache-Status ...detail=l1).
warm_l1() {
  local -a extra=(); [ -n "${3:-}" ] && extra=(-H "$3")
  curl -fsS "${chat_auth[@]}" "${extra[@]}" -d "$2" "$base$1" >/dev/null
  for _ in $(seq 1 40); do
    curl -fsS -D - -o /dev/null "${chat_auth[@]}" "${extra[@]}" -d "$2" "$base$1" | tr -d '\r' | grep -qi '^cache-status:.*detail=l1' && return 0
    sleep 0.25
  done
  say "  $1 was not answered from L1 after warming"
}
warm_l1 /v1/chat/completions "$json_body"
warm_l1 /v1/messages "$msg_body" "anthropic-version: 2023-06-01"
warm_l1 /v1/ask "$ask_body"
# Through wrangler dev's proxy (as a. is), and at the runtime's own socket, where a deployed
# Worker's request arrives: the proxy handles an event-stream response at a cost of its own.
# hit_pair SUFFIX BASE: the chat completions hit, JSON then streamed.
hit_pair() {
  jhit_args=(--url "$2/v1/chat/completions" --method POST --header "Authorization: Bearer $key"
    --header "Content-Type: application/json" --body "$json_body" --expect '"chat.completion"' --concurrency "$CONC")
  shit_args=(--url "$2/v1/chat/completions" --method POST --header "Authorization: Bearer $key"
    --header "Content-Type: application/json" --body "$stream_body" --expect '[DONE]' --concurrency "$CONC")
  if [ -n "$1" ]; then
    # At the socket, the bare route too, in the same rounds: section d's socket ratios divide
    # each hit by it, as the proxy ratios divide by a.'s bare route.
    ebare_args=(--url "$2/healthz" --concurrency "$CONC" --expect '"ok":true')
    compare "bare$1" ebare_args "json_hit$1" jhit_args "stream_hit$1" shit_args
  else
    compare "json_hit$1" jhit_args "stream_hit$1" shit_args
  fi
}
hit_pair "" "$base"
r=$(calc 'a/b' "$(field "$line_stream_hit" rps)" "$(field "$line_json_hit" rps)")
say "RATIO stream_hit / json_hit rps, through wrangler dev's proxy = $r$([ -z "$direct" ] && echo "  (target >= 0.90: $(verdict "$r" '>=' 0.9))")"
# The two other endpoints' hits, each JSON and streamed: other_hits SUFFIX BASE.
other_hits() {
  mhit_args=(--url "$2/v1/messages" --method POST --header "Authorization: Bearer $key"
    --header "Content-Type: application/json" --header "anthropic-version: 2023-06-01" --body "$msg_body"
    --expect '"type":"message"' --concurrency "$CONC")
  mshit_args=(--url "$2/v1/messages" --method POST --header "Authorization: Bearer $key"
    --header "Content-Type: application/json" --header "anthropic-version: 2023-06-01" --body "$msg_stream_body"
    --expect 'event: message_stop' --concurrency "$CONC")
  ajhit_args=(--url "$2/v1/ask" --method POST --header "Authorization: Bearer $key"
    --header "Content-Type: application/json" --body "$ask_body" --expect '"tier":"l1"' --concurrency "$CONC")
  ashit_args=(--url "$2/v1/ask" --method POST --header "Authorization: Bearer $key"
    --header "Content-Type: application/json" --body "$ask_stream_body" --expect 'event: done' --concurrency "$CONC")
  compare "messages_hit$1" mhit_args "messages_stream_hit$1" mshit_args "ask_json_hit$1" ajhit_args "ask_stream_hit$1" ashit_args
  local where="through wrangler dev's proxy" t="" m a
  [ -n "$1" ] && where="at the Worker's socket"
  m=$(calc 'a/b' "$(field "$(v="line_messages_stream_hit$1"; echo "${!v}")" rps)" "$(field "$(v="line_messages_hit$1"; echo "${!v}")" rps)")
  a=$(calc 'a/b' "$(field "$(v="line_ask_stream_hit$1"; echo "${!v}")" rps)" "$(field "$(v="line_ask_json_hit$1"; echo "${!v}")" rps)")
  if [ -n "$1" ] || [ -z "$direct" ]; then
    say "RATIO messages_stream_hit / messages_hit rps, $where = $m  (target >= 0.90: $(verdict "$m" '>=' 0.9))"
    say "RATIO ask_stream_hit / ask_json_hit rps, $where = $a  (target >= 0.90: $(verdict "$a" '>=' 0.9))"
  else
    say "RATIO messages_stream_hit / messages_hit rps, $where = $m"
    say "RATIO ask_stream_hit / ask_json_hit rps, $where = $a"
  fi
}
other_hits "" "$base"
if [ -n "$direct" ]; then
  hit_pair "_socket" "$direct"
  r=$(calc 'a/b' "$(field "$line_stream_hit_socket" rps)" "$(field "$line_json_hit_socket" rps)")
  say "RATIO stream_hit / json_hit rps, at the Worker's socket = $r  (target >= 0.90: $(verdict "$r" '>=' 0.9))"
  other_hits "_socket" "$direct"
fi
if [ -n "$direct" ]; then
  mdirect_args=(--url "$mock/openai/v1/chat/completions" --method POST --header "Authorization: Bearer x"
    --header "Content-Type: application/json" --body "$stream_body" --expect '[DONE]' --concurrency 1 --first-byte)
  smiss_args=(--url "$direct/v1/chat/completions" --method POST --header "Authorization: Bearer $key"
    --header "Content-Type: application/json" --header "Cache-Control: no-store" --body "$stream_body"
    --expect '[DONE]' --concurrency 1 --first-byte)
  compare mock_stream_first_event mdirect_args stream_miss_first_event smiss_args
  d50=$(p50_gap "$line_stream_miss_first_event" "$line_mock_stream_first_event")
  say "OVERHEAD c=1 at the Worker's socket: time to first event, stream_miss - mock_stream: p50 +$d50 ms  (target p50 <= 2 ms: $(verdict "$d50" '<=' 2))"
fi
fi

# f. coalescing: bursts of N identical misses (a fresh prompt per burst), on and off alternating,
#    BENCH_ROUNDS bursts each; upstream calls counted by the mock.
if [[ "$ONLY" == *f* ]]; then
say ""
say "## f. coalescing: N identical concurrent misses (/v1/ask, openai, mock delay ${BENCH_FLIGHT_DELAY_MS:-300} ms), on vs off"
python3 - "$base" "$mock" "$key" "$nonce" "$ROUNDS" "${BENCH_FLIGHT_DELAY_MS:-300}" <<'PY' | tee -a "$summary"
import json, sys, threading, time, urllib.request
base, mock, key, nonce, rounds, delay = sys.argv[1:7]
rounds, delay = int(rounds), int(delay)
def call(body, off, out, i):
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if off:
        h["x-dev-flight"] = "off"
    req = urllib.request.Request(f"{base}/v1/ask", data=body, headers=h, method="POST")
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            ok = r.status == 200
    except Exception:
        ok = False
    out[i] = ((time.perf_counter() - t) * 1000, ok)
def burst(n, off, tag):
    prompt = f"bench flight {nonce} {tag} [[mock:openai=delay:{delay}]]"
    body = json.dumps({"prompt": prompt, "providers": ["openai"]}).encode()
    out = [None] * n
    threads = [threading.Thread(target=call, args=(body, off, out, i)) for i in range(n)]
    for t in threads: t.start()
    for t in threads: t.join()
    q = urllib.parse.quote(f"{nonce} {tag} ")
    calls = json.load(urllib.request.urlopen(f"{mock}/__mock/calls?contains={q}"))["total"]
    return [o[0] for o in out], sum(1 for o in out if not o[1]), calls
import urllib.parse
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
print(f"{'N':>4} {'mode':>5} {'upstream calls':>15} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
rows = {}
for n in (1, 10, 100):
    for r in range(rounds):
        for off in (False, True):
            lat, failed, calls = burst(n, off, f"n{n}r{r}{'off' if off else 'on'}")
            e = rows.setdefault((n, off), [[], 0, 0])
            e[0] += lat; e[1] += failed; e[2] += calls
    for off in (False, True):
        lat, failed, calls = rows[(n, off)]
        print(f"{n:>4} {'off' if off else 'on':>5} {calls / rounds:>15.1f} {failed:>7} {pct(lat, 50):>8.1f} {pct(lat, 99):>8.1f}")
    on, off = rows[(n, False)], rows[(n, True)]
    print(f"RATIO N={n}: upstream calls on/off = {on[2] / max(off[2], 1):.2f}, p50 on/off = {pct(on[0], 50) / pct(off[0], 50):.2f}")
PY
fi

# s. the scaling simulation of docs/SCALING.md (BENCH_ONLY=s; not in the default run): the same
#    /v1/ask traffic spread over 1,000 keys of 100 accounts, concentrated on one account's 100
#    keys, on one key, over one key's limit, and hits of one shared cache key from all 1,000
#    keys; then whether every call of a burst got its usage row. Each beside the bare route.
if [[ "$ONLY" == *s* ]]; then
say ""
say "## s. scaling simulation (docs/SCALING.md): concurrency $CONC, each vs the spread case"
sim="$work/sim"; mkdir -p "$sim"
python3 - "$base" "$sim" <<'PY'
import http.client, json, os, sys, urllib.parse
base, out = sys.argv[1:3]
u = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
admin = {"Authorization": f"Bearer {os.environ['ADMIN_TOKEN']}", "Content-Type": "application/json"}
def call(method, path, body):
    conn.request(method, path, json.dumps(body), admin)
    r = conn.getresponse(); text = r.read()
    if r.status >= 300: raise SystemExit(f"{method} {path}: {r.status} {text[:200]}")
    return json.loads(text) if text else None
big = {"burst": 1000000, "per_second": 100000, "input_tokens_per_minute": 1000000000,
       "output_tokens_per_minute": 1000000000, "account_calls_per_minute": 1000000000,
       "account_input_tokens_per_minute": 1000000000, "account_output_tokens_per_minute": 1000000000}
def account(limits):
    a = call("POST", "/admin/accounts", {"tier": "enterprise", "credits": 10**12})["account_id"]
    call("PATCH", f"/admin/accounts/{a}", {"tier": "enterprise", "limits": limits})
    return a
def keys(a, n):
    return [call("POST", f"/admin/accounts/{a}/keys", {"name": f"sim{i}", "mode": "live"})["key"] for i in range(n)]
def write(name, lines):
    with open(os.path.join(out, name), "w") as f: f.write("\n".join(lines) + "\n")
spread = []
for _ in range(100):
    spread += keys(account(big), 10)
write("spread.keys", spread)
write("hot_account.keys", keys(account(big), 100))
write("hot_key.keys", keys(account(big), 1))
limited = account(dict(big, burst=5, per_second=5.0))
write("limited.keys", keys(limited, 1))
rows_account = account(big)
write("rows.keys", keys(rows_account, 10))
write("rows.account", [rows_account])
PY
say "keys: 1,000 in 100 accounts (spread), 100 in one account, 1 hot key, 1 key limited to 5 calls/s; all enterprise, limits out of reach but the limited key's"
sim_prompt="bench scaling $nonce"
sim_miss="{\"prompt\":\"$sim_prompt miss\",\"providers\":[\"openai\"],\"params\":{\"max_tokens\":16}}"
sim_hit="{\"prompt\":\"$sim_prompt hit\",\"providers\":[\"openai\"],\"params\":{\"max_tokens\":16}}"
# The shared entry, stored once before the hits.
curl -fsS -H "Authorization: Bearer $(head -1 "$sim/spread.keys")" -H "Content-Type: application/json" \
  -d "$sim_hit" "$base/v1/ask" >/dev/null
sim_target="${direct:-$base}"
miss_of() { local -n a="$1"; a=(--url "$sim_target/v1/ask" --method POST --key-file "$sim/$2.keys"
  --header "Content-Type: application/json" --header "Cache-Control: no-store" --body "$sim_miss"
  --concurrency "$CONC"); }
miss_of s_spread spread; s_spread+=(--expect '"status":"bypass"')
miss_of s_hot_account hot_account; s_hot_account+=(--expect '"status":"bypass"')
miss_of s_hot_key hot_key; s_hot_key+=(--expect '"status":"bypass"')
miss_of s_over_limit limited; s_over_limit+=(--expect-status 429)
s_shared_hit=(--url "$sim_target/v1/ask" --method POST --key-file "$sim/spread.keys"
  --header "Content-Type: application/json" --body "$sim_hit" --expect '"status":"hit"' --concurrency "$CONC")
s_bare=(--url "$sim_target/healthz" --concurrency "$CONC" --expect '"ok":true')
say "at ${sim_target}"
compare sim_bare s_bare sim_spread_miss s_spread sim_hot_account_miss s_hot_account \
  sim_hot_key_miss s_hot_key sim_over_limit_429 s_over_limit sim_shared_hit s_shared_hit
for l in hot_account_miss hot_key_miss over_limit_429 shared_hit bare; do
  v="line_sim_$l"
  say "RATIO sim_$l / sim_spread_miss: rps $(calc 'a/b' "$(field "${!v}" rps)" "$(field "$line_sim_spread_miss" rps)"), p99 $(calc 'a/b' "$(field "${!v}" p99_ms)" "$(field "$line_sim_spread_miss" p99_ms)")"
done
# Usage rows under load: a burst of misses from 10 keys of a fresh account, no warmup (every
# call sent is counted), then its rows once the isolate's batches are written.
"$loadgen" --label sim_rows --url "$sim_target/v1/ask" --method POST --key-file "$sim/rows.keys" \
  --header "Content-Type: application/json" --header "Cache-Control: no-store" --body "$sim_miss" \
  --concurrency "$CONC" --duration "$DURATION" --warmup 0 >"$sim/rows.line" 2>/dev/null || true
sleep 2
rows=$(curl -fsS "$base/__dev/rows/$(cat "$sim/rows.account")" | jget usage_events)
sent=$(field "$(cat "$sim/rows.line")" requests)
say "usage rows under load: $rows rows for $sent calls in ${DURATION}s ($(calc 'a/b' "$sent" "$DURATION" 0) calls/s from one isolate)$([ "$rows" = "$sent" ] && echo ', none lost' || echo ', MISMATCH')"
fi

# d. the reference for a.: what the local runtime allows a Cache API hit with no gateway code.
if [[ "$ONLY" == *d* ]]; then
say ""
say "## d. reference for a.: a JS Worker's caches.default hit vs its own bare route (concurrency $CONC)"
stop_group "$stack"; stack=""
mkdir -p "$work/ref"
cp benches/reference-worker/*.js benches/reference-worker/*.toml "$work/ref/"
start_reference "$work/ref" wrangler.toml reference-broker.toml
if wait_up "$ref_base" "$ref" 120; then
  say "reference Worker: wrangler dev on $ref_base; its DevTools domains: $(disable_devtools "$ref_inspector" Network Debugger Runtime)"
  # A stored entry of the size of the gateway's L1 answer in a. (about 400 bytes).
  ref_entry="{\"tier\":\"l1\",\"results\":[{\"provider\":\"openai\",\"model\":\"gpt-4o-mini\",\"content\":\"[openai/gpt-4o-mini] reference entry $nonce, about as long as the gateway's\",\"citations\":[],\"tokens\":{\"input\":4,\"output\":6}}],\"padding\":\"$(printf '%0150d' 0)\"}"
  ref_key=$(printf '%s' "$nonce" | sha256sum | cut -c1-64)
  curl -fsS -X PUT --data-binary "$ref_entry" "$ref_base/hit/$ref_key" >/dev/null
  ref_bare_args=(--url "$ref_base/healthz" --concurrency "$CONC" --expect '"ok":true')
  ref_hit_args=(--url "$ref_base/hit/$ref_key" --concurrency "$CONC" --expect '"tier":"l1"')
  # The same hit as a POST shaped like a.'s (its headers and body, the body read).
  ref_post_args=(--url "$ref_base/hit/$ref_key" --method POST --header "Authorization: Bearer $key"
    --header "Content-Type: application/json" --body "$ask_body" --concurrency "$CONC" --expect '"tier":"l1"')
  compare ref_bare ref_bare_args ref_cache_hit ref_hit_args ref_cache_hit_post ref_post_args
  say "RATIO reference: caches.default hit / bare route rps = $(calc 'a/b' "$(field "$line_ref_cache_hit" rps)" "$(field "$line_ref_bare" rps)")  (no gateway code: the local runtime's own bound for a.)"
  say "  the same hit as a POST shaped like a.'s / bare route = $(calc 'a/b' "$(field "$line_ref_cache_hit_post" rps)" "$(field "$line_ref_bare" rps)")"
  # Each hit over its own stack's bare route, over the reference's: how close the gateway's hits
  # come to what the local runtime allows any Cache API hit (issue 21: target >= 0.9).
  # hits_over_reference SUFFIX BARE REF_RATIO WHERE HIT...: each hit (line_<HIT><SUFFIX>) over
  # the gateway's bare route (line_<BARE>), over REF_RATIO (the reference's hit over its own).
  hits_over_reference() {
    local sfx="$1" bare="line_$2" ref_r="$3" where="$4" l v own r; shift 4
    [ -n "${!bare:-}" ] || return 0
    for l in "$@"; do
      v="line_$l$sfx"
      [ -n "${!v:-}" ] || continue
      own=$(calc 'a/b' "$(field "${!v}" rps)" "$(field "${!bare}" rps)" 4)
      r=$(calc 'a/b' "$own" "$ref_r")
      say "RATIO $l$sfx (over the gateway's bare route$where) / the reference's POST hit (over its bare route$where) = $r  (target >= 0.90: $(verdict "$r" '>=' 0.9))"
    done
  }
  ref_ratio=$(calc 'a/b' "$(field "$line_ref_cache_hit_post" rps)" "$(field "$line_ref_bare" rps)" 4)
  hits_over_reference "" bare_healthz "$ref_ratio" "" \
    l1_hit json_hit stream_hit messages_hit messages_stream_hit ask_json_hit ask_stream_hit
  # The same at the runtime's socket, beside e.'s hits there: wrangler dev's proxy handles an
  # event-stream response at a cost of its own (e. prints both), which production does not have.
  ref_direct=$(runtime_socket "$ref" "$ref_port" "$ref_inspector")
  if [ -n "$ref_direct" ] && [ -n "${line_bare_socket:-}" ]; then
    ref_bare_socket_args=(--url "$ref_direct/healthz" --concurrency "$CONC" --expect '"ok":true')
    ref_post_socket_args=(--url "$ref_direct/hit/$ref_key" --method POST --header "Authorization: Bearer $key"
      --header "Content-Type: application/json" --body "$ask_body" --concurrency "$CONC" --expect '"tier":"l1"')
    compare ref_bare_socket ref_bare_socket_args ref_cache_hit_post_socket ref_post_socket_args
    ref_ratio_socket=$(calc 'a/b' "$(field "$line_ref_cache_hit_post_socket" rps)" "$(field "$line_ref_bare_socket" rps)" 4)
    say "  at the runtime's socket: the reference's POST hit / its bare route = $ref_ratio_socket"
    hits_over_reference _socket bare_socket "$ref_ratio_socket" " there" \
      json_hit stream_hit messages_hit messages_stream_hit ask_json_hit ask_stream_hit
  fi
  # The miss topology with no gateway code: the local runtime's floor (see miss_floor).
  if [ -n "$ref_direct" ]; then
    say ""
    say "## d. reference for c. and e.: the miss topology with no gateway code (benches/reference-worker, POST /miss) vs its mock directly, at the runtime's socket"
    miss_floor ref "the runtime's own" "$ref_direct" "$ref_mock"
  else
    say "the reference Worker's runtime socket was not found: no floor for c. and e."
  fi
else
  say "the reference Worker did not come up; see $work/ref.log"
  tail -20 "$work/ref.log" >&2
fi
stop_group "$ref"; ref=""
# The same miss topology written with the worker crate and wasm-bindgen, as the gateway and its
# brokers are (benches/reference-rust, one module playing both Workers): the floor under a Rust
# Worker's miss. Its figures less the JS floor's are what the language binding itself costs the
# topology; the gateway's less the Rust floor's are the gateway's own code.
say ""
say "## d. reference for c. and e. in Rust: the same topology on the worker crate (benches/reference-rust, POST /miss) vs its mock directly, at the runtime's socket"
if bash scripts/build.sh reference >"$work/refrs-build.log" 2>&1; then
  mkdir -p "$work/refrs"
  cp -r benches/reference-rust/build benches/reference-rust/*.toml "$work/refrs/"
  start_reference "$work/refrs" reference-rust.toml reference-rust-broker.toml
  if wait_up "$ref_base" "$ref" 120; then
    say "Rust reference: wrangler dev on $ref_base; its DevTools domains: $(disable_devtools "$ref_inspector" Network Debugger Runtime)"
    refrs_direct=$(runtime_socket "$ref" "$ref_port" "$ref_inspector")
    if [ -n "$refrs_direct" ]; then
      # Twice: each response handed on through the worker crate's Response (POST /miss), and
      # the runtime's own Response passed through untouched (POST /miss-raw).
      for route in /miss /miss-raw; do
        if [ "$route" = /miss ]; then label=refrs what="a Rust Worker's"; else label=refrs_raw what="a Rust Worker's (raw Response)"; fi
        miss_floor "$label" "$what" "$refrs_direct" "$ref_mock" "$route"
        shares=""
        for c in $MISS_CONC; do
          shares+="c=$c +$(calc 'a-b' "$(floor_gap "$label" "c$c")" "$(floor_gap ref "c$c")" 3) ms, "
        done
        say "  $what floor less the JS floor: ${shares}first event +$(calc 'a-b' "$(floor_gap "$label" stream)" "$(floor_gap ref stream)" 3) ms"
      done
    else
      say "the Rust reference's runtime socket was not found: no Rust floor"
    fi
  else
    say "the Rust reference did not come up; see $work/refrs.log"
    tail -20 "$work/refrs.log" >&2
  fi
  stop_group "$ref"; ref=""
else
  say "the Rust reference's build FAILED (see $work/refrs-build.log)"
  tail -20 "$work/refrs-build.log" >&2
fi
fi

# The gateway's production module (no test hooks): what a deploy uploads, raw and gzip -9.
if [[ "$ONLY" == *z* ]]; then
  say ""
  say "## z. bundle: the gateway's production wasm (scripts/build.sh gateway)"
  if bash scripts/build.sh gateway >"$work/prod-build.log" 2>&1; then
    raw=$(wc -c <build/index_bg.wasm); gz=$(gzip -9 -c build/index_bg.wasm | wc -c)
    say "gateway index_bg.wasm: $raw bytes raw, $gz bytes gzip ($(calc 'a/b' "$gz" 1024 1) KiB; issue 21's reference: 525 KB, $(verdict "$(calc 'a/b' "$gz" 1000 1)" '<=' 525))"
  else
    say "the production build FAILED (see $work/prod-build.log)"
  fi
fi

say ""
say "load at end:$(uptime | sed 's/.*load average/ load average/')"
echo "report: $report"
