//! The join's records: what a state identity, an export identity and a decision are in the
//! partition files (`s-P` state, `i-P` export, `d-P` decisions; framed by `crate::spill`).

use serde::{Deserialize, Serialize};

use super::*;

/// FNV-1a: a stable hash, so a key lands in the same partition on both sides.
pub(crate) fn partition(key: &str, n: usize) -> usize {
    (crate::spill::fnv1a(key.as_bytes()) % n as u64) as usize
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
