//! A distinct-count sketch (HyperLogLog, 2^14 one-byte registers: 16 KiB, about 0.8 %
//! standard error) of the identities sent, so that `map --dedupe window` can say how many
//! were sent more than once, in bounded memory, whatever the input's size.

use super::Key;

/// log2 of the number of registers.
const P: u32 = 14;
const M: usize = 1 << P;

/// Estimates how many distinct identities it has seen.
#[derive(Debug, Clone)]
pub struct DistinctSketch {
    registers: Box<[u8; M]>,
}

impl Default for DistinctSketch {
    fn default() -> Self {
        DistinctSketch {
            registers: Box::new([0; M]),
        }
    }
}

impl DistinctSketch {
    /// Counts one identity (its hash is SHA-256: its bytes are already uniform).
    pub fn add(&mut self, key: &Key) {
        let head = u64::from_le_bytes(
            key.1 .0[..8]
                .try_into()
                .expect("a SHA-256 digest has 32 bytes"),
        );
        let x = head ^ (key.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let index = (x >> (64 - P)) as usize;
        let rank = ((x << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
        let r = &mut self.registers[index];
        *r = (*r).max(rank);
    }

    /// The estimated number of distinct identities seen.
    pub fn estimate(&self) -> u64 {
        let m = M as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        let raw = alpha * m * m / sum;
        let e = if raw <= 2.5 * m && zeros > 0 {
            // Linear counting, exact enough for small counts.
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        e.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::IdentityKind;

    fn key(i: u64) -> Key {
        (
            IdentityKind::Email,
            crate::normalize::sha256(&i.to_le_bytes()),
        )
    }

    #[test]
    fn estimates_within_a_few_percent_and_ignores_repeats() {
        for n in [0u64, 1, 100, 5_000, 200_000] {
            let mut s = DistinctSketch::default();
            for i in 0..n {
                s.add(&key(i));
                s.add(&key(i)); // a repeat changes nothing
            }
            let e = s.estimate() as f64;
            let err = (e - n as f64).abs() / (n.max(1) as f64);
            assert!(err < 0.05, "{n} distinct estimated as {e}");
        }
    }
}
