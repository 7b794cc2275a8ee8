//! The usage and archive rows as the D1 inserts read them: each row one JSON array whose
//! elements are the columns in the insert's order, many rows bound as one JSON array parameter
//! and inserted by `json_each`. The column lists and the encodings live together here, so the
//! tuple order cannot drift from the SQL (a unit test reads the SQL back).

use serde::Serialize;

/// One call's usage row (never prompt or response text, except the opted-in prompt prefix).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageRow<'a> {
    pub account_id: &'a str,
    pub key_prefix: &'a str,
    pub request_id: &'a str,
    pub endpoint: &'a str,
    pub providers: &'a str,
    pub cache_status: Option<&'a str>,
    pub cache_tier: Option<&'a str>,
    pub status_code: u16,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub credits: u64,
    pub latency_ms: u64,
    pub prompt_prefix: Option<&'a str>,
    pub created_at: u64,
    /// How a streamed answer ended; `None` for a whole one.
    pub stream_end: Option<&'a str>,
}

/// Columns of `usage_events` written by [`INSERT_USAGE`], in [`UsageRow::encode`]'s order.
pub const USAGE_COLUMNS: [&str; 15] = [
    "account_id",
    "key_prefix",
    "request_id",
    "endpoint",
    "providers",
    "cache_status",
    "cache_tier",
    "status_code",
    "input_tokens",
    "output_tokens",
    "credits",
    "latency_ms",
    "prompt_prefix",
    "created_at",
    "stream_end",
];

/// Inserts the usage rows of the JSON array bound to `?1`, skipping rows of an account that no
/// longer exists (deleted while the call was running).
pub const INSERT_USAGE: &str = "INSERT INTO usage_events (account_id, key_prefix, request_id, endpoint, \
providers, cache_status, cache_tier, status_code, input_tokens, output_tokens, credits, latency_ms, \
prompt_prefix, created_at, stream_end) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), \
json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'), \
json_extract(value, '$[8]'), json_extract(value, '$[9]'), json_extract(value, '$[10]'), \
json_extract(value, '$[11]'), json_extract(value, '$[12]'), json_extract(value, '$[13]'), \
json_extract(value, '$[14]') FROM json_each(?1) WHERE json_extract(value, '$[0]') IN (SELECT id FROM accounts)";

/// Columns of `response_archive` written by [`INSERT_ARCHIVE`], in [`encode_archive_row`]'s order.
pub const ARCHIVE_COLUMNS: [&str; 4] = ["request_id", "account_id", "created_at", "response"];

/// Inserts the archive rows of the JSON array bound to `?1` (same account rule as usage).
pub const INSERT_ARCHIVE: &str =
    "INSERT INTO response_archive (request_id, account_id, created_at, \
response) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?1) \
WHERE json_extract(value, '$[1]') IN (SELECT id FROM accounts)";

impl UsageRow<'_> {
    /// The row as the JSON array [`INSERT_USAGE`] reads (columns in [`USAGE_COLUMNS`] order).
    pub fn encode(&self) -> String {
        let tuple = (
            self.account_id,
            self.key_prefix,
            self.request_id,
            self.endpoint,
            self.providers,
            self.cache_status,
            self.cache_tier,
            self.status_code,
            self.input_tokens,
            self.output_tokens,
            self.credits,
            self.latency_ms,
            self.prompt_prefix,
            self.created_at,
            self.stream_end,
        );
        // A tuple of strings, numbers and options always serializes.
        serde_json::to_string(&tuple).unwrap_or_default()
    }
}

/// An archived answer as the JSON array [`INSERT_ARCHIVE`] reads.
pub fn encode_archive_row(
    request_id: &str,
    account_id: &str,
    created_at: u64,
    response: &str,
) -> String {
    serde_json::to_string(&(request_id, account_id, created_at, response)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The column list of an `INSERT INTO t (a, b, ...)` statement.
    fn insert_columns(sql: &str) -> Vec<String> {
        let open = sql.find('(').unwrap();
        let close = sql[open..].find(')').unwrap() + open;
        sql[open + 1..close]
            .split(',')
            .map(|c| c.trim().to_string())
            .collect()
    }

    /// The `$[i]` index of each `json_extract` in the statement's SELECT, in order.
    fn extracted_indices(sql: &str) -> Vec<usize> {
        sql.match_indices("json_extract(value, '$[")
            .map(|(i, m)| {
                let rest = &sql[i + m.len()..];
                rest[..rest.find(']').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn usage_insert_reads_the_columns_in_encoding_order() {
        assert_eq!(insert_columns(INSERT_USAGE), USAGE_COLUMNS);
        // Selected in order 0..n, then the account filter reads element 0 again.
        let idx = extracted_indices(INSERT_USAGE);
        assert_eq!(idx[..USAGE_COLUMNS.len()], (0..15).collect::<Vec<_>>()[..]);
        assert_eq!(idx[USAGE_COLUMNS.len()..], [0]);
        assert_eq!(USAGE_COLUMNS[0], "account_id");
    }

    #[test]
    fn archive_insert_reads_the_columns_in_encoding_order() {
        assert_eq!(insert_columns(INSERT_ARCHIVE), ARCHIVE_COLUMNS);
        let idx = extracted_indices(INSERT_ARCHIVE);
        assert_eq!(idx, [0, 1, 2, 3, 1]);
        assert_eq!(ARCHIVE_COLUMNS[1], "account_id");
    }

    #[test]
    fn a_usage_row_encodes_each_field_at_its_columns_index() {
        let row = UsageRow {
            account_id: "acct_1",
            key_prefix: "lvk_live_abc",
            request_id: "req_1",
            endpoint: "POST /v1/ask",
            providers: "openai,gemini",
            cache_status: Some("hit"),
            cache_tier: None,
            status_code: 200,
            input_tokens: 12,
            output_tokens: 9,
            credits: 3,
            latency_ms: 7,
            prompt_prefix: Some("what is"),
            created_at: 1_700_000_000_000,
            stream_end: Some("clean"),
        };
        let encoded: Vec<Value> = serde_json::from_str(&row.encode()).unwrap();
        // Serialized by name, the row's fields line up with the columns by index.
        let by_name = serde_json::to_value(&row).unwrap();
        for (i, col) in USAGE_COLUMNS.iter().enumerate() {
            assert_eq!(encoded[i], by_name[col], "column {col}");
        }
        assert_eq!(encoded[6], Value::Null);
    }

    #[test]
    fn an_archive_row_keeps_the_response_text_as_one_string() {
        let encoded: Value =
            serde_json::from_str(&encode_archive_row("req_1", "acct_1", 5, "{\"a\":1}")).unwrap();
        assert_eq!(encoded, json!(["req_1", "acct_1", 5, "{\"a\":1}"]));
    }
}
