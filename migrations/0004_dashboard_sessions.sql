-- Dashboard sessions: an API key exchanged for a random token, stored hashed (SHA-256), with an
-- expiry. A session is valid only while its key is active and its account exists (checked on
-- every use, by a join); deleting the key's row or the account removes its sessions.
CREATE TABLE dashboard_sessions (
  token_hash TEXT PRIMARY KEY,
  key_prefix TEXT NOT NULL REFERENCES api_keys(prefix) ON DELETE CASCADE,
  account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX dashboard_sessions_by_key ON dashboard_sessions(key_prefix);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions(expires_at);
