//! The bounded-memory join of today's export with the state by key (`refresh INPUT...
//! --key-col`): both sides are hash-partitioned by key into temporary files, each partition
//! is decided on its own (only one partition of the state is in memory at a time), and the
//! decisions are merged back in export order while the export is read a second time.
//!
//! ```text
//! state ──▶ s-P files ─┐
//!                      ├─ per partition: decide carried / due / changed / new ─▶ d-P files
//! export ─▶ i-P files ─┘                                                          │
//! export (second read) ◀── k-way merge by ordinal (position in the output) ◀──────┘
//! ```
//!
//! Memory: about [`PARTITION_ROWS`] state rows at a time, up to 512 partitions (51M state
//! rows; more rows per partition beyond, and fewer partitions under a low open-file limit,
//! since each side's partitions are open at once). Disk: a few dozen bytes per identity on
//! each side, in `OUT_DIR/.refresh-tmp`, removed at the end.
//!
//! The rules:
//! - **A customer is present when its key is in the export**, whatever its identities'
//!   statuses: a customer whose email and phone are both invalid or empty is not gone.
//! - **Null keys match no customer.** A state row with a null key is never carried nor kept
//!   (not even with `--keep-missing`): it is dropped, and the export's rows with a null key
//!   are mapped afresh, every night.
//! - Within a customer, an export identity takes the state identity of the same type and
//!   hash first (so rows that only change order are carried; the same column preferred),
//!   then any other unused one of its type read from the same column, or from an unknown
//!   column in a state written before columns were recorded (a changed value), else it is
//!   new. So a customer's `phone` and `mobile` are each carried or remapped on their own.
//! - Each decision records the identity it was made for; the second read of the export
//!   checks it, so a changed export can never receive another identity's answer.

use std::collections::HashMap;
use std::path::Path;

use super::state::{self, DuePolicy};
use crate::error::Error;
use crate::record::{Hashed, IdentityHash, IdentityKind};

/// State rows per partition: bounds the memory of the decision step (~250 bytes a row).
/// 400,000 took 100 MB that the allocator kept through the mapping that follows: the
/// benchmark night (`scripts/bench_compare.sh`, 10M state rows) peaked at 430 MiB with it
/// and at 307 MiB with this, in the same time.
pub const PARTITION_ROWS: u64 = 100_000;

mod records;

pub(super) use super::plan::Decision;
pub(crate) use crate::spill::Scratch;
use crate::spill::{decode, finish, io, next_frame, put, Merge, Partitions};
pub(super) use records::column_id;
use records::*;

/// The decisions of every partition, merged back in export order.
pub(crate) type Merged = Merge<DecisionRecord>;

/// A digest of a customer key, to check that the second read sees the same customer.
pub(super) fn key_digest(key: &str) -> u64 {
    crate::spill::fnv1a(key.as_bytes())
}

/// The decided join, ready to be merged back in export order.
pub(super) struct Joined {
    sides: Partitions,
    /// State rows whose customer is gone from the export, sorted (for `--keep-missing`).
    pub missing: Vec<u64>,
    /// Distinct customer keys in the state.
    pub state_customers: u64,
    /// Of those, keys absent from the export.
    pub missing_customers: u64,
    /// State rows with a null key.
    pub null_key_rows: u64,
    /// Export records with a key (identities, or presence-only rows).
    pub export_keys: u64,
    /// Of those, keys that are a missing customer's key written another way (`00042` for
    /// `42`, `c-42` for `C42`): the same customer, under two keys.
    pub respelled: u64,
    /// State identities with a raw EUID whose customer is in the export.
    pub present_mapped_ids: u64,
    /// Of those, identities the export no longer has in any valid form (its value is
    /// invalid or empty tonight, or gone): their raw EUID leaves the dataset.
    pub lost_ids: u64,
}

/// One export identity to decide: its position in the output, key, kind and hash; without
/// a hash, a row whose customer is present but has no identity to map.
pub(super) struct ExportIdentity<'a> {
    /// Position of the identity among all output rows of the export.
    pub ordinal: u64,
    /// The customer key (rows with a null key are never joined).
    pub key: &'a str,
    /// Email or phone.
    pub kind: IdentityKind,
    /// The input column it was read from.
    pub column: &'a str,
    /// Its hash, or `None` for a presence-only record.
    pub hash: Option<IdentityHash>,
}

/// Partitions the state and the export by key, decides every export identity, and returns
/// the decisions ready for [`Joined::merge`]. `export` is called once with a sink that takes
/// every hashed identity of the export, in order.
///
/// # Errors
/// Reading the state, or the temporary files, failed.
pub(super) fn build(
    tmp: &Path,
    parts: &[crate::storage::Location],
    key_col: &str,
    policy: &DuePolicy,
    state_rows: u64,
    partition_rows: u64,
    export: impl FnOnce(&mut dyn FnMut(ExportIdentity<'_>) -> Result<(), Error>) -> Result<(), Error>,
) -> Result<Joined, Error> {
    let wanted = usize::try_from(state_rows.div_ceil(partition_rows.max(1))).unwrap_or(usize::MAX);
    let n = crate::spill::partitions_within_limits(wanted);
    let sides = Partitions {
        dir: tmp.to_path_buf(),
        n,
    };

    // 1. The state, by key: row index, key, kind, hash, and what a match would mean.
    let mut ws = sides.writers("s")?;
    let (mut null_key_rows, mut rows) = (0u64, 0u64);
    state::for_each_batch(parts, |first, batch| -> Result<bool, Error> {
        let keys = batch.column_by_name(key_col).cloned().ok_or_else(|| {
            super::RefreshError::NoKeyColumn {
                key_col: key_col.to_string(),
                kept: String::new(),
            }
        })?;
        for (i, row) in state::decode(&batch, policy).into_iter().enumerate() {
            rows += 1;
            let Some(key) = super::key::at(&keys, i) else {
                null_key_rows += 1;
                continue;
            };
            let w = &mut ws[partition(&key, n)];
            let old_raw = row.old_raw();
            let decision = match (&row.identity.hashed, row.carried, row.due) {
                (Hashed::Ok(_), Some(c), _) => Decision::Carried(c),
                (Hashed::Ok(_), None, true) => Decision::Due(row.last.clone().map(Box::new)),
                _ => Decision::Changed(old_raw),
            };
            let hash = match row.identity.hashed {
                Hashed::Ok(h) => Some(h),
                _ => None,
            };
            let record = StateRecord {
                row: first + i as u64,
                key,
                kind: row.identity.kind,
                column: row.column,
                hash,
                decision,
            };
            put(w, &record).map_err(io(tmp))?;
        }
        Ok(true)
    })?;
    finish(ws, tmp)?;
    if rows > 0 && null_key_rows == rows {
        return Err(super::RefreshError::AllKeysNull {
            key_col: key_col.to_string(),
            rows,
        }
        .into());
    }

    // 2. The export, by key: ordinal, key, kind, hash (or presence only).
    let mut ws = sides.writers("i")?;
    let mut export_keys = 0u64;
    export(&mut |x: ExportIdentity<'_>| {
        export_keys += 1;
        let record = ExportRecord {
            ordinal: x.ordinal,
            key: x.key,
            kind: x.kind,
            column: column_id(x.column),
            hash: x.hash,
        };
        put(&mut ws[partition(x.key, n)], &record).map_err(io(tmp))
    })?;
    finish(ws, tmp)?;

    // 3. Decide each partition with only its part of the state in memory: first the exact
    //    matches (same type and hash), then the rest in export order.
    struct Entry {
        kind: IdentityKind,
        column: Option<u64>,
        hash: Option<IdentityHash>,
        decision: Decision,
        row: u64,
        /// The ordinal of the export identity that took it.
        taken_by: Option<u64>,
    }
    let mut missing = Vec::new();
    let (mut state_customers, mut missing_customers) = (0u64, 0u64);
    let mut respelled = 0u64;
    let (mut present_mapped_ids, mut lost_ids) = (0u64, 0u64);
    let had_raw_id = |d: &Decision| d.raw_id().is_some();
    let mut ws = sides.writers("d")?;
    for (p, w) in ws.iter_mut().enumerate() {
        let mut by_key: HashMap<String, (bool, Vec<Entry>), ahash::RandomState> =
            HashMap::default();
        let mut buf = Vec::new();
        let mut r = sides.reader("s", p)?;
        while next_frame(&mut r, &mut buf).map_err(io(tmp))? {
            let rec: StateRecord = decode(&buf).map_err(io(tmp))?;
            by_key.entry(rec.key).or_default().1.push(Entry {
                kind: rec.kind,
                column: rec.column,
                hash: rec.hash,
                decision: rec.decision,
                row: rec.row,
                taken_by: None,
            });
        }
        let mut r = sides.reader("i", p)?;
        let mut new_keys: std::collections::HashSet<String, ahash::RandomState> =
            Default::default();
        while next_frame(&mut r, &mut buf).map_err(io(tmp))? {
            let rec: ExportRecord<'_> = decode(&buf).map_err(io(tmp))?;
            let Some((seen, entries)) = by_key.get_mut(rec.key) else {
                if !new_keys.contains(rec.key) {
                    new_keys.insert(rec.key.to_string());
                }
                continue;
            };
            *seen = true;
            if rec.hash.is_none() {
                continue;
            }
            let same = |e: &Entry| e.taken_by.is_none() && e.kind == rec.kind && e.hash == rec.hash;
            let i = entries
                .iter()
                .position(|e| same(e) && e.column == Some(rec.column))
                .or_else(|| entries.iter().position(same));
            if let Some(i) = i {
                entries[i].taken_by = Some(rec.ordinal);
            }
        }
        let mut r = sides.reader("i", p)?;
        while next_frame(&mut r, &mut buf).map_err(io(tmp))? {
            let rec: ExportRecord<'_> = decode(&buf).map_err(io(tmp))?;
            let Some(hash) = rec.hash else { continue };
            let (ordinal, kind, column) = (rec.ordinal, rec.kind, rec.column);
            let decision = match by_key.get_mut(rec.key) {
                None => Decision::New,
                Some((_, entries)) => {
                    if let Some(e) = entries.iter().find(|e| e.taken_by == Some(ordinal)) {
                        e.decision.clone()
                    } else if let Some(e) = entries.iter_mut().find(|e| {
                        e.taken_by.is_none()
                            && e.kind == kind
                            && e.column.is_none_or(|c| c == column)
                    }) {
                        e.taken_by = Some(ordinal);
                        Decision::Changed(match &e.decision {
                            Decision::Changed(old) => old.clone(),
                            d => d.raw_id(),
                        })
                    } else {
                        Decision::New
                    }
                }
            };
            let record = DecisionRecord {
                ordinal,
                kind,
                hash,
                key: key_digest(rec.key),
                decision,
            };
            put(w, &record).map_err(io(tmp))?;
        }
        state_customers += by_key.len() as u64;
        // New keys that are a missing customer's key written another way (00042 for 42):
        // both spellings land in this partition.
        if !new_keys.is_empty() {
            let gone: std::collections::HashSet<Vec<u8>, ahash::RandomState> = by_key
                .iter()
                .filter(|(_, (seen, _))| !*seen)
                .map(|(k, _)| loose_key(k))
                .collect();
            respelled += new_keys
                .iter()
                .filter(|k| gone.contains(&loose_key(k)))
                .count() as u64;
        }
        for (seen, entries) in by_key.into_values() {
            if !seen {
                missing_customers += 1;
                missing.extend(entries.into_iter().map(|e| e.row));
            } else {
                for e in entries.iter().filter(|e| had_raw_id(&e.decision)) {
                    present_mapped_ids += 1;
                    lost_ids += u64::from(e.taken_by.is_none());
                }
            }
        }
    }
    finish(ws, tmp)?;
    missing.sort_unstable();
    Ok(Joined {
        sides,
        missing,
        state_customers,
        missing_customers,
        null_key_rows,
        export_keys,
        respelled,
        present_mapped_ids,
        lost_ids,
    })
}

#[cfg(test)]
mod tests;

impl Joined {
    /// Opens the decision files for the merge, from ordinal `floor` on.
    ///
    /// # Errors
    /// A decision file cannot be read.
    pub(crate) fn merge(&self, floor: u64) -> Result<Merged, Error> {
        Merge::open(&self.sides, "d", floor)
    }
}
