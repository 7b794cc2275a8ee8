//! Multi-limit reservations over per-minute buckets ([`MinuteBucket`]): a call reserves its
//! worst case on every limit of one scope at once (`requests`, `input_tokens`,
//! `output_tokens`), all or nothing, before any upstream call, and settles with its actual
//! counts after. [`Meters`] is what one scope stores: a key's token buckets (in its
//! `TokenBucket` object) or an account's calls and token buckets (in its `AccountLedger`).
//!
//! The rules, each a pure function of (state, now, amounts, limits):
//! - **Reserve** is all or nothing. A worst case above a bucket's capacity is
//!   [`MeterRefusal::TooLarge`] (no retry time: waiting will not help); otherwise, when some
//!   bucket lacks tokens, [`MeterRefusal::Limited`] names the limit that is last to fit and the
//!   exact millisecond at which all of them fit (if nothing else takes tokens first). A refusal
//!   changes nothing.
//! - **Settle** (by reservation id, with the actual counts) closes the reservation once: a
//!   second settle, or a settle after a release or expiry, is [`UnknownReservation`] and
//!   charges nothing. Unused tokens return at once, and tokens used beyond the reservation are
//!   taken even into debt (at most one capacity deep), which delays the next admission.
//! - **Release** closes a reservation as if it had used nothing (a call refused by another
//!   limiter, or by the ledger, gives back what this scope reserved for it).
//! - **Expire**: a reservation never settled (its isolate was lost) is closed at its reserved
//!   amount once its deadline ([`RESERVATION_TTL_MS`] after it was made) has passed, so it is
//!   never free. Its tokens are already taken; expiry only forgets it. The object sets an
//!   alarm at [`Meters::next_expiry`].
//!
//! **Refunds never over-admit.** A plain "give the unused tokens back, capped at the capacity"
//! lets a bucket admit more than `capacity + rate × elapsed` of what calls really used: while a
//! large reservation is open the bucket refills behind it, and the refund then returns tokens
//! the refill has already replaced (a call that reserved a minute's worth and used nothing,
//! settled a minute later, makes room for two minutes' worth at once). So each open
//! reservation remembers, per limit, the highest level the bucket has reached since it was
//! made (its `peak`), and a refund is at most `capacity - peak`: exactly what the bucket would
//! hold now had the reservation asked for its actual amount from the start. A refund raises
//! the peaks of the reservations open at the same time by as much (over the time they
//! overlapped), so later refunds stay exact too. The property test checks the consequence: over
//! any window of admissions, what they finally used (at most what they reserved) never exceeds
//! `capacity + rate × elapsed`.

use crate::wire::tagged_enum;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::bucket::{MinuteBucket, UNITS_PER_TOKEN};
use crate::limits::tier::MinuteLimits;

/// An open reservation not settled within this long is closed at its reserved amount: the
/// same deadline as the credit ledger's (`credits::ledger_ops::RESERVATION_MAX_AGE_MS`).
pub const RESERVATION_TTL_MS: u64 = crate::credits::ledger_ops::RESERVATION_MAX_AGE_MS;

/// Which limit: the names a 429 gives (`requests`, `input_tokens`, `output_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitName {
    Requests,
    InputTokens,
    OutputTokens,
}

impl LimitName {
    pub const ALL: [LimitName; 3] = [
        LimitName::Requests,
        LimitName::InputTokens,
        LimitName::OutputTokens,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitName::Requests => "requests",
            LimitName::InputTokens => "input_tokens",
            LimitName::OutputTokens => "output_tokens",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for LimitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many of each a call reserves or used. Absent fields are 0 on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Amounts {
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
}

impl Amounts {
    /// One call with this worst case (or these actual counts).
    pub const fn call(input_tokens: u64, output_tokens: u64) -> Amounts {
        Amounts {
            requests: 1,
            input_tokens,
            output_tokens,
        }
    }

    pub fn get(&self, limit: LimitName) -> u64 {
        match limit {
            LimitName::Requests => self.requests,
            LimitName::InputTokens => self.input_tokens,
            LimitName::OutputTokens => self.output_tokens,
        }
    }

    fn set(&mut self, limit: LimitName, value: u64) {
        match limit {
            LimitName::Requests => self.requests = value,
            LimitName::InputTokens => self.input_tokens = value,
            LimitName::OutputTokens => self.output_tokens = value,
        }
    }
}

/// The per-minute limit of `limit` in `limits` (`None`: not limited in this scope).
pub fn per_minute(limits: &MinuteLimits, limit: LimitName) -> Option<u64> {
    match limit {
        LimitName::Requests => limits.requests,
        LimitName::InputTokens => limits.input_tokens,
        LimitName::OutputTokens => limits.output_tokens,
    }
}

/// One limit as it stands after an operation, for the response's rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    pub limit: LimitName,
    /// Tokens (or calls) a minute: the capacity and the refill per minute.
    pub capacity: u64,
    /// Whole ones available now (0 in debt).
    pub remaining: u64,
    /// Milliseconds, rounded up, until the bucket is full.
    pub reset_ms: u64,
}

tagged_enum! {
    tag = "refusal";
    /// Why a reservation was refused. A refusal changes nothing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum MeterRefusal {
        /// Not enough yet: at `retry_at_ms` every limit fits (if nothing else takes first), and
        /// `limit` is the last of them to fit.
        Limited {
            limit: LimitName,
            retry_at_ms: u64,
            /// `retry_at_ms - now_ms`, at least 1.
            retry_after_ms: u64,
        },
        /// The worst case exceeds `limit`'s capacity: it can never fit.
        TooLarge { limit: LimitName, capacity: u64 },
        /// A reservation with this id is already open.
        DuplicateReservation,
    }
}

/// No open reservation has this id (never made, or already settled, released or expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownReservation;

impl std::fmt::Display for UnknownReservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no open reservation with this id")
    }
}

impl std::error::Error for UnknownReservation {}

/// One open reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Open {
    /// When it was made (the buckets' clock), ms.
    at_ms: u64,
    /// When it is closed at its reserved amount if still open, ms.
    expires_at_ms: u64,
    /// What it took from each limit (0 where the limit was not metered).
    reserved: Amounts,
    /// Per limit (`LimitName` order), the highest level in units the bucket has reached since
    /// the reservation was made, refunds of overlapping reservations included.
    peaks: [i64; 3],
}

/// The per-minute buckets of one scope and its open reservations. A bucket that was never
/// used is full (it is made on first use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests: Option<MinuteBucket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_tokens: Option<MinuteBucket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_tokens: Option<MinuteBucket>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    open: BTreeMap<String, Open>,
}

fn capacity_units(per_minute: u64) -> i128 {
    i128::from(per_minute) * UNITS_PER_TOKEN
}

fn to_i64(units: i128) -> i64 {
    i64::try_from(units).unwrap_or(if units < 0 { i64::MIN } else { i64::MAX })
}

impl Meters {
    fn bucket_mut(&mut self, limit: LimitName) -> &mut Option<MinuteBucket> {
        match limit {
            LimitName::Requests => &mut self.requests,
            LimitName::InputTokens => &mut self.input_tokens,
            LimitName::OutputTokens => &mut self.output_tokens,
        }
    }

    /// The bucket of `limit` brought to `now_ms` (made full on first use).
    fn advanced(&mut self, limit: LimitName, per_minute: u64, now_ms: u64) -> &mut MinuteBucket {
        let b = self
            .bucket_mut(limit)
            .get_or_insert_with(|| MinuteBucket::full(per_minute, now_ms));
        b.advance(now_ms, per_minute);
        b
    }

    /// Brings every metered bucket to `now_ms` and raises the open reservations' peaks to the
    /// levels now (the level only rises between operations, so the highest level since the
    /// previous operation is the one now).
    fn observe(&mut self, limits: &MinuteLimits, now_ms: u64) {
        for limit in LimitName::ALL {
            let Some(r) = per_minute(limits, limit) else {
                continue;
            };
            let level = to_i64(self.advanced(limit, r, now_ms).units());
            for open in self.open.values_mut() {
                let peak = &mut open.peaks[limit.index()];
                *peak = (*peak).max(level);
            }
        }
    }

    /// Whether nothing was ever metered (what a new scope holds).
    pub fn is_empty(&self) -> bool {
        *self == Meters::default()
    }

    /// How many reservations are open.
    pub fn open_reservations(&self) -> usize {
        self.open.len()
    }

    /// What the open reservation `id` reserved.
    pub fn reserved(&self, id: &str) -> Option<Amounts> {
        self.open.get(id).map(|o| o.reserved)
    }

    /// The earliest deadline of an open reservation: when the object's alarm should run
    /// [`Meters::expire`]. `None` when nothing is open.
    pub fn next_expiry(&self) -> Option<u64> {
        self.open.values().map(|o| o.expires_at_ms).min()
    }

    fn bucket(&self, limit: LimitName) -> Option<MinuteBucket> {
        match limit {
            LimitName::Requests => self.requests,
            LimitName::InputTokens => self.input_tokens,
            LimitName::OutputTokens => self.output_tokens,
        }
    }

    /// The metered limits as they stand at `now_ms` (without changing anything).
    pub fn readings(&self, limits: &MinuteLimits, now_ms: u64) -> Vec<Reading> {
        LimitName::ALL
            .into_iter()
            .filter_map(|limit| {
                let r = per_minute(limits, limit)?;
                let mut b = self
                    .bucket(limit)
                    .unwrap_or_else(|| MinuteBucket::full(r, now_ms));
                b.advance(now_ms, r);
                Some(Reading {
                    limit,
                    capacity: r,
                    remaining: b.remaining(),
                    reset_ms: b.reset_ms(r),
                })
            })
            .collect()
    }

    /// Reserves `amounts` under `id` at `now_ms` on every limit `limits` meters, all or
    /// nothing (see the module). Returns the readings after the reservation.
    pub fn reserve(
        &mut self,
        id: &str,
        amounts: Amounts,
        limits: &MinuteLimits,
        now_ms: u64,
    ) -> Result<Vec<Reading>, MeterRefusal> {
        if self.open.contains_key(id) {
            return Err(MeterRefusal::DuplicateReservation);
        }
        for limit in LimitName::ALL {
            if let Some(r) = per_minute(limits, limit) {
                if amounts.get(limit) > r {
                    return Err(MeterRefusal::TooLarge { limit, capacity: r });
                }
            }
        }
        // Decide on a copy, so that a refusal changes nothing.
        let mut next = self.clone();
        next.observe(limits, now_ms);
        let mut short: Option<(LimitName, u64)> = None;
        let mut taken = Amounts::default();
        // Unmetered limits reserve nothing, so their peak is never read.
        let mut peaks = [0; 3];
        let mut clock = now_ms;
        for limit in LimitName::ALL {
            let Some(r) = per_minute(limits, limit) else {
                continue;
            };
            let want = amounts.get(limit);
            let b = next.advanced(limit, r, now_ms);
            clock = clock.max(b.at_ms());
            // `want <= r` was checked above.
            if b.take(want, r).unwrap_or(false) {
                taken.set(limit, want);
                peaks[limit.index()] = to_i64(b.units());
            } else {
                let at = b.fits_at_ms(want, r);
                if short.is_none_or(|(_, latest)| at > latest) {
                    short = Some((limit, at));
                }
            }
        }
        if let Some((limit, retry_at_ms)) = short {
            return Err(MeterRefusal::Limited {
                limit,
                retry_at_ms,
                retry_after_ms: retry_at_ms.saturating_sub(now_ms),
            });
        }
        next.open.insert(
            id.to_string(),
            Open {
                at_ms: clock,
                expires_at_ms: clock.saturating_add(RESERVATION_TTL_MS),
                reserved: taken,
                peaks,
            },
        );
        next.observe(limits, now_ms);
        *self = next;
        Ok(self.readings(limits, now_ms))
    }

    /// Settles reservation `id` with the tokens the call used (its `requests` stay as
    /// reserved): unused tokens return at once, extra ones are taken into debt. Returns the
    /// readings after it; a reservation not open is [`UnknownReservation`] and changes nothing.
    pub fn settle(
        &mut self,
        id: &str,
        input_tokens: u64,
        output_tokens: u64,
        limits: &MinuteLimits,
        now_ms: u64,
    ) -> Result<Vec<Reading>, UnknownReservation> {
        let requests = self
            .open
            .get(id)
            .ok_or(UnknownReservation)?
            .reserved
            .requests;
        let used = Amounts {
            requests,
            input_tokens,
            output_tokens,
        };
        self.close(id, used, limits, now_ms)
    }

    /// Closes reservation `id` as if the call had used nothing (its call included): everything
    /// it reserved returns.
    pub fn release(
        &mut self,
        id: &str,
        limits: &MinuteLimits,
        now_ms: u64,
    ) -> Result<Vec<Reading>, UnknownReservation> {
        self.close(id, Amounts::default(), limits, now_ms)
    }

    fn close(
        &mut self,
        id: &str,
        used: Amounts,
        limits: &MinuteLimits,
        now_ms: u64,
    ) -> Result<Vec<Reading>, UnknownReservation> {
        if !self.open.contains_key(id) {
            return Err(UnknownReservation);
        }
        self.observe(limits, now_ms);
        let Some(closed) = self.open.remove(id) else {
            return Err(UnknownReservation);
        };
        for limit in LimitName::ALL {
            let Some(r) = per_minute(limits, limit) else {
                continue;
            };
            let (reserved, used) = (closed.reserved.get(limit), used.get(limit));
            let i = limit.index();
            if used < reserved {
                let cap = capacity_units(r);
                let peak = i128::from(closed.peaks[i]);
                let unused = i128::from(reserved - used) * UNITS_PER_TOKEN;
                let refund = unused.min(cap - peak).max(0);
                if refund == 0 {
                    continue;
                }
                // The levels since the reservation was made are `refund` higher in hindsight:
                // over the time an open reservation overlapped it, its peak rises as much.
                for other in self.open.values_mut() {
                    let p = i128::from(other.peaks[i]);
                    let overlap_peak = p.min(peak);
                    other.peaks[i] = to_i64(p.max(overlap_peak + refund).min(cap));
                }
                self.advanced(limit, r, now_ms).give_back(refund, r);
            } else if used > reserved {
                self.advanced(limit, r, now_ms).charge(used - reserved, r);
            }
        }
        self.observe(limits, now_ms);
        Ok(self.readings(limits, now_ms))
    }

    /// Moves the deadline of open reservation `id` to [`RESERVATION_TTL_MS`] after `now_ms`
    /// (its call is still running). False when it is not open.
    pub fn renew(&mut self, id: &str, now_ms: u64) -> bool {
        match self.open.get_mut(id) {
            Some(open) => {
                open.expires_at_ms = open
                    .expires_at_ms
                    .max(now_ms.saturating_add(RESERVATION_TTL_MS));
                true
            }
            None => false,
        }
    }

    /// Closes, at their reserved amount, the reservations whose deadline is at or before
    /// `now_ms` (their tokens stay taken). Returns their ids, in order.
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| o.expires_at_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            self.open.remove(id);
        }
        due
    }
}

#[cfg(test)]
mod tests;
