//! The join's records: what a state identity, an export identity and a decision are in the
//! partition files (`s-P` state, `i-P` export, `d-P` decisions; framed by `crate::spill`).

use serde::{Deserialize, Serialize};

use super::*;

/// A key's loose form: its letters and digits, lower case, each run of digits without its
/// leading zeros (`C-0042` → `c42`, `00042` → `42`, `A-100` → `a100`). Keys that differ only
/// in it are one customer written another way (the join refuses to carry one and map the
/// other as new).
pub(crate) fn loose_key(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    let mut run_start: Option<usize> = None; // where the current run of digits began in `out`
    for b in key.bytes().filter(u8::is_ascii_alphanumeric) {
        if !b.is_ascii_digit() {
            run_start = None;
            out.push(b.to_ascii_lowercase());
            continue;
        }
        match run_start {
            // A zero leading a run of digits is dropped, unless the run ends up all zeros.
            Some(s) if out.len() == s + 1 && out[s] == b'0' => out[s] = b,
            Some(_) => out.push(b),
            None => {
                run_start = Some(out.len());
                out.push(b);
            }
        }
    }
    out
}

/// An identity column's name as the join compares it: FNV-1a of its lower-case bytes (a
/// header whose case changed is the same column), with no allocation per row.
pub(crate) fn column_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
    })
}

/// FNV-1a of a key's loose form ([`loose_key`]), computed as it is read: no allocation per
/// record.
fn loose_hash(key: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    let mut eat = |b: u8| h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    // In a run of digits: whether only zeros came so far (one is owed if it ends so).
    let mut zeros_only: Option<bool> = None;
    for b in key.bytes().filter(u8::is_ascii_alphanumeric) {
        if b.is_ascii_digit() {
            match zeros_only {
                Some(true) | None if b == b'0' => zeros_only = Some(true),
                Some(false) => eat(b),
                Some(true) | None => {
                    zeros_only = Some(false);
                    eat(b);
                }
            }
        } else {
            if zeros_only == Some(true) {
                eat(b'0');
            }
            zeros_only = None;
            eat(b.to_ascii_lowercase());
        }
    }
    if zeros_only == Some(true) {
        eat(b'0');
    }
    h
}

/// The partition of a key: FNV-1a of its loose form, a stable hash, so a key lands in the
/// same partition on both sides, and so do two spellings of one key.
pub(crate) fn partition(key: &str, n: usize) -> usize {
    (loose_hash(key) % n as u64) as usize
}

// --- spill records ----------------------------------------------------------------------

/// A state identity in a partition file: its row, key, kind, hash, and what a match means.
#[derive(Serialize, Deserialize)]
pub(crate) struct StateRecord {
    pub(crate) row: u64,
    pub(crate) key: String,
    pub(crate) kind: IdentityKind,
    /// The input column ([`column_id`]; `None` in states written before it was recorded).
    pub(crate) column: Option<u64>,
    pub(crate) hash: Option<IdentityHash>,
    pub(crate) decision: Decision,
}

/// An export identity in a partition file; without a hash, a row that only says its
/// customer is present.
#[derive(Serialize, Deserialize)]
pub(crate) struct ExportRecord<'a> {
    pub(crate) ordinal: u64,
    #[serde(borrow)]
    pub(crate) key: &'a str,
    pub(crate) kind: IdentityKind,
    /// The input column ([`column_id`]).
    pub(crate) column: u64,
    pub(crate) hash: Option<IdentityHash>,
}

/// A decision, by the ordinal of the export identity it is for, with that identity and a
/// digest of its customer's key (so the second read can check both).
#[derive(Serialize, Deserialize)]
pub(crate) struct DecisionRecord {
    pub(crate) ordinal: u64,
    pub(crate) kind: IdentityKind,
    pub(crate) hash: IdentityHash,
    pub(crate) key: u64,
    pub(crate) decision: Decision,
}

impl crate::spill::Ordered for DecisionRecord {
    fn ordinal(&self) -> u64 {
        self.ordinal
    }
}
