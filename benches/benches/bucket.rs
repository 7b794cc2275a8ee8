//! Criterion benches of the rate-limit and credit hot paths: one token-bucket decision
//! (admit and deny paths) and one ledger reserve + settle, on a fixed injected clock.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway_core::credits::ledger::Ledger;
use gateway_core::limits::bucket::{decide, BucketState};
use gateway_core::limits::tier::{Tier, TierConfig};

fn bucket_decisions(c: &mut Criterion) {
    let limits = TierConfig::default().limits_for(Tier::Pro, None);
    let now_ms = 1_700_000_000_000u64;
    let full = BucketState::full(&limits, now_ms - 5_000);
    let empty = BucketState::empty(&limits, now_ms);

    c.bench_function("bucket_decide_admit", |b| {
        b.iter(|| decide(black_box(&full), black_box(now_ms), black_box(1), &limits))
    });
    c.bench_function("bucket_decide_deny", |b| {
        b.iter(|| {
            decide(
                black_box(&empty),
                black_box(now_ms + 250),
                black_box(1),
                &limits,
            )
        })
    });
}

fn ledger_reserve_settle(c: &mut Criterion) {
    let mut ledger = Ledger::new(u64::MAX / 2);
    c.bench_function("ledger_reserve_settle", |b| {
        b.iter(|| {
            ledger
                .reserve(black_box("req-0123456789abcdef"), black_box(17), 0)
                .ok();
            ledger.settle(black_box("req-0123456789abcdef"), black_box(9))
        })
    });
}

criterion_group!(benches, bucket_decisions, ledger_reserve_settle);
criterion_main!(benches);
