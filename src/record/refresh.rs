//! How `refresh` decided each identity, and the per-part tally of those decisions.

/// How `refresh` decided one identity: at most one of the plan bits
/// ([`RefreshMark::CARRIED`], [`RefreshMark::DUE`], [`RefreshMark::VALUE_CHANGED`],
/// [`RefreshMark::NEW`]) and any of the outcome bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshMark(pub u8);

impl RefreshMark {
    /// Written with the state's answer.
    pub const CARRIED: RefreshMark = RefreshMark(1);
    /// Remapped because its refresh time passed (or it had failed).
    pub const DUE: RefreshMark = RefreshMark(1 << 1);
    /// Remapped because the customer's value changed.
    pub const VALUE_CHANGED: RefreshMark = RefreshMark(1 << 2);
    /// Mapped for the first time.
    pub const NEW: RefreshMark = RefreshMark(1 << 3);
    /// Remapped, and its raw EUID differs from the previous one.
    pub const CHANGED_ID: RefreshMark = RefreshMark(1 << 4);
    /// Remapped, had a raw EUID, and is now opted out.
    pub const NEWLY_OPTED_OUT: RefreshMark = RefreshMark(1 << 5);
    /// Due, its remap failed, and it keeps its last known raw EUID.
    pub const STALE: RefreshMark = RefreshMark(1 << 6);
    /// Carried, and the opt-out sweep found its raw EUID opted out.
    pub const SWEPT_OPTOUT: RefreshMark = RefreshMark(1 << 7);

    /// The counters, in the order of [`RefreshTally`], with the manifest's names.
    pub const NAMES: [(&'static str, RefreshMark); 8] = [
        ("carried", RefreshMark::CARRIED),
        ("due", RefreshMark::DUE),
        ("value_changed", RefreshMark::VALUE_CHANGED),
        ("new", RefreshMark::NEW),
        ("changed_ids", RefreshMark::CHANGED_ID),
        ("newly_opted_out", RefreshMark::NEWLY_OPTED_OUT),
        ("stale", RefreshMark::STALE),
        ("optout_swept", RefreshMark::SWEPT_OPTOUT),
    ];

    /// Both marks' bits.
    pub fn with(self, other: RefreshMark) -> RefreshMark {
        RefreshMark(self.0 | other.0)
    }

    /// Whether every bit of `other` is set.
    pub fn has(self, other: RefreshMark) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

/// Identities per [`RefreshMark`] bit, as carried in part metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshTally(pub [u64; RefreshMark::NAMES.len()]);

impl RefreshTally {
    /// Counts one identity's bits.
    pub fn add(&mut self, m: RefreshMark) {
        for (i, (_, bit)) in RefreshMark::NAMES.iter().enumerate() {
            if m.has(*bit) {
                self.0[i] += 1;
            }
        }
    }

    /// Adds all counts of `other`.
    pub fn merge(&mut self, other: &RefreshTally) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// The count of one counter, by its manifest name.
    pub fn get(&self, name: &str) -> u64 {
        RefreshMark::NAMES
            .iter()
            .position(|(n, _)| *n == name)
            .map_or(0, |i| self.0[i])
    }

    /// Whether every counter is zero.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }
}
