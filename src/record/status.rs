//! A row's final status, decided once ([`RowStatus::decide`]), and the counts of them.

use super::{Hashed, MapOutcome};

/// The final status of an identity in the output's `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowStatus {
    /// `hash` only: the identity was hashed.
    Hashed,
    /// The operator returned a raw EUID.
    Mapped,
    /// The user opted out; there is no raw EUID.
    Optout,
    /// Rejected locally, or `invalid identifier` from the operator (see `reason`).
    Invalid,
    /// The identity cell was empty.
    Missing,
    /// The operator gave a reason this version does not know (kept verbatim in `reason`).
    Unmapped,
    /// The batch failed after every retry. The run exits 2.
    Failed,
    /// `refresh` only: the identity was due, its remap failed, and the row keeps its last
    /// known raw EUID (`reason` says why). The run exits 2; the next refresh retries it.
    Stale,
    /// `optout` only: the raw EUID is not opted out.
    Active,
}

impl RowStatus {
    /// Every status, in the order the manifest lists them.
    pub const ALL: [RowStatus; 9] = [
        RowStatus::Hashed,
        RowStatus::Mapped,
        RowStatus::Optout,
        RowStatus::Invalid,
        RowStatus::Missing,
        RowStatus::Unmapped,
        RowStatus::Failed,
        RowStatus::Stale,
        RowStatus::Active,
    ];

    /// The text of the output's `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Hashed => "hashed",
            RowStatus::Mapped => "mapped",
            RowStatus::Optout => "optout",
            RowStatus::Invalid => "invalid",
            RowStatus::Missing => "missing",
            RowStatus::Unmapped => "unmapped",
            RowStatus::Failed => "failed",
            RowStatus::Stale => "stale",
            RowStatus::Active => "active",
        }
    }

    /// Parses the text of a `status` column.
    pub fn parse(s: &str) -> Option<RowStatus> {
        RowStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Per-status counters, as carried in part metadata and the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts(pub [u64; RowStatus::ALL.len()]);

impl StatusCounts {
    /// Adds one identity with `status`.
    pub fn add(&mut self, status: RowStatus) {
        self.0[status as usize] += 1;
    }

    /// Adds all counts of `other`.
    pub fn merge(&mut self, other: &StatusCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// The count for `status`.
    pub fn get(&self, status: RowStatus) -> u64 {
        self.0[status as usize]
    }

    /// Sum over all statuses.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Status counts that grow while a run writes, read by its metrics: the writer updates them,
/// the Prometheus page shows them (so neither imports the other).
#[derive(Debug, Default)]
pub struct LiveCounts(std::sync::Mutex<StatusCounts>);

impl LiveCounts {
    /// Replaces the counts.
    pub fn set(&self, counts: &StatusCounts) {
        *self.0.lock().expect("live counts lock") = counts.clone();
    }

    /// The counts now.
    pub fn get(&self) -> StatusCounts {
        self.0.lock().expect("live counts lock").clone()
    }
}

/// The `reason` of an identity whose hash was valid but got no answer (its batch was
/// dropped when the run stopped).
pub const NO_ANSWER: &str = "no answer";

/// What a row's `reason` cell says, beside its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowReason<'a> {
    /// Nothing to say (a null cell).
    None,
    /// This text.
    Text(&'a str),
    /// The opt-out sweep found the raw EUID opted out at this time (Unix ms); the text is
    /// `output::rows`'s to write.
    OptedOutSince(i64),
}

impl RowStatus {
    /// **Where a row's status is decided**, once, for every command: from the identity's
    /// hash (or why there is none) and its answer, if any. `mapping` is false for `hash`,
    /// whose valid identities are `hashed`; in a mapping run a valid identity without an
    /// answer is `failed` ([`NO_ANSWER`]).
    pub fn decide<'a>(
        hashed: &'a Hashed,
        outcome: Option<&'a MapOutcome>,
        mapping: bool,
    ) -> (RowStatus, RowReason<'a>) {
        match (hashed, outcome) {
            (Hashed::Missing, _) => (RowStatus::Missing, RowReason::None),
            (Hashed::Invalid(reason), _) => (RowStatus::Invalid, RowReason::Text(reason.as_str())),
            (Hashed::Ok(_), None) if !mapping => (RowStatus::Hashed, RowReason::None),
            (Hashed::Ok(_), None) => (RowStatus::Failed, RowReason::Text(NO_ANSWER)),
            (Hashed::Ok(_), Some(o)) => match o {
                MapOutcome::Mapped { .. } => (RowStatus::Mapped, RowReason::None),
                MapOutcome::Optout { since: None, .. } => (RowStatus::Optout, RowReason::None),
                MapOutcome::Optout { since: Some(t), .. } => {
                    (RowStatus::Optout, RowReason::OptedOutSince(*t))
                }
                MapOutcome::Invalid => (
                    RowStatus::Invalid,
                    RowReason::Text(super::InvalidReason::OPERATOR_INVALID),
                ),
                MapOutcome::Unmapped(r) => (RowStatus::Unmapped, RowReason::Text(r)),
                MapOutcome::Failed(r) => (RowStatus::Failed, RowReason::Text(r)),
                MapOutcome::Stale { why, .. } => (RowStatus::Stale, RowReason::Text(why)),
            },
        }
    }
}
