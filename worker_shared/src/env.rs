//! A Worker's plain-text settings: a var or, failing that, a secret of the same name.

use worker::Env;

/// The var or secret `name`, if set and non-empty.
pub fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
        .filter(|v| !v.is_empty())
}
