//! Exact dedupe bounded at any scale: the units the mapping pass holds in memory (two whole
//! partitions at a time, a split one's sub-partitions one at a time). A partition whose pass-1 records fit the budget is one unit; a bigger one (the
//! partitions are capped at 512, so above about 100M identities they outgrow the budget) is
//! split by other bits of the hash into sub-partitions that do, in `split-PPPPP/` of the
//! scratch folder, and their answers are merged back by ordinal into the partition's
//! answers file for pass 2.

use std::path::PathBuf;

use super::*;

/// One piece of the mapping pass: partition `part`, or its sub-partition `sub` of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unit {
    pub(super) part: usize,
    pub(super) sub: usize,
    pub(super) of: usize,
}

/// The units for partitions holding about `counts` distinct identities each, with at most
/// `budget` of them in memory at once. A split aims a tenth below the budget, so that
/// the hash's spread keeps every sub-partition within it; fewer sub-partitions than that
/// needs only where the open-file limit allows no more (a split writes all of its files at
/// once while the previous partition's merge may read all of its own: half the room each).
pub(super) fn plan(counts: &[u64], budget: u64) -> Vec<Unit> {
    let room = (crate::spill::partitions_within_limits(usize::MAX) / 2).max(2);
    counts
        .iter()
        .enumerate()
        .flat_map(|(part, &n)| {
            let of = if n > budget {
                let aim = (budget - budget / 10).max(1);
                usize::try_from(n.div_ceil(aim))
                    .unwrap_or(usize::MAX)
                    .min(room)
            } else {
                1
            };
            (0..of).map(move |sub| Unit { part, sub, of })
        })
        .collect()
}

impl Unit {
    /// The files of this unit and its index among them.
    pub(super) fn files(&self, parts: &Partitions) -> (Partitions, usize) {
        if self.of == 1 {
            (
                Partitions {
                    dir: parts.dir.clone(),
                    n: parts.n,
                },
                self.part,
            )
        } else {
            (
                Partitions {
                    dir: split_dir(parts, self.part),
                    n: self.of,
                },
                self.sub,
            )
        }
    }

    /// Whether this is the last unit of its partition.
    pub(super) fn last_of_part(&self) -> bool {
        self.sub + 1 == self.of
    }
}

fn split_dir(parts: &Partitions, p: usize) -> PathBuf {
    parts.dir.join(format!("split-{p:05}"))
}

/// The sub-partition of a hash: bytes the partition (8..16) and the mapper's tables (the
/// first ones) do not use.
fn sub_of(hash: &IdentityHash, n: usize) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash.0[16..24]);
    (u64::from_le_bytes(b) % n as u64) as usize
}

/// Splits partition `p`'s pass-1 records into its `of` sub-partitions (each in ordinal
/// order, as the partition was), and removes the partition's file.
///
/// # Errors
/// Scratch I/O.
pub(super) fn split(parts: &Partitions, p: usize, of: usize) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = split_dir(parts, p);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(io(&dir))?;
    let sub = Partitions { dir, n: of };
    split_side(parts, p, &sub, "h", |s: &Seen| s.hash)?;
    // Pass 1's early answers, where it sent any.
    if parts.path("e", p).exists() {
        split_side(parts, p, &sub, "e", |e: &Early| e.hash)?;
    }
    Ok(())
}

/// Splits side `side` of partition `p` into the sub-partitions `sub`, by hash, keeping each
/// record's order, and removes the partition's file.
fn split_side<T: Serialize + serde::de::DeserializeOwned>(
    parts: &Partitions,
    p: usize,
    sub: &Partitions,
    side: &str,
    hash_of: impl Fn(&T) -> IdentityHash,
) -> Result<(), Error> {
    let mut ws = sub.writers(side)?;
    let mut r = parts.reader(side, p)?;
    let mut buf = Vec::new();
    while next_frame(&mut r, &mut buf).map_err(io(&parts.dir))? {
        let record: T = crate::spill::decode(&buf).map_err(io(&parts.dir))?;
        put(&mut ws[sub_of(&hash_of(&record), sub.n)], &record).map_err(io(&sub.dir))?;
    }
    finish(ws, &sub.dir)?;
    let _ = std::fs::remove_file(parts.path(side, p));
    Ok(())
}

/// Merges the answers of partition `p`'s sub-partitions back into its answers file, by
/// ordinal, and removes the sub-partitions.
///
/// # Errors
/// Scratch I/O.
pub(super) fn merge_answers(parts: &Partitions, p: usize, of: usize) -> Result<(), Error> {
    let sub = Partitions {
        dir: split_dir(parts, p),
        n: of,
    };
    let mut merged = Merge::<Answer>::open(&sub, "a", 0)?;
    let mut w = parts.writer("a", p)?;
    while let Some(a) = merged.next()? {
        put(&mut w, &a).map_err(io(&parts.dir))?;
    }
    finish(vec![w], &parts.dir)?;
    drop(merged);
    remove(parts, p);
    Ok(())
}

/// Removes partition `p`'s sub-partitions (`--distinct` needs no merge).
pub(super) fn remove(parts: &Partitions, p: usize) {
    let _ = std::fs::remove_dir_all(split_dir(parts, p));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_over_the_budget_is_split_into_units_within_it() {
        let units = plan(&[10, 0, 25, 7], 10);
        let of = |p: usize| units.iter().filter(|u| u.part == p).count();
        // 25 records: pieces of at most 9 (a tenth below the budget).
        assert_eq!((of(0), of(1), of(2), of(3)), (1, 1, 3, 1));
        assert_eq!(units.len(), 6);
        assert_eq!(plan(&[100], 10).len(), 12, "100 records in pieces of 9");
        assert!(units
            .windows(2)
            .all(|w| (w[0].part, w[0].sub) < (w[1].part, w[1].sub)));
        assert!(units.iter().filter(|u| u.part == 2).all(|u| u.of == 3));
        assert!(units[4].last_of_part() && !units[3].last_of_part());
    }

    #[test]
    fn a_split_and_its_merge_keep_every_record_in_ordinal_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let parts = Partitions {
            dir: tmp.path().to_path_buf(),
            n: 1,
        };
        let mut w = parts.writer("h", 0).expect("writer");
        let seen: Vec<Seen> = (0..1000u64)
            .map(|i| Seen {
                ordinal: i * 3,
                kind: IdentityKind::Email,
                hash: crate::normalize::sha256(&i.to_le_bytes()),
            })
            .collect();
        for s in &seen {
            put(&mut w, s).expect("put");
        }
        finish(vec![w], &parts.dir).expect("flush");
        split(&parts, 0, 4).expect("split");
        assert!(!parts.path("h", 0).exists(), "the partition's file is gone");
        // Each sub-partition answers its own records (here: the outcome left empty).
        let mut sizes = Vec::new();
        for j in 0..4 {
            let (files, idx) = Unit {
                part: 0,
                sub: j,
                of: 4,
            }
            .files(&parts);
            let mut r = files.reader("h", idx).expect("reader");
            let mut w = files.writer("a", idx).expect("writer");
            let (mut buf, mut n) = (Vec::new(), 0);
            while next_frame(&mut r, &mut buf).expect("frame") {
                let s: Seen = crate::spill::decode(&buf).expect("decode");
                let a = Answer {
                    ordinal: s.ordinal,
                    kind: s.kind,
                    hash: s.hash,
                    outcome: None,
                };
                put(&mut w, &a).expect("put");
                n += 1;
            }
            finish(vec![w], &files.dir).expect("flush");
            sizes.push(n);
        }
        assert!(sizes.iter().all(|n| (150..350).contains(n)), "{sizes:?}");
        merge_answers(&parts, 0, 4).expect("merge");
        let mut r = parts.reader("a", 0).expect("reader");
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while next_frame(&mut r, &mut buf).expect("frame") {
            let a: Answer = crate::spill::decode(&buf).expect("decode");
            got.push((a.ordinal, a.hash));
        }
        let want: Vec<_> = seen.iter().map(|s| (s.ordinal, s.hash)).collect();
        assert_eq!(got, want);
        assert!(!tmp.path().join("split-00000").exists(), "removed");
    }
}
