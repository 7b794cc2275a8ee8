//! The dashboard's rules (the contract's "Dashboard"): the session cookie, which calls a cookie
//! session may make, the CSRF check of its state-changing calls, and the headers every
//! dashboard response carries.

use crate::api::route::V1Route;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "gw_session";

/// How long a session lasts (12 h), whatever happens in between.
pub const SESSION_TTL_MS: u64 = 12 * 3600 * 1000;

/// The Content-Security-Policy of every dashboard page and file: nothing but the gateway's own
/// origin, no inline script or style, no framing, no `<base>`, forms only to itself.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'";

/// The headers of every dashboard response (pages, files and the session routes).
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
];

/// Whether the cookie may say `Secure`: always, except over plain HTTP to the loopback host of
/// local development, where a browser would not send a `Secure` cookie back.
pub fn secure_cookie(scheme: &str, host: &str) -> bool {
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    !(scheme == "http" && loopback)
}

/// The `Set-Cookie` value that opens a session.
pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Max-Age={}; Path=/; HttpOnly; SameSite=Strict{}",
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends it.
pub fn cleared_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session token a `Cookie` header carries, if any (a well-formed token only).
pub fn session_token(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|part| part.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The calls a cookie session may make: the account's own data and settings. The answering
/// endpoints (which spend credits) take an API key only.
pub fn session_may_call(route: V1Route) -> bool {
    route.changes_account() || route.reads_account_data()
}

/// CSRF: a state-changing call on a cookie session must name the gateway's own origin in its
/// `Origin` header (browsers send it on every such request; `SameSite=Strict` is the second
/// line). A read (`GET`/`HEAD`) changes nothing and is not checked.
pub fn origin_allowed(method: &str, origin: Option<&str>, own_origin: &str) -> bool {
    matches!(method, "GET" | "HEAD") || origin == Some(own_origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_but_on_local_http() {
        let c = session_cookie("ab", true);
        assert_eq!(
            c,
            "gw_session=ab; Max-Age=43200; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!session_cookie("ab", false).contains("Secure"));
        assert!(secure_cookie("https", "gw.example.com"));
        assert!(secure_cookie("http", "gw.example.com"));
        assert!(!secure_cookie("http", "127.0.0.1"));
        assert!(secure_cookie("https", "127.0.0.1"));
        assert!(cleared_cookie(true).contains("Max-Age=0"));
    }

    #[test]
    fn only_a_well_formed_token_is_read() {
        let t = "a".repeat(64);
        assert_eq!(
            session_token(&format!("x=1; gw_session={t}; y=2")),
            Some(t.as_str())
        );
        assert_eq!(session_token("gw_session=short"), None);
        assert_eq!(
            session_token(&format!("gw_session={}", "g".repeat(64))),
            None
        );
        assert_eq!(session_token(&format!("other={t}")), None);
        assert_eq!(session_token(""), None);
    }

    #[test]
    fn a_session_reaches_the_account_routes_only() {
        assert!(session_may_call(V1Route::KeysList));
        assert!(session_may_call(V1Route::KeysMint));
        assert!(session_may_call(V1Route::AccountDelete));
        assert!(session_may_call(V1Route::ProviderKeysAccessLog));
        assert!(!session_may_call(V1Route::Ask));
        assert!(!session_may_call(V1Route::ChatCompletions));
        assert!(!session_may_call(V1Route::Messages));
        assert!(!session_may_call(V1Route::NotFound));
    }

    #[test]
    fn a_change_needs_the_own_origin() {
        let own = "https://gw.example.com";
        assert!(origin_allowed("GET", None, own));
        assert!(origin_allowed("POST", Some(own), own));
        assert!(!origin_allowed("POST", None, own));
        assert!(!origin_allowed("DELETE", Some("https://evil.example"), own));
        assert!(!origin_allowed(
            "PATCH",
            Some("https://gw.example.com.evil.example"),
            own
        ));
    }
}
