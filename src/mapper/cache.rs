//! The answer cache: answers remembered within `--dedupe-memory`, so that a repeat is
//! answered without a request, with an admission rule that keeps one-off hashes from
//! evicting the ones that repeat.

use super::Key;
use crate::record::MapOutcome;

/// Cache lookups per admission period.
pub(super) const ADMISSION_PERIOD: u32 = 1 << 16;

/// Hits per period below which a filled cache turns sparse (16 in 65,536 lookups).
pub(super) const ADMISSION_MIN_HITS: u32 = ADMISSION_PERIOD / 4096;

/// While sparse, one answer in this many is remembered.
pub(super) const SPARSE_SAMPLE: u32 = 16;

/// The answer cache: direct-mapped, like a CPU cache. Each key has one slot, chosen by its
/// hash; an answer replaces whatever its slot held. Memory is bounded by the slot count (the
/// index is allocated zeroed, so untouched slots cost nothing; entries are appended as slots
/// fill), a lookup that misses touches one cache line, and nothing is ever rehashed or
/// dropped in bulk. Recent answers win, which suits repeats that cluster in an export.
///
/// Remembering an answer costs a memory write that misses the CPU's caches. When almost
/// nothing repeats (fewer than [`ADMISSION_MIN_HITS`] hits in [`ADMISSION_PERIOD`] lookups,
/// e.g. a file of unique emails), only one answer in [`SPARSE_SAMPLE`] is remembered; the
/// sample still catches repeats, and about one repeat in 250 identities turns it back.
pub(super) struct Cache {
    /// Per slot: 0 when empty, else the key's tag in the high half and the entry's index + 1
    /// in the low half.
    pub(super) slots: Vec<u64>,
    pub(super) entries: Vec<(Key, MapOutcome)>,
    pub(super) lookups: u32,
    pub(super) hits: u32,
    pub(super) sparse: bool,
    pub(super) skipped: u32,
}

impl Cache {
    pub(super) fn new(cap: usize) -> Cache {
        // Slots address entries with 32 bits.
        let cap = cap.min(u32::MAX as usize - 1);
        Cache {
            slots: vec![0; cap],
            // Grown as slots fill: reserving it all up front would ask the OS for the whole
            // budget at once, however few answers a run needs.
            entries: Vec::new(),
            lookups: 0,
            hits: 0,
            sparse: false,
            skipped: 0,
        }
    }

    /// The key's slot and the tag that tells most other keys of that slot apart without
    /// reading their entry. Keys are SHA-256 digests: their bytes are uniformly random.
    pub(super) fn place(&self, k: &Key) -> (usize, u64) {
        let d = &k.1 .0;
        let h = u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) ^ k.0 as u64;
        let slot = ((u128::from(h) * self.slots.len() as u128) >> 64) as usize;
        let tag = u64::from(u32::from_le_bytes(d[8..12].try_into().expect("4 bytes")));
        (slot, tag << 32)
    }

    // Inline: with a second caller of the row codec in the crate (`columnar`), codegen
    // stopped inlining these into `Mapper::accept`/`complete`, and `map` lost 5-7 % of CPU
    // (perf: `Cache::get`/`insert` appeared as functions of their own).
    #[inline]
    pub(super) fn get(&mut self, k: &Key) -> Option<&MapOutcome> {
        if self.slots.is_empty() {
            return None;
        }
        self.lookups += 1;
        if self.lookups == ADMISSION_PERIOD {
            // Judged once the cache holds a period's worth: at the start of a run repeats
            // are still in flight, not yet answered.
            self.sparse =
                self.entries.len() >= ADMISSION_PERIOD as usize && self.hits < ADMISSION_MIN_HITS;
            self.lookups = 0;
            self.hits = 0;
        }
        let (slot, tag) = self.place(k);
        let s = self.slots[slot];
        if s == 0 || s & !0xFFFF_FFFF != tag {
            return None;
        }
        let (key, answer) = &self.entries[(s & 0xFFFF_FFFF) as usize - 1];
        if key != k {
            return None;
        }
        self.hits += 1;
        Some(answer)
    }

    #[inline]
    pub(super) fn insert(&mut self, k: Key, v: MapOutcome) {
        if self.slots.is_empty() {
            return;
        }
        if self.sparse {
            self.skipped = (self.skipped + 1) % SPARSE_SAMPLE;
            if self.skipped != 0 {
                return;
            }
        }
        let (slot, tag) = self.place(&k);
        let s = self.slots[slot];
        let index = if s == 0 {
            self.entries.push((k, v));
            self.entries.len() - 1
        } else {
            let index = (s & 0xFFFF_FFFF) as usize - 1;
            self.entries[index] = (k, v);
            index
        };
        self.slots[slot] = tag | (index as u64 + 1);
    }
}
