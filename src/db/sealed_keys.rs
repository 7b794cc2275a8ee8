//! The sealed provider keys an account brought, as the brokers receive them.

use std::collections::BTreeMap;

use gateway_core::providers::Provider;
use serde::Deserialize;
use worker::D1Database;

use crate::db::d1;
use crate::db::d1::text as s;
use crate::http::context::RequestContext;
use gateway_core::error::ApiResult;

/// The account's sealed key for `provider`, if it registered one.
pub async fn sealed(
    cx: &RequestContext,
    account_id: &str,
    provider: Provider,
) -> ApiResult<Option<String>> {
    Ok(sealed_all_in(&cx.db()?, account_id)
        .await?
        .remove(&provider))
}

/// Every sealed key of the account, by provider.
pub async fn sealed_all(
    cx: &RequestContext,
    account_id: &str,
) -> ApiResult<BTreeMap<Provider, String>> {
    sealed_all_in(&cx.db()?, account_id).await
}

async fn sealed_all_in(db: &D1Database, account_id: &str) -> ApiResult<BTreeMap<Provider, String>> {
    #[derive(Deserialize)]
    struct Row {
        provider: String,
        ciphertext: String,
    }
    let rows = d1::all::<Row>(
        db,
        "SELECT provider, ciphertext FROM provider_keys WHERE account_id = ?1",
        &[s(account_id)],
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Provider::parse(&r.provider).map(|p| (p, r.ciphertext)))
        .collect())
}
