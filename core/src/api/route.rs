//! The authenticated `/v1` routes as one typed table: what each call is, the fixed name its
//! usage row records (never the raw path), and the rules that depend on the route (which calls
//! change the account, which read its data, which leave no usage row).

/// One `/v1/...` call, by method and path segments (below `/v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Route<'a> {
    /// `POST /v1/ask`.
    Ask,
    /// `GET /v1/ask/:id`.
    AskArchived { id: &'a str },
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/messages`.
    Messages,
    /// `GET /v1/usage`.
    Usage,
    /// `GET /v1/account`.
    Account,
    /// `PATCH /v1/account`.
    AccountPatch,
    /// `DELETE /v1/account`.
    AccountDelete,
    /// `GET /v1/keys`.
    KeysList,
    /// `POST /v1/keys`.
    KeysMint,
    /// `DELETE /v1/keys/:prefix`.
    KeyRevoke { prefix: &'a str },
    /// `GET /v1/provider-keys`.
    ProviderKeysList,
    /// `GET /v1/provider-keys/access-log`.
    ProviderKeysAccessLog,
    /// `PUT /v1/provider-keys/:provider`.
    ProviderKeyPut { provider: &'a str },
    /// `DELETE /v1/provider-keys/:provider`.
    ProviderKeyDelete { provider: &'a str },
    /// `GET /v1/models`: the drop-in dialects' models (`dropin::model_list`).
    Models,
    /// `GET /v1/models/:id`.
    Model { id: &'a str },
    /// A known path with another method (405).
    MethodNotAllowed,
    /// No such route (404).
    NotFound,
}

impl<'a> V1Route<'a> {
    /// The route of `method` (upper case, as HTTP sends it) on the segments below `/v1`.
    pub fn parse(method: &str, segs: &[&'a str]) -> V1Route<'a> {
        use V1Route::*;
        match (method, segs) {
            ("POST", ["ask"]) => Ask,
            ("GET", ["ask", id]) => AskArchived { id },
            ("POST", ["chat", "completions"]) => ChatCompletions,
            ("POST", ["messages"]) => Messages,
            ("GET", ["usage"]) => Usage,
            ("GET", ["account"]) => Account,
            ("PATCH", ["account"]) => AccountPatch,
            ("DELETE", ["account"]) => AccountDelete,
            ("GET", ["keys"]) => KeysList,
            ("POST", ["keys"]) => KeysMint,
            ("DELETE", ["keys", prefix]) => KeyRevoke { prefix },
            ("GET", ["provider-keys"]) => ProviderKeysList,
            ("GET", ["provider-keys", "access-log"]) => ProviderKeysAccessLog,
            ("PUT", ["provider-keys", provider]) => ProviderKeyPut { provider },
            ("DELETE", ["provider-keys", provider]) => ProviderKeyDelete { provider },
            ("GET", ["models"]) => Models,
            ("GET", ["models", id]) => Model { id },
            (
                _,
                ["ask"]
                | ["ask", _]
                | ["chat", "completions"]
                | ["messages"]
                | ["usage"]
                | ["account"]
                | ["keys"]
                | ["keys", _]
                | ["provider-keys"]
                | ["provider-keys", _]
                | ["models"]
                | ["models", _],
            ) => MethodNotAllowed,
            _ => NotFound,
        }
    }

    /// The name a usage row records for the call: one of a fixed list, `other` for the rest.
    pub fn endpoint(self) -> &'static str {
        use V1Route::*;
        match self {
            Ask => "POST /v1/ask",
            AskArchived { .. } => "GET /v1/ask/:id",
            ChatCompletions => "POST /v1/chat/completions",
            Messages => "POST /v1/messages",
            Usage => "GET /v1/usage",
            Account => "GET /v1/account",
            AccountPatch => "PATCH /v1/account",
            AccountDelete => "DELETE /v1/account",
            KeysList => "GET /v1/keys",
            KeysMint => "POST /v1/keys",
            KeyRevoke { .. } => "DELETE /v1/keys/:prefix",
            ProviderKeysList => "GET /v1/provider-keys",
            ProviderKeysAccessLog => "GET /v1/provider-keys/access-log",
            ProviderKeyPut { .. } => "PUT /v1/provider-keys/:provider",
            ProviderKeyDelete { .. } => "DELETE /v1/provider-keys/:provider",
            Models => "GET /v1/models",
            Model { .. } => "GET /v1/models/:id",
            MethodNotAllowed | NotFound => "other",
        }
    }

    /// Calls that change the account: live keys only, checked against D1 first.
    pub fn changes_account(self) -> bool {
        use V1Route::*;
        matches!(
            self,
            KeysMint
                | KeyRevoke { .. }
                | AccountPatch
                | AccountDelete
                | ProviderKeyPut { .. }
                | ProviderKeyDelete { .. }
        )
    }

    /// Calls that read the account's data (archive, usage, keys, balance, provider keys, the
    /// access log): the key is checked against D1, past the auth caches, as for a paid call.
    pub fn reads_account_data(self) -> bool {
        use V1Route::*;
        matches!(
            self,
            AskArchived { .. }
                | Usage
                | Account
                | KeysList
                | ProviderKeysList
                | ProviderKeysAccessLog
        )
    }

    /// The answering endpoints: a call to one reaches the cache or the key's bucket unless it is
    /// refused before (a bad body), and only then passes the isolate's limiter of unmetered
    /// calls; every other call passes that limiter before it does anything.
    pub fn answers(self) -> bool {
        matches!(
            self,
            V1Route::Ask | V1Route::ChatCompletions | V1Route::Messages
        )
    }

    /// Whether the call leaves a usage row: an unknown route or method only counts.
    pub fn records_usage(self) -> bool {
        !matches!(self, V1Route::MethodNotAllowed | V1Route::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route<'a>(method: &str, path: &'a str) -> V1Route<'a> {
        let segs: Vec<&'a str> = path.trim_matches('/').split('/').collect();
        V1Route::parse(method, &segs)
    }

    #[test]
    fn only_the_three_answering_endpoints_answer() {
        assert!(route("POST", "ask").answers());
        assert!(route("POST", "chat/completions").answers());
        assert!(route("POST", "messages").answers());
        for (method, path) in [
            ("GET", "ask/req_1"),
            ("POST", "keys"),
            ("DELETE", "account"),
            ("GET", "usage"),
            ("PUT", "provider-keys/openai"),
            ("GET", "ask"),
            ("POST", "nowhere"),
        ] {
            assert!(!route(method, path).answers(), "{method} {path}");
        }
    }

    /// One call of each route (`V1Route::endpoint`'s match is exhaustive: a new route gets a
    /// name there, and a line here).
    const ONE_OF_EACH: [(&str, &str); 20] = [
        ("POST", "ask"),
        ("GET", "ask/req_1"),
        ("POST", "chat/completions"),
        ("POST", "messages"),
        ("GET", "usage"),
        ("GET", "account"),
        ("PATCH", "account"),
        ("DELETE", "account"),
        ("GET", "keys"),
        ("POST", "keys"),
        ("DELETE", "keys/lvk_live_abc"),
        ("GET", "provider-keys"),
        ("GET", "provider-keys/access-log"),
        ("PUT", "provider-keys/openai"),
        ("DELETE", "provider-keys/openai"),
        ("GET", "models"),
        ("GET", "models/gpt-4o-mini"),
        ("POST", "models"),
        ("GET", "nowhere"),
        ("GET", "messages/count_tokens"),
    ];

    #[test]
    fn the_dashboards_usage_filter_offers_every_endpoint_name() {
        let app = include_str!("../../../dashboard/app.js");
        let start = app
            .find("const ENDPOINTS = [")
            .expect("the dashboard's list");
        let list = &app[start..];
        let list = &list[..list.find("];").expect("its end")];
        for (method, path) in ONE_OF_EACH {
            let name = route(method, path).endpoint();
            assert!(list.contains(&format!("'{name}'")), "{name} is not offered");
        }
    }

    #[test]
    fn each_route_records_a_fixed_endpoint_name() {
        assert_eq!(route("POST", "ask").endpoint(), "POST /v1/ask");
        assert_eq!(route("GET", "ask/req_1").endpoint(), "GET /v1/ask/:id");
        assert_eq!(
            route("GET", "ask/req_1"),
            V1Route::AskArchived { id: "req_1" }
        );
        assert_eq!(
            route("POST", "chat/completions").endpoint(),
            "POST /v1/chat/completions"
        );
        assert_eq!(
            route("DELETE", "keys/lvk_live_abc").endpoint(),
            "DELETE /v1/keys/:prefix"
        );
        assert_eq!(
            route("GET", "provider-keys/access-log"),
            V1Route::ProviderKeysAccessLog
        );
    }

    #[test]
    fn a_long_unknown_path_is_recorded_as_other_and_not_at_all() {
        let long = "x".repeat(16_000);
        let r = route("GET", &long);
        assert_eq!(r, V1Route::NotFound);
        assert_eq!(r.endpoint(), "other");
        assert!(!r.records_usage());
        assert!(!route("GET", "ask/a/b").records_usage());
    }

    #[test]
    fn a_known_path_with_another_method_is_405() {
        for (m, p) in [
            ("GET", "ask"),
            ("PUT", "ask/req_1"),
            ("GET", "chat/completions"),
            ("GET", "messages"),
            ("POST", "usage"),
            ("PUT", "account"),
            ("PUT", "keys"),
            ("GET", "keys/lvk_live_abc"),
            ("POST", "provider-keys"),
            ("POST", "provider-keys/openai"),
        ] {
            assert_eq!(route(m, p), V1Route::MethodNotAllowed, "{m} {p}");
            assert!(!route(m, p).records_usage());
        }
        assert_eq!(route("GET", "keys/a/b"), V1Route::NotFound);
        assert_eq!(route("GET", "provider-keys/a/b"), V1Route::NotFound);
    }

    #[test]
    fn account_changes_and_data_reads_are_told_apart() {
        assert!(route("POST", "keys").changes_account());
        assert!(route("DELETE", "account").changes_account());
        assert!(route("PUT", "provider-keys/openai").changes_account());
        assert!(!route("GET", "keys").changes_account());
        for (m, p) in [
            ("GET", "ask/req_1"),
            ("GET", "usage"),
            ("GET", "account"),
            ("GET", "keys"),
            ("GET", "provider-keys"),
            ("GET", "provider-keys/access-log"),
        ] {
            assert!(route(m, p).reads_account_data(), "{m} {p}");
        }
        assert!(!route("POST", "ask").reads_account_data());
        assert!(!route("POST", "messages").reads_account_data());
    }
}
