//! Tests of `mod.rs`'s module.

use super::*;

fn model(buckets: usize) -> Model {
    Model::new(ModelConfig {
        seed: 7,
        buckets,
        raw_id: RawIdFormat::V2,
        start_ms: 1_767_225_600_000, // 2026-01-01
        optout: HashSet::new(),
        optout_file: None,
    })
}

fn h(s: &str) -> IdentityHash {
    crate::normalize::sha256(s.as_bytes())
}

#[test]
fn same_seed_maps_identically_and_ids_look_like_the_operators() {
    let (a, b) = (model(1024), model(1024));
    let items = [(IdentityKind::Email, h("user@example.com"))];
    let (ma, mb) = (a.map_many(&items), b.map_many(&items));
    assert_eq!(ma, mb);
    let Mapping::Mapped { u, .. } = &ma[0] else {
        panic!("mapped")
    };
    assert_eq!(u.len(), 44);
    assert!(u.ends_with('=') && !u.ends_with("=="));
}

#[test]
fn test_identities_opt_out_and_validate_ones_never_do() {
    let m = model(16);
    let items = [
        (IdentityKind::Email, h("optout@example.com")),
        (IdentityKind::Phone, h("+00000000000")),
        (IdentityKind::Phone, h("+12345678901")),
    ];
    let got = m.map_many(&items);
    assert_eq!(got[0], Mapping::Optout);
    assert_eq!(got[1], Mapping::Optout);
    assert!(matches!(got[2], Mapping::Mapped { .. }));
}

#[test]
fn about_one_in_365_buckets_rotate_per_day_and_keep_their_previous_id() {
    const N: usize = 36_500;
    let m = model(N);
    let item = [(IdentityKind::Email, h("a@b.c"))];
    let before = m.map_many(&item);
    let rotated = m.advance(1);
    assert_eq!(rotated, 100, "ceil(N / 365) buckets per day");
    let total: usize = (0..400).map(|_| m.advance(1)).sum();
    assert!(
        total > N / 2,
        "most buckets rotate within 400 days: {total}"
    );
    let after = m.map_many(&item);
    assert_ne!(before, after);
}

#[test]
fn refresh_time_is_in_the_future() {
    let m = model(64);
    let now = m.now_ms();
    for w in ["x@y.z", "q@r.s", "t@u.v"] {
        let Mapping::Mapped { refresh_ms, .. } =
            m.map_many(&[(IdentityKind::Email, h(w))])[0].clone()
        else {
            panic!()
        };
        assert!(refresh_ms > now && refresh_ms <= now + 31 * DAY_MS);
    }
}
