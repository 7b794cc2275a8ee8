//! An account's credit ledger as a pure state machine: a balance, reservations made before a
//! fanout and settled with actual usage after it, cache-hit fees and admin top-ups. The
//! `AccountLedger` Durable Object persists it; the balance never goes below zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::reservation::Meters;

/// Credits held back for one in-flight call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Credits held.
    pub amount: u64,
    /// When the reservation was made, ms (for [`Ledger::expire`]).
    pub at_ms: u64,
}

/// Why a ledger operation was refused. A refused operation changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerError {
    /// The balance less what is reserved does not cover the amount.
    InsufficientCredits { available: u64 },
    /// No open reservation has this id (never made, or already settled, released or expired).
    UnknownReservation,
    /// A reservation with this id is already open.
    DuplicateReservation,
    /// The account already has its most calls in flight (open reservations).
    TooManyInFlight { limit: u32 },
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerError::InsufficientCredits { available } => {
                write!(f, "insufficient credits: {available} available")
            }
            LedgerError::UnknownReservation => f.write_str("no open reservation with this id"),
            LedgerError::DuplicateReservation => {
                f.write_str("a reservation with this id is already open")
            }
            LedgerError::TooManyInFlight { limit } => {
                write!(f, "{limit} calls are already in flight")
            }
        }
    }
}

impl std::error::Error for LedgerError {}

/// The balance and the open reservations of one account.
///
/// Invariant kept by every operation: the reservations sum to at most the balance, so
/// `available()` and the balance never underflow. A stored ledger that breaks it (edited by
/// hand) is still handled without panics: `available()` is then 0 and charges are capped at
/// the balance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    balance: u64,
    #[serde(default)]
    reservations: BTreeMap<String, Reservation>,
    /// The account-wide calls and token buckets (every key of the account reserves here too,
    /// in the same call as its credits) and their open reservations.
    #[serde(default, skip_serializing_if = "Meters::is_empty")]
    pub meters: Meters,
    /// The ids of the top-ups applied in the last [`TOP_UP_ID_TTL_MS`] (at most
    /// [`TOP_UP_IDS`]), with when: a top-up retried under the same id is applied once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    top_ups: BTreeMap<String, u64>,
}

/// How long a top-up's id is remembered.
pub const TOP_UP_ID_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// How many top-up ids a ledger remembers at most (the oldest is forgotten first).
pub const TOP_UP_IDS: usize = 256;

impl Ledger {
    /// A ledger holding `balance` credits and no reservations.
    pub fn new(balance: u64) -> Ledger {
        Ledger {
            balance,
            reservations: BTreeMap::new(),
            meters: Meters::default(),
            top_ups: BTreeMap::new(),
        }
    }

    /// Credits held, reserved ones included.
    pub fn balance(&self) -> u64 {
        self.balance
    }

    /// Credits held back by open reservations.
    pub fn reserved(&self) -> u64 {
        self.reservations
            .values()
            .fold(0u64, |sum, r| sum.saturating_add(r.amount))
    }

    /// Credits free to reserve or spend: balance less reservations, never negative.
    pub fn available(&self) -> u64 {
        self.balance.saturating_sub(self.reserved())
    }

    /// The open reservation with this id.
    pub fn reservation(&self, id: &str) -> Option<&Reservation> {
        self.reservations.get(id)
    }

    /// When the oldest open reservation was made, ms.
    pub fn oldest_reservation_ms(&self) -> Option<u64> {
        self.reservations.values().map(|r| r.at_ms).min()
    }

    /// How many reservations are open.
    pub fn open_reservations(&self) -> usize {
        self.reservations.len()
    }

    /// Holds back `amount` credits under `id` (e.g. the request id) at `now_ms`.
    pub fn reserve(&mut self, id: &str, amount: u64, now_ms: u64) -> Result<(), LedgerError> {
        self.reserve_within(id, amount, now_ms, u32::MAX)
    }

    /// [`Ledger::reserve`], refused while `max_in_flight` reservations are already open: one
    /// small balance cannot hold thousands of calls open at once.
    pub fn reserve_within(
        &mut self,
        id: &str,
        amount: u64,
        now_ms: u64,
        max_in_flight: u32,
    ) -> Result<(), LedgerError> {
        if self.reservations.contains_key(id) {
            return Err(LedgerError::DuplicateReservation);
        }
        if self.reservations.len() >= max_in_flight as usize {
            return Err(LedgerError::TooManyInFlight {
                limit: max_in_flight,
            });
        }
        let available = self.available();
        if amount > available {
            return Err(LedgerError::InsufficientCredits { available });
        }
        self.reservations.insert(
            id.to_string(),
            Reservation {
                amount,
                at_ms: now_ms,
            },
        );
        Ok(())
    }

    /// Closes reservation `id`, charging the actual cost and releasing what it leaves of the
    /// reservation. A cost over the reservation (the provider billed more than the worst case
    /// estimated) is charged too, as far as the balance goes without uncovering other open
    /// reservations: the charge is `min(actual, available())` once this reservation is closed,
    /// which is at least `min(actual, reserved)`. Returns the credits charged. A second settle
    /// (or a settle after release) of the same id is `UnknownReservation` and charges nothing.
    pub fn settle(&mut self, id: &str, actual: u64) -> Result<u64, LedgerError> {
        let reservation = self
            .reservations
            .remove(id)
            .ok_or(LedgerError::UnknownReservation)?;
        // (On a ledger whose reservations exceed its balance, which only a hand edit makes,
        // the reserved part is still charged as far as the balance goes.)
        let covered = reservation.amount.min(self.balance).max(self.available());
        let charged = actual.min(covered);
        self.balance -= charged;
        Ok(charged)
    }

    /// Closes reservation `id` without charging (the call failed or was served otherwise).
    /// Returns the credits released.
    pub fn release(&mut self, id: &str) -> Result<u64, LedgerError> {
        self.reservations
            .remove(id)
            .map(|r| r.amount)
            .ok_or(LedgerError::UnknownReservation)
    }

    /// Adds credits (admin top-up), saturating at `u64::MAX`. Returns the new balance.
    pub fn credit(&mut self, amount: u64) -> u64 {
        self.balance = self.balance.saturating_add(amount);
        self.balance
    }

    /// Adds `amount` credits unless a top-up with the same `id` was applied in the last
    /// [`TOP_UP_ID_TTL_MS`] before `now_ms`; answers whether it was applied now.
    pub fn credit_once(&mut self, id: &str, amount: u64, now_ms: u64) -> bool {
        let since = now_ms.saturating_sub(TOP_UP_ID_TTL_MS);
        self.top_ups.retain(|_, at| *at > since);
        if self.top_ups.contains_key(id) {
            return false;
        }
        while self.top_ups.len() >= TOP_UP_IDS {
            let oldest = self
                .top_ups
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.top_ups.remove(&k),
                None => break,
            };
        }
        self.top_ups.insert(id.to_string(), now_ms);
        self.credit(amount);
        true
    }

    /// Charges a fee without a reservation (the cache-hit serving fee): takes
    /// `min(amount, available())`, so reservations stay covered and the balance never goes
    /// below zero. Returns the credits charged.
    pub fn debit_fee(&mut self, amount: u64) -> u64 {
        let charged = amount.min(self.available());
        self.balance -= charged;
        charged
    }

    /// Restarts the age of open reservation `id` at `now_ms` (its call is still running, so it
    /// is not one whose isolate was lost); a clock that went back leaves it as it was.
    pub fn renew(&mut self, id: &str, now_ms: u64) -> Result<(), LedgerError> {
        let r = self
            .reservations
            .get_mut(id)
            .ok_or(LedgerError::UnknownReservation)?;
        r.at_ms = r.at_ms.max(now_ms);
        Ok(())
    }

    /// Charges in full every reservation older than `max_age_ms` at `now_ms` (age strictly
    /// greater): a call that was never settled (its isolate was lost) may have been billed by
    /// its provider up to the whole reservation, so it is never free. Reservations stamped
    /// after `now_ms` (a clock that went back) have age 0. Returns the ids charged, in order.
    pub fn expire(&mut self, now_ms: u64, max_age_ms: u64) -> Vec<String> {
        let expired: Vec<String> = self
            .reservations
            .iter()
            .filter(|(_, r)| now_ms.saturating_sub(r.at_ms) > max_age_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            if let Some(r) = self.reservations.remove(id) {
                // Reservations sum to at most the balance: this never underflows (a hand-edited
                // ledger that breaks the invariant is capped at zero).
                self.balance = self.balance.saturating_sub(r.amount);
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_top_up_retried_under_its_id_is_applied_once() {
        let mut l = Ledger::new(10);
        assert!(l.credit_once("t1", 100, 1_000));
        // The retry of a top-up whose answer was lost: not applied again.
        assert!(!l.credit_once("t1", 100, 2_000));
        assert_eq!(l.balance(), 110);
        // Another top-up, and the same id a day later, are.
        assert!(l.credit_once("t2", 5, 3_000));
        assert!(l.credit_once("t1", 100, 1_000 + TOP_UP_ID_TTL_MS));
        assert_eq!(l.balance(), 215);
        // The ledger stores its ids (a new instance knows them) and remembers a bounded number.
        let text = serde_json::to_string(&l).unwrap();
        let mut again: Ledger = serde_json::from_str(&text).unwrap();
        assert!(!again.credit_once("t2", 5, 4_000));
        for n in 0..(TOP_UP_IDS + 10) {
            assert!(again.credit_once(&format!("n{n}"), 1, 5_000 + n as u64));
        }
        assert_eq!(again.top_ups.len(), TOP_UP_IDS);
        // A ledger stored before top-up ids existed reads with none.
        let old: Ledger = serde_json::from_str(r#"{"balance":7}"#).unwrap();
        assert_eq!(old, Ledger::new(7));
    }

    #[test]
    fn reservations_past_the_in_flight_limit_are_refused_until_one_closes() {
        let mut l = Ledger::new(1000);
        l.reserve_within("a", 1, 0, 2).unwrap();
        l.reserve_within("b", 1, 0, 2).unwrap();
        assert_eq!(
            l.reserve_within("c", 1, 0, 2),
            Err(LedgerError::TooManyInFlight { limit: 2 })
        );
        assert_eq!(l.available(), 998, "a refusal changes nothing");
        l.settle("a", 1).unwrap();
        l.reserve_within("c", 1, 0, 2).unwrap();
    }

    #[test]
    fn reserve_holds_credits_back() {
        let mut l = Ledger::new(100);
        l.reserve("a", 60, 0).unwrap();
        assert_eq!(l.balance(), 100);
        assert_eq!(l.available(), 40);
        assert_eq!(
            l.reserve("b", 41, 0),
            Err(LedgerError::InsufficientCredits { available: 40 })
        );
        assert_eq!(l.open_reservations(), 1);
        l.reserve("b", 40, 0).unwrap();
        assert_eq!(l.available(), 0);
        assert_eq!(
            l.reserve("c", 1, 0),
            Err(LedgerError::InsufficientCredits { available: 0 })
        );
    }

    #[test]
    fn duplicate_reservation_is_refused_and_changes_nothing() {
        let mut l = Ledger::new(100);
        l.reserve("a", 10, 0).unwrap();
        let before = l.clone();
        assert_eq!(l.reserve("a", 5, 1), Err(LedgerError::DuplicateReservation));
        assert_eq!(l, before);
    }

    #[test]
    fn settle_charges_the_actual_cost_even_past_the_reservation() {
        let mut l = Ledger::new(100);
        l.reserve("a", 30, 0).unwrap();
        assert_eq!(l.settle("a", 12), Ok(12));
        assert_eq!(l.balance(), 88);
        assert_eq!(l.available(), 88);
        // The provider billed more than the worst case: charged in full.
        l.reserve("b", 30, 0).unwrap();
        assert_eq!(l.settle("b", 50), Ok(50));
        assert_eq!(l.balance(), 38);
        // Past what the balance has beyond another call's reservation: only that much, and
        // the other reservation stays covered.
        l.reserve("c", 10, 0).unwrap();
        l.reserve("d", 20, 0).unwrap();
        assert_eq!(l.settle("c", 500), Ok(18));
        assert_eq!((l.balance(), l.available()), (20, 0));
        assert_eq!(l.settle("d", 20), Ok(20));
        assert_eq!(l.balance(), 0);
    }

    #[test]
    fn settle_and_release_are_idempotent_without_double_charge() {
        let mut l = Ledger::new(100);
        l.reserve("a", 30, 0).unwrap();
        assert_eq!(l.settle("a", 20), Ok(20));
        assert_eq!(l.settle("a", 20), Err(LedgerError::UnknownReservation));
        assert_eq!(l.release("a"), Err(LedgerError::UnknownReservation));
        assert_eq!(l.balance(), 80);
        l.reserve("b", 30, 0).unwrap();
        assert_eq!(l.release("b"), Ok(30));
        assert_eq!(l.release("b"), Err(LedgerError::UnknownReservation));
        assert_eq!(l.settle("b", 30), Err(LedgerError::UnknownReservation));
        assert_eq!(l.balance(), 80);
        assert_eq!(l.available(), 80);
    }

    #[test]
    fn unknown_id_changes_nothing() {
        let mut l = Ledger::new(100);
        l.reserve("a", 30, 0).unwrap();
        let before = l.clone();
        assert_eq!(l.settle("x", 5), Err(LedgerError::UnknownReservation));
        assert_eq!(l.release("x"), Err(LedgerError::UnknownReservation));
        assert_eq!(l, before);
    }

    #[test]
    fn fee_never_takes_reserved_or_missing_credits() {
        let mut l = Ledger::new(10);
        l.reserve("a", 9, 0).unwrap();
        assert_eq!(l.debit_fee(5), 1);
        assert_eq!(l.balance(), 9);
        assert_eq!(l.debit_fee(1), 0);
        assert_eq!(l.settle("a", 9), Ok(9));
        assert_eq!(l.balance(), 0);
        assert_eq!(l.debit_fee(1), 0);
    }

    #[test]
    fn credit_saturates() {
        let mut l = Ledger::new(u64::MAX - 1);
        assert_eq!(l.credit(5), u64::MAX);
        assert_eq!(l.credit(u64::MAX), u64::MAX);
    }

    #[test]
    fn expire_charges_only_old_reservations_in_full() {
        let mut l = Ledger::new(100);
        l.reserve("old", 10, 1_000).unwrap();
        l.reserve("edge", 10, 2_000).unwrap();
        l.reserve("new", 10, 5_000).unwrap();
        l.reserve("future", 10, 9_000).unwrap();
        assert_eq!(l.expire(5_000, 3_000), vec!["old".to_string()]);
        assert_eq!(l.expire(5_000, 3_000), Vec::<String>::new());
        assert_eq!(l.expire(5_001, 3_000), vec!["edge".to_string()]);
        assert_eq!(l.balance(), 80, "never settled: charged what was reserved");
        assert_eq!(l.available(), 60);
        assert!(l.reservation("future").is_some());
        assert!(l.expire(u64::MAX, u64::MAX).is_empty());
        assert_eq!(l.expire(u64::MAX, 0).len(), 2);
    }

    #[test]
    fn hand_edited_overcommitted_ledger_does_not_underflow() {
        let mut l: Ledger = serde_json::from_str(
            r#"{"balance": 5, "reservations": {"a": {"amount": 18446744073709551615, "at_ms": 0},
                "b": {"amount": 7, "at_ms": 0}}}"#,
        )
        .unwrap();
        assert_eq!(l.reserved(), u64::MAX);
        assert_eq!(l.available(), 0);
        assert_eq!(l.debit_fee(1), 0);
        assert_eq!(l.settle("b", 7), Ok(5));
        assert_eq!(l.balance(), 0);
        assert_eq!(l.settle("a", 1), Ok(0));
    }

    #[test]
    fn round_trips_through_json() {
        let mut l = Ledger::new(1_000);
        l.reserve("req-1", 250, 42).unwrap();
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Ledger>(&json).unwrap(), l);
        let bare: Ledger = serde_json::from_str(r#"{"balance": 3}"#).unwrap();
        assert_eq!(bare, Ledger::new(3));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Reserve(u8, u64, u64),
        Settle(u8, u64),
        Release(u8),
        Fee(u64),
        Credit(u64),
        Expire(u64, u64),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let id = 0u8..6;
        let amount = prop_oneof![0u64..50, 0u64..2_000];
        prop_oneof![
            4 => (id.clone(), amount.clone(), 0u64..10_000).prop_map(|(i, a, t)| Op::Reserve(i, a, t)),
            3 => (id.clone(), amount.clone()).prop_map(|(i, a)| Op::Settle(i, a)),
            1 => id.prop_map(Op::Release),
            2 => amount.clone().prop_map(Op::Fee),
            1 => amount.prop_map(Op::Credit),
            1 => (0u64..10_000, 0u64..5_000).prop_map(|(n, a)| Op::Expire(n, a)),
        ]
    }

    proptest! {
        /// Any interleaving keeps the books: the balance never underflows, reservations stay
        /// covered, total charged ≤ initial balance + credits (with exact accounting), and an
        /// id is never charged twice.
        #[test]
        fn books_always_balance(initial in 0u64..5_000, ops in prop::collection::vec(arb_op(), 0..100)) {
            let mut l = Ledger::new(initial);
            let mut credited = 0u64;
            let mut charged = 0u64;
            for op in ops {
                let before = l.clone();
                match op {
                    Op::Reserve(i, amount, t) => {
                        let id = i.to_string();
                        match l.reserve(&id, amount, t) {
                            Ok(()) => prop_assert_eq!(l.reservation(&id).map(|r| r.amount), Some(amount)),
                            Err(_) => prop_assert_eq!(&l, &before),
                        }
                    }
                    Op::Settle(i, actual) => {
                        let id = i.to_string();
                        let held = before.reservation(&id).map(|r| r.amount);
                        match l.settle(&id, actual) {
                            Ok(c) => {
                                // The actual cost, as far as the balance goes beyond the
                                // other reservations; never less than the reserved part.
                                let held = held.unwrap();
                                let mut closed = before.clone();
                                closed.reservations.remove(&id);
                                let covered = held.min(before.balance()).max(closed.available());
                                prop_assert_eq!(c, actual.min(covered));
                                prop_assert!(c >= held.min(actual).min(before.balance()));
                                charged += c;
                                prop_assert_eq!(l.settle(&id, actual), Err(LedgerError::UnknownReservation));
                            }
                            Err(e) => {
                                prop_assert_eq!(e, LedgerError::UnknownReservation);
                                prop_assert_eq!(&l, &before);
                            }
                        }
                    }
                    Op::Release(i) => {
                        let _ = l.release(&i.to_string());
                        prop_assert_eq!(l.balance(), before.balance());
                    }
                    Op::Fee(amount) => {
                        let c = l.debit_fee(amount);
                        prop_assert_eq!(c, amount.min(before.available()));
                        charged += c;
                    }
                    Op::Credit(amount) => {
                        l.credit(amount);
                        credited += amount;
                    }
                    Op::Expire(now, age) => {
                        l.expire(now, age);
                        // What expired is charged in full: the balance drops by what was
                        // reserved and is no longer.
                        let c = before.balance() - l.balance();
                        prop_assert_eq!(c, before.reserved() - l.reserved());
                        charged += c;
                    }
                }
                prop_assert!(l.reserved() <= l.balance());
                prop_assert_eq!(l.available(), l.balance() - l.reserved());
                prop_assert!(charged <= initial + credited);
                prop_assert_eq!(l.balance(), initial + credited - charged);
            }
        }
    }
}
