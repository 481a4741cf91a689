//! Tests of `mod.rs`'s module.

use super::*;
use crate::record::MapOutcome;
use std::sync::Arc;

#[test]
fn decisions_round_trip_through_their_spill_records() {
    let ds = [
        Decision::Carried(MapOutcome::Mapped {
            raw_euid: crate::record::RawId::from("u"),
            previous: None,
            refresh_from: Some(17),
            bucket_id: Some(Arc::from("b1")),
            mapped_at: 5,
        }),
        Decision::Carried(MapOutcome::Optout {
            mapped_at: 9,
            since: Some(4),
        }),
        Decision::Carried(MapOutcome::Invalid),
        Decision::Due(Some(Box::new(MapOutcome::Mapped {
            raw_euid: crate::record::RawId::from("old"),
            previous: None,
            refresh_from: Some(3),
            bucket_id: None,
            mapped_at: 1,
        }))),
        Decision::Changed(None),
        Decision::New,
    ];
    let mut file = Vec::new();
    for (ordinal, d) in ds.iter().enumerate() {
        let rec = DecisionRecord {
            ordinal: ordinal as u64,
            kind: IdentityKind::Phone,
            hash: crate::normalize::sha256(b"x"),
            key: key_digest("42"),
            decision: d.clone(),
        };
        put(&mut file, &rec).expect("write");
    }
    let (mut r, mut buf) = (file.as_slice(), Vec::new());
    for (ordinal, d) in ds.iter().enumerate() {
        assert!(next_frame(&mut r, &mut buf).expect("read"));
        let rec: DecisionRecord = decode(&buf).expect("decode");
        assert_eq!((rec.ordinal, &rec.decision), (ordinal as u64, d));
    }
    assert!(!next_frame(&mut r, &mut buf).expect("end"), "then the end");
}

/// Both sides of the join must put a key in the same partition in every run: FNV-1a of the
/// key's loose form, whose published values pin it down; two spellings of one key meet.
#[test]
fn partitioning_is_fnv1a_of_the_loose_key_and_in_range() {
    assert_eq!(crate::spill::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(crate::spill::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(partition("A", usize::MAX) as u64, 0xaf63_dc4c_8601_ec8c);
    for n in [1, 7, 250] {
        for k in ["1", "abc", "customer-42", ""] {
            let loose = loose_key(k);
            assert_eq!(
                partition(k, n) as u64,
                crate::spill::fnv1a(&loose) % n as u64
            );
            assert!(partition(k, n) < n);
        }
        assert_eq!(partition("00042", n), partition("42", n));
        assert_eq!(partition("C-0042", n), partition("c42", n));
    }
    for (key, loose) in [
        ("C-0042", "c42"),
        ("00042", "42"),
        ("A-100", "a100"),
        ("000", "0"),
        ("a0b", "a0b"),
        ("1002", "1002"),
        ("x-007-y09", "x7y9"),
    ] {
        assert_eq!(loose_key(key), loose.as_bytes(), "{key}");
        assert_eq!(
            partition(key, usize::MAX) as u64,
            crate::spill::fnv1a(loose.as_bytes()) % usize::MAX as u64,
            "{key}: the streamed hash is the loose form's"
        );
    }
    assert_ne!(
        key_digest("00042"),
        key_digest("42"),
        "the digest is the exact key's"
    );
}
