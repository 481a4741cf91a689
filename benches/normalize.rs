//! Normalize + SHA-256 per email and per phone (the hasher stage's per-item cost), on
//! realistic inputs generated like fixtures/customers.csv.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use euid_map::normalize;
use std::hint::black_box;

fn emails(n: usize) -> Vec<String> {
    let first = [
        "anna", "Ben", "chloe", "DAVID", "emma", "felix", "greta", "hugo", "élise", "jörg",
    ];
    let last = [
        "mueller", "Schmidt", "dubois", "rossi", "garcia", "jansen", "nowak",
    ];
    let domains = [
        "gmail.com",
        "web.de",
        "GMail.com",
        "orange.fr",
        "example.eu",
        "outlook.com",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{}.{}{}+tag@{}",
                first[i % first.len()],
                last[(i / 7) % last.len()],
                i % 1000,
                domains[(i / 3) % domains.len()]
            )
        })
        .collect()
}

fn phones(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("+49{:010}", (i as u64).wrapping_mul(7919) % 10_000_000_000))
        .collect()
}

fn bench(c: &mut Criterion) {
    const N: usize = 100_000;
    let e = emails(N);
    let p = phones(N);
    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("email_normalize_and_hash", |b| {
        b.iter(|| {
            for x in &e {
                black_box(normalize::hash_email(black_box(x)).ok());
            }
        })
    });
    g.bench_function("phone_validate_and_hash", |b| {
        b.iter(|| {
            for x in &p {
                black_box(normalize::hash_phone(black_box(x)).ok());
            }
        })
    });
    g.bench_function("sha256_only", |b| {
        b.iter(|| {
            for x in &e {
                black_box(normalize::sha256(black_box(x.as_bytes())));
            }
        })
    });
    g.bench_function("base64_encode_hash", |b| {
        let hashes: Vec<_> = e.iter().map(|x| normalize::sha256(x.as_bytes())).collect();
        b.iter_batched(
            || [0u8; 44],
            |mut buf| {
                for h in &hashes {
                    h.encode_into(&mut buf);
                    black_box(&buf);
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
