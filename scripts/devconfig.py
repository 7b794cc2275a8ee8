#!/usr/bin/env python3
"""Writes local wrangler configs (JSON) for one run of the stack, derived from the committed
wrangler.toml files: absolute paths, no build step, brokers pointed at the mock provider server,
and local-only secrets as vars. Usage: devconfig.py STATE_DIR MOCK_BASE_URL"""
import json
import os
import secrets
import sys
import tomllib

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
state, mock = sys.argv[1], sys.argv[2].rstrip("/")
os.makedirs(state, exist_ok=True)

# One shared secret per run; the mock's keys are fake and local.
broker_secret = secrets.token_urlsafe(32)
byok_master = secrets.token_hex(32)
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
    return cfg


gw = load(os.path.join(root, "wrangler.toml"))
for db in gw.get("d1_databases", []):
    db["migrations_dir"] = os.path.join(root, db["migrations_dir"])
gw["vars"].update(
    {
        "ADMIN_TOKEN": os.environ.get("ADMIN_TOKEN", "dev-admin-token"),
        "BROKER_SHARED_SECRET": broker_secret,
        "DEV_MODE": "1",
        "PROVIDER_TIMEOUT_MS": os.environ.get("PROVIDER_TIMEOUT_MS", "5000"),
    }
)
paths = [os.path.join(state, "gateway.json")]
with open(paths[0], "w") as f:
    json.dump(gw, f, indent=2)

for p in ["openai", "anthropic", "gemini", "perplexity"]:
    cfg = load(os.path.join(root, "broker", f"wrangler.{p}.toml"))
    real_key = os.environ.get(f"{p.upper()}_API_KEY")
    cfg["vars"].update(
        {
            "UPSTREAM_BASE_URL": upstream[p] if not real_key else cfg["vars"]["UPSTREAM_BASE_URL"],
            "PROVIDER_API_KEY": real_key or fake_key[p],
            "BROKER_SHARED_SECRET": broker_secret,
            "BYOK_MASTER_KEY": byok_master,
            "UPSTREAM_TIMEOUT_MS": os.environ.get("UPSTREAM_TIMEOUT_MS", "4000"),
        }
    )
    path = os.path.join(state, f"broker-{p}.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    paths.append(path)
print(" ".join(paths))
