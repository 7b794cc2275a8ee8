"""The soak's load and its checks (run by scripts/soak.sh, which starts and stops the stack).

Mixed load on loopback for a bounded time: /v1/ask hits, misses and streams, drop-in calls of
both dialects (JSON and streamed, hits and misses), 429s (a free-tier account called past its
limit), 402s (an account with almost no credits), key revocations (a revoked key must get 401),
account deletions (a deleted account's key must get 401), account reads. At the end:
- zero 5xx and no request past its timeout;
- the RSS of the stack's workerd processes, sampled all along, flat after warm-up (the curve is
  printed);
- conservation for every account still there: initial credits - balance = the sum of the
  credits of its usage rows, and every /v1/ask response said exactly what its usage row says
  (a drop-in answer does not carry its cost: its usage row is what it said).
Usage: soak.py BASE ADMIN_TOKEN SECONDS STACK_PGID OUT_DIR
"""

import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse

BASE, ADMIN, SECONDS, PGID, OUT = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
HOST = urllib.parse.urlparse(BASE).hostname
PORT = urllib.parse.urlparse(BASE).port
assert HOST in ("127.0.0.1", "localhost", "::1"), "the soak targets loopback only"
TIMEOUT = 60
THREADS = int(os.environ.get("SOAK_THREADS", "4"))
SAMPLE_EVERY = float(os.environ.get("SOAK_SAMPLE_S", "10"))
# Measured (8 min of the default mix, about 70 requests/s): the V8 heaps of both workerd processes,
# wrangler's proxy's included, which runs none of the gateway's code, grow for about 5 minutes
# and then level off (about 1.15 GiB in all). The trend is judged over the second half of the
# run, so the default 10 minutes judge the level; a shorter run may judge the warm-up.
WARMUP_FRACTION = 0.5

lock = threading.Lock()
stats = {}            # outcome -> count
fivexx = []           # (what, status, body) of every 5xx
timeouts = []
said = {}             # request id -> credits an /v1/ask response said it cost
accounts = {}         # account id -> {"initial": credits, "key": live key, "deleted": bool}
rss_curve = []        # (seconds since start, total RSS in MiB, {pid: MiB})


def count(what):
    with lock:
        stats[what] = stats.get(what, 0) + 1


def call(method, path, body=None, token=None, headers=None, what=""):
    """One request; returns (status, headers dict, body bytes) or None on a timeout."""
    h = {"Connection": "close"}
    if body is not None:
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    conn = http.client.HTTPConnection(HOST, PORT, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        out = r.read()
        status, rh = r.status, {k.lower(): v for k, v in r.getheaders()}
    except (TimeoutError, OSError) as e:
        with lock:
            timeouts.append(f"{what or method + ' ' + path}: {e}")
        count("timeout")
        return None
    finally:
        conn.close()
    if status >= 500:
        with lock:
            fivexx.append((what or f"{method} {path}", status, out[:300]))
    count(f"{what or method + ' ' + path.split('?')[0]} {status}")
    return status, rh, out


def admin(method, path, body):
    r = call(method, path, body, token=ADMIN, what="admin")
    assert r and r[0] in (200, 201), f"{path}: {r}"
    return json.loads(r[2])


def new_account(tier, credits):
    a = admin("POST", "/admin/accounts", {"tier": tier, "credits": credits})["account_id"]
    k = admin("POST", f"/admin/accounts/{a}/keys", {"name": "soak", "mode": "live"})["key"]
    with lock:
        accounts[a] = {"initial": credits, "key": k, "deleted": False}
    return a, k


def sse_done(body):
    """The `done` event's data of a /v1/ask stream."""
    ev = None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("event:"):
            ev = line[6:].strip()
        elif line.startswith("data:") and ev == "done":
            return json.loads(line[5:].strip())
    return None


PROVIDERS = ["openai", "anthropic", "gemini", "perplexity"]


def ask(key, prompt, stream=False, providers=None, what="ask"):
    body = {"prompt": prompt, "providers": providers or ["openai"], "params": {"max_tokens": 32}}
    if stream:
        body["stream"] = True
    r = call("POST", "/v1/ask", body, token=key, what=what)
    if r and r[0] == 200:
        doc = sse_done(r[2]) if stream else json.loads(r[2])
        assert doc is not None, f"{what}: no done event"
        with lock:
            said[doc["id"]] = doc["usage"]["credits"]
    return r


def chat(key, prompt, stream=False):
    body = {"model": "gpt-4o-mini", "max_tokens": 32, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return call("POST", "/v1/chat/completions", body, token=key, what="chat" + (" stream" if stream else ""))


def messages(key, prompt, stream=False):
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 32,
            "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return call("POST", "/v1/messages", body, headers={"x-api-key": key},
                what="messages" + (" stream" if stream else ""))


# The mix: (name, weight). SOAK_ONLY=name,name runs only those (to tell which part of the load
# a memory trend comes from).
MIX = [("hit", 25), ("miss", 12), ("stream", 8), ("chat", 10), ("messages", 10), ("free", 7),
       ("poor", 5), ("revoke", 4), ("delete", 3), ("read", 16)]
ONLY = [x.strip() for x in os.environ.get("SOAK_ONLY", "").split(",") if x.strip()]
if ONLY:
    assert all(o in dict(MIX) for o in ONLY), f"SOAK_ONLY names one of {[m for m, _ in MIX]}"
    MIX = [(m, w) for m, w in MIX if m in ONLY]


def worker(i, deadline, steady, free_key, poor_key):
    rnd = random.Random(i * 7919 + int(time.time()))
    names = [m for m, _ in MIX]
    weights = [w for _, w in MIX]
    n = 0
    while time.time() < deadline:
        n += 1
        acct, key = rnd.choice(steady)
        op = rnd.choices(names, weights)[0]
        tag = f"soak {i} {n} {time.time_ns()}"
        if op == "hit":
            ask(key, f"soak hit question {rnd.randrange(8)}",
                providers=PROVIDERS[: 1 + rnd.randrange(4)], what="ask hit")
        elif op == "miss":
            ask(key, f"miss {tag}", providers=rnd.sample(PROVIDERS, 1 + rnd.randrange(4)), what="ask miss")
        elif op == "stream":
            ask(key, rnd.choice([f"stream {tag}", f"soak stream question {rnd.randrange(4)}"]),
                stream=True, what="ask stream")
        elif op == "chat":
            chat(key, rnd.choice([f"chat {tag}", f"soak chat question {rnd.randrange(4)}"]),
                 stream=rnd.random() < 0.4)
        elif op == "messages":
            messages(key, rnd.choice([f"messages {tag}", f"soak messages question {rnd.randrange(4)}"]),
                     stream=rnd.random() < 0.4)
        elif op == "free":
            r = ask(free_key, f"free {tag}", what="free tier")
            if r and r[0] == 429:
                assert "retry-after" in r[1] or b"could never" in r[2], r
        elif op == "poor":
            ask(poor_key, f"poor {tag}", providers=PROVIDERS, what="poor account")
        elif op == "revoke":
            # Revocation: a new key works, is revoked, and is refused at once.
            r = call("POST", "/v1/keys", {"name": "short-lived"}, token=key, what="mint")
            if r and r[0] == 201:
                k2 = json.loads(r[2])
                ask(k2["key"], f"before revoke {tag}", what="ask by new key")
                call("DELETE", f"/v1/keys/{k2['prefix']}", token=key, what="revoke")
                r = ask(k2["key"], f"after revoke {tag}", what="ask by revoked key")
                if r and r[0] != 401:
                    with lock:
                        fivexx.append(("revoked key answered", r[0], r[2][:200]))
        elif op == "delete":
            # Deletion: an account used, checked, deleted, and refused after.
            a, k = new_account("pro", 50_000)
            ask(k, f"doomed {tag}", what="ask doomed")
            chat(k, f"doomed chat {tag}")
            time.sleep(0.3)
            ok = conservation(a, k)
            count(f"deleted account conserved {ok}")
            r = call("DELETE", "/v1/account", token=k, what="delete account")
            if r and r[0] == 200:
                with lock:
                    accounts[a]["deleted"] = True
                r = call("GET", "/v1/account", token=k, what="deleted account read")
                if r and r[0] != 401:
                    with lock:
                        fivexx.append(("deleted account answered", r[0], r[2][:200]))
        else:
            call("GET", rnd.choice(["/v1/account", "/v1/usage?limit=5", "/v1/keys"]), token=key, what="read")


def rss_sample(t0):
    """VmRSS of each workerd process of the stack, and its parts: anonymous (the processes'
    own heaps), file-backed and shared memory (pages of mapped files, e.g. SQLite's)."""
    procs, parts = {}, {"anon": 0.0, "file": 0.0, "shmem": 0.0}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != PGID:
                continue
            if "workerd" not in open(f"/proc/{pid}/comm").read():
                continue
            for line in open(f"/proc/{pid}/status"):
                k, _, v = line.partition(":")
                if k == "VmRSS":
                    procs[int(pid)] = int(v.split()[0]) / 1024
                elif k in ("RssAnon", "RssFile", "RssShmem"):
                    parts[k[3:].lower()] += int(v.split()[0]) / 1024
        except OSError:
            continue
    rss_curve.append((time.time() - t0, sum(procs.values()), procs, parts))


def sampler(t0, deadline, stop):
    while not stop.is_set():
        rss_sample(t0)
        stop.wait(SAMPLE_EVERY)


def usage_rows(key):
    rows, cursor = {}, None
    while True:
        q = "/v1/usage?limit=500" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        r = call("GET", q, token=key, what="usage (check)")
        assert r and r[0] == 200, r
        doc = json.loads(r[2])
        for e in doc["events"]:
            rows[e["request_id"]] = e.get("credits") or 0
        cursor = doc.get("next_cursor")
        if not cursor:
            return rows, doc


def conservation(account, key, report=None):
    r = call("GET", "/v1/account", token=key, what="balance (check)")
    assert r and r[0] == 200, r
    balance = json.loads(r[2])["credits_balance"]
    rows, _ = usage_rows(key)
    spent = accounts[account]["initial"] - balance
    charged = sum(rows.values())
    with lock:
        mine = {rid: c for rid, c in said.items() if rid in rows}
    wrong = [(rid, c, rows[rid]) for rid, c in mine.items() if rows[rid] != c]
    ok = spent == charged and not wrong
    if report is not None:
        report.append(f"  {account}: initial {accounts[account]['initial']}, balance {balance}, "
                      f"spent {spent}, usage rows {len(rows)} charging {charged}, "
                      f"/v1/ask responses matched {len(mine) - len(wrong)}/{len(mine)}"
                      f"{'' if ok else '  MISMATCH ' + str(wrong[:3])}")
    return ok


def main():
    t0 = time.time()
    steady = [new_account("scale", 50_000_000) for _ in range(3)]
    _, free_key = new_account("free", 1_000_000)
    _, poor_key = new_account("pro", 3_000)
    deadline = t0 + SECONDS
    stop = threading.Event()
    s = threading.Thread(target=sampler, args=(t0, deadline, stop), daemon=True)
    s.start()
    threads = [threading.Thread(target=worker, args=(i, deadline, steady, free_key, poor_key))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    s.join()
    rss_sample(t0)
    # Settlements and usage rows land within 100 ms (retries within seconds).
    time.sleep(3)
    ok = True
    total = sum(v for k, v in stats.items() if not k.startswith(("admin", "deleted account conserved")))
    print(f"soak: {total} requests in {SECONDS:.0f} s with {THREADS} clients "
          f"({total / SECONDS:.1f}/s)")
    for k in sorted(stats):
        print(f"  {stats[k]:>7}  {k}")
    print(f"5xx and wrong answers: {len(fivexx)}; timeouts: {len(timeouts)}")
    for f in fivexx[:10]:
        print("  ", f)
    for t in timeouts[:10]:
        print("  ", t)
    if fivexx or timeouts:
        ok = False
    for op, need in (("free", "free tier 429"), ("poor", "poor account 402"),
                     ("revoke", "ask by revoked key 401"), ("delete", "delete account 200")):
        if op in dict(MIX) and not stats.get(need):
            print(f"the mix produced no `{need}`")
            ok = False
    # The memory curve.
    print("workerd RSS (MiB) over time:")
    print("        time     total    anon    file   shmem   per process")
    for t, total_mb, procs, parts in rss_curve:
        print(f"  {t:7.1f} s  {total_mb:8.1f} {parts['anon']:7.1f} {parts['file']:7.1f} {parts['shmem']:7.1f}   "
              + "  ".join(f"{p}:{m:.0f}" for p, m in sorted(procs.items())))
    warm = [x for x in rss_curve if x[0] >= SECONDS * WARMUP_FRACTION]
    if len(warm) >= 3:
        xs = [x[0] for x in warm]
        ys = [x[1] for x in warm]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
        span = xs[-1] - xs[0]
        growth = slope * span
        allowed = max(0.15 * ys[0], 32.0)
        flat = growth <= allowed
        print(f"after warm-up ({SECONDS * WARMUP_FRACTION:.0f} s): {ys[0]:.1f} -> {ys[-1]:.1f} MiB; "
              f"trend {slope * 60:+.2f} MiB/min, {growth:+.1f} MiB over {span:.0f} s "
              f"(allowed {allowed:.1f}): {'flat' if flat else 'GROWING'}")
        ok = ok and flat
        if SECONDS < 480:
            print(f"  (a {SECONDS / 60:.1f}-minute run: the heaps take about 5 minutes to level off, "
                  "so this verdict may be on the warm-up; the default is 10 minutes)")
    else:
        print("too few memory samples after warm-up to judge (run longer)")
    # Conservation, for every account still there.
    lines = []
    conserved = all(conservation(a, v["key"], lines) for a, v in accounts.items() if not v["deleted"])
    print("conservation (initial - balance = sum of usage rows; /v1/ask responses = their rows):")
    print("\n".join(lines))
    print(f"conservation: {'holds' if conserved else 'BROKEN'} for {len(lines)} accounts "
          f"(and for {stats.get('deleted account conserved True', 0)} accounts checked before deletion"
          f"{', BROKEN for ' + str(stats['deleted account conserved False']) if stats.get('deleted account conserved False') else ''})")
    ok = ok and conserved and not stats.get("deleted account conserved False")
    with open(os.path.join(OUT, "soak-result.json"), "w") as f:
        json.dump({"stats": stats, "rss": [(t, m, parts) for t, m, _, parts in rss_curve], "ok": ok}, f)
    print("soak:", "PASSED" if ok else "FAILED")
    sys.exit(0 if ok else 1)


main()
