//! Dedupe, batching and fan-out: the async stage between the hasher and the writer.
//!
//! Each distinct (kind, hash) is sent once while it is in flight or cached; every row that
//! carries it gets the same answer. Chunks leave in input order once all their identities are
//! answered. The cache of answers has a fixed number of slots (a newer answer replaces the
//! older one of its slot), so memory stays bounded; a duplicate seen after its answer was
//! replaced is simply sent again: re-sent, never lost.
//!
//! Batches hold at most `batch_size` identities (≤ 5,000); with 44-char hashes a full batch
//! is about 235 KB of JSON, far below the 1 MiB body limit, which [`Batcher`] still checks.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{Client, ClientError};
use crate::interrupt::Interrupt;
use crate::protocol::Batcher;
use crate::record::IdentityChunk;
use crate::record::{DigestMap, Hashed, IdentityHash, IdentityKind, MapOutcome};

/// Identities of the reorder window waiting for their answers: what the requests in flight
/// and the prepared ones carry (24 batches of 5,000), plus 6 batches of slack. Fewer than
/// this wait when a chunk is taken, so the in-flight table holds at most this plus a chunk's
/// identities: 2^18 slots (15 MB).
const PENDING_IDENTITIES: usize =
    (crate::protocol::MAX_CONCURRENCY + PREPARED_BATCHES + 6) * MAX_BATCH;
/// Most identities in the reorder window while more than a batch of them wait for answers:
/// the pending ones plus a chunk. While the oldest chunk waits for its last batch, the rows
/// answered behind it stay in the window; without this chunk of room a window of unique
/// emails (five chunks, every identity sent) took no new chunk until that batch came back,
/// and the requests in flight fell from 20 to 1 for a round trip
/// (`scripts/bench_concurrency.sh`, 250 ms answers). Two chunks of room cost 40 MiB of peak
/// RSS on the 10M-row customer file and no measurable speed.
const WINDOW_IDENTITIES: usize = PENDING_IDENTITIES + crate::input::CHUNK_ROWS;
/// Most chunks in the reorder window, whatever their size.
const PENDING_CHUNKS: usize = 16;
/// Most identities in the reorder window when few of them wait for an answer (at most a
/// batch): a `refresh` carries most rows from its state and has a few due identities per
/// chunk, so a window bounded by [`PENDING_IDENTITIES`] alone held about 500 of them and
/// sent each as a small partial batch (121 requests for 52,625 identities). Bounds the
/// window's memory (about 150 bytes an identity).
const PENDING_IDENTITIES_SPARSE: usize = 4 * PENDING_IDENTITIES;
const MAX_BATCH: usize = crate::protocol::MAX_ITEMS_PER_REQUEST;
/// Batch tasks beyond the window's ceiling: their requests are ready when a slot frees.
const PREPARED_BATCHES: usize = 4;

/// Default memory of the answer cache, MiB: about 230,000 answers (`map --help` says so; a
/// test keeps the two in step).
pub const DEFAULT_DEDUPE_MIB: usize = 32;

/// Largest `--dedupe-memory`, MiB (64 GiB: about 470 million answers).
pub const MAX_DEDUPE_MIB: usize = 64 << 10;

/// What one remembered answer costs, bytes: its slot in the index and its entry (key and
/// answer, held inline). A raw id that is not the usual 44 characters, or a v2 bucket id, adds
/// a small heap allocation.
pub const CACHE_ENTRY_BYTES: usize = 8 + std::mem::size_of::<(Key, MapOutcome)>();

/// What is deduplicated and sent: an identity's kind and hash.
pub type Key = (IdentityKind, IdentityHash);
/// What a batch task returns: its identities and their answers.
type BatchResult = (Vec<Key>, Result<Vec<MapOutcome>, ClientError>);

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

/// The rows waiting for one hash: (chunk sequence, identity index), the sequence truncated
/// to 32 bits (the window holds far fewer chunks, so it is unambiguous). Most hashes have one
/// waiter, so the first is stored inline and only duplicates allocate: an entry of the
/// in-flight table is 56 bytes, and the table holds up to [`PENDING_IDENTITIES`] of them.
struct Waiters {
    first: (u32, u32),
    // A boxed Vec on purpose: 8 bytes in the entry instead of 24, for the rare duplicate.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<(u32, u32)>>>,
}

struct Pending {
    chunk: IdentityChunk,
    outcomes: Vec<Option<MapOutcome>>,
    remaining: usize,
}

/// Cache lookups per admission period.
const ADMISSION_PERIOD: u32 = 1 << 16;
/// Hits per period below which a filled cache turns sparse (16 in 65,536 lookups).
const ADMISSION_MIN_HITS: u32 = ADMISSION_PERIOD / 4096;
/// While sparse, one answer in this many is remembered.
const SPARSE_SAMPLE: u32 = 16;

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
struct Cache {
    /// Per slot: 0 when empty, else the key's tag in the high half and the entry's index + 1
    /// in the low half.
    slots: Vec<u64>,
    entries: Vec<(Key, MapOutcome)>,
    lookups: u32,
    hits: u32,
    sparse: bool,
    skipped: u32,
}

impl Cache {
    fn new(cap: usize) -> Cache {
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
    fn place(&self, k: &Key) -> (usize, u64) {
        let d = &k.1 .0;
        let h = u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) ^ k.0 as u64;
        let slot = ((u128::from(h) * self.slots.len() as u128) >> 64) as usize;
        let tag = u64::from(u32::from_le_bytes(d[8..12].try_into().expect("4 bytes")));
        (slot, tag << 32)
    }

    fn get(&mut self, k: &Key) -> Option<&MapOutcome> {
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

    fn insert(&mut self, k: Key, v: MapOutcome) {
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

/// The mapper's state, without I/O: chunks waiting for answers (the reorder window), the
/// answer cache, the hashes in flight and the batches ready to send. [`run`] drives it;
/// tests drive it directly.
pub struct Mapper {
    pending: VecDeque<Pending>,
    /// Identities in `pending`.
    pending_ids: usize,
    /// Identities in `pending` without an answer yet (batched, in flight or waiting).
    unanswered: usize,
    /// Sequence number of `pending[0]`.
    base_seq: u64,
    waiting: DigestMap<Key, Waiters>,
    cache: Cache,
    batcher: Batcher,
    /// Sequence number of the chunk that put the first identity into the partial batch.
    partial_from: u64,
    ready: VecDeque<Vec<Key>>,
    stats: Arc<MapperStats>,
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
    fn window_full(&self) -> bool {
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

    /// The next batch to send. A partial batch goes out only when no more input can fill
    /// it: the input ended, or the reorder window is full and its oldest chunk waits for
    /// the partial batch. Sending it earlier would spend requests (and rate-limit budget) on
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

/// Runs the mapper until the input ends, or until an interrupt has given in-flight batches
/// [`crate::interrupt::GRACE`] to finish.
///
/// # Errors
/// A fatal client error (401, wrong secret, clock skew, operator unreachable); the caller
/// stops the run.
pub async fn run(
    client: Arc<Client>,
    mut input: mpsc::Receiver<IdentityChunk>,
    output: mpsc::Sender<IdentityChunk>,
    mut mapper: Mapper,
    interrupt: Interrupt,
) -> Result<Finish, ClientError> {
    // As many batch tasks as requests may be in flight, plus a few whose requests are built
    // and wait for a slot, so that a freed slot is used at once rather than after the next
    // batch is encoded and sealed. Bounded, so nothing queues unboundedly.
    let max_tasks = client.max_in_flight() + PREPARED_BATCHES;
    let mut tasks: JoinSet<BatchResult> = JoinSet::new();
    let mut input_done = false;
    let grace = interrupt.grace_over();
    tokio::pin!(grace);
    loop {
        if interrupt.is_triggered() {
            input_done = true; // take no more chunks; finish those already taken
        }
        while tasks.len() < max_tasks {
            let Some(batch) = mapper.next_batch(input_done) else {
                break;
            };
            let c = Arc::clone(&client);
            tasks.spawn(async move {
                let r = c.map(&batch).await;
                (batch, r)
            });
        }
        while let Some(chunk) = mapper.pop_finished() {
            if output.send(chunk).await.is_err() {
                return Ok(Finish::Done); // writer gone: it reports its own error
            }
        }
        if input_done && tasks.is_empty() {
            if interrupt.is_triggered() && !mapper.is_idle() {
                return Ok(Finish::Interrupted);
            }
            debug_assert!(
                mapper.is_idle(),
                "every chunk is answered once all batches are"
            );
            return Ok(if interrupt.is_triggered() {
                Finish::Interrupted
            } else {
                Finish::Done
            });
        }
        let can_take = !input_done && mapper.can_accept(max_tasks);
        tokio::select! {
            chunk = input.recv(), if can_take => match chunk {
                Some(chunk) => mapper.accept(chunk),
                None => input_done = true,
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let (batch, result) = joined.map_err(|e| ClientError::Config(format!("a mapping task failed: {e}")))?;
                mapper.complete(batch, result?)?;
            }
            () = &mut grace => {
                tracing::warn!(batches = tasks.len(), "interrupted: in-flight batches did not finish in time; their chunks will be mapped again by --resume");
                return Ok(Finish::Interrupted);
            }
            () = interrupt.triggered(), if !input_done => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        (IdentityKind::Email, crate::normalize::sha256(s.as_bytes()))
    }

    fn chunk(first_row: u64, values: &[&str]) -> IdentityChunk {
        IdentityChunk {
            file: 0,
            first_row,
            len: values.len(),
            per_row: 1,
            kept: Vec::new(),
            ids: values
                .iter()
                .map(|v| crate::record::Identity {
                    kind: IdentityKind::Email,
                    hashed: Hashed::Ok(key(v).1),
                    phone_form: Default::default(),
                })
                .collect(),
            outcomes: None,
            origin: None,
            marks: None,
        }
    }

    fn mapped(u: &str) -> MapOutcome {
        MapOutcome::Mapped {
            raw_euid: crate::record::RawId::from(u),
            previous: None,
            refresh_from: Some(1),
            bucket_id: None,
            mapped_at: 0,
        }
    }

    /// The raw ids of a finished chunk, in row order.
    fn raw(c: &IdentityChunk) -> Vec<String> {
        c.outcomes
            .as_ref()
            .expect("finished")
            .iter()
            .map(|o| match o {
                Some(MapOutcome::Mapped { raw_euid, .. }) => raw_euid.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn answer(batch: &[Key], names: &[&str]) -> Vec<MapOutcome> {
        batch
            .iter()
            .map(|k| {
                let n = names
                    .iter()
                    .find(|n| key(n) == *k)
                    .expect("a known identity");
                mapped(&format!("U-{n}"))
            })
            .collect()
    }

    fn mapper(batch: usize, cache: usize) -> Mapper {
        Mapper::new(
            batch,
            cache * CACHE_ENTRY_BYTES,
            Arc::new(MapperStats::default()),
        )
    }

    /// `map --help` and README say what the default cache costs and holds.
    #[test]
    fn the_default_cache_holds_what_the_help_says() {
        assert_eq!(
            crate::mapper::CACHE_ENTRY_BYTES,
            144,
            "the help says 144 bytes"
        );
        let answers = DEFAULT_DEDUPE_MIB * (1 << 20) / crate::mapper::CACHE_ENTRY_BYTES;
        assert!(
            (225_000..=235_000).contains(&answers),
            "the help says about 230,000: {answers}"
        );
    }

    #[test]
    fn batches_completing_out_of_order_release_chunks_in_input_order() {
        let mut m = mapper(2, 100);
        m.accept(chunk(0, &["a", "b"]));
        m.accept(chunk(2, &["c", "d"]));
        let first = m.next_batch(false).expect("full batch");
        let second = m.next_batch(false).expect("full batch");
        m.complete(second.clone(), answer(&second, &["c", "d"]))
            .expect("one answer each");
        assert!(m.pop_finished().is_none(), "the first chunk still waits");
        m.complete(first.clone(), answer(&first, &["a", "b"]))
            .expect("one answer each");
        let a = m.pop_finished().expect("first chunk");
        let b = m.pop_finished().expect("second chunk");
        assert_eq!((a.first_row, b.first_row), (0, 2));
        assert_eq!(raw(&a), ["U-a", "U-b"]);
        assert_eq!(raw(&b), ["U-c", "U-d"]);
        assert!(m.is_idle());
    }

    #[test]
    fn a_duplicate_is_sent_once_and_answered_for_every_row() {
        let mut m = mapper(10, 100);
        m.accept(chunk(0, &["a", "b", "a"]));
        m.accept(chunk(3, &["a"]));
        let batch = m.next_batch(true).expect("partial batch at end of input");
        assert_eq!(batch.len(), 2, "a is in flight once");
        m.complete(batch.clone(), answer(&batch, &["a", "b"]))
            .expect("ok");
        assert_eq!(raw(&m.pop_finished().expect("done")), ["U-a", "U-b", "U-a"]);
        assert_eq!(raw(&m.pop_finished().expect("done")), ["U-a"]);
        m.accept(chunk(4, &["b"]));
        assert!(m.next_batch(true).is_none(), "b comes from the cache");
        assert_eq!(raw(&m.pop_finished().expect("done")), ["U-b"]);
    }

    #[test]
    fn an_evicted_duplicate_is_sent_again_not_lost() {
        let mut m = mapper(1, 1); // a cache of one slot: each answer replaces the last
        for (row, name) in ["a", "b", "c"].into_iter().enumerate() {
            m.accept(chunk(row as u64, &[name]));
            let batch = m.next_batch(false).expect("full batch of one");
            m.complete(batch.clone(), answer(&batch, &[name]))
                .expect("ok");
            m.pop_finished().expect("done");
        }
        m.accept(chunk(3, &["c"]));
        assert!(m.next_batch(true).is_none(), "c is still cached");
        m.pop_finished().expect("from cache");
        m.accept(chunk(4, &["a"]));
        let again = m
            .next_batch(true)
            .expect("a was evicted, so it is sent again");
        assert_eq!(again, vec![key("a")]);
        m.complete(again.clone(), answer(&again, &["a"]))
            .expect("ok");
        assert_eq!(raw(&m.pop_finished().expect("done")), ["U-a"]);
    }

    #[test]
    fn the_cache_keeps_what_fits_and_never_answers_for_another_key() {
        let mut c = Cache::new(1000);
        let answers: Vec<(Key, MapOutcome)> = (0..5000)
            .map(|i| (key(&format!("id{i}")), mapped(&format!("U{i}"))))
            .collect();
        for (k, v) in &answers {
            c.insert(*k, v.clone());
        }
        assert!(c.entries.len() <= 1000, "one entry per slot at most");
        let mut hits = 0;
        for (k, v) in &answers {
            if let Some(found) = c.get(k) {
                assert_eq!(found, v, "a hit is the answer of that very key");
                hits += 1;
            }
        }
        assert!(
            (500..=1000).contains(&hits),
            "most slots hold a recent answer: {hits}"
        );
        let phone = (IdentityKind::Phone, answers[4999].0 .1);
        assert!(
            c.get(&phone).is_none(),
            "the same hash of the other kind is another key"
        );
        assert!(Cache::new(0).get(&answers[0].0).is_none());
    }

    #[test]
    fn a_cache_that_never_hits_remembers_a_sample_and_recovers_when_repeats_come() {
        let mut c = Cache::new(1 << 20);
        let k = |i: u32| key(&format!("u{i}"));
        for i in 0..2 * ADMISSION_PERIOD {
            assert!(c.get(&k(i)).is_none());
            c.insert(k(i), mapped("U"));
            if i == ADMISSION_PERIOD {
                assert!(
                    !c.sparse,
                    "not judged before the cache holds a period's worth"
                );
            }
        }
        assert!(c.sparse, "no hit in a whole period");
        let before = c.entries.len();
        for i in 2 * ADMISSION_PERIOD..2 * ADMISSION_PERIOD + 1600 {
            c.insert(k(i), mapped("U"));
        }
        let added = c.entries.len() - before;
        // One in 16 of 1,600 is 100; a few of them replace an answer already in their slot.
        assert!(
            (85..=100).contains(&added),
            "one answer in 16 is remembered: {added}"
        );
        // Repeats of what was remembered: hits turn the cache back to remembering all.
        for i in 0..ADMISSION_PERIOD {
            let _ = c.get(&k(i % 4096));
        }
        assert!(!c.sparse, "repeats hit the sample");
    }

    #[test]
    fn a_failed_batch_marks_its_rows_failed_and_is_not_cached() {
        let mut m = mapper(5, 100);
        m.accept(chunk(0, &["a", "a"]));
        let batch = m.next_batch(true).expect("batch");
        let failed = MapOutcome::Failed(Arc::from("operator error (HTTP 503)"));
        m.complete(batch, vec![failed.clone()]).expect("ok");
        let done = m.pop_finished().expect("done");
        assert_eq!(
            done.outcomes.expect("answered"),
            vec![Some(failed.clone()), Some(failed)]
        );
        m.accept(chunk(2, &["a"]));
        assert!(
            m.next_batch(true).is_some(),
            "a failure is not remembered: the next occurrence is tried again"
        );
    }

    #[test]
    fn the_reorder_window_is_bounded_and_flushes_partial_batches_when_full() {
        let mut m = mapper(crate::protocol::MAX_ITEMS_PER_REQUEST, 100);
        for i in 0..PENDING_CHUNKS {
            assert!(m.can_accept(20));
            m.accept(chunk(i as u64, &[&format!("id{i}")]));
        }
        assert!(!m.can_accept(20), "the window is full");
        let batch = m
            .next_batch(false)
            .expect("a full window sends its partial batch");
        assert_eq!(batch.len(), PENDING_CHUNKS);
    }

    #[test]
    fn a_window_of_carried_rows_fills_a_batch_before_sending_it() {
        // A refresh chunk: 30,000 rows carried from the state, two of them due.
        let carried = |seq: u64| {
            let mut c = chunk(seq * 30_000, &vec!["carried"; 30_000]);
            let mut outcomes = vec![Some(mapped("U-carried")); 30_000];
            outcomes[0] = None;
            outcomes[1] = None;
            c.ids[0].hashed = Hashed::Ok(key(&format!("due{seq}-0")).1);
            c.ids[1].hashed = Hashed::Ok(key(&format!("due{seq}-1")).1);
            c.outcomes = Some(outcomes);
            c
        };
        let mut m = mapper(MAX_BATCH, 0);
        let mut seq = 0;
        while m.can_accept(20) {
            m.accept(carried(seq));
            seq += 1;
        }
        let held = seq as usize * 30_000;
        assert!(
            held > PENDING_IDENTITIES && held <= PENDING_IDENTITIES_SPARSE + 30_000,
            "with few identities waiting the window holds more than {PENDING_IDENTITIES}: {held}"
        );
        let batch = m
            .next_batch(false)
            .expect("the full window sends its partial batch");
        assert_eq!(
            batch.len(),
            2 * seq as usize,
            "every due identity of the window in one batch"
        );
        // Many identities waiting: the usual bound applies.
        let mut m = mapper(MAX_BATCH, 0);
        let fresh: Vec<String> = (0..60_000).map(|i| format!("f{i}")).collect();
        let fresh: Vec<&str> = fresh.iter().map(String::as_str).collect();
        let mut chunks = 0;
        while m.can_accept(20) {
            m.accept(chunk(chunks * 60_000, &fresh));
            chunks += 1;
        }
        assert_eq!(chunks as usize, PENDING_IDENTITIES.div_ceil(60_000));
    }

    #[test]
    fn a_chunk_waiting_for_its_last_batch_does_not_stall_the_requests() {
        // Chunks of 30,000 unique emails: six batches each.
        let mut m = mapper(MAX_BATCH, 0);
        let mut chunks = 0u64;
        let mut take = |m: &mut Mapper| {
            let names: Vec<String> = (0..30_000).map(|i| format!("c{chunks}-{i}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            m.accept(chunk(chunks * 30_000, &names));
            chunks += 1;
        };
        while m.can_accept(100) {
            take(&mut m);
        }
        let mut batches = Vec::new();
        while let Some(b) = m.next_batch(false) {
            batches.push(b);
        }
        assert_eq!(batches.len(), PENDING_IDENTITIES / MAX_BATCH, "all sent");
        // Everything is answered but the oldest chunk's first and last batches.
        for (i, b) in batches.into_iter().enumerate() {
            if i != 0 && i != 5 {
                let n = b.len();
                m.complete(b, vec![mapped("U"); n]).expect("ok");
            }
        }
        assert!(m.pop_finished().is_none(), "the oldest chunk still waits");
        assert!(
            m.can_accept(100),
            "the next chunk is taken while the oldest waits"
        );
        let mut more = 0;
        while m.can_accept(100) {
            take(&mut m);
            more += 1;
        }
        assert!(m.next_batch(false).is_some_and(|b| b.len() == MAX_BATCH));
        let held = m.pending_ids;
        assert!(
            more >= 1 && held <= WINDOW_IDENTITIES + 30_000,
            "a chunk of room, no more: {more} chunks taken, {held} identities held"
        );
    }

    #[test]
    fn a_full_window_waits_for_answers_in_flight_rather_than_sending_a_partial_batch() {
        let mut m = mapper(2, 0);
        m.accept(chunk(0, &["a", "b"]));
        let sent = m.next_batch(false).expect("a full batch");
        for i in 1..PENDING_CHUNKS {
            m.accept(chunk(i as u64 * 2, &[&format!("x{i}")]));
            let _ = m.next_batch(false);
        }
        assert!(!m.can_accept(20), "the window is full");
        assert!(
            m.next_batch(false).is_none(),
            "the oldest chunk waits only for the batch in flight: no partial batch"
        );
        m.complete(sent.clone(), answer(&sent, &["a", "b"]))
            .expect("ok");
        assert_eq!(raw(&m.pop_finished().expect("done")), ["U-a", "U-b"]);
        assert!(m.can_accept(20), "its answers freed the window");
    }

    /// Issue #9.4: answers are never zipped onto identities when their count is off.
    #[test]
    fn answers_of_the_wrong_count_are_an_error_not_a_shift() {
        let mut m = mapper(10, 100);
        m.accept(chunk(0, &["a", "b"]));
        let batch = m.next_batch(true).expect("batch");
        assert!(m.complete(batch, vec![mapped("U")]).is_err());
        assert!(m.pop_finished().is_none(), "nothing was assigned");
    }
}
