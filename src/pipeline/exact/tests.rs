//! Tests of `mod.rs`'s module.

use super::*;

/// `map --help` and README say what the scratch folder costs.
#[test]
fn the_scratch_space_is_what_the_help_says() {
    let said = format!("{SCRATCH_BYTES_PER_IDENTITY} bytes per");
    assert!(
        include_str!("../../../README.md").contains(&said),
        "README says {said}"
    );
    assert!(
        include_str!("../../cli/map.rs").contains(&said),
        "map --help says {said}"
    );
    let seen = postcard::to_stdvec(&Seen {
        ordinal: u64::MAX,
        kind: IdentityKind::Email,
        hash: crate::normalize::sha256(b"x"),
    })
    .expect("encodes");
    assert!(
        seen.len() + 4 <= 48,
        "pass 1 record: {} bytes",
        seen.len() + 4
    );
}

#[test]
fn partitions_scale_with_the_input_and_spread_hashes() {
    let real = (PARTITION_IDENTITIES, usize::MAX);
    assert_eq!(partitions_for(0, real), 1);
    assert_eq!(partitions_for(30_000_000, real), 150);
    assert!(partitions_for(u64::MAX, real) <= 512, "capped");
    // Pass 1 writes two sides at once (records, early answers): both fit the open files.
    let room = crate::spill::open_files_limit().saturating_sub(40).max(2);
    let most = partitions_for(u64::MAX, real) as u64;
    assert!(
        most * 2 <= room,
        "{most} partitions a side: two sides within the room of {room}"
    );
    assert_eq!(
        partitions_for(1_000_000, (1000, 4)),
        4,
        "the test hook's cap"
    );
    let mut counts = [0u32; 8];
    for i in 0..8000u32 {
        counts[partition_of(&crate::normalize::sha256(&i.to_le_bytes()), 8)] += 1;
    }
    assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
}
