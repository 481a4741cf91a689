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

/// The partition of a key: FNV-1a of its loose form, a stable hash, so a key lands in the
/// same partition on both sides, and so do two spellings of one key.
pub(crate) fn partition(key: &str, n: usize) -> usize {
    (crate::spill::fnv1a(&loose_key(key)) % n as u64) as usize
}

// --- spill records ----------------------------------------------------------------------

/// A state identity in a partition file: its row, key, kind, hash, and what a match means.
#[derive(Serialize, Deserialize)]
pub(crate) struct StateRecord {
    pub(crate) row: u64,
    pub(crate) key: String,
    pub(crate) kind: IdentityKind,
    /// The input column, lower case (`None` in states written before it was recorded).
    pub(crate) column: Option<String>,
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
    /// The input column, lower case.
    #[serde(borrow)]
    pub(crate) column: &'a str,
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
