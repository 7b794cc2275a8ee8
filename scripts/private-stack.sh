# Sourced by scripts/bench.sh and scripts/soak.sh: a stack of their own, run from a private copy
# of the built Workers (so a rebuild by someone else, which hot-reloads every wrangler dev
# watching build/, cannot reach it mid-run), on free ports, in its own process group; and the
# DevTools client call that turns off what wrangler's inspector enables (docs/DECISIONS.md,
# "Load benchmarks"). Expects ROOT (scripts/env.sh) and the current directory at ROOT.

# A free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_private_stack WORK: copies what the stack runs (scripts, configs, built Workers,
# migrations, mock; Cargo.lock because scripts/env.sh reads the wasm-bindgen version from it)
# to WORK/root and starts it there, state in WORK/state, log in WORK/stack.log. Sets port,
# mock_port, inspector, base, mock and stack (the process group to stop).
start_private_stack() {
  local work="$1" snap="$1/root"
  port=$(free_port); mock_port=$(free_port); inspector=$(free_port)
  mkdir -p "$snap/broker" "$snap/target/release"
  cp -r scripts migrations wrangler.toml Cargo.lock build "$snap/"
  cp -r broker/build broker/wrangler.*.toml "$snap/broker/"
  cp target/release/mock-provider "$snap/target/release/"
  ln -s "$ROOT/node_modules" "$snap/node_modules"
  WRANGLER_LOG_PATH="$work/wrangler-logs" \
    setsid bash "$snap/scripts/stack.sh" "$work/state" "$port" "$mock_port" "$inspector" >"$work/stack.log" 2>&1 &
  stack=$!
  base="http://127.0.0.1:$port"
  mock="http://127.0.0.1:$mock_port"
}

# wait_up URL PID TRIES: waits (0.5 s a try) until URL/healthz answers; fails early if PID exits.
wait_up() {
  local _
  for _ in $(seq 1 "$3"); do
    curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

# disable_devtools PORT DOMAIN...: a DevTools client's `<DOMAIN>.disable` for each DOMAIN
# (Network, Debugger, Runtime), through wrangler's inspector proxy on PORT; prints what it did.
disable_devtools() {
  node -e '
    const [wsPath, port, ...domains] = process.argv.slice(1);
    const ws = new (require(wsPath))(`ws://127.0.0.1:${port}/ws`);
    const timer = setTimeout(() => { console.log("NOT disabled (timeout)"); process.exit(0); }, 20000);
    const failed = [];
    ws.on("open", () => domains.forEach((d, i) =>
      ws.send(JSON.stringify({ id: i + 1, method: d + ".disable" }))));
    let answered = 0;
    ws.on("message", (m) => {
      const d = JSON.parse(m);
      if (!d.id || d.id > domains.length) return;
      if (d.error) failed.push(domains[d.id - 1] + ": " + JSON.stringify(d.error));
      if (++answered < domains.length) return;
      console.log(failed.length ? "NOT all disabled: " + failed.join("; ") : "disabled (" + domains.join(", ") + ")");
      clearTimeout(timer); ws.close();
    });
    ws.on("error", (e) => { console.log("NOT disabled: " + e.message); process.exit(0); });
  ' "$ROOT/node_modules/ws" "$@" 2>&1 || echo "NOT disabled"
}

# runtime_socket PGID SKIP_PORT...: the Workers' runtime socket behind wrangler's proxy, as a URL:
# a loopback port that one of the group's workerd processes listens on, other than the SKIP
# ports (wrangler's proxy, its inspector), and that answers GET /healthz with `"ok":true`;
# prints nothing when there is none.
runtime_socket() {
  python3 - "$@" <<'PY' || true
import os, re, sys, urllib.request
pgid, skip = int(sys.argv[1]), set(sys.argv[2:])
inodes = set()
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.getpgid(int(pid)) != pgid or "workerd" not in open(f"/proc/{pid}/comm").read():
            continue
        for fd in os.listdir(f"/proc/{pid}/fd"):
            m = re.match(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
            if m:
                inodes.add(m.group(1))
    except OSError:
        continue
ports = set()
for line in open("/proc/net/tcp").read().splitlines()[1:]:
    f = line.split()
    if f[3] == "0A" and f[9] in inodes and f[1].startswith("0100007F:"):
        ports.add(str(int(f[1].split(":")[1], 16)))
for p in sorted(ports - skip):
    try:
        if b'"ok":true' in urllib.request.urlopen(f"http://127.0.0.1:{p}/healthz", timeout=2).read():
            print(f"http://127.0.0.1:{p}")
            break
    except Exception:
        pass
PY
}
