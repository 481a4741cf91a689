//! Dedupe, batching and fan-out: the async stage between the hasher and the writer.
//!
//! Each distinct (kind, hash) is sent once while it is in flight or cached; every row that
//! carries it gets the same answer. Chunks leave in input order once all their identities are
//! answered. The cache of answers is size-capped (two generations, the older dropped when the
//! newer fills), so memory stays bounded; a duplicate seen after its answer was dropped is
//! simply sent again: re-sent, never lost.
//!
//! Batches hold at most `batch_size` identities (≤ 5,000); with 44-char hashes a full batch
//! is about 235 KB of JSON, far below the 1 MiB body limit, which [`Batcher`] still checks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::envelope::MIN_REQUEST_LEN;
use crate::client::{wire, Client, ClientError, MAX_BODY_BYTES, MAX_ITEMS_PER_REQUEST};
use crate::output::Resolved;
use crate::record::{DigestMap, Hashed, IdentityHash, IdentityKind, MapOutcome};

/// Chunks held while their answers are pending. Bounds the reorder buffer.
const PENDING_CHUNKS: usize = 8;

type Key = (IdentityKind, IdentityHash);
/// What a batch task returns: its identities and their answers.
type BatchResult = (Vec<Key>, Result<Vec<MapOutcome>, ClientError>);

/// Fills batches within the protocol's limits.
///
/// ```
/// use euid_map::mapper::Batcher;
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

    /// Takes the current (possibly partial) batch.
    pub fn take(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.items)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Counters of the mapper for the manifest.
#[derive(Debug, Default)]
pub struct MapperStats {
    /// Distinct hashes sent to the operator.
    pub unique_sent: AtomicU64,
    /// Identities answered from the cache or an in-flight request.
    pub deduplicated: AtomicU64,
    /// Identities answered (mapped, opted out…).
    pub answered: AtomicU64,
}

/// The rows waiting for one hash: (chunk sequence, identity index). Most hashes have one
/// waiter, so the first is stored inline and only duplicates allocate.
struct Waiters {
    first: (u64, usize),
    more: Vec<(u64, usize)>,
}

struct Pending {
    resolved: Resolved,
    outcomes: Vec<Option<MapOutcome>>,
    remaining: usize,
}

/// Two-generation answer cache with a total cap.
struct Cache {
    cap: usize,
    young: DigestMap<Key, MapOutcome>,
    old: DigestMap<Key, MapOutcome>,
}

impl Cache {
    fn get(&self, k: &Key) -> Option<&MapOutcome> {
        self.young.get(k).or_else(|| self.old.get(k))
    }

    fn insert(&mut self, k: Key, v: MapOutcome) {
        if self.cap == 0 {
            return;
        }
        if self.young.len() >= self.cap / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(k, v);
    }
}

/// Runs the mapper until the input ends.
///
/// # Errors
/// A fatal client error (401, clock skew); the caller stops the run.
pub async fn run(
    client: Arc<Client>,
    mut input: mpsc::Receiver<Resolved>,
    output: mpsc::Sender<Resolved>,
    batch_size: usize,
    cache_entries: usize,
    stats: Arc<MapperStats>,
) -> Result<(), ClientError> {
    // As many batch tasks as requests may be in flight: batches then go out in input order,
    // so chunks complete (and parts commit) in order too, and nothing queues unboundedly.
    let max_tasks = client.max_in_flight();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut base_seq: u64 = 0;
    let mut waiting: DigestMap<Key, Waiters> = DigestMap::default();
    let mut cache = Cache {
        cap: cache_entries,
        young: DigestMap::default(),
        old: DigestMap::default(),
    };
    let mut batcher = Batcher::new(batch_size);
    let mut ready: VecDeque<Vec<Key>> = VecDeque::new();
    let mut tasks: JoinSet<BatchResult> = JoinSet::new();
    let mut input_done = false;
    loop {
        // A partial batch goes out only when no more input can fill it: the input ended, or
        // the reorder buffer is full. Sending it earlier would spend requests (and rate-limit
        // budget) on small batches, e.g. the few due identities per chunk of a refresh.
        if !batcher.is_empty() && (input_done || pending.len() >= PENDING_CHUNKS) {
            ready.push_back(batcher.take());
        }
        while tasks.len() < max_tasks {
            let Some(batch) = ready.pop_front() else {
                break;
            };
            stats
                .unique_sent
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let c = Arc::clone(&client);
            tasks.spawn(async move {
                let r = c.map(&batch).await;
                (batch, r)
            });
        }
        // Chunks whose every identity is answered leave in input order.
        while pending.front().is_some_and(|p| p.remaining == 0) {
            let p = pending.pop_front().expect("checked");
            base_seq += 1;
            let mut resolved = p.resolved;
            resolved.outcomes = Some(p.outcomes);
            if output.send(resolved).await.is_err() {
                return Ok(()); // writer gone: it reports its own error
            }
        }
        if input_done && tasks.is_empty() && ready.is_empty() && batcher.is_empty() {
            debug_assert!(
                pending.is_empty(),
                "every chunk is answered once all batches are"
            );
            return Ok(());
        }
        let can_take = !input_done && pending.len() < PENDING_CHUNKS && ready.len() < max_tasks;
        tokio::select! {
            chunk = input.recv(), if can_take => {
                let Some(resolved) = chunk else {
                    input_done = true;
                    continue;
                };
                let seq = base_seq + pending.len() as u64;
                let mut resolved = resolved;
                // Answers filled upstream (rows `refresh` carries over) are kept as they are.
                let mut outcomes = resolved.outcomes.take().unwrap_or_else(|| vec![None; resolved.ids.len()]);
                let mut remaining = 0;
                for (idx, id) in resolved.ids.iter().enumerate() {
                    if outcomes[idx].is_some() {
                        continue;
                    }
                    let Hashed::Ok(h) = id.hashed else { continue };
                    let key = (id.kind, h);
                    if let Some(o) = cache.get(&key) {
                        outcomes[idx] = Some(o.clone());
                        stats.deduplicated.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    remaining += 1;
                    match waiting.get_mut(&key) {
                        Some(w) => {
                            w.more.push((seq, idx));
                            stats.deduplicated.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            waiting.insert(key, Waiters { first: (seq, idx), more: Vec::new() });
                            if let Some(full) = batcher.push(key) {
                                ready.push_back(full);
                            }
                        }
                    }
                }
                pending.push_back(Pending { resolved, outcomes, remaining });
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let (batch, result) = joined.map_err(|e| ClientError::Config(format!("a mapping task failed: {e}")))?;
                let answers = result?;
                for (key, outcome) in batch.into_iter().zip(answers) {
                    let Some(w) = waiting.remove(&key) else { continue };
                    for (seq, idx) in std::iter::once(w.first).chain(w.more) {
                        let p = &mut pending[(seq - base_seq) as usize];
                        p.outcomes[idx] = Some(outcome.clone());
                        p.remaining -= 1;
                        stats.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    if !matches!(outcome, MapOutcome::Failed(_)) {
                        cache.insert(key, outcome);
                    }
                }
            }
        }
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
