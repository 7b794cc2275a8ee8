-- Accounts, API keys, usage events and the response archive.
CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  tier TEXT NOT NULL,
  limits_json TEXT,
  store_prompt_prefix INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
  prefix TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  key_hash TEXT NOT NULL,
  name TEXT,
  mode TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active',
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX api_keys_by_account ON api_keys(account_id);

CREATE TABLE usage_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id TEXT NOT NULL,
  key_prefix TEXT NOT NULL,
  request_id TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  providers TEXT NOT NULL DEFAULT '',
  cache_status TEXT,
  cache_tier TEXT,
  status_code INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  credits INTEGER NOT NULL DEFAULT 0,
  latency_ms INTEGER NOT NULL DEFAULT 0,
  prompt_prefix TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX usage_events_by_account_time ON usage_events(account_id, created_at);

CREATE TABLE response_archive (
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  response TEXT NOT NULL
);
CREATE INDEX response_archive_by_time ON response_archive(created_at);
CREATE INDEX response_archive_by_account ON response_archive(account_id);

-- Bring-your-own provider keys (AES-256-GCM ciphertext; only brokers can decrypt) and
-- the audit log of every decryption.
CREATE TABLE provider_keys (
  account_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  ciphertext TEXT NOT NULL,
  last4 TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, provider)
);

CREATE TABLE key_access_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id TEXT NOT NULL,
  provider TEXT NOT NULL,
  request_id TEXT NOT NULL,
  purpose TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX key_access_log_by_account ON key_access_log(account_id, id);
