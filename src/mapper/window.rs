//! The reorder window: chunks wait here, in input order, until every identity of theirs has
//! an answer (from the cache, from an in-flight request, or from a batch of their own);
//! batches are cut here for the run loop to send.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::cache::Cache;
use super::*;
use crate::protocol::Batcher;
use crate::record::IdentityChunk;
use crate::record::{DigestMap, Hashed, MapOutcome};

/// The rows waiting for one hash: (chunk sequence, identity index), the sequence truncated
/// to 32 bits (the window holds far fewer chunks, so it is unambiguous). Most hashes have one
/// waiter, so the first is stored inline and only duplicates allocate: an entry of the
/// in-flight table is 56 bytes, and the table holds up to [`PENDING_IDENTITIES`] of them.
pub(super) struct Waiters {
    pub(super) first: (u32, u32),
    // A boxed Vec on purpose: 8 bytes in the entry instead of 24, for the rare duplicate.
    #[allow(clippy::box_collection)]
    pub(super) more: Option<Box<Vec<(u32, u32)>>>,
}

pub(super) struct Pending {
    pub(super) chunk: IdentityChunk,
    pub(super) outcomes: Vec<Option<MapOutcome>>,
    pub(super) remaining: usize,
}

/// The mapper's state, without I/O: chunks waiting for answers (the reorder window), the
/// answer cache, the hashes in flight and the batches ready to send. [`run`] drives it;
/// tests drive it directly.
pub struct Mapper {
    pub(super) pending: VecDeque<Pending>,
    /// Identities in `pending`.
    pub(super) pending_ids: usize,
    /// Identities in `pending` without an answer yet (batched, in flight or waiting).
    pub(super) unanswered: usize,
    /// Sequence number of `pending[0]`.
    pub(super) base_seq: u64,
    pub(super) waiting: DigestMap<Key, Waiters>,
    pub(super) cache: Cache,
    pub(super) batcher: Batcher,
    /// Sequence number of the chunk that put the first identity into the partial batch.
    pub(super) partial_from: u64,
    pub(super) ready: VecDeque<Vec<Key>>,
    pub(super) stats: Arc<MapperStats>,
}

impl Mapper {
    /// A mapper sending batches of at most `batch_size` identities and remembering the
    /// answers that fit in `cache_bytes` ([`CACHE_ENTRY_BYTES`] each).
    pub fn new(batch_size: usize, cache_bytes: usize, stats: Arc<MapperStats>) -> Mapper {
        let cache_entries = cache_bytes / CACHE_ENTRY_BYTES;
        Mapper {
            pending: VecDeque::new(),
            pending_ids: 0,
            unanswered: 0,
            base_seq: 0,
            waiting: DigestMap::with_capacity_and_hasher(
                PENDING_IDENTITIES + 2 * crate::input::CHUNK_ROWS,
                Default::default(),
            ),
            cache: Cache::new(cache_entries),
            batcher: Batcher::new(batch_size),
            partial_from: 0,
            ready: VecDeque::new(),
            stats,
        }
    }

    /// Whether another chunk fits in the reorder window while fewer than `max_ready`
    /// batches wait to be sent.
    pub fn can_accept(&self, max_ready: usize) -> bool {
        !self.window_full() && self.ready.len() < max_ready
    }

    /// Whether the reorder window holds all it may: [`PENDING_CHUNKS`] chunks, or
    /// [`PENDING_IDENTITIES`] identities waiting for answers, or [`WINDOW_IDENTITIES`]
    /// identities while more than a batch of them wait (those answers will free the window),
    /// or [`PENDING_IDENTITIES_SPARSE`] identities.
    pub(super) fn window_full(&self) -> bool {
        self.pending.len() >= PENDING_CHUNKS
            || self.pending_ids >= PENDING_IDENTITIES_SPARSE
            || self.unanswered >= PENDING_IDENTITIES
            || (self.pending_ids >= WINDOW_IDENTITIES && self.unanswered > MAX_BATCH)
    }

    /// Takes a chunk: answers what the cache or an in-flight request answers, queues the
    /// rest for batches. Answers already filled (rows `refresh` carries over) are kept.
    pub fn accept(&mut self, mut chunk: IdentityChunk) {
        let full_seq = self.base_seq + self.pending.len() as u64;
        let seq = full_seq as u32;
        let mut outcomes = chunk
            .outcomes
            .take()
            .unwrap_or_else(|| vec![None; chunk.ids.len()]);
        let mut remaining = 0;
        let mut deduplicated = 0;
        for (idx, id) in chunk.ids.iter().enumerate() {
            if outcomes[idx].is_some() {
                continue;
            }
            let Hashed::Ok(h) = id.hashed else { continue };
            let key = (id.kind, h);
            if let Some(o) = self.cache.get(&key) {
                outcomes[idx] = Some(o.clone());
                deduplicated += 1;
                continue;
            }
            remaining += 1;
            match self.waiting.entry(key) {
                Entry::Occupied(mut w) => {
                    w.get_mut()
                        .more
                        .get_or_insert_with(Box::default)
                        .push((seq, idx as u32));
                    deduplicated += 1;
                }
                Entry::Vacant(v) => {
                    v.insert(Waiters {
                        first: (seq, idx as u32),
                        more: None,
                    });
                    if self.batcher.is_empty() {
                        self.partial_from = full_seq;
                    }
                    if let Some(full) = self.batcher.push(key) {
                        self.ready.push_back(full);
                    }
                }
            }
        }
        self.stats
            .deduplicated
            .fetch_add(deduplicated, Ordering::Relaxed);
        self.pending_ids += chunk.ids.len();
        self.unanswered += remaining;
        self.pending.push_back(Pending {
            chunk,
            outcomes,
            remaining,
        });
    }

    /// Whether identities wait in a batch not yet full.
    pub fn has_partial(&self) -> bool {
        !self.batcher.is_empty()
    }

    /// The next batch to send. A partial batch goes out only when no more input can fill
    /// it: the input ended (or is idle: `input_done` says so too), or the reorder window is
    /// full and its oldest chunk waits for the partial batch. Sending it earlier would spend requests (and rate-limit budget) on
    /// small batches, e.g. the few due identities per chunk of a refresh; when the oldest
    /// chunk waits only for batches already sent, their answers free the window.
    pub fn next_batch(&mut self, input_done: bool) -> Option<Vec<Key>> {
        if self.ready.is_empty()
            && !self.batcher.is_empty()
            && (input_done || (self.window_full() && self.partial_from == self.base_seq))
        {
            self.ready.push_back(self.batcher.take());
        }
        let batch = self.ready.pop_front()?;
        self.stats
            .unique_sent
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut sketch = self.stats.sent_sketch.lock().expect("sketch lock");
        batch.iter().for_each(|k| sketch.add(k));
        drop(sketch);
        Some(batch)
    }

    /// Hands the answers of a batch to every row waiting for them; caches all but failures.
    ///
    /// # Errors
    /// The answers are not one per identity of the batch: assigning them would give rows
    /// another identity's raw EUID, so the run stops.
    pub fn complete(
        &mut self,
        batch: Vec<Key>,
        answers: Vec<MapOutcome>,
    ) -> Result<(), ClientError> {
        if answers.len() != batch.len() {
            return Err(ClientError::BadResponse(format!(
                "internal: {} answers for a batch of {} identities",
                answers.len(),
                batch.len()
            )));
        }
        let mut answered = 0;
        for (key, outcome) in batch.into_iter().zip(answers) {
            let Some(w) = self.waiting.remove(&key) else {
                continue;
            };
            let more = w.more.map(|m| *m).unwrap_or_default();
            for (seq, idx) in std::iter::once(w.first).chain(more) {
                let p = &mut self.pending[seq.wrapping_sub(self.base_seq as u32) as usize];
                p.outcomes[idx as usize] = Some(outcome.clone());
                p.remaining -= 1;
                answered += 1;
            }
            if !matches!(outcome, MapOutcome::Failed(_)) {
                self.cache.insert(key, outcome);
            }
        }
        self.unanswered -= answered as usize;
        self.stats.answered.fetch_add(answered, Ordering::Relaxed);
        Ok(())
    }

    /// The oldest chunk, once every identity in it is answered: chunks leave in input order.
    pub fn pop_finished(&mut self) -> Option<IdentityChunk> {
        if self.pending.front()?.remaining > 0 {
            return None;
        }
        let p = self.pending.pop_front().expect("checked");
        self.base_seq += 1;
        self.pending_ids -= p.chunk.ids.len();
        let mut chunk = p.chunk;
        chunk.outcomes = Some(p.outcomes);
        Some(chunk)
    }

    /// Whether nothing is pending, queued or half-batched.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.ready.is_empty() && self.batcher.is_empty()
    }
}

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Every chunk was answered and handed on.
    Done,
    /// Interrupted: chunks handed on are complete; the others were dropped, to be read
    /// again by `--resume`.
    Interrupted,
}
