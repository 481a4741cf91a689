//! The identities pass 1 has seen, as a compact filter (a Bloom filter): an identity it
//! has not seen is new for certain, and pass 1 sends it at once, so that the network works
//! while the input is still being read. An identity it may have seen (a repeat, or now and
//! then a false positive) waits for the mapping pass, which sends it only if no earlier
//! occurrence was sent. Memory is fixed ([`MAX_BITS`] at most), whatever the input: past
//! the size it was made for, more identities wait, none is lost or sent twice.

use crate::record::{IdentityHash, IdentityKind};

/// Bits per expected identity: with [`HASHES`] probes, about 0.4 % false positives.
const BITS_PER_IDENTITY: u64 = 12;
/// Probes per identity.
const HASHES: u64 = 6;
/// Smallest filter, bits (128 KiB).
const MIN_BITS: u64 = 1 << 20;
/// Largest filter, bits (32 MiB): made for about 22M identities; a bigger input makes it
/// coarser (more identities wait for the mapping pass), never bigger.
const MAX_BITS: u64 = 1 << 28;

/// A Bloom filter over (kind, hash).
pub(super) struct SeenFilter {
    words: Vec<u64>,
    mask: u64,
}

impl SeenFilter {
    /// A filter for about `identities` identities, within [`MIN_BITS`]..=[`MAX_BITS`].
    pub(super) fn for_identities(identities: u64) -> SeenFilter {
        let bits = identities
            .saturating_mul(BITS_PER_IDENTITY)
            .clamp(MIN_BITS, MAX_BITS)
            .next_power_of_two()
            .min(MAX_BITS);
        SeenFilter {
            words: vec![0; (bits / 64) as usize],
            mask: bits - 1,
        }
    }

    /// Bytes the filter holds.
    pub(super) fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Adds an identity; true when it was certainly not added before. The digest is
    /// SHA-256, so its bytes are probes already (bytes 16..32: the partition and the
    /// mapper's tables use others). All probes of one identity fall in one 512-bit block
    /// (one cache line): one memory access, not six.
    pub(super) fn insert(&mut self, kind: IdentityKind, hash: &IdentityHash) -> bool {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&hash.0[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let kind = match kind {
            IdentityKind::Email => 0,
            IdentityKind::Phone => 0x9E37_79B9_7F4A_7C15u64,
        };
        let (h1, h2) = (word(16) ^ kind, word(24));
        let block = ((h1 >> 9) & (self.mask >> 9)) as usize * 8;
        let mut new = false;
        for i in 0..HASHES {
            let bit = (h2 >> (9 * i)) & 511;
            let (w, b) = (block + (bit >> 6) as usize, 1u64 << (bit & 63));
            if self.words[w] & b == 0 {
                new = true;
                self.words[w] |= b;
            }
        }
        new
    }

    /// The chance, now, that an identity never added looks added (the filter's fill, to the
    /// power of its probes): an upper bound for every sighting so far, as the filter only
    /// fills up.
    pub(super) fn false_positive_rate(&self) -> f64 {
        let ones: u64 = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
        let fill = ones as f64 / (self.words.len() * 64) as f64;
        fill.powi(HASHES as i32)
    }
}

/// About how many distinct identities a partition holds, from its pass-1 records and the
/// identities of it pass 1 sent (each a distinct one): those not sent are the ones the
/// filter took for repeats at their first sighting, at most a `fp` share of them. Never
/// more than its records; all of them where the filter is too full to tell.
pub(super) fn distinct_estimate(records: u64, sent: u64, fp: f64) -> u64 {
    if fp >= 0.25 {
        return records;
    }
    // Twice the expected share: a margin for the spread (the split aims a tenth lower).
    let est = (sent as f64 / (1.0 - 2.0 * fp)).ceil() as u64;
    est.min(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u64) -> IdentityHash {
        crate::normalize::sha256(&i.to_le_bytes())
    }

    #[test]
    fn a_repeat_is_never_new_and_few_new_ones_look_seen() {
        let mut f = SeenFilter::for_identities(100_000);
        let fresh = (0..100_000u64)
            .filter(|&i| f.insert(IdentityKind::Email, &hash(i)))
            .count();
        // Every repeat is caught (a Bloom filter has no false negatives).
        assert!((0..100_000u64).all(|i| !f.insert(IdentityKind::Email, &hash(i))));
        // False positives among the first sightings: about 0.4 %, well under 1 %.
        assert!(fresh > 99_000, "{fresh} of 100,000 distinct seen as new");
        // The same digest as the other kind is another identity.
        let phones = (0..1_000u64)
            .filter(|&i| f.insert(IdentityKind::Phone, &hash(i)))
            .count();
        assert!(phones > 980, "{phones} of 1,000");
    }

    #[test]
    fn a_partition_s_distinct_count_is_estimated_from_what_pass_1_sent() {
        let mut f = SeenFilter::for_identities(10_000);
        assert_eq!(f.false_positive_rate(), 0.0);
        for i in 0..10_000u64 {
            f.insert(IdentityKind::Email, &hash(i));
        }
        let fp = f.false_positive_rate();
        assert!(fp > 0.0 && fp < 0.01, "{fp}");
        let est = distinct_estimate(25_000, 10_000, fp);
        assert!((10_000..10_200).contains(&est), "{est}");
        assert_eq!(
            distinct_estimate(9_000, 10_000, fp),
            9_000,
            "never above the records"
        );
        assert_eq!(
            distinct_estimate(25_000, 10, 0.3),
            25_000,
            "too full to tell"
        );
    }

    #[test]
    fn the_filter_stays_within_its_bounds() {
        assert_eq!(
            SeenFilter::for_identities(0).bytes(),
            (MIN_BITS / 8) as usize
        );
        assert_eq!(
            SeenFilter::for_identities(u64::MAX).bytes(),
            (MAX_BITS / 8) as usize
        );
        assert_eq!(SeenFilter::for_identities(1_000_000).bytes(), 2 << 20);
    }
}
