//! How a call is charged when the provider told no usage: the settlement rule for calls that
//! failed, timed out or were cut off. A provider bills what it generated whether or not the
//! gateway saw the answer, so a call whose outcome is unknown once it was sent is charged its
//! reserved worst case, never zero; a call the provider refused with its own error (4xx/5xx,
//! which providers do not bill) or that never left the gateway is charged nothing.

/// What an unreported call costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreported {
    /// Nothing reached a provider that bills it: the reservation is released.
    Nothing,
    /// The provider may have generated (and billed) up to the whole reservation.
    WorstCase,
}

/// The settlement of a call that failed with error `code` (a broker's, an upstream's, or the
/// gateway's own). Unknown codes are charged nothing only when they are refusals made before
/// the call was sent; every code that means "sent, outcome unknown" is listed here.
pub fn unreported(code: &str) -> Unreported {
    match code {
        // The broker or the gateway stopped waiting: the provider may still be generating.
        "upstream_timeout"
        // The connection failed or was cut after the request may have reached the provider.
        | "upstream_unreachable"
        // A success answer the broker could not read: the provider did the work.
        | "upstream_malformed"
        // The gateway lost the broker mid-call: it may have called the provider.
        | "broker_unavailable" => Unreported::WorstCase,
        _ => Unreported::Nothing,
    }
}

/// The settlement of a streamed call that failed with error `code`: its worst case when its
/// provider's answer had begun (`mid_answer`: the provider may have generated more of it,
/// whatever the error says), else as the code says ([`unreported`]).
pub fn failed_stream(code: &str, mid_answer: bool) -> Unreported {
    if mid_answer {
        Unreported::WorstCase
    } else {
        unreported(code)
    }
}

/// The settlement of a call that ended with `e`: nothing when it was certainly never sent,
/// else as its code says ([`unreported`]).
pub fn of_error(e: &crate::error::ApiError) -> Unreported {
    if e.unsent {
        Unreported::Nothing
    } else {
        unreported(e.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_never_sent_is_free_whatever_its_code() {
        use crate::error::ApiError;
        let e = ApiError::new(503, "broker_unavailable", "x");
        assert_eq!(of_error(&e), Unreported::WorstCase);
        assert_eq!(of_error(&e.never_sent()), Unreported::Nothing);
        let refused = ApiError::new(529, "upstream_overloaded", "x");
        assert_eq!(of_error(&refused), Unreported::Nothing);
    }

    #[test]
    fn a_stream_that_failed_mid_answer_is_charged_its_worst_case_whatever_its_code() {
        assert_eq!(
            failed_stream("upstream_overloaded", true),
            Unreported::WorstCase
        );
        assert_eq!(
            failed_stream("upstream_overloaded", false),
            Unreported::Nothing
        );
        assert_eq!(
            failed_stream("upstream_timeout", false),
            Unreported::WorstCase
        );
    }

    #[test]
    fn a_call_whose_outcome_is_unknown_is_charged_its_worst_case() {
        for code in [
            "upstream_timeout",
            "upstream_unreachable",
            "upstream_malformed",
            "broker_unavailable",
        ] {
            assert_eq!(unreported(code), Unreported::WorstCase, "{code}");
        }
    }

    #[test]
    fn a_call_the_provider_refused_or_never_got_is_free() {
        for code in [
            "upstream_server_error",
            "upstream_overloaded",
            "upstream_rate_limited",
            "upstream_auth_failed",
            "model_not_allowed",
            "invalid_request",
            "provider_key_unusable",
            "key_audit_unavailable",
            "service_unavailable",
        ] {
            assert_eq!(unreported(code), Unreported::Nothing, "{code}");
        }
    }
}
