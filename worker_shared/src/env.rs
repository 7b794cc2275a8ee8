//! A Worker's plain-text settings: a var or, failing that, a secret of the same name. Each is
//! read from the environment once per isolate: a Worker's vars and secrets are fixed for the
//! life of its isolate (a changed value comes with a new deployment, hence new isolates), and
//! every read crosses into JavaScript (a secret's twice: not a var, then a secret).

use std::cell::RefCell;
use std::collections::HashMap;

use worker::Env;

thread_local! {
    /// The vars and secrets this isolate has read (`None`: unset or empty).
    static READ: RefCell<HashMap<String, Option<String>>> = RefCell::new(HashMap::new());
}

/// The var or secret `name`, if set and non-empty.
pub fn var(env: &Env, name: &str) -> Option<String> {
    if let Some(value) = READ.with(|read| read.borrow().get(name).cloned()) {
        return value;
    }
    let value = env
        .var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
        .filter(|v| !v.is_empty());
    READ.with(|read| {
        read.borrow_mut().insert(name.to_string(), value.clone());
    });
    value
}
