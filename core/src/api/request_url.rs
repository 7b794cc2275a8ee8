//! The parts of a request's URL the gateway reads (its origin, scheme and host, and its query
//! as `application/x-www-form-urlencoded` pairs), from the URL text the runtime hands a Worker,
//! which is already in WHATWG form (scheme and host lowercase, no default port, host in
//! punycode). Read here rather than by the `url` crate, whose parser the gateway linked for
//! these three questions alone (`docs/DECISIONS.md`, "Bundle size").

/// The URL's scheme and authority, split at `://`, the authority without userinfo.
fn scheme_and_authority(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty()).then_some((scheme, authority))
}

/// `scheme://host[:port]`, as a browser sends it in `Origin`.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, authority) = scheme_and_authority(url)?;
    Some(format!("{scheme}://{authority}"))
}

/// The scheme and the host (an IPv6 host in its brackets), without the port.
pub fn scheme_and_host(url: &str) -> Option<(&str, &str)> {
    let (scheme, authority) = scheme_and_authority(url)?;
    let host = if authority.starts_with('[') {
        &authority[..authority.find(']').map_or(authority.len(), |i| i + 1)]
    } else {
        authority.split_once(':').map_or(authority, |(h, _)| h)
    };
    Some((scheme, host))
}

/// The query's name/value pairs in order, decoded as a form is (`+` is a space, `%XX` a byte,
/// invalid UTF-8 replaced); empty pieces between `&`s are skipped.
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    let Some((_, rest)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = rest.split_once('#').map_or(rest, |(q, _)| q);
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            (form_decode(name), form_decode(value))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let mut byte = [0u8; 1];
        let escaped = b[i] == b'%'
            && b.get(i + 1..i + 3)
                .is_some_and(|pair| hex::decode_to_slice(pair, &mut byte).is_ok());
        match b[i] {
            _ if escaped => {
                out.push(byte[0]);
                i += 2;
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use url::Url;

    const URLS: [&str; 9] = [
        "http://localhost:8787/v1/usage?from=1&to=2",
        "https://gateway.example.com/dashboard",
        "https://gateway.example.com",
        "http://127.0.0.1:9000/v1/ask#frag",
        "http://[::1]:8787/v1/usage?limit=5",
        "https://[2001:db8::1]/x",
        "https://user:pw@gateway.example.com:8443/p?q",
        "http://xn--bcher-kva.example/?a=b",
        "https://gateway.example.com?endpoint=POST+%2Fv1%2Fask",
    ];

    #[test]
    fn origin_scheme_and_host_are_the_url_crates() {
        for u in URLS {
            let parsed = Url::parse(u).unwrap();
            assert_eq!(
                origin(u).unwrap(),
                parsed.origin().ascii_serialization(),
                "{u}"
            );
            assert_eq!(
                scheme_and_host(u).unwrap(),
                (parsed.scheme(), parsed.host_str().unwrap()),
                "{u}"
            );
        }
        assert_eq!(origin("not a url"), None);
        assert_eq!(scheme_and_host("://host/"), None);
        assert_eq!(scheme_and_host("http:///path"), None);
    }

    fn crate_pairs(u: &str) -> Vec<(String, String)> {
        Url::parse(u)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn query_pairs_decode_as_forms_do() {
        for u in URLS {
            assert_eq!(query_pairs(u), crate_pairs(u), "{u}");
        }
        let u = "http://h/p?endpoint=POST+%2Fv1%2Fask&&limit=5&bare&x=%zz%4&y=%C3%A9%FF#z=1";
        assert_eq!(query_pairs(u), crate_pairs(u));
        assert_eq!(
            query_pairs(u)[0],
            ("endpoint".into(), "POST /v1/ask".into())
        );
    }

    proptest! {
        #[test]
        fn query_pairs_match_the_url_crate(q in "[a-zA-Z0-9=&+%._~-]{0,40}") {
            let u = format!("http://h/p?{q}");
            prop_assert_eq!(query_pairs(&u), crate_pairs(&u));
        }
    }
}
