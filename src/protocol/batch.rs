//! Batches within the protocol's limits: at most [`MAX_ITEMS_PER_REQUEST`] identities and a
//! sealed body under [`MAX_BODY_BYTES`]. With 44-char hashes a full batch is about 235 KB of
//! JSON, far below the body limit, which [`Batcher`] still checks.

use super::envelope::MIN_REQUEST_LEN;
use super::{wire, MAX_BODY_BYTES, MAX_ITEMS_PER_REQUEST};
use crate::record::{IdentityHash, IdentityKind};

/// What is batched: an identity's kind and hash.
pub type Key = (IdentityKind, IdentityHash);

/// Fills batches within the protocol's limits.
///
/// ```
/// use euid_map::protocol::Batcher;
/// use euid_map::record::IdentityKind;
/// let mut b = Batcher::new(2);
/// let h = |s: &str| (IdentityKind::Email, euid_map::normalize::sha256(s.as_bytes()));
/// assert!(b.push(h("a")).is_none());
/// assert_eq!(b.push(h("b")).map(|batch| batch.len()), Some(2));
/// assert!(b.is_empty());
/// ```
#[derive(Debug)]
pub struct Batcher {
    max_items: usize,
    items: Vec<Key>,
}

impl Batcher {
    /// A batcher of at most `max_items` (clamped to 1..=5,000) identities per request.
    pub fn new(max_items: usize) -> Batcher {
        Batcher {
            max_items: max_items.clamp(1, MAX_ITEMS_PER_REQUEST),
            items: Vec::new(),
        }
    }

    /// Adds an identity; returns a full batch when this one filled it.
    pub fn push(&mut self, key: Key) -> Option<Vec<Key>> {
        self.items.push(key);
        let body = MIN_REQUEST_LEN
            + wire::REQUEST_OVERHEAD
            + (self.items.len() + 1) * wire::BYTES_PER_HASH;
        (self.items.len() >= self.max_items || body > MAX_BODY_BYTES).then(|| self.take())
    }

    /// Takes the current (possibly partial) batch; the next one starts at full capacity
    /// rather than growing by doubling.
    pub fn take(&mut self) -> Vec<Key> {
        std::mem::replace(&mut self.items, Vec::with_capacity(self.max_items))
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use quickcheck::quickcheck;

    use super::*;

    quickcheck! {
        fn batcher_never_exceeds_its_limit_and_never_drops_an_item(n: u16, size: u16) -> bool {
            let mut b = Batcher::new(size as usize);
            let limit = (size as usize).clamp(1, MAX_ITEMS_PER_REQUEST);
            let mut seen = 0;
            let mut ok = true;
            for i in 0..n as u32 {
                let key = (IdentityKind::Email, crate::normalize::sha256(&i.to_le_bytes()));
                if let Some(batch) = b.push(key) {
                    ok &= batch.len() <= limit;
                    seen += batch.len();
                }
            }
            seen += b.take().len();
            ok && seen == n as usize
        }
    }

    #[test]
    fn a_full_batch_stays_under_the_body_limit() {
        let body =
            MIN_REQUEST_LEN + wire::REQUEST_OVERHEAD + MAX_ITEMS_PER_REQUEST * wire::BYTES_PER_HASH;
        assert!(body < MAX_BODY_BYTES / 4, "{body}");
    }
}
