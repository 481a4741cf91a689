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
//! Memory: about [`PARTITION_ROWS`] state rows at a time, whatever the state's size. Disk: a
//! few dozen bytes per identity on each side, in `OUT_DIR/.refresh-tmp`, removed at the end.
//!
//! The rules:
//! - **A customer is present when its key is in the export**, whatever its identities'
//!   statuses: a customer whose email and phone are both invalid or empty is not gone.
//! - **Null keys match no customer.** A state row with a null key is never carried nor kept
//!   (not even with `--keep-missing`): it is dropped, and the export's rows with a null key
//!   are mapped afresh, every night.
//! - Within a customer, an export identity takes the state identity of the same type and
//!   hash first (so rows that only change order are carried), then any other unused one of
//!   its type (a changed value), else it is new.
//! - Each decision records the identity it was made for; the second read of the export
//!   checks it, so a changed export can never receive another identity's answer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::state::{self, DuePolicy};
use crate::error::Error;
use crate::record::{Hashed, IdentityHash, IdentityKind, MapOutcome};

/// State rows per partition: bounds the memory of the decision step (~250 bytes a row).
pub const PARTITION_ROWS: u64 = 400_000;

/// What to do with one identity of the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Decision {
    /// Same value as in the state and not due: write the state's answer.
    Carried(MapOutcome),
    /// Same value, but due: map again (the last known answer with a raw id, kept as `stale`
    /// if the remap fails).
    Due(Option<MapOutcome>),
    /// The customer's value changed: map (the previous raw id, if any).
    Changed(Option<Arc<str>>),
    /// A new customer, or a new identity type for it: map.
    New,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| {
        Error::Output(crate::output::OutputError::Io {
            path: path.display().to_string(),
            source: e,
        })
    }
}

/// FNV-1a: a stable hash, so a key lands in the same partition on both sides.
fn partition(key: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

// --- spill records ----------------------------------------------------------------------

/// A state identity in a partition file: its row, key, kind, hash, and what a match means.
#[derive(Serialize, Deserialize)]
struct StateRecord {
    row: u64,
    key: String,
    kind: IdentityKind,
    hash: Option<IdentityHash>,
    decision: Decision,
}

/// An export identity in a partition file; without a hash, a row that only says its
/// customer is present.
#[derive(Serialize, Deserialize)]
struct ExportRecord<'a> {
    ordinal: u64,
    #[serde(borrow)]
    key: &'a str,
    kind: IdentityKind,
    hash: Option<IdentityHash>,
}

/// A decision, by the ordinal of the export identity it is for, with that identity and a
/// digest of its customer's key (so the second read can check both).
#[derive(Serialize, Deserialize)]
struct DecisionRecord {
    ordinal: u64,
    kind: IdentityKind,
    hash: IdentityHash,
    key: u64,
    decision: Decision,
}

/// A digest of a customer key, to check that the second read sees the same customer.
pub(super) fn key_digest(key: &str) -> u64 {
    // Partition hashing is FNV-1a over the same bytes, with another modulus.
    partition(key, usize::MAX) as u64
}

/// Writes one record: its postcard length (u32 LE), then its postcard bytes.
fn put<T: Serialize>(w: &mut impl Write, record: &T) -> std::io::Result<()> {
    let bytes = postcard::to_stdvec(record)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(bytes.len())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&bytes)
}

/// Reads the next record's bytes into `buf`; `false` at the end of the file.
fn next_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    buf.resize(u32::from_le_bytes(len) as usize, 0);
    r.read_exact(buf)?;
    Ok(true)
}

/// Decodes a frame read by [`next_frame`].
fn decode<'a, T: Deserialize<'a>>(buf: &'a [u8]) -> std::io::Result<T> {
    postcard::from_bytes(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

// --- the join ---------------------------------------------------------------------------

/// Partition files of one side.
struct Sides {
    dir: PathBuf,
    n: usize,
}

impl Sides {
    fn path(&self, side: &str, p: usize) -> PathBuf {
        self.dir.join(format!("{side}-{p:05}.bin"))
    }

    fn writers(&self, side: &str) -> Result<Vec<BufWriter<File>>, Error> {
        (0..self.n)
            .map(|p| {
                let path = self.path(side, p);
                crate::storage::mode::create_file(&path)
                    .map(|f| BufWriter::with_capacity(1 << 16, f))
                    .map_err(io(&path))
            })
            .collect()
    }

    fn reader(&self, side: &str, p: usize) -> Result<BufReader<File>, Error> {
        let path = self.path(side, p);
        File::open(&path)
            .map(|f| BufReader::with_capacity(1 << 16, f))
            .map_err(io(&path))
    }
}

fn finish(ws: Vec<BufWriter<File>>, dir: &Path) -> Result<(), Error> {
    for mut w in ws {
        w.flush().map_err(io(dir))?;
    }
    Ok(())
}

/// The join's scratch folder (it holds hashed identities): removed when this guard drops,
/// on every exit path, success, error or panic.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    /// Creates `dir` afresh (removing what an interrupted run left).
    ///
    /// # Errors
    /// The folder cannot be created.
    pub(super) fn create(dir: PathBuf) -> Result<Scratch, Error> {
        let _ = std::fs::remove_dir_all(&dir);
        crate::storage::mode::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Scratch(dir))
    }

    /// The folder.
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The decided join, ready to be merged back in export order.
pub(super) struct Joined {
    sides: Sides,
    /// State rows whose customer is gone from the export, sorted (for `--keep-missing`).
    pub missing: Vec<u64>,
    /// Distinct customer keys in the state.
    pub state_customers: u64,
    /// Of those, keys absent from the export.
    pub missing_customers: u64,
    /// State rows with a null key.
    pub null_key_rows: u64,
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
    let n = state_rows.div_ceil(partition_rows.max(1)).max(1) as usize;
    let sides = Sides {
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
                (Hashed::Ok(_), None, true) => Decision::Due(row.last.clone()),
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
    export(&mut |x: ExportIdentity<'_>| {
        let record = ExportRecord {
            ordinal: x.ordinal,
            key: x.key,
            kind: x.kind,
            hash: x.hash,
        };
        put(&mut ws[partition(x.key, n)], &record).map_err(io(tmp))
    })?;
    finish(ws, tmp)?;

    // 3. Decide each partition with only its part of the state in memory: first the exact
    //    matches (same type and hash), then the rest in export order.
    struct Entry {
        kind: IdentityKind,
        hash: Option<IdentityHash>,
        decision: Decision,
        row: u64,
        /// The ordinal of the export identity that took it.
        taken_by: Option<u64>,
    }
    let mut missing = Vec::new();
    let (mut state_customers, mut missing_customers) = (0u64, 0u64);
    let (mut present_mapped_ids, mut lost_ids) = (0u64, 0u64);
    let had_raw_id = |d: &Decision| {
        matches!(
            d,
            Decision::Carried(MapOutcome::Mapped { .. })
                | Decision::Due(Some(MapOutcome::Mapped { .. }))
        )
    };
    let mut ws = sides.writers("d")?;
    for (p, w) in ws.iter_mut().enumerate() {
        let mut by_key: HashMap<String, (bool, Vec<Entry>)> = HashMap::new();
        let mut buf = Vec::new();
        let mut r = sides.reader("s", p)?;
        while next_frame(&mut r, &mut buf).map_err(io(tmp))? {
            let rec: StateRecord = decode(&buf).map_err(io(tmp))?;
            by_key.entry(rec.key).or_default().1.push(Entry {
                kind: rec.kind,
                hash: rec.hash,
                decision: rec.decision,
                row: rec.row,
                taken_by: None,
            });
        }
        let mut r = sides.reader("i", p)?;
        while next_frame(&mut r, &mut buf).map_err(io(tmp))? {
            let rec: ExportRecord<'_> = decode(&buf).map_err(io(tmp))?;
            let Some((seen, entries)) = by_key.get_mut(rec.key) else {
                continue;
            };
            *seen = true;
            if rec.hash.is_none() {
                continue;
            }
            if let Some(e) = entries
                .iter_mut()
                .find(|e| e.taken_by.is_none() && e.kind == rec.kind && e.hash == rec.hash)
            {
                e.taken_by = Some(rec.ordinal);
            }
        }
        let mut r = sides.reader("i", p)?;
        while next_frame(&mut r, &mut buf).map_err(io(tmp))? {
            let rec: ExportRecord<'_> = decode(&buf).map_err(io(tmp))?;
            let Some(hash) = rec.hash else { continue };
            let (ordinal, kind) = (rec.ordinal, rec.kind);
            let decision = match by_key.get_mut(rec.key) {
                None => Decision::New,
                Some((_, entries)) => {
                    if let Some(e) = entries.iter().find(|e| e.taken_by == Some(ordinal)) {
                        e.decision.clone()
                    } else if let Some(e) = entries
                        .iter_mut()
                        .find(|e| e.taken_by.is_none() && e.kind == kind)
                    {
                        e.taken_by = Some(ordinal);
                        Decision::Changed(match &e.decision {
                            Decision::Carried(MapOutcome::Mapped { raw_euid, .. })
                            | Decision::Due(Some(MapOutcome::Mapped { raw_euid, .. })) => {
                                Some(Arc::from(raw_euid.as_str()))
                            }
                            Decision::Changed(old) => old.clone(),
                            _ => None,
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
        present_mapped_ids,
        lost_ids,
    })
}

/// A decision with the identity it was made for and its key's digest.
pub(super) type Decided = (IdentityKind, IdentityHash, u64, Decision);

/// Decisions of every partition, merged in ordinal order.
pub(super) struct Merged {
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    pending: Vec<Option<Decided>>,
    tmp: PathBuf,
    buf: Vec<u8>,
    /// The first ordinal the second read asks for (after the rows an interrupted run
    /// wrote): decisions below it are skipped, any other decision not asked for is an
    /// identity the second read no longer has.
    floor: u64,
    /// Decisions at or above `floor` that were never asked for.
    pub(super) orphans: u64,
}

impl Joined {
    /// Opens the decision files for the merge, from ordinal `floor` on.
    ///
    /// # Errors
    /// A decision file cannot be read.
    pub(super) fn merge(&self, floor: u64) -> Result<Merged, Error> {
        let mut m = Merged {
            readers: (0..self.sides.n)
                .map(|p| self.sides.reader("d", p))
                .collect::<Result<_, _>>()?,
            heap: BinaryHeap::new(),
            pending: vec![None; self.sides.n],
            tmp: self.sides.dir.clone(),
            buf: Vec::new(),
            floor,
            orphans: 0,
        };
        for p in 0..self.sides.n {
            m.refill(p)?;
        }
        Ok(m)
    }
}

impl Merged {
    fn refill(&mut self, p: usize) -> Result<(), Error> {
        if next_frame(&mut self.readers[p], &mut self.buf).map_err(io(&self.tmp))? {
            let rec: DecisionRecord = decode(&self.buf).map_err(io(&self.tmp))?;
            self.pending[p] = Some((rec.kind, rec.hash, rec.key, rec.decision));
            self.heap.push(Reverse((rec.ordinal, p)));
        }
        Ok(())
    }

    /// The decision for `ordinal`, with the identity it was made for; decisions for smaller
    /// ordinals (rows an interrupted run already wrote) are skipped. `None` if there is none.
    ///
    /// # Errors
    /// A decision file cannot be read.
    pub(super) fn take(&mut self, ordinal: u64) -> Result<Option<Decided>, Error> {
        while let Some(Reverse((o, p))) = self.heap.peek().copied() {
            if o > ordinal {
                return Ok(None);
            }
            self.heap.pop();
            let d = self.pending[p].take();
            self.refill(p)?;
            if o == ordinal {
                return Ok(d);
            }
            if o >= self.floor {
                self.orphans += 1;
            }
        }
        Ok(None)
    }

    /// Reads the decisions never asked for; `true` when any is at or above the floor (an
    /// identity the first read had and the second did not).
    ///
    /// # Errors
    /// A decision file cannot be read.
    pub(super) fn any_left(&mut self) -> Result<bool, Error> {
        self.take(u64::MAX)?;
        Ok(self.orphans > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Decision::Due(Some(MapOutcome::Mapped {
                raw_euid: crate::record::RawId::from("old"),
                previous: None,
                refresh_from: Some(3),
                bucket_id: None,
                mapped_at: 1,
            })),
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

    #[test]
    fn partitioning_is_stable_and_in_range() {
        for n in [1, 7, 250] {
            for k in ["1", "abc", "customer-42", ""] {
                assert_eq!(partition(k, n), partition(k, n));
                assert!(partition(k, n) < n);
            }
        }
    }
}
