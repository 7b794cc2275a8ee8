//! The gateway ↔ broker shared secret as a broker checks it: the current value and, during a
//! rotation, the previous one, both compared in constant time.
//!
//! A rotation without downtime (docs/OPERATIONS.md): each broker gets the new value as
//! `BROKER_SHARED_SECRET` and the old one as `BROKER_SHARED_SECRET_PREVIOUS` (one deployment,
//! so it accepts both from then on); then the gateway switches to the new value; once no
//! isolate of the old gateway deployment is left, the brokers drop the previous value.
//! The gateway only ever sends one value: the current one.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The broker's var holding the current value.
pub const CURRENT_VAR: &str = "BROKER_SHARED_SECRET";
/// The broker's var holding the value being rotated out (set only during a rotation).
pub const PREVIOUS_VAR: &str = "BROKER_SHARED_SECRET_PREVIOUS";

/// What [`AcceptedSecrets::check`] found the given secret to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Current,
    /// The previous value, accepted during a rotation.
    Previous,
    Refused,
}

/// The values a broker accepts. Its `Debug` form never shows them.
#[derive(Clone)]
pub struct AcceptedSecrets {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for AcceptedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptedSecrets")
            .field("current", &"[redacted]")
            .field("previous", &self.previous.map(|_| "[redacted]"))
            .finish()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl AcceptedSecrets {
    /// The accepted values, from the broker's two vars (`None` or empty: unset). Without a
    /// current value nothing is accepted (`None`), whatever the previous one: a broker whose
    /// secret is missing is misconfigured and must refuse everything.
    pub fn new(current: Option<&str>, previous: Option<&str>) -> Option<AcceptedSecrets> {
        let current = current.filter(|c| !c.is_empty())?;
        Some(AcceptedSecrets {
            current: digest(current),
            previous: previous.filter(|p| !p.is_empty()).map(digest),
        })
    }

    /// Whether `given` is the current or the previous value. Both comparisons always run and
    /// compare fixed-length SHA-256 digests in constant time, so neither which value matched,
    /// nor how much of it, nor the values' lengths show in the time taken. An empty `given`
    /// is never accepted.
    pub fn admits(&self, given: &str) -> bool {
        self.check(given) != Admission::Refused
    }

    /// Which value `given` is: [`AcceptedSecrets::admits`], telling the current value from the
    /// previous one (a caller still sending the previous value has not switched yet: worth a log
    /// line while a rotation is under way). Both comparisons run before the answer is known.
    pub fn check(&self, given: &str) -> Admission {
        let given_digest = digest(given);
        let nonempty = Choice::from(u8::from(!given.is_empty()));
        let current = given_digest.ct_eq(&self.current) & nonempty;
        // With no previous value, compare against the current one again: same work either way.
        let previous = match &self.previous {
            Some(p) => given_digest.ct_eq(p) & nonempty,
            None => given_digest.ct_eq(&self.current) & Choice::from(0),
        };
        match (bool::from(current), bool::from(previous)) {
            (true, _) => Admission::Current,
            (false, true) => Admission::Previous,
            (false, false) => Admission::Refused,
        }
    }

    /// Whether a previous value is accepted (a rotation is under way): worth a log line.
    pub fn rotating(&self) -> bool {
        self.previous.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_value_alone_is_accepted_outside_a_rotation() {
        let s = AcceptedSecrets::new(Some("new-secret"), None).unwrap();
        assert!(s.admits("new-secret"));
        for wrong in ["", "new-secre", "new-secret ", "NEW-SECRET", "old-secret"] {
            assert!(!s.admits(wrong), "{wrong:?}");
        }
        assert!(!s.rotating());
    }

    #[test]
    fn during_a_rotation_both_values_are_accepted_and_nothing_else() {
        let s = AcceptedSecrets::new(Some("new-secret"), Some("old-secret")).unwrap();
        assert!(s.admits("new-secret"));
        assert!(s.admits("old-secret"));
        for wrong in ["", "new-secretold-secret", "old", "other"] {
            assert!(!s.admits(wrong), "{wrong:?}");
        }
        assert!(s.rotating());
    }

    #[test]
    fn check_tells_the_current_value_from_the_previous_one() {
        let s = AcceptedSecrets::new(Some("new-secret"), Some("old-secret")).unwrap();
        assert_eq!(s.check("new-secret"), Admission::Current);
        assert_eq!(s.check("old-secret"), Admission::Previous);
        assert_eq!(s.check("other"), Admission::Refused);
        assert_eq!(s.check(""), Admission::Refused);
        let alone = AcceptedSecrets::new(Some("new-secret"), None).unwrap();
        assert_eq!(alone.check("new-secret"), Admission::Current);
        assert_eq!(alone.check("old-secret"), Admission::Refused);
    }

    #[test]
    fn after_the_rotation_the_previous_value_is_refused() {
        // The procedure's last step: the previous var is removed (or emptied).
        for previous in [None, Some("")] {
            let s = AcceptedSecrets::new(Some("new-secret"), previous).unwrap();
            assert!(s.admits("new-secret"));
            assert!(!s.admits("old-secret"));
            assert!(!s.admits(""));
        }
    }

    #[test]
    fn without_a_current_value_nothing_is_accepted() {
        assert!(AcceptedSecrets::new(None, Some("old-secret")).is_none());
        assert!(AcceptedSecrets::new(Some(""), Some("old-secret")).is_none());
        assert!(AcceptedSecrets::new(None, None).is_none());
    }

    #[test]
    fn values_of_any_length_compare_without_panicking() {
        let long = "x".repeat(10_000);
        let s = AcceptedSecrets::new(Some(&long), Some("y")).unwrap();
        assert!(s.admits(&long));
        assert!(s.admits("y"));
        assert!(!s.admits(&long[1..]));
        assert!(!s.admits("é"));
    }

    #[test]
    fn debug_never_shows_a_value() {
        let s = AcceptedSecrets::new(Some("new-secret"), Some("old-secret")).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("new-secret") && !shown.contains("old-secret"));
        assert!(shown.contains("[redacted]"));
    }
}
