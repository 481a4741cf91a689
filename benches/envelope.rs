//! Envelope encrypt/decrypt of a full 5,000-hash v3 batch (AES-256-GCM via ring).
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use euid_map::config::Secret;
use euid_map::protocol::envelope::Key;
use euid_map::protocol::wire;
use euid_map::record::IdentityKind;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let items: Vec<_> = (0..5000u32)
        .map(|i| {
            (
                if i % 4 == 0 {
                    IdentityKind::Phone
                } else {
                    IdentityKind::Email
                },
                euid_map::normalize::sha256(&i.to_le_bytes()),
            )
        })
        .collect();
    let (json, _) = wire::request_json(&items);
    let key = Key::new(&Secret::new([7u8; 32]));
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("build_request_json_5000", |b| {
        b.iter(|| black_box(wire::request_json(black_box(&items))))
    });
    g.bench_function("seal_request_5000", |b| {
        b.iter(|| black_box(key.seal_request(1, black_box(&json))))
    });
    let (sealed, _) = key.seal_request(1, &json);
    g.bench_function("open_request_5000", |b| {
        b.iter(|| black_box(key.open_request(black_box(&sealed)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
