//! Validation of the `POST /v1/ask` body: prompt, providers, params and cache scope, exactly
//! as the contract states, producing the request the gateway acts on and the params of its cache key.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::api::strict_json::parse_strict;
use crate::cache::key::ScopeKind;
use crate::error::ApiError;
use crate::providers::models::MODEL_NAME_LIMIT;
use crate::providers::Provider;

pub use crate::api::BODY_LIMIT;

/// Largest prompt, in bytes of UTF-8, measured before normalization.
pub const PROMPT_LIMIT: usize = 20 * 1024;
/// `max_tokens` when the caller sends none (then lowered to the tier's cap if needed).
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// A validated ask: everything downstream trusts these fields.
#[derive(Debug, Clone, PartialEq)]
pub struct AskRequest {
    pub prompt: String,
    /// Sorted by wire name, no duplicates.
    pub providers: Vec<Provider>,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub system: Option<String>,
    /// The model used for each requested provider (defaults filled in).
    pub models: BTreeMap<Provider, String>,
    pub scope: ScopeKind,
    /// `"stream": true`: the answer is server-sent events (not part of the key).
    pub stream: bool,
    /// The params of the cache key: as the caller sent them, with `models` completed.
    pub key_params: Value,
}

/// Parses and validates a request body. `max_tokens_cap` is the caller's tier cap.
pub fn parse_ask(body: &[u8], max_tokens_cap: u32) -> Result<AskRequest, ApiError> {
    // A key named twice at any depth is refused: the provider might read the other value.
    let value = parse_strict(body)?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    };
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "prompt" | "providers" | "params" | "cache_scope" | "stream"
        ) {
            return Err(ApiError::invalid_request(format!(
                "unknown field `{}`; expected prompt, providers, params, cache_scope, stream",
                truncate(key, 40)
            ))
            .with("field", truncate(key, 40)));
        }
    }

    let prompt = match obj.remove("prompt") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(
                ApiError::invalid_request("`prompt` must be a string").with("field", "prompt")
            )
        }
        None => {
            return Err(ApiError::invalid_request("`prompt` is required").with("field", "prompt"))
        }
    };
    if prompt.len() > PROMPT_LIMIT {
        return Err(ApiError::prompt_too_large(PROMPT_LIMIT));
    }
    if prompt.trim().is_empty() {
        return Err(ApiError::invalid_request("`prompt` must not be empty").with("field", "prompt"));
    }
    // A prompt of punctuation alone ("?", "...") normalizes to nothing: all such prompts would
    // share one cache key, and one caller's answer would be served for another's question.
    // (Only a prompt without a letter or digit is normalized here, to confirm.)
    if !prompt.chars().any(char::is_alphanumeric)
        && crate::cache::normalize::normalize(&prompt).is_empty()
    {
        return Err(ApiError::invalid_request(
            "`prompt` is empty once normalized (it holds only punctuation and whitespace)",
        )
        .with("field", "prompt"));
    }

    let providers = parse_providers(obj.remove("providers"))?;

    // Not part of the key: a streamed and a whole answer share one entry.
    let stream = match obj.remove("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(
                ApiError::invalid_request("`stream` must be a boolean").with("field", "stream")
            )
        }
    };

    let scope = match obj.remove("cache_scope") {
        None => ScopeKind::Shared,
        Some(Value::String(s)) => ScopeKind::parse(&s).ok_or_else(|| {
            ApiError::invalid_request("`cache_scope` must be \"shared\" or \"private\"")
                .with("field", "cache_scope")
        })?,
        Some(_) => {
            return Err(ApiError::invalid_request(
                "`cache_scope` must be \"shared\" or \"private\"",
            )
            .with("field", "cache_scope"))
        }
    };

    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "params",
                "`params` must be an object",
            ))
        }
    };
    let mut ask = build(prompt, providers, params, scope, max_tokens_cap)?;
    ask.stream = stream;
    Ok(ask)
}

fn parse_providers(v: Option<Value>) -> Result<Vec<Provider>, ApiError> {
    let bad = |msg: String| ApiError::new(400, "invalid_providers", msg).with("field", "providers");
    let Some(Value::Array(items)) = v else {
        return Err(bad(
            "`providers` must be a non-empty array of provider names".into(),
        ));
    };
    if items.is_empty() {
        return Err(bad("`providers` must not be empty".into()));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let name = item
            .as_str()
            .ok_or_else(|| bad("each provider must be a string".into()))?;
        let p = Provider::parse(name).ok_or_else(|| {
            bad(format!(
                "unknown provider `{}`; expected openai, anthropic, gemini or perplexity",
                truncate(name, 40)
            ))
        })?;
        if out.contains(&p) {
            return Err(bad(format!("provider `{p}` is listed twice")));
        }
        out.push(p);
    }
    out.sort();
    Ok(out)
}

fn build(
    prompt: String,
    providers: Vec<Provider>,
    mut params: Map<String, Value>,
    scope: ScopeKind,
    cap: u32,
) -> Result<AskRequest, ApiError> {
    for key in params.keys() {
        if !matches!(
            key.as_str(),
            "max_tokens" | "temperature" | "top_p" | "system" | "models"
        ) {
            return Err(ApiError::invalid_param(
                &truncate(key, 40),
                format!(
                    "unknown param `{}`; expected max_tokens, temperature, top_p, system, models",
                    truncate(key, 40)
                ),
            ));
        }
    }
    let max_tokens = match params.get("max_tokens") {
        None => DEFAULT_MAX_TOKENS.min(cap),
        Some(v) => {
            // An integral number written as a float (`256.0`) is that integer, as in the
            // cache key, where numbers are in their shortest form.
            let n = v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && (1.0..=u32::MAX as f64).contains(f))
                        .map(|f| f as u64)
                })
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ApiError::invalid_param("max_tokens", "`max_tokens` must be a positive integer")
                })?;
            if n > u64::from(cap) {
                return Err(ApiError::invalid_param(
                    "max_tokens",
                    format!("`max_tokens` exceeds your tier's cap of {cap}"),
                )
                .with("max", cap));
            }
            n as u32
        }
    };
    let temperature = number_param(
        &params,
        "temperature",
        |x| (0.0..=2.0).contains(&x),
        "between 0 and 2",
    )?;
    let top_p = number_param(
        &params,
        "top_p",
        |x| x > 0.0 && x <= 1.0,
        "greater than 0 and at most 1",
    )?;
    let system = match params.get("system") {
        None => None,
        Some(Value::String(s)) if s.len() <= PROMPT_LIMIT => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid_param(
                "system",
                format!("`system` exceeds {PROMPT_LIMIT} bytes"),
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "system",
                "`system` must be a string",
            ))
        }
    };

    let mut models = BTreeMap::new();
    if let Some(v) = params.get("models") {
        let Value::Object(m) = v else {
            return Err(ApiError::invalid_param(
                "models",
                "`models` must be an object of provider → model",
            ));
        };
        for (name, model) in m {
            let p = Provider::parse(name).ok_or_else(|| {
                ApiError::invalid_param(
                    "models",
                    format!("`models` names unknown provider `{}`", truncate(name, 40)),
                )
            })?;
            if !providers.contains(&p) {
                return Err(ApiError::invalid_param(
                    "models",
                    format!("`models.{p}` is set but `{p}` is not in providers"),
                ));
            }
            let model = model
                .as_str()
                .filter(|s| {
                    !s.is_empty()
                        && s.len() <= MODEL_NAME_LIMIT
                        && s.chars().all(|c| !c.is_control())
                })
                .ok_or_else(|| {
                    ApiError::invalid_param("models", format!("`models.{p}` must be a model name"))
                })?;
            models.insert(p, model.to_string());
        }
    }
    for p in &providers {
        models
            .entry(*p)
            .or_insert_with(|| p.default_model().to_string());
    }
    // The key's params: what the caller sent, with the model actually used for each provider;
    // and, when the caller sent no `max_tokens` and the tier's cap lowered the default, the
    // value used (that tier's answers are shorter than the same question's elsewhere).
    if !params.contains_key("max_tokens") && max_tokens != DEFAULT_MAX_TOKENS {
        params.insert("max_tokens".into(), Value::from(max_tokens));
    }
    let key_models: Map<String, Value> = models
        .iter()
        .map(|(p, m)| (p.as_str().to_string(), Value::String(m.clone())))
        .collect();
    params.insert("models".into(), Value::Object(key_models));

    Ok(AskRequest {
        prompt,
        providers,
        max_tokens,
        temperature,
        top_p,
        system,
        models,
        scope,
        stream: false,
        key_params: Value::Object(params),
    })
}

fn number_param(
    params: &Map<String, Value>,
    name: &str,
    ok: impl Fn(f64) -> bool,
    range: &str,
) -> Result<Option<f64>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite() && ok(*x))
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_param(name, format!("`{name}` must be a number {range}"))
            }),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ask(v: Value) -> Result<AskRequest, ApiError> {
        parse_ask(v.to_string().as_bytes(), 1024)
    }

    #[test]
    fn a_prompt_of_punctuation_alone_is_refused_not_keyed_as_empty() {
        for p in ["?", "!!!", "...", "¿¡", " - ", "?\n!"] {
            let e = ask(json!({"prompt": p, "providers": ["openai"]})).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_request"), "{p:?}");
        }
        for p in ["a?", "😀", "42", "(x)"] {
            assert!(
                ask(json!({"prompt": p, "providers": ["openai"]})).is_ok(),
                "{p:?}"
            );
        }
    }

    #[test]
    fn minimal_request_gets_defaults_and_sorted_providers() {
        let a = ask(json!({"prompt": "hi", "providers": ["openai", "anthropic"]})).unwrap();
        assert_eq!(a.providers, vec![Provider::Anthropic, Provider::OpenAi]);
        assert_eq!(a.max_tokens, DEFAULT_MAX_TOKENS);
        assert_eq!(a.scope, ScopeKind::Shared);
        assert_eq!(a.models[&Provider::OpenAi], "gpt-4o-mini");
        assert_eq!(
            a.key_params,
            json!({"models": {"anthropic": "claude-haiku-4-5", "openai": "gpt-4o-mini"}})
        );
    }

    /// The default `max_tokens` depends on the tier's cap: a tier capped below the default
    /// gets shorter answers, so its key differs from the others' (and equals that of a call
    /// asking for that many tokens); under the default, the key is the contract's.
    #[test]
    fn a_default_max_tokens_lowered_by_the_cap_is_in_the_key_params() {
        let body = json!({"prompt": "hi", "providers": ["openai"]}).to_string();
        let capped = parse_ask(body.as_bytes(), 100).unwrap();
        let uncapped = parse_ask(body.as_bytes(), 1024).unwrap();
        assert_eq!(capped.max_tokens, 100);
        assert_eq!(capped.key_params["max_tokens"], 100);
        assert_ne!(capped.key_params, uncapped.key_params);
        assert!(uncapped.key_params.get("max_tokens").is_none());
        let asked =
            ask(json!({"prompt": "hi", "providers": ["openai"], "params": {"max_tokens": 100}}));
        assert_eq!(asked.unwrap().key_params, capped.key_params);
    }

    #[test]
    fn prompt_over_20480_bytes_is_413_and_exactly_20480_is_fine() {
        let ok = "é".repeat(PROMPT_LIMIT / 2);
        assert!(ask(json!({"prompt": ok, "providers": ["openai"]})).is_ok());
        let big = format!("{ok}x");
        let e = ask(json!({"prompt": big, "providers": ["openai"]})).unwrap_err();
        assert_eq!((e.status, e.code), (413, "prompt_too_large"));
    }

    #[test]
    fn bad_providers_are_400() {
        for p in [
            json!([]),
            json!(["openai", "openai"]),
            json!(["mistral"]),
            json!("openai"),
            json!([1]),
        ] {
            let e = ask(json!({"prompt": "hi", "providers": p})).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_providers"), "{p}");
        }
        let e = ask(json!({"prompt": "hi"})).unwrap_err();
        assert_eq!(e.code, "invalid_providers");
    }

    #[test]
    fn params_are_type_and_range_checked_naming_the_key() {
        for (params, key) in [
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": 1.5}), "max_tokens"),
            (json!({"max_tokens": 5000}), "max_tokens"),
            (json!({"temperature": 2.5}), "temperature"),
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"top_p": 0}), "top_p"),
            (json!({"system": 3}), "system"),
            (json!({"models": {"gemini": "x"}}), "models"),
            (json!({"models": {"openai": ""}}), "models"),
            (json!({"seed": 1}), "seed"),
        ] {
            let e = ask(json!({"prompt": "hi", "providers": ["openai"], "params": params}))
                .unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_param"), "{params}");
            assert_eq!(e.extra["param"], json!(key));
        }
    }

    #[test]
    fn an_integral_max_tokens_written_as_a_float_is_that_integer_with_the_same_key() {
        let whole =
            ask(json!({"prompt": "hi", "providers": ["openai"], "params": {"max_tokens": 300}}))
                .unwrap();
        let float =
            ask(json!({"prompt": "hi", "providers": ["openai"], "params": {"max_tokens": 300.0}}))
                .unwrap();
        assert_eq!(float.max_tokens, 300);
        let key = |a: &AskRequest| {
            let scope = a.scope.for_account("acct_1");
            crate::cache::key::ask_cache_key(&scope, &a.prompt, &a.providers, &a.key_params)
        };
        assert_eq!(key(&float), key(&whole));
        for bad in [json!(0.0), json!(-3.0), json!(1e300)] {
            let e = ask(
                json!({"prompt": "hi", "providers": ["openai"], "params": {"max_tokens": bad}}),
            )
            .unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_param"), "{bad}");
        }
    }

    #[test]
    fn non_json_and_non_object_bodies_are_400() {
        assert_eq!(parse_ask(b"not json", 10).unwrap_err().code, "invalid_json");
        assert_eq!(parse_ask(b"[1,2]", 10).unwrap_err().code, "invalid_request");
        assert_eq!(parse_ask(b"", 10).unwrap_err().code, "invalid_json");
    }

    /// serde_json would keep the last `openai` model while a provider could read the first:
    /// the answer would not be the one the cache key names.
    #[test]
    fn a_field_named_twice_at_any_depth_is_400_naming_it() {
        for (body, field) in [
            (
                r#"{"prompt":"x","providers":["openai"],"params":{"models":{"openai":"gpt-4o-mini","openai":"gpt-4o"}}}"#,
                "params.models.openai",
            ),
            (
                r#"{"prompt":"x","providers":["openai"],"params":{"temperature":0,"temper\u0061ture":1}}"#,
                "params.temperature",
            ),
            (
                r#"{"prompt":"x","prompt":"y","providers":["openai"]}"#,
                "prompt",
            ),
        ] {
            let e = parse_ask(body.as_bytes(), 1024).unwrap_err();
            assert_eq!((e.status, e.code), (400, "invalid_request"), "{body}");
            assert!(e.message.contains("names a field twice"), "{}", e.message);
            assert_eq!(e.extra["field"], json!(field), "{body}");
        }
    }

    #[test]
    fn stream_is_a_boolean_and_not_part_of_the_key() {
        let whole = ask(json!({"prompt": "hi", "providers": ["gemini"]})).unwrap();
        let streamed =
            ask(json!({"prompt": "hi", "providers": ["gemini"], "stream": true})).unwrap();
        assert!(streamed.stream && !whole.stream);
        assert_eq!(streamed.key_params, whole.key_params);
        let e = ask(json!({"prompt": "hi", "providers": ["gemini"], "stream": "yes"})).unwrap_err();
        assert_eq!((e.status, e.extra["field"].clone()), (400, json!("stream")));
    }

    #[test]
    fn cache_scope_private_and_bad_scope() {
        let a = ask(json!({"prompt": "hi", "providers": ["gemini"], "cache_scope": "private"}))
            .unwrap();
        assert_eq!(a.scope, ScopeKind::Private);
        let e = ask(json!({"prompt": "hi", "providers": ["gemini"], "cache_scope": "public"}))
            .unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn caller_model_is_kept_in_key_params() {
        let a = ask(json!({"prompt": "hi", "providers": ["openai"], "params": {"temperature": 0.2, "models": {"openai": "gpt-4o"}}})).unwrap();
        assert_eq!(
            a.key_params,
            json!({"temperature": 0.2, "models": {"openai": "gpt-4o"}})
        );
        assert_eq!(a.temperature, Some(0.2));
    }
}
