//! Tests of the multi-limit reservations: the rules one by one, then properties over random
//! interleavings of reserve, settle, release, expiry and refill.

use super::*;
use proptest::prelude::*;

const U: i128 = UNITS_PER_TOKEN;

fn tokens(input: u64, output: u64) -> MinuteLimits {
    MinuteLimits::tokens(input, output)
}

fn reading(r: &[Reading], limit: LimitName) -> Reading {
    *r.iter().find(|x| x.limit == limit).expect("metered")
}

fn remaining(m: &Meters, l: &MinuteLimits, limit: LimitName, now: u64) -> u64 {
    reading(&m.readings(l, now), limit).remaining
}

#[test]
fn a_key_with_1000_input_tokens_admits_four_calls_of_250_then_names_the_limit_and_its_time() {
    let l = tokens(1000, 10_000);
    let mut m = Meters::default();
    let mut admitted = 0;
    let mut refusals = Vec::new();
    for i in 0..20 {
        match m.reserve(&format!("c{i}"), Amounts::call(250, 16), &l, 5_000) {
            Ok(_) => admitted += 1,
            Err(e) => refusals.push(e),
        }
    }
    assert_eq!(admitted, 4);
    // 250 tokens at 1000 a minute refill in exactly 15 s.
    for e in &refusals {
        assert_eq!(
            *e,
            MeterRefusal::Limited {
                limit: LimitName::InputTokens,
                retry_at_ms: 20_000,
                retry_after_ms: 15_000
            }
        );
    }
    let before = m.clone();
    assert!(m
        .reserve("late", Amounts::call(250, 16), &l, 19_999)
        .is_err());
    assert_eq!(m, before, "a refusal changes nothing");
    assert!(m
        .reserve("late", Amounts::call(250, 16), &l, 20_000)
        .is_ok());
}

#[test]
fn retry_times_are_exact_at_rates_that_do_not_divide_a_minute() {
    // 7 a minute: one token every 8571.43 ms.
    let l = tokens(7, 7);
    let mut m = Meters::default();
    m.reserve("a", Amounts::call(7, 0), &l, 0).unwrap();
    let Err(MeterRefusal::Limited { retry_at_ms, .. }) =
        m.reserve("b", Amounts::call(1, 0), &l, 10)
    else {
        panic!("expected a refusal");
    };
    assert_eq!(retry_at_ms, 8_572);
    assert!(m
        .clone()
        .reserve("b", Amounts::call(1, 0), &l, 8_571)
        .is_err());
    assert!(m.reserve("b", Amounts::call(1, 0), &l, 8_572).is_ok());
}

#[test]
fn a_reservation_is_all_or_nothing_across_limits_and_names_the_last_to_fit() {
    let l = MinuteLimits::all(10, 1_000, 100);
    let mut m = Meters::default();
    m.reserve("a", Amounts::call(900, 95), &l, 0).unwrap();
    // Input lacks 100 tokens (6 s), output 5 (3 s): input is the last to fit.
    let before = m.clone();
    assert_eq!(
        m.reserve("b", Amounts::call(200, 10), &l, 0),
        Err(MeterRefusal::Limited {
            limit: LimitName::InputTokens,
            retry_at_ms: 6_000,
            retry_after_ms: 6_000
        })
    );
    assert_eq!(m, before);
    assert_eq!(remaining(&m, &l, LimitName::Requests, 0), 9);
    assert_eq!(remaining(&m, &l, LimitName::OutputTokens, 0), 5);
    // Output lacking more: output is named, with its (later) time.
    assert_eq!(
        m.reserve("c", Amounts::call(150, 50), &l, 0),
        Err(MeterRefusal::Limited {
            limit: LimitName::OutputTokens,
            retry_at_ms: 27_000,
            retry_after_ms: 27_000
        })
    );
    assert!(m.reserve("c", Amounts::call(150, 50), &l, 27_000).is_ok());
}

#[test]
fn a_worst_case_above_a_capacity_is_too_large_with_no_retry_time() {
    let l = tokens(20_000, 1_024);
    let mut m = Meters::default();
    assert_eq!(
        m.reserve("a", Amounts::call(10, 1_025), &l, 0),
        Err(MeterRefusal::TooLarge {
            limit: LimitName::OutputTokens,
            capacity: 1_024
        })
    );
    assert_eq!(m, Meters::default());
    // Even when another limit is merely short, the call can never fit: too large wins.
    m.reserve("b", Amounts::call(20_000, 0), &l, 0).unwrap();
    assert!(matches!(
        m.reserve("c", Amounts::call(1, 2_000), &l, 0),
        Err(MeterRefusal::TooLarge { .. })
    ));
    assert!(m.reserve("d", Amounts::call(0, 1_024), &l, 0).is_ok());
}

#[test]
fn unused_tokens_return_at_once() {
    let l = tokens(20_000, 4_096);
    let mut m = Meters::default();
    let r = m
        .reserve("a", Amounts::call(100, 1_024), &l, 1_000)
        .unwrap();
    assert_eq!(reading(&r, LimitName::OutputTokens).remaining, 3_072);
    let r = m.settle("a", 40, 10, &l, 1_000).unwrap();
    assert_eq!(reading(&r, LimitName::OutputTokens).remaining, 4_086);
    assert_eq!(reading(&r, LimitName::InputTokens).remaining, 19_960);
    assert_eq!(m.open_reservations(), 0);
}

#[test]
fn settling_twice_charges_once_and_an_unknown_id_changes_nothing() {
    let l = tokens(1_000, 1_000);
    let mut m = Meters::default();
    m.reserve("a", Amounts::call(500, 500), &l, 0).unwrap();
    m.settle("a", 600, 100, &l, 0).unwrap();
    let once = m.clone();
    assert_eq!(m.settle("a", 600, 100, &l, 0), Err(UnknownReservation));
    assert_eq!(m.release("a", &l, 0), Err(UnknownReservation));
    assert_eq!(m.settle("never", 1, 1, &l, 0), Err(UnknownReservation));
    assert_eq!(m, once);
    assert_eq!(remaining(&m, &l, LimitName::InputTokens, 0), 400);
    assert_eq!(remaining(&m, &l, LimitName::OutputTokens, 0), 900);
}

#[test]
fn tokens_beyond_the_reservation_are_taken_into_debt_which_delays_the_next_call() {
    let l = tokens(1_000, 1_000);
    let mut m = Meters::default();
    m.reserve("a", Amounts::call(0, 1_000), &l, 0).unwrap();
    let r = m.settle("a", 0, 1_500, &l, 0).unwrap();
    let out = reading(&r, LimitName::OutputTokens);
    assert_eq!((out.remaining, out.reset_ms), (0, 90_000));
    // 500 tokens of debt, then one token: 501 × 60 ms.
    assert_eq!(
        m.reserve("b", Amounts::call(0, 1), &l, 0),
        Err(MeterRefusal::Limited {
            limit: LimitName::OutputTokens,
            retry_at_ms: 30_060,
            retry_after_ms: 30_060
        })
    );
    assert!(m.reserve("b", Amounts::call(0, 1), &l, 30_060).is_ok());
    // A debt is at most one capacity deep (two minutes to full).
    let mut m = Meters::default();
    m.reserve("a", Amounts::call(0, 10), &l, 0).unwrap();
    let r = m.settle("a", 0, 1_000_000, &l, 0).unwrap();
    assert_eq!(reading(&r, LimitName::OutputTokens).reset_ms, 120_000);
}

#[test]
fn a_release_returns_everything_the_call_reserved_its_call_included() {
    let l = MinuteLimits::all(2, 1_000, 1_000);
    let mut m = Meters::default();
    m.reserve("a", Amounts::call(300, 300), &l, 0).unwrap();
    m.reserve("b", Amounts::call(300, 300), &l, 0).unwrap();
    assert!(matches!(
        m.reserve("c", Amounts::call(1, 1), &l, 0),
        Err(MeterRefusal::Limited {
            limit: LimitName::Requests,
            ..
        })
    ));
    let r = m.release("a", &l, 0).unwrap();
    assert_eq!(reading(&r, LimitName::Requests).remaining, 1);
    assert_eq!(reading(&r, LimitName::InputTokens).remaining, 700);
    assert!(m.reserve("c", Amounts::call(1, 1), &l, 0).is_ok());
    // A settlement keeps the call: calls are not refunded by a settle.
    let r = m.settle("b", 0, 0, &l, 0).unwrap();
    assert_eq!(reading(&r, LimitName::Requests).remaining, 0);
}

#[test]
fn a_reservation_never_settled_expires_at_its_reserved_amount() {
    let l = tokens(1_000, 1_000);
    let mut m = Meters::default();
    assert_eq!(m.next_expiry(), None);
    m.reserve("a", Amounts::call(600, 0), &l, 10).unwrap();
    m.reserve("b", Amounts::call(100, 0), &l, 20).unwrap();
    assert_eq!(m.next_expiry(), Some(10 + RESERVATION_TTL_MS));
    assert!(m.expire(9 + RESERVATION_TTL_MS).is_empty());
    assert_eq!(m.expire(10 + RESERVATION_TTL_MS), vec!["a".to_string()]);
    assert_eq!(m.next_expiry(), Some(20 + RESERVATION_TTL_MS));
    // It stays charged: a settle arriving later charges (and refunds) nothing.
    let before = m.clone();
    assert_eq!(m.settle("a", 0, 0, &l, 11), Err(UnknownReservation));
    assert_eq!(m, before);
    // (The bucket refilled meanwhile; what the reservation took was not given back.)
    assert_eq!(remaining(&m, &l, LimitName::InputTokens, 20), 300);
}

#[test]
fn a_refund_never_returns_tokens_the_refill_already_replaced() {
    // A call holds a minute's worth for a minute, uses nothing, and settles after the bucket
    // refilled and was drained again: its refund would make room for a second minute's worth.
    let l = tokens(1_000, 1_000);
    let mut m = Meters::default();
    m.reserve("slow", Amounts::call(1_000, 0), &l, 0).unwrap();
    m.reserve("next", Amounts::call(1_000, 0), &l, 60_000)
        .unwrap();
    let r = m.settle("slow", 0, 0, &l, 60_000).unwrap();
    assert_eq!(reading(&r, LimitName::InputTokens).remaining, 0);
    assert!(m.reserve("third", Amounts::call(1, 0), &l, 60_000).is_err());
}

#[test]
fn refunds_of_overlapping_reservations_stay_exact_in_any_order() {
    // Rate 1000/min: 1 token per 60 ms. In hindsight (r1 and r2 used nothing) the bucket was
    // full until r3 took 400 at 24 s: 600 are left, whatever the settlement order.
    let l = tokens(1_000, 1_000);
    let mut m = Meters::default();
    m.reserve("r1", Amounts::call(400, 0), &l, 0).unwrap();
    m.reserve("r2", Amounts::call(600, 0), &l, 0).unwrap();
    m.reserve("r3", Amounts::call(400, 0), &l, 24_000).unwrap();
    m.settle("r3", 400, 0, &l, 24_000).unwrap();
    let mut other_order = m.clone();
    m.settle("r2", 0, 0, &l, 24_000).unwrap();
    m.settle("r1", 0, 0, &l, 24_000).unwrap();
    assert_eq!(remaining(&m, &l, LimitName::InputTokens, 24_000), 600);
    other_order.settle("r1", 0, 0, &l, 24_000).unwrap();
    other_order.settle("r2", 0, 0, &l, 24_000).unwrap();
    assert_eq!(
        remaining(&other_order, &l, LimitName::InputTokens, 24_000),
        600
    );
}

#[test]
fn readings_tell_remaining_and_reset_and_change_nothing() {
    let l = tokens(6_000, 600);
    let mut m = Meters::default();
    m.reserve("a", Amounts::call(3_000, 600), &l, 0).unwrap();
    let r = m.readings(&l, 1_000);
    assert_eq!(
        r,
        vec![
            Reading {
                limit: LimitName::InputTokens,
                capacity: 6_000,
                remaining: 3_100,
                reset_ms: 29_000
            },
            Reading {
                limit: LimitName::OutputTokens,
                capacity: 600,
                remaining: 10,
                reset_ms: 59_000
            },
        ]
    );
    assert_eq!(m.readings(&l, 1_000), r);
    // Unmetered limits are neither read nor reserved.
    assert!(m.readings(&MinuteLimits::default(), 0).is_empty());
}

#[test]
fn the_clock_going_back_neither_refills_nor_panics() {
    let l = tokens(1_000, 1_000);
    let mut m = Meters::default();
    m.reserve("a", Amounts::call(1_000, 0), &l, 60_000).unwrap();
    assert!(m.reserve("b", Amounts::call(1, 0), &l, 0).is_err());
    assert!(m.reserve("b", Amounts::call(1, 0), &l, 60_059).is_err());
    assert!(m.reserve("b", Amounts::call(1, 0), &l, 60_060).is_ok());
}

#[test]
fn a_lower_capacity_caps_the_level_and_a_raised_one_refills_toward_it() {
    let mut m = Meters::default();
    m.reserve("a", Amounts::call(100, 0), &tokens(4_000, 1), 0)
        .unwrap();
    assert_eq!(
        remaining(&m, &tokens(1_000, 1), LimitName::InputTokens, 0),
        1_000
    );
    m.reserve("b", Amounts::call(500, 0), &tokens(1_000, 1), 0)
        .unwrap();
    assert_eq!(
        remaining(&m, &tokens(4_000, 1), LimitName::InputTokens, 0),
        500
    );
    assert_eq!(
        remaining(&m, &tokens(4_000, 1), LimitName::InputTokens, 15_000),
        1_500
    );
}

#[test]
fn meters_round_trip_through_json_and_an_empty_one_is_empty() {
    let l = MinuteLimits::all(5, 100, 100);
    assert_eq!(serde_json::to_string(&Meters::default()).unwrap(), "{}");
    let mut m = Meters::default();
    m.reserve("req_1", Amounts::call(10, 20), &l, 123).unwrap();
    let text = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Meters>(&text).unwrap(), m);
    assert_eq!(
        serde_json::from_str::<Meters>("{}").unwrap(),
        Meters::default()
    );
    let refusal = MeterRefusal::Limited {
        limit: LimitName::OutputTokens,
        retry_at_ms: 9,
        retry_after_ms: 4,
    };
    let text = serde_json::to_string(&refusal).unwrap();
    assert_eq!(
        text,
        r#"{"refusal":"limited","limit":"output_tokens","retry_at_ms":9,"retry_after_ms":4}"#
    );
    assert_eq!(
        serde_json::from_str::<MeterRefusal>(&text).unwrap(),
        refusal
    );
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Op {
    Reserve(u8, Amounts, i64),
    Settle(u8, u64, u64, i64),
    Release(u8, i64),
    Expire(i64),
}

fn arb_limits() -> impl Strategy<Value = MinuteLimits> {
    let one = prop_oneof![
        3 => (1u64..=60).prop_map(Some),
        1 => (1u64..=100_000).prop_map(Some),
        1 => Just(None),
    ];
    (one.clone(), one.clone(), one).prop_map(|(requests, input_tokens, output_tokens)| {
        MinuteLimits {
            requests,
            input_tokens,
            output_tokens,
        }
    })
}

fn arb_dt() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0i64..500,
        3 => 0i64..70_000,
        1 => 0i64..(2 * RESERVATION_TTL_MS as i64),
        1 => -1_000i64..0,
    ]
}

fn arb_amount(cap: Option<u64>) -> BoxedStrategy<u64> {
    let top = cap.unwrap_or(50).max(1);
    prop_oneof![
        6 => 0..=top,
        1 => (top + 1)..=(top + 3),
    ]
    .boxed()
}

fn arb_op(l: MinuteLimits) -> impl Strategy<Value = Op> {
    let id = 0u8..8;
    let amounts = (
        prop_oneof![Just(1u64), Just(0u64)],
        arb_amount(l.input_tokens),
        arb_amount(l.output_tokens),
    )
        .prop_map(|(requests, input_tokens, output_tokens)| Amounts {
            requests,
            input_tokens,
            output_tokens,
        });
    let used = |cap: Option<u64>| {
        let top = cap.unwrap_or(50).max(1);
        prop_oneof![3 => 0..=top, 1 => 0..=(3 * top)]
    };
    prop_oneof![
        5 => (id.clone(), amounts, arb_dt()).prop_map(|(i, a, t)| Op::Reserve(i, a, t)),
        4 => (id.clone(), used(l.input_tokens), used(l.output_tokens), arb_dt())
            .prop_map(|(i, a, b, t)| Op::Settle(i, a, b, t)),
        1 => (id, arb_dt()).prop_map(|(i, t)| Op::Release(i, t)),
        1 => arb_dt().prop_map(Op::Expire),
    ]
}

fn scenario() -> impl Strategy<Value = (MinuteLimits, u64, Vec<Op>)> {
    arb_limits().prop_flat_map(|l| {
        (
            Just(l),
            0u64..1_000_000_000_000,
            prop::collection::vec(arb_op(l), 1..150),
        )
    })
}

fn step(now: u64, dt: i64) -> u64 {
    if dt >= 0 {
        now.saturating_add(dt.unsigned_abs())
    } else {
        now.saturating_sub(dt.unsigned_abs())
    }
}

/// One admission: when (the buckets' clock), what it reserved, what it finally used (at most
/// what it reserved: the reserved amount while open or once expired, 0 once released).
struct Admission {
    at_ms: u64,
    reserved: Amounts,
    used: Amounts,
}

/// The level in units at `now_ms` of a bucket that started full and took, at each admission,
/// what it finally used (at most what it reserved).
fn hindsight_units(log: &[Admission], limit: LimitName, r: u64, now_ms: u64) -> i128 {
    let cap = capacity_units(r);
    let Some(first) = log.first() else { return cap };
    let (mut level, mut at) = (cap, first.at_ms);
    for a in log.iter().chain(std::iter::once(&Admission {
        at_ms: now_ms,
        reserved: Amounts::default(),
        used: Amounts::default(),
    })) {
        level = (level + i128::from(r) * i128::from(a.at_ms - at)).min(cap);
        at = a.at_ms;
        level -= i128::from(a.used.get(limit)) * U;
    }
    level
}

proptest! {
    /// Over every window of admissions i..=j, what they finally used (capped at what they
    /// reserved: tokens beyond are debt, taken later) never exceeds, per limit,
    /// capacity + rate × elapsed, checked exactly in units. Settling or releasing twice changes
    /// nothing, and every refusal changes nothing.
    #[test]
    fn admissions_never_exceed_capacity_plus_refill_and_settlement_is_idempotent(
        (l, t0, ops) in scenario()
    ) {
        let mut m = Meters::default();
        let mut now = t0;
        let mut log: Vec<Admission> = Vec::new();
        let mut open: BTreeMap<String, usize> = BTreeMap::new();
        for op in ops {
            let before = m.clone();
            match op {
                Op::Reserve(i, amounts, dt) => {
                    now = step(now, dt);
                    let id = i.to_string();
                    match m.reserve(&id, amounts, &l, now) {
                        Ok(_) => {
                            let mut reserved = Amounts::default();
                            for limit in LimitName::ALL {
                                if per_minute(&l, limit).is_some() {
                                    reserved.set(limit, amounts.get(limit));
                                }
                            }
                            prop_assert_eq!(m.reserved(&id), Some(reserved));
                            open.insert(id.clone(), log.len());
                            log.push(Admission { at_ms: m.open[&id].at_ms, reserved, used: reserved });
                        }
                        Err(e) => {
                            prop_assert_eq!(&m, &before, "a refusal changes nothing");
                            if let MeterRefusal::Limited { retry_at_ms, retry_after_ms, .. } = e {
                                prop_assert!(retry_after_ms >= 1);
                                prop_assert_eq!(retry_after_ms, retry_at_ms - now);
                                prop_assert!(m.clone().reserve(&id, amounts, &l, retry_at_ms).is_ok());
                                prop_assert!(m.clone().reserve(&id, amounts, &l, retry_at_ms - 1).is_err());
                            }
                        }
                    }
                }
                Op::Settle(i, input, output, dt) => {
                    now = step(now, dt);
                    let id = i.to_string();
                    match m.settle(&id, input, output, &l, now) {
                        Ok(_) => {
                            let k = open.remove(&id).unwrap();
                            let a = &mut log[k];
                            a.used.input_tokens = input.min(a.reserved.input_tokens);
                            a.used.output_tokens = output.min(a.reserved.output_tokens);
                            let once = m.clone();
                            prop_assert_eq!(m.settle(&id, input, output, &l, now), Err(UnknownReservation));
                            prop_assert_eq!(m.release(&id, &l, now), Err(UnknownReservation));
                            prop_assert_eq!(&m, &once);
                        }
                        Err(_) => {
                            prop_assert!(!open.contains_key(&id));
                            prop_assert_eq!(&m, &before);
                        }
                    }
                }
                Op::Release(i, dt) => {
                    now = step(now, dt);
                    let id = i.to_string();
                    match m.release(&id, &l, now) {
                        Ok(_) => {
                            let k = open.remove(&id).unwrap();
                            log[k].used = Amounts::default();
                            let once = m.clone();
                            prop_assert_eq!(m.release(&id, &l, now), Err(UnknownReservation));
                            prop_assert_eq!(&m, &once);
                        }
                        Err(_) => prop_assert_eq!(&m, &before),
                    }
                }
                Op::Expire(dt) => {
                    now = step(now, dt);
                    for id in m.expire(now) {
                        prop_assert!(open.remove(&id).is_some());
                    }
                    prop_assert!(m.next_expiry().is_none_or(|t| t > now));
                }
            }
            prop_assert_eq!(m.open_reservations(), open.len());
            for limit in LimitName::ALL {
                if let (Some(r), Some(b)) = (per_minute(&l, limit), m.bucket(limit)) {
                    let cap = capacity_units(r);
                    prop_assert!(b.units() <= cap && b.units() >= -cap);
                    // The bucket never holds more than it would in hindsight, had every
                    // admission asked for what it finally used from the start.
                    let hindsight = hindsight_units(&log, limit, r, b.at_ms());
                    prop_assert!(
                        b.units() <= hindsight,
                        "{limit}: {} units, {hindsight} in hindsight", b.units()
                    );
                }
            }
        }
        for limit in LimitName::ALL {
            let Some(r) = per_minute(&l, limit) else { continue };
            let cap = capacity_units(r);
            for i in 0..log.len() {
                let mut used = 0i128;
                for a in &log[i..] {
                    used += i128::from(a.used.get(limit)) * U;
                    let elapsed = i128::from(a.at_ms - log[i].at_ms);
                    prop_assert!(
                        used <= cap + i128::from(r) * elapsed,
                        "{limit} window from admission {i}: used {used} units in {elapsed} ms"
                    );
                }
            }
        }
    }

    /// Readings never panic and stay within the capacity, for any stored state and limits.
    #[test]
    fn readings_are_bounded_for_any_stored_state(
        at_ms in any::<u64>(), level in any::<i64>(), r in 0u64..=2_000_000_000, now in any::<u64>()
    ) {
        let m = Meters { input_tokens: Some(serde_json::from_value(
            serde_json::json!({"at_ms": at_ms, "level": level})).unwrap()), ..Meters::default() };
        let l = MinuteLimits::tokens(r, r);
        for reading in m.readings(&l, now) {
            prop_assert!(reading.remaining <= r);
        }
        let mut m = m;
        let _ = m.reserve("x", Amounts::call(r / 2, r / 2), &l, now);
        let _ = m.settle("x", u64::MAX, u64::MAX, &l, now);
    }
}
