#!/usr/bin/env python3
"""The deploy driver behind scripts/deploy.sh (read that file first).

Both modes build the five production bundles and check them:
  1. `scripts/build.sh all` (production: no test hook in the gateway).
  2. Production configs generated from the committed wrangler.toml files into target/deploy/
     (one directory per Worker: wrangler.json, no build step, absolute paths, the real D1 and KV
     ids), or in a dry run into target/deploy-dry/ (placeholder ids), so a dry run never
     replaces the configs the operator's commands use. Generated, never hand-edited.
  3. Config checks: the gateway holds no provider key and no broker secret, each broker binds
     only its own provider's key, brokers have no workers.dev or preview URL and no route, the
     cron trigger and the Durable Object migrations are there, every Worker names the same D1.
  4. `wrangler deploy --dry-run --outdir` for each Worker, then bundle checks: raw and gzip size
     against the Workers limits, no dev-only name (scripts/dev-hooks.txt) in any bundle.
A dry run stops there (no network, no account). Real mode then creates or finds the D1 database
and the KV namespace, applies the D1 migrations remotely, sets the secrets that are missing,
deploys the four brokers, then the gateway, and prints the gateway's URL and how to mint a first
key. It is idempotent: a secret that exists is never replaced (provider keys only with
--update-provider-keys), and a Worker whose bundle and config did not change since this
machine last deployed it is not deployed again.

Usage: deploy.py [--dry-run] [--update-provider-keys] [--force]
"""
import gzip
import hashlib
import json
import os
import re
import secrets
import signal
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from urllib.parse import urlparse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The production configs, bundles and the record of what was deployed. A dry run writes its
# own (placeholder ids) to target/deploy-dry/, so the configs docs/OPERATIONS.md's commands name
# always hold the real ids of the last deploy.
OUT = os.path.join(ROOT, "target", "deploy")
DRY_OUT = os.path.join(ROOT, "target", "deploy-dry")
WRANGLER = os.path.join(ROOT, "node_modules", ".bin", "wrangler")
PROVIDERS = ["openai", "anthropic", "gemini", "perplexity"]
# Providers whose keys accounts may bring (gateway_core::keys::byok::supports): only their
# brokers hold a BYOK master key.
BYOK_PROVIDERS = ["openai", "anthropic"]
# Each broker's published upstream host (the committed configs must point there, never at a mock).
UPSTREAM_HOSTS = {
    "openai": "api.openai.com",
    "anthropic": "api.anthropic.com",
    "gemini": "generativelanguage.googleapis.com",
    "perplexity": "api.perplexity.ai",
}
D1_NAME = "edge-gateway"
KV_TITLE = "edge-gateway-cache"
PLACEHOLDER_D1 = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_KV = "00000000000000000000000000000000"
CRON = "0 4 * * *"
# Workers limits (developers.cloudflare.com/workers/platform/limits): script size after
# compression 3 MB on the free plan, 10 MB on paid; 64 MB before compression. Counted here in
# decimal megabytes, the stricter reading.
GZIP_FREE = 3_000_000
GZIP_PAID = 10_000_000
RAW_MAX = 64_000_000

WORKERS = ["gateway"] + [f"broker-{p}" for p in PROVIDERS]

# Which secret each Worker holds and where its value comes from. The single source of the
# deploy's secrets (names and sources only: values are generated or read at deploy time and
# never written anywhere but the upload). `BROKER_SHARED_SECRET_PREVIOUS` is set only during a
# rotation, by hand (docs/OPERATIONS.md).
def secret_plan():
    plan = {
        "gateway": {
            "ADMIN_TOKEN": "$ADMIN_TOKEN if set, else generated (printed once)",
            "BROKER_SHARED_SECRET": "generated once, the same on the gateway and all four brokers",
        }
    }
    for p in PROVIDERS:
        s = {
            "PROVIDER_API_KEY": f"${p.upper()}_API_KEY",
            "BROKER_SHARED_SECRET": "generated once, the same on the gateway and all four brokers",
        }
        if p in BYOK_PROVIDERS:
            s["BYOK_MASTER_KEY_V1"] = "generated once for this broker (64 hex; later versions: _V2, ...)"
        plan[f"broker-{p}"] = s
    return plan


# Names that only brokers may hold (as secrets), and that no Worker may hold as a plain var.
BROKER_ONLY = {
    "PROVIDER_API_KEY",
    "BYOK_MASTER_KEY",
    "BROKER_SHARED_SECRET_PREVIOUS",
} | {f"{p.upper()}_API_KEY" for p in PROVIDERS} | {f"BYOK_MASTER_KEY_V{v}" for v in range(1, 65)}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|API_KEY|MASTER_KEY|(^|_)TOKEN$|(^|_)KEY$")
# Values that look like key material: provider keys, gateway keys, bearer tokens, 32-byte hex.
KEY_VALUE = re.compile(
    r"sk-[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{20,}|pplx-[A-Za-z0-9]{8,}|lvk_(live|test)_|"
    r"Bearer\s|\b[0-9a-f]{64}\b"
)


class Report:
    """Prints checks as they pass or fail; remembers whether any failed."""

    def __init__(self):
        self.failed = 0

    def ok(self, what):
        print(f"  ok    {what}")

    def warn(self, what):
        print(f"  warn  {what}")

    def fail(self, what):
        self.failed += 1
        print(f"  FAIL  {what}")

    def check(self, cond, what):
        (self.ok if cond else self.fail)(what)
        return cond


def step(text):
    print(f"\n== deploy: {text}", flush=True)


def die(text):
    print(f"deploy: {text}", file=sys.stderr)
    sys.exit(1)


# ---- configs ----


def load_toml(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def generate(d1_id, kv_id, out=None):
    """Writes the five production configs (target/deploy/<worker>/wrangler.json, or under
    `out`)."""
    out = out or OUT
    os.makedirs(out, exist_ok=True)
    configs = {}

    def finish(name, cfg, base):
        cfg.pop("build", None)  # built once, up front, by scripts/build.sh all
        cfg["main"] = os.path.join(base, cfg["main"])
        if "assets" in cfg:
            cfg["assets"]["directory"] = os.path.join(base, cfg["assets"]["directory"])
        for db in cfg.get("d1_databases", []):
            db["database_id"] = d1_id
            if "migrations_dir" in db:
                db["migrations_dir"] = os.path.join(base, db["migrations_dir"])
        for kv in cfg.get("kv_namespaces", []):
            kv["id"] = kv_id
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "wrangler.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        configs[name] = (path, cfg)

    finish("gateway", load_toml(os.path.join(ROOT, "wrangler.toml")), ROOT)
    for p in PROVIDERS:
        base = os.path.join(ROOT, "broker")
        finish(f"broker-{p}", load_toml(os.path.join(base, f"wrangler.{p}.toml")), base)
    with open(os.path.join(out, "secrets-plan.json"), "w") as f:
        json.dump(secret_plan(), f, indent=2)
        f.write("\n")
    return configs


def check_vars(r, name, cfg):
    bad_names = [k for k in cfg.get("vars", {}) if k in BROKER_ONLY or SECRET_NAME.search(k)]
    r.check(not bad_names, f"{name}: no secret held as a plain var {bad_names or ''}".rstrip())
    bad_values = [k for k, v in cfg.get("vars", {}).items() if KEY_VALUE.search(str(v))]
    r.check(not bad_values, f"{name}: no var value looks like key material {bad_values or ''}".rstrip())
    dev = [k for k in cfg.get("vars", {}) if k.startswith("DEV_")]
    r.check(not dev, f"{name}: no DEV_* var (local configs only) {dev or ''}".rstrip())


def check_configs(configs, d1_id):
    r = Report()
    plan = secret_plan()
    gw_path, gw = configs["gateway"]
    print(f"gateway ({os.path.relpath(gw_path, ROOT)})")
    r.check(gw.get("name") == "edge-gateway", "gateway: named edge-gateway")
    r.check(os.path.exists(gw["main"]), "gateway: its entry module is built")
    check_vars(r, "gateway", gw)
    gw_secrets = set(plan["gateway"])
    r.check(
        gw_secrets == {"ADMIN_TOKEN", "BROKER_SHARED_SECRET"},
        f"gateway: holds only the secrets ADMIN_TOKEN and BROKER_SHARED_SECRET ({sorted(gw_secrets)})",
    )
    r.check(
        not gw_secrets & BROKER_ONLY,
        "gateway: binds no provider key and no BYOK master key (those are the brokers' only)",
    )
    services = {s["binding"]: s["service"] for s in gw.get("services", [])}
    want = {f"BROKER_{p.upper()}": f"broker-{p}" for p in PROVIDERS}
    r.check(services == want, f"gateway: binds exactly the four brokers by service binding {services}")
    classes = {b["class_name"] for b in gw.get("durable_objects", {}).get("bindings", [])}
    migrated = set()
    tags = []
    for m in gw.get("migrations", []):
        tags.append(m.get("tag"))
        migrated |= set(m.get("new_sqlite_classes", [])) | set(m.get("new_classes", []))
    r.check(
        {"TokenBucket", "AccountLedger"} <= classes and classes <= migrated,
        f"gateway: Durable Object migrations create every bound class {sorted(classes)} (tags {tags})",
    )
    if "assets" in gw:
        r.check(os.path.isdir(gw["assets"]["directory"]),
                f"gateway: its static assets are built ({os.path.relpath(gw['assets']['directory'], ROOT)})")
    r.check(len(tags) == len(set(tags)) and all(tags), "gateway: migration tags are unique")
    crons = gw.get("triggers", {}).get("crons", [])
    r.check(CRON in crons, f"gateway: the retention cron trigger `{CRON}` is set ({crons})")
    dbs = gw.get("d1_databases", [])
    r.check(
        len(dbs) == 1 and dbs[0]["binding"] == "DB" and dbs[0]["database_name"] == D1_NAME
        and dbs[0]["database_id"] == d1_id and os.path.isdir(dbs[0].get("migrations_dir", "")),
        f"gateway: binds D1 `{D1_NAME}` ({d1_id}) with its migrations",
    )
    kvs = gw.get("kv_namespaces", [])
    r.check(len(kvs) == 1 and kvs[0]["binding"] == "CACHE", "gateway: binds the KV namespace CACHE")
    r.check(gw.get("workers_dev", True) is not False or gw.get("routes"),
            "gateway: reachable (workers.dev or a route)")
    r.check(gw.get("observability", {}).get("enabled") is True, "gateway: Workers Logs on")
    provider_sources = {}
    for p in PROVIDERS:
        name = f"broker-{p}"
        path, b = configs[name]
        print(f"{name} ({os.path.relpath(path, ROOT)})")
        r.check(b.get("name") == name, f"{name}: named {name}")
        r.check(os.path.exists(b["main"]), f"{name}: its entry module is built")
        r.check(b.get("workers_dev") is False, f"{name}: workers_dev = false")
        r.check(b.get("preview_urls") is False, f"{name}: preview_urls = false")
        r.check(not b.get("routes") and not b.get("route"), f"{name}: no route (service binding only)")
        r.check(
            not b.get("services") and not b.get("durable_objects") and not b.get("kv_namespaces"),
            f"{name}: binds no other Worker, no Durable Object, no KV",
        )
        v = b.get("vars", {})
        r.check(v.get("PROVIDER") == p, f"{name}: PROVIDER = {p}")
        url = urlparse(v.get("UPSTREAM_BASE_URL", ""))
        r.check(
            url.scheme == "https" and url.hostname == UPSTREAM_HOSTS[p],
            f"{name}: upstream is {p}'s published API ({v.get('UPSTREAM_BASE_URL')})",
        )
        others = [o for o in PROVIDERS if o != p and any(o in str(x) for x in v.values())]
        r.check(not others, f"{name}: its vars name no other provider {others or ''}".rstrip())
        check_vars(r, name, b)
        bdbs = b.get("d1_databases", [])
        r.check(
            len(bdbs) == 1 and bdbs[0]["database_name"] == D1_NAME and bdbs[0]["database_id"] == d1_id,
            f"{name}: binds the gateway's D1 (the key access log)",
        )
        s = plan[name]
        source = s.get("PROVIDER_API_KEY")
        provider_sources.setdefault(source, []).append(name)
        allowed = {"PROVIDER_API_KEY", "BROKER_SHARED_SECRET"} | (
            {"BYOK_MASTER_KEY_V1"} if p in BYOK_PROVIDERS else set()
        )
        r.check(
            source == f"${p.upper()}_API_KEY" and set(s) <= allowed,
            f"{name}: binds only its own provider's key ({source}) and {sorted(set(s) - {'PROVIDER_API_KEY'})}",
        )
        r.check(b.get("observability", {}).get("enabled") is True, f"{name}: Workers Logs on")
    r.check(
        all(len(ws) == 1 for ws in provider_sources.values()),
        "each provider key goes to exactly one broker",
    )
    return r


# ---- bundles ----


def dev_hook_names():
    with open(os.path.join(ROOT, "scripts", "dev-hooks.txt")) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#")]


def mb(n):
    return f"{n / 1_000_000:.2f} MB"


def dry_bundles(configs, env):
    """`wrangler deploy --dry-run --outdir` for each Worker; the bundle checks."""
    r = Report()
    hooks = [h.encode() for h in dev_hook_names()]
    rows = []
    for name in WORKERS:
        path, _ = configs[name]
        outdir = os.path.join(OUT, name, "bundle")
        shutil.rmtree(outdir, ignore_errors=True)
        res = subprocess.run(
            [WRANGLER, "deploy", "--dry-run", "--outdir", outdir, "-c", path],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )
        if res.returncode != 0:
            r.fail(f"{name}: wrangler deploy --dry-run failed:\n{res.stdout}\n{res.stderr}")
            continue
        m = re.search(r"Total Upload: ([\d.]+) KiB / gzip: ([\d.]+) KiB", res.stdout)
        files = [
            os.path.join(outdir, f) for f in sorted(os.listdir(outdir))
            if not f.endswith(".map") and f != "README.md"
        ]
        raw = gz = 0
        found = []
        for f in files:
            data = open(f, "rb").read()
            raw += len(data)
            gz += len(gzip.compress(data, compresslevel=9))
            found += [h.decode() for h in hooks if h in data]
        reported = f" (wrangler: {m.group(1)} KiB / gzip {m.group(2)} KiB)" if m else ""
        rows.append((name, raw, gz))
        print(f"{name}: {len(files)} files, {mb(raw)} raw, {mb(gz)} gzip{reported}")
        r.check(raw <= RAW_MAX, f"{name}: {mb(raw)} raw, under the {mb(RAW_MAX)} limit")
        if gz <= GZIP_FREE:
            r.ok(f"{name}: {mb(gz)} gzip, under the free plan's {mb(GZIP_FREE)} (paid: {mb(GZIP_PAID)})")
        elif gz <= GZIP_PAID:
            r.warn(f"{name}: {mb(gz)} gzip, over the free plan's {mb(GZIP_FREE)}: needs the paid plan ({mb(GZIP_PAID)})")
        else:
            r.fail(f"{name}: {mb(gz)} gzip, over the paid plan's {mb(GZIP_PAID)} limit")
        r.check(not found, f"{name}: no dev-only name in the bundle {sorted(set(found)) or ''}".rstrip())
        wasm = [f for f in files if f.endswith(".wasm")]
        r.check(len(wasm) == 1, f"{name}: one wasm module in the bundle")
    return r, rows


# ---- real mode: wrangler against the account ----


def wrangler(args, env, check=True, capture=True):
    res = subprocess.run([WRANGLER, *args], cwd=ROOT, env=env, capture_output=capture, text=True)
    if check and res.returncode != 0:
        out = (res.stdout or "") + (res.stderr or "")
        die(f"`wrangler {' '.join(args)}` failed:\n{out}")
    return res


def json_out(text):
    """The JSON value in a wrangler command's output (it may print lines around it)."""
    start = min([i for i in (text.find("["), text.find("{")) if i >= 0], default=-1)
    if start < 0:
        die(f"no JSON in wrangler's output:\n{text}")
    return json.loads(text[start:])


def find_or_create_d1(env, cfg):
    def find():
        dbs = json_out(wrangler(["d1", "list", "--json", "-c", cfg], env).stdout)
        return next((d["uuid"] for d in dbs if d.get("name") == D1_NAME), None)

    found = find()
    if found:
        print(f"D1 `{D1_NAME}`: found ({found})")
        return found
    wrangler(["d1", "create", D1_NAME, "--update-config=false", "-c", cfg], env)
    created = find() or die(f"D1 `{D1_NAME}` was created but is not listed")
    print(f"D1 `{D1_NAME}`: created ({created})")
    return created


def find_or_create_kv(env, cfg):
    def find():
        nss = json_out(wrangler(["kv", "namespace", "list", "-c", cfg], env).stdout)
        return next((n["id"] for n in nss if n.get("title") == KV_TITLE), None)

    found = find()
    if found:
        print(f"KV `{KV_TITLE}`: found ({found})")
        return found
    wrangler(["kv", "namespace", "create", KV_TITLE, "--update-config=false", "-c", cfg], env)
    created = find() or die(f"KV `{KV_TITLE}` was created but is not listed")
    print(f"KV `{KV_TITLE}`: created ({created})")
    return created


def existing_secrets(env, cfg):
    """Names of the Worker's secrets; None when the Worker does not exist yet."""
    res = wrangler(["secret", "list", "-c", cfg], env, check=False)
    out = (res.stdout or "") + (res.stderr or "")
    if res.returncode != 0:
        if "not found" in out.lower():
            return None
        die(f"could not list the secrets of {cfg}:\n{out}")
    return {s["name"] for s in json_out(res.stdout)}


def fingerprint(name, cfg):
    """What this machine last deployed of a Worker: its bundle, its config and its static
    assets (the dashboard's files, which the bundle does not hold)."""
    h = hashlib.sha256()
    d = os.path.join(OUT, name)
    h.update(open(os.path.join(d, "wrangler.json"), "rb").read())
    bundle = os.path.join(d, "bundle")
    for f in sorted(os.listdir(bundle)):
        if not f.endswith(".map"):
            h.update(f.encode())
            h.update(open(os.path.join(bundle, f), "rb").read())
    assets = cfg.get("assets", {}).get("directory")
    if assets:
        for dirpath, dirnames, files in os.walk(assets):
            dirnames.sort()
            for f in sorted(files):
                path = os.path.join(dirpath, f)
                h.update(os.path.relpath(path, assets).encode())
                h.update(open(path, "rb").read())
    return h.hexdigest()


def real(configs, env, update_provider_keys, force):
    gw_cfg = configs["gateway"][0]
    step("migrations: wrangler d1 migrations apply --remote")
    wrangler(["d1", "migrations", "apply", D1_NAME, "--remote", "-c", gw_cfg], env, capture=False)

    step("secrets: what exists")
    have = {}
    for name in WORKERS:
        have[name] = existing_secrets(env, configs[name][0])
        shown = "(new Worker)" if have[name] is None else sorted(have[name])
        print(f"{name}: {shown}")
        have[name] = have[name] or set()
    to_set = {name: {} for name in WORKERS}
    # The shared secret must be the same on all five: set it everywhere unless all five have it.
    holders = [w for w in WORKERS if "BROKER_SHARED_SECRET" in have[w]]
    if len(holders) != len(WORKERS):
        if holders:
            print(f"BROKER_SHARED_SECRET is on {holders} only: a new value goes to all five")
        shared = secrets.token_urlsafe(32)
        for w in WORKERS:
            to_set[w]["BROKER_SHARED_SECRET"] = shared
    admin_token_shown = None
    if "ADMIN_TOKEN" not in have["gateway"]:
        token = os.environ.get("ADMIN_TOKEN") or secrets.token_urlsafe(32)
        if not os.environ.get("ADMIN_TOKEN"):
            admin_token_shown = token
        to_set["gateway"]["ADMIN_TOKEN"] = token
    for p in PROVIDERS:
        w = f"broker-{p}"
        # Any version there (BYOK_MASTER_KEY from before versioning, or BYOK_MASTER_KEY_V<N>)
        # means keys may be sealed with it: never replaced here (docs/OPERATIONS.md rotates it).
        if p in BYOK_PROVIDERS and not any(n.startswith("BYOK_MASTER_KEY") for n in have[w]):
            to_set[w]["BYOK_MASTER_KEY_V1"] = secrets.token_hex(32)
        value = os.environ.get(f"{p.upper()}_API_KEY")
        if value and ("PROVIDER_API_KEY" not in have[w] or update_provider_keys):
            to_set[w]["PROVIDER_API_KEY"] = value
        elif "PROVIDER_API_KEY" not in have[w]:
            print(f"warn: {w} has no PROVIDER_API_KEY and ${p.upper()}_API_KEY is not set: "
                  f"its calls answer 503 until it is (run again with it set)")

    state_path = os.path.join(OUT, "deployed.json")
    state = json.load(open(state_path)) if os.path.exists(state_path) else {}
    tmp = tempfile.mkdtemp(prefix=".secrets-", dir=OUT)
    os.chmod(tmp, 0o700)
    url = None
    try:
        # Brokers first: the gateway calls their RPC method (docs/DECISIONS.md, deploy order).
        for name in [w for w in WORKERS if w != "gateway"] + ["gateway"]:
            step(f"deploy {name}")
            print(f"secrets to set: {sorted(to_set[name]) or 'none'}")
            fp = fingerprint(name, configs[name][1])
            if not to_set[name] and state.get(name) == fp and not force:
                print(f"{name}: unchanged since this machine deployed it: skipped (--force deploys it)")
                continue
            args = ["deploy", "-c", configs[name][0]]
            secrets_file = None
            if to_set[name]:
                secrets_file = os.path.join(tmp, f"{name}.json")
                fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    json.dump(to_set[name], out)
                args += ["--secrets-file", secrets_file]
            if name == "gateway" and admin_token_shown:
                # Shown before the upload, not after: wrangler may upload the Worker with its
                # secrets and then fail (no workers.dev subdomain yet, say), and a run after
                # that finds ADMIN_TOKEN set and never shows it.
                print("\nADMIN_TOKEN (generated now, shown once: keep it in your password manager; it is")
                print("the admin token once this deploy has succeeded: a failed run generates another):")
                print(f"  {admin_token_shown}\n", flush=True)
            try:
                res = wrangler(args, env)
            finally:
                # The plaintext secrets live only as long as the call that reads them.
                if secrets_file:
                    os.remove(secrets_file)
            print(res.stdout)
            state[name] = fp
            with open(state_path, "w") as out:
                json.dump(state, out, indent=2)
            if name == "gateway":
                m = re.search(r"https://[^\s]+\.workers\.dev", res.stdout)
                url = m.group(0) if m else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    step("done")
    base = url or "https://edge-gateway.<your-subdomain>.workers.dev"
    print(f"gateway: {url or '(no workers.dev URL in the output: see your dashboard)'}")
    if admin_token_shown:
        print("\nADMIN_TOKEN: generated and shown once, before the gateway's upload (above)")
    print(f"""
Mint the first key (the admin token is the one shown above, or the ADMIN_TOKEN you set):
  curl -sS -X POST {base}/admin/accounts -H "Authorization: Bearer $ADMIN_TOKEN" \\
    -H 'Content-Type: application/json' -d '{{"tier": "free", "credits": 100000}}'
  curl -sS -X POST {base}/admin/accounts/<account_id>/keys -H "Authorization: Bearer $ADMIN_TOKEN" \\
    -H 'Content-Type: application/json' -d '{{"name": "first", "mode": "live"}}'
Then: curl -sS {base}/v1/ask -H "Authorization: Bearer <key>" \\
    -H 'Content-Type: application/json' -d '{{"prompt": "hello", "providers": ["openai"]}}'
Logs: npx wrangler tail -c {os.path.relpath(gw_cfg, ROOT)} --format json (docs/OPERATIONS.md)""")


def admin_token_weakness(token):
    """Why an `ADMIN_TOKEN` from the environment must not become the production admin token
    (None when it may): the local stacks' default, left exported from `scripts/dev.sh`, or any
    value shorter than a generated one's 32 characters."""
    if token is None:
        return None
    if token == "dev-admin-token":
        return "is the local stacks' default"
    if len(token) < 32:
        return f"has {len(token)} characters, fewer than 32"
    return None


def main():
    # A terminal closed or a kill mid-deploy still runs the `finally` that removes the
    # plaintext secrets file.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    args = sys.argv[1:]
    unknown = [a for a in args if a not in ("--dry-run", "--update-provider-keys", "--force")]
    if unknown:
        die(f"unknown argument {unknown[0]}: usage: deploy.sh [--dry-run] [--update-provider-keys] [--force]")
    dry = "--dry-run" in args
    global OUT
    if dry:
        OUT = DRY_OUT
    env = dict(os.environ)
    # wrangler's info lines are what this reads (sizes, the URL): env.sh's `warn` would hide them.
    env.update({"WRANGLER_SEND_METRICS": "false", "CI": "1", "WRANGLER_LOG": "log"})
    if dry:
        # No network at all: no account, no update check, no banner.
        for k in ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_KEY"):
            env.pop(k, None)
        env["WRANGLER_HIDE_BANNER"] = "true"

    if not dry:
        weak = admin_token_weakness(os.environ.get("ADMIN_TOKEN"))
        if weak:
            die(f"ADMIN_TOKEN {weak}: unset it (one is generated and printed once) or set a strong one")

    started = time.time()
    step("build: scripts/build.sh all (production, no test hooks)")
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "build.sh"), "all"], check=True)
    print(f"built in {time.time() - started:.0f} s")

    d1_id, kv_id = PLACEHOLDER_D1, PLACEHOLDER_KV
    if not dry:
        step("resources: D1 and KV (found, or created)")
        # Placeholder ids, to find the resources: never where the real configs live.
        placeholder = generate(d1_id, kv_id, os.path.join(DRY_OUT, "lookup"))["gateway"][0]
        d1_id = find_or_create_d1(env, placeholder)
        kv_id = find_or_create_kv(env, placeholder)

    step(f"configs: generated into {os.path.relpath(OUT, ROOT)}/ and checked")
    configs = generate(d1_id, kv_id)
    r1 = check_configs(configs, d1_id)

    step("bundles: wrangler deploy --dry-run --outdir, sizes and dev-only names")
    r2, _ = dry_bundles(configs, env)
    failed = r1.failed + r2.failed
    if failed:
        die(f"{failed} check(s) failed: nothing deployed")
    if dry:
        step(f"dry run passed ({time.time() - started:.0f} s): five production bundles built and checked, nothing uploaded")
        return
    real(configs, env, "--update-provider-keys" in args, "--force" in args)


if __name__ == "__main__":
    main()
