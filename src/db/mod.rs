//! D1: bound statements with retries (`d1`), the rows of accounts, API keys and sealed provider
//! keys, dashboard sessions, the batched usage log and archive writes (`usage_log`), and the
//! retention cron.

pub mod accounts;
pub mod api_keys;
pub mod d1;
pub mod retention;
pub mod sealed_keys;
pub mod sessions;
pub mod usage_log;
