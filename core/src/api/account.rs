//! The small bodies of the account and admin APIs: only known fields, a key-minting request
//! (`{"name"?, "mode"?}`), a tier change (`{"tier", "limits"?}`).

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::keys::KeyMode;
use crate::limits::tier::{AccountLimits, Tier};

/// Longest key name.
pub const KEY_NAME_LIMIT: usize = 100;

/// Refuses a field of `body` not in `allowed` (a misspelled field is an error, not ignored).
pub fn only_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => {
            let k: String = k.chars().take(40).collect();
            Err(ApiError::invalid_request(format!(
                "unknown field `{k}`; expected {}",
                allowed.join(", ")
            ))
            .with("field", k))
        }
    }
}

/// `{"name"?, "mode"?}` of a key-minting request.
pub fn key_request(body: &Map<String, Value>) -> Result<(Option<String>, KeyMode), ApiError> {
    only_fields(body, &["name", "mode"])?;
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= KEY_NAME_LIMIT && !s.chars().any(char::is_control) => {
            Some(s.clone())
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "name",
                format!("`name` must be a string of at most {KEY_NAME_LIMIT} bytes"),
            ))
        }
    };
    let mode = match body.get("mode") {
        None | Some(Value::Null) => KeyMode::Live,
        Some(v) => v.as_str().and_then(KeyMode::parse).ok_or_else(|| {
            ApiError::invalid_param("mode", "`mode` must be \"live\" or \"test\"")
        })?,
    };
    Ok((name, mode))
}

/// `{"tier", "limits"?}` → the tier and its enterprise limits (only the enterprise tier has
/// its own).
pub fn tier_change(body: &Map<String, Value>) -> Result<(Tier, Option<AccountLimits>), ApiError> {
    let tier = body
        .get("tier")
        .and_then(Value::as_str)
        .and_then(Tier::parse)
        .ok_or_else(|| {
            ApiError::invalid_param("tier", "`tier` must be one of free, pro, scale, enterprise")
        })?;
    let limits = match body.get("limits") {
        None | Some(Value::Null) => None,
        Some(v) => {
            if tier != Tier::Enterprise {
                return Err(ApiError::invalid_param(
                    "limits",
                    "`limits` can only be set on the enterprise tier",
                ));
            }
            // `{"burst", "per_second"}` (calls), and optionally the per-minute token and
            // account-wide limits (`AccountLimits`); unknown fields are refused by name.
            let limits = serde_json::from_value::<AccountLimits>(v.clone()).map_err(|e| {
                ApiError::invalid_param(
                    "limits",
                    format!(
                        "invalid limits: {e} (expected burst, per_second and optionally \
                         input_tokens_per_minute, output_tokens_per_minute, \
                         account_calls_per_minute, account_input_tokens_per_minute, \
                         account_output_tokens_per_minute)"
                    ),
                )
            })?;
            Some(limits)
        }
    };
    Ok((tier, limits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_misspelled_field_is_refused_by_name() {
        let e = only_fields(&obj(json!({"credit": 5})), &["credits"]).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("`credit`"), "{}", e.message);
        assert!(only_fields(&obj(json!({"credits": 5})), &["credits"]).is_ok());
    }

    #[test]
    fn a_key_request_defaults_to_an_unnamed_live_key() {
        assert_eq!(key_request(&Map::new()).unwrap(), (None, KeyMode::Live));
        let (name, mode) = key_request(&obj(json!({"name": "ci", "mode": "test"}))).unwrap();
        assert_eq!((name.as_deref(), mode), (Some("ci"), KeyMode::Test));
        assert!(key_request(&obj(json!({"mode": "prod"}))).is_err());
        assert!(key_request(&obj(json!({"name": "a\u{7}"}))).is_err());
        let long = "x".repeat(KEY_NAME_LIMIT + 1);
        assert!(key_request(&obj(json!({ "name": long }))).is_err());
    }

    #[test]
    fn only_the_enterprise_tier_takes_limits() {
        let (tier, limits) = tier_change(&obj(json!({"tier": "pro"}))).unwrap();
        assert_eq!((tier, limits), (Tier::Pro, None));
        assert!(tier_change(&obj(
            json!({"tier": "pro", "limits": {"burst": 5, "per_second": 1}})
        ))
        .is_err());
        let (tier, limits) = tier_change(&obj(
            json!({"tier": "enterprise", "limits": {"burst": 5, "per_second": 1}}),
        ))
        .unwrap();
        assert_eq!(tier, Tier::Enterprise);
        let limits = limits.unwrap();
        assert_eq!(
            limits.calls,
            crate::limits::tier::Limits::new(5, 1.0).unwrap()
        );
        assert_eq!(limits.key_input_tokens_per_minute, None);
        // The token limits too, each checked.
        let (_, limits) = tier_change(&obj(json!({"tier": "enterprise", "limits":
            {"burst": 5, "per_second": 1, "input_tokens_per_minute": 1000,
             "account_calls_per_minute": 50}})))
        .unwrap();
        let limits = limits.unwrap();
        assert_eq!(limits.key_input_tokens_per_minute, Some(1000));
        assert_eq!(limits.account_calls_per_minute, Some(50));
        assert!(tier_change(&obj(json!({"tier": "enterprise", "limits":
            {"burst": 5, "per_second": 1, "input_tokens_per_minute": 0}})))
        .is_err());
        assert!(tier_change(&obj(
            json!({"tier": "enterprise", "limits": {"burts": 5, "per_second": 1}})
        ))
        .is_err());
        assert!(tier_change(&obj(json!({"tier": "gold"}))).is_err());
    }
}
