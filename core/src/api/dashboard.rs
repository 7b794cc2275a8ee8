//! The dashboard's rules (the contract's "Dashboard"): the session cookie, which calls a cookie
//! session may make, the CSRF check of its state-changing calls, and the headers every
//! dashboard response carries.

use crate::api::request_url;
use crate::api::route::V1Route;

/// The session cookie's name wherever it is `Secure`: the `__Host-` prefix makes a browser take
/// it only from this very host, only with `Secure` and `Path=/` and no `Domain`, so a page on a
/// sibling subdomain can neither set it nor shadow it with a cookie of its own.
pub const SESSION_COOKIE: &str = "__Host-gw_session";

/// Its name over plain HTTP to the loopback host of local development, where a cookie cannot
/// be `Secure` and so cannot take the prefix.
pub const LOCAL_SESSION_COOKIE: &str = "gw_session";

/// The session cookie's name, for a cookie that is `Secure` or not (see [`secure_cookie`]).
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SESSION_COOKIE
    } else {
        LOCAL_SESSION_COOKIE
    }
}

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

/// The `Strict-Transport-Security` header of every dashboard response over HTTPS: a browser
/// that loaded the dashboard once asks for it over HTTPS only, for a year, so that no one on
/// the network can answer it a plain-HTTP page that reads the key typed into the login.
pub const HSTS: (&str, &str) = ("Strict-Transport-Security", "max-age=31536000");

fn loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Whether the cookie may say `Secure`: always, except over plain HTTP to the loopback host of
/// local development, where a browser would not send a `Secure` cookie back.
pub fn secure_cookie(scheme: &str, host: &str) -> bool {
    !(scheme == "http" && loopback(host))
}

/// Where a dashboard request over plain HTTP to a host other than the loopback one is sent
/// instead (a 308): the same path and query over HTTPS, on the default port. The dashboard's
/// pages and its login are never served in the clear but for local development.
pub fn https_location(url: &str) -> Option<String> {
    let (scheme, host) = request_url::scheme_and_host(url)?;
    if scheme != "http" || loopback(host) {
        return None;
    }
    let rest = url.strip_prefix("http://")?;
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    Some(format!("https://{host}{path}"))
}

/// The `Set-Cookie` value that opens a session.
pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{}={token}; Max-Age={}; Path=/; HttpOnly; SameSite=Strict{}",
        cookie_name(secure),
        SESSION_TTL_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends it.
pub fn cleared_cookie(secure: bool) -> String {
    format!(
        "{}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict{}",
        cookie_name(secure),
        if secure { "; Secure" } else { "" }
    )
}

/// The session token a `Cookie` header carries under the session cookie's name (`secure` as the
/// cookie was set), if it carries exactly one and it is well formed. A header naming the cookie
/// twice carries none: which of the two a browser lists first is up to the cookies' paths, so a
/// cookie planted beside the caller's own (by a sibling subdomain, where the name has no
/// `__Host-` prefix) could otherwise be read in its place, and the caller's changes made to the
/// planter's account.
pub fn session_token(cookie_header: &str, secure: bool) -> Option<&str> {
    let name = cookie_name(secure);
    let mut tokens = cookie_header
        .split(';')
        .filter_map(|part| part.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value);
    let token = tokens.next()?;
    if tokens.next().is_some() {
        return None;
    }
    Some(token).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
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
            "__Host-gw_session=ab; Max-Age=43200; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            session_cookie("ab", false),
            "gw_session=ab; Max-Age=43200; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(secure_cookie("https", "gw.example.com"));
        assert!(secure_cookie("http", "gw.example.com"));
        assert!(!secure_cookie("http", "127.0.0.1"));
        assert!(secure_cookie("https", "127.0.0.1"));
    }

    #[test]
    fn plain_http_is_sent_to_https_but_on_the_loopback_host() {
        assert_eq!(
            https_location("http://gw.example.com/dashboard/app.js?v=2").as_deref(),
            Some("https://gw.example.com/dashboard/app.js?v=2")
        );
        assert_eq!(
            https_location("http://gw.example.com:8080/dashboard").as_deref(),
            Some("https://gw.example.com/dashboard")
        );
        assert_eq!(
            https_location("http://gw.example.com").as_deref(),
            Some("https://gw.example.com/")
        );
        for local in [
            "https://gw.example.com/dashboard",
            "http://127.0.0.1:8787/dashboard",
            "http://localhost/dashboard",
            "http://[::1]:8787/dashboard",
        ] {
            assert_eq!(https_location(local), None, "{local}");
        }
        assert_eq!(
            cleared_cookie(true),
            "__Host-gw_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(cleared_cookie(false).starts_with("gw_session=; Max-Age=0;"));
    }

    #[test]
    fn only_a_well_formed_token_is_read() {
        let t = "a".repeat(64);
        assert_eq!(
            session_token(&format!("x=1; gw_session={t}; y=2"), false),
            Some(t.as_str())
        );
        assert_eq!(session_token("gw_session=short", false), None);
        assert_eq!(
            session_token(&format!("gw_session={}", "g".repeat(64)), false),
            None
        );
        assert_eq!(session_token(&format!("other={t}"), false), None);
        assert_eq!(session_token("", false), None);
    }

    #[test]
    fn a_secure_session_is_read_under_its_host_only_name() {
        let t = "b".repeat(64);
        assert_eq!(
            session_token(&format!("__Host-gw_session={t}"), true),
            Some(t.as_str())
        );
        // The unprefixed name, which any sibling subdomain may set, is not read where the
        // cookie is Secure; nor the prefixed one over local HTTP, where it cannot have been set.
        assert_eq!(session_token(&format!("gw_session={t}"), true), None);
        assert_eq!(
            session_token(&format!("__Host-gw_session={t}"), false),
            None
        );
    }

    #[test]
    fn a_cookie_header_naming_the_session_twice_carries_none() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        for secure in [true, false] {
            let name = cookie_name(secure);
            let header = format!("{name}={a}; x=1; {name}={b}");
            assert_eq!(session_token(&header, secure), None, "{header}");
            // Even when the other one is malformed: the header is ambiguous either way.
            let header = format!("{name}={a}; {name}=zz");
            assert_eq!(session_token(&header, secure), None, "{header}");
        }
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
