//! The routes, one module per group: the answering endpoints (`ask`, `dropin`, both through the
//! pipeline), the account (`account`, `account_data`), its data (`archive`, `usage`), provider
//! keys, the dashboard's files and sessions, the admin API, and (in a `dev-hooks` build only)
//! the test routes.

pub mod account;
pub mod account_data;
pub mod admin;
pub mod archive;
pub mod ask;
pub mod ask_stream;
pub mod dashboard;
#[cfg(feature = "dev-hooks")]
pub mod dev;
pub mod dropin;
pub mod provider_keys;
pub mod usage;
