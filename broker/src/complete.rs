//! `POST /v1/complete`: one `/v1/ask` completion in the provider's wire format.

use gateway_core::broker::errors::completion_failure;
use gateway_core::broker::{check_request, synthetic_completion, BrokerRequest};
use gateway_core::error::ApiError;
use gateway_core::providers::adapters;
use gateway_core::providers::models::default_allowlist;
use gateway_core::providers::Provider;
use gateway_core::scrub::scrub_secrets;
use worker::Env;

use crate::config::{max_output_tokens, platform_key, timeout_ms, upstream_base};
use crate::log;
use crate::reply::Reply;
use crate::seal::open_byok;
use crate::upstream::send_upstream;

/// A `/v1/ask` completion request, checked (allowlist and caps, before any key is touched),
/// with the key it is made with: `None` for a test key's call, which never reaches the provider.
pub struct Checked {
    pub call: BrokerRequest,
    pub key: Option<String>,
}

/// Parses and checks the request `body`, then opens the key it is made with (the account's own
/// when it brought one, after its access is recorded; else the platform's).
pub async fn checked(body: &[u8], env: &Env, provider: Provider) -> Result<Checked, ApiError> {
    // 2. The request, parsed.
    let call: BrokerRequest = serde_json::from_slice(body)
        .map_err(|_| ApiError::invalid_request("body is not a broker request"))?;

    // 3. Allowlist and caps, before the key is touched.
    check_request(
        provider,
        &call.completion,
        default_allowlist(provider),
        max_output_tokens(env),
    )?;

    // 4. Test keys never reach the provider.
    if call.test_mode {
        return Ok(Checked { call, key: None });
    }

    // 5. The account's own key when it brought one.
    let key = match &call.byok_ciphertext {
        Some(sealed) => {
            open_byok(
                env,
                provider,
                &call.account_id,
                &call.request_id,
                "POST /v1/ask",
                sealed,
            )
            .await?
        }
        None => platform_key(env, provider)?,
    };
    Ok(Checked {
        call,
        key: Some(key),
    })
}

/// One completion for the request `body` (already capped by the caller).
pub async fn complete(body: &[u8], env: &Env, provider: Provider) -> Result<Reply, ApiError> {
    let Checked { call, key } = checked(body, env, provider).await?;
    let Some(key) = key else {
        return Reply::json(200, &synthetic_completion(provider, &call.completion));
    };
    let base = upstream_base(env)?;
    let upstream = adapters::build_request(provider, &call.completion, &base, &key);
    let result = match send_upstream(
        provider,
        &upstream.url,
        &upstream.headers,
        upstream.body.into(),
        timeout_ms(env),
    )
    .await
    {
        Ok((status, retry_after, text)) => {
            adapters::parse_response(provider, status, retry_after.as_deref(), &text)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(completion) => Reply::json(200, &completion),
        Err(e) => {
            log(&scrub_secrets(
                &format!(
                    "broker {provider}: request {} upstream error {}: {}",
                    call.request_id, e.code, e.message
                ),
                &[&key],
            ));
            let (status, body) = completion_failure(&e, &key);
            Reply::json(status, &body)
        }
    }
}
