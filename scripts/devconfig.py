#!/usr/bin/env python3
"""Writes local wrangler configs (JSON) for one run of the stack, derived from the committed
wrangler.toml files: absolute paths, no build step, brokers pointed at the mock provider server.
Local-only secrets go to a `.dev.vars` beside each config (one directory per Worker), so wrangler
treats them as secrets and never prints them. Usage: devconfig.py STATE_DIR MOCK_BASE_URL"""
import json
import os
import secrets
import sys
import tomllib

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
state, mock = sys.argv[1], sys.argv[2].rstrip("/")
os.makedirs(state, exist_ok=True)

# One shared secret per run; the mock's keys are fake and local. The brokers run as in the middle
# of both rotations (docs/OPERATIONS.md), so every run exercises them: they accept a previous
# shared secret too (the gateway sends the current one), and hold two BYOK master key versions
# (version 1 under its older single-key name, version 2 as BYOK_MASTER_KEY_V2; new seals use 2).
# STACK_SECRET_ROTATION=0 (the load benchmarks) runs them outside the shared secret's rotation, as
# a deployed broker is but for the minutes of one: no previous secret, so no rotation log line per
# call (docs/DECISIONS.md, "Load benchmarks").
rotating = os.environ.get("STACK_SECRET_ROTATION", "1") != "0"
# A real provider key in the environment (`OPENAI_API_KEY`, …) is used only by the README's run
# command, which opts in (`DEV_REAL_PROVIDER_KEYS=1`, set by scripts/dev.sh): a key left exported
# from a deploy must never send the test suite's, the benchmarks' or the soak's calls (the mock's
# fault markers included) to a provider on someone's account.
real_keys = os.environ.get("DEV_REAL_PROVIDER_KEYS") == "1"
broker_secret = secrets.token_urlsafe(32)
broker_secret_previous = secrets.token_urlsafe(32)
byok_master_v1 = secrets.token_hex(32)
byok_master_v2 = secrets.token_hex(32)
upstream = {
    "openai": f"{mock}/openai/v1",
    "anthropic": f"{mock}/anthropic",
    "gemini": f"{mock}/gemini",
    "perplexity": f"{mock}/perplexity",
}
fake_key = {
    "openai": "sk-mock-openai-local-0000000000000000",
    "anthropic": "sk-ant-mock-anthropic-local-00000000",
    "gemini": "AIzaMockGeminiLocalKey000000000000000",
    "perplexity": "pplx-mock-perplexity-local-000000000",
}


def load(path):
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    cfg.pop("build", None)
    base = os.path.dirname(path)
    cfg["main"] = os.path.join(base, cfg["main"])
    if "assets" in cfg:
        cfg["assets"]["directory"] = os.path.join(base, cfg["assets"]["directory"])
    for db in cfg.get("d1_databases", []):
        if "migrations_dir" in db:
            db["migrations_dir"] = os.path.join(base, db["migrations_dir"])
    return cfg


gw = load(os.path.join(root, "wrangler.toml"))
gw["vars"].update(
    {
        "DEV_MODE": "1",
        "PROVIDER_TIMEOUT_MS": os.environ.get("PROVIDER_TIMEOUT_MS", "5000"),
    }
)
# The test suite lowers D1's 1 MB value limit so that a burst of large answers reaches it.
# It lowers the per-account key cap (1,000), a silent stream's keep-alive interval (15 s) and
# how often a running stream renews its credit reservation (5 min) the same way.
for name in ("DEV_D1_VALUE_LIMIT", "DEV_MAX_KEYS_PER_ACCOUNT", "STREAM_KEEPALIVE_MS", "STREAM_RENEW_MS"):
    if os.environ.get(name):
        gw["vars"][name] = os.environ[name]


def write(name, cfg, secrets_):
    d = os.path.join(state, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "wrangler.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    # Secrets: readable by this user only.
    vars_path = os.path.join(d, ".dev.vars")
    fd = os.open(vars_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(vars_path, 0o600)
    with os.fdopen(fd, "w") as f:
        for k, v in secrets_.items():
            f.write(f"{k}={json.dumps(v)}\n")
    return path


paths = [
    write(
        "gateway",
        gw,
        {
            "ADMIN_TOKEN": os.environ.get("ADMIN_TOKEN", "dev-admin-token"),
            "BROKER_SHARED_SECRET": broker_secret,
        },
    )
]

for p in ["openai", "anthropic", "gemini", "perplexity"]:
    cfg = load(os.path.join(root, "broker", f"wrangler.{p}.toml"))
    real_key = os.environ.get(f"{p.upper()}_API_KEY") if real_keys else None
    cfg["vars"].update(
        {
            "UPSTREAM_BASE_URL": upstream[p] if not real_key else cfg["vars"]["UPSTREAM_BASE_URL"],
            "UPSTREAM_TIMEOUT_MS": os.environ.get("UPSTREAM_TIMEOUT_MS", "4000"),
        }
    )
    secrets_ = {
        "PROVIDER_API_KEY": real_key or fake_key[p],
        "BROKER_SHARED_SECRET": broker_secret,
        **({"BROKER_SHARED_SECRET_PREVIOUS": broker_secret_previous} if rotating else {}),
        "BYOK_MASTER_KEY": byok_master_v1,
        "BYOK_MASTER_KEY_V2": byok_master_v2,
    }
    paths.append(write(f"broker-{p}", cfg, secrets_))
print(" ".join(paths))
