//! Dedupe, batching and fan-out: the async stage between the hasher and the writer.
//!
//! Each distinct (kind, hash) is sent once while it is in flight or cached; every row that
//! carries it gets the same answer. Chunks leave in input order once all their identities are
//! answered. The cache of answers has a fixed number of slots (a newer answer replaces the
//! older one of its slot), so memory stays bounded; a duplicate seen after its answer was
//! replaced is simply sent again: re-sent, never lost.
//!
//! Batches hold at most `batch_size` identities (≤ 5,000); with 44-char hashes a full batch
//! is about 235 KB of JSON, far below the 1 MiB body limit, which [`crate::protocol::Batcher`] still checks.

mod cache;
mod sketch;
mod window;

pub use sketch::DistinctSketch;
pub use window::{Finish, Mapper};

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{Client, ClientError};
use crate::interrupt::Interrupt;
use crate::record::IdentityChunk;
use crate::record::{IdentityHash, IdentityKind, MapOutcome};

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
/// window's memory (about 180 bytes an identity of a carried row): four times
/// [`PENDING_IDENTITIES`] took a 10M-row refresh (`bench_refresh.sh`) to 283 MiB of peak
/// RSS, twice to 231 MiB, for 62 requests instead of 39 for its 52,718 due identities.
const PENDING_IDENTITIES_SPARSE: usize = 2 * PENDING_IDENTITIES;
const MAX_BATCH: usize = crate::protocol::MAX_ITEMS_PER_REQUEST;
/// Batch tasks beyond the window's ceiling: their requests are ready when a slot frees.
const PREPARED_BATCHES: usize = 4;
/// How long the input may stay idle, nothing in flight to wait for, before a partial batch
/// goes out anyway: a stream fed by a slow producer (a Python generator, a paused export)
/// would otherwise hold its identities, and the error their request would meet, until 5,000
/// had arrived or the input ended. A file never pauses this long between chunks.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

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
    /// The distinct identities among those sent (a sketch: bounded memory), so that a run
    /// can tell how many it sent more than once.
    pub sent_sketch: std::sync::Mutex<DistinctSketch>,
}

impl MapperStats {
    /// About how many identities were sent more than once: 0 when that is within the
    /// sketch's error (2.5 % of what was sent, three standard errors).
    pub fn resent_estimate(&self) -> u64 {
        let sent = self.unique_sent.load(std::sync::atomic::Ordering::Relaxed);
        let distinct = self.sent_sketch.lock().expect("sketch lock").estimate();
        let resent = sent.saturating_sub(distinct);
        if resent * 40 <= sent {
            0
        } else {
            resent
        }
    }
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
    let mut idle = false;
    let grace = interrupt.grace_over();
    tokio::pin!(grace);
    loop {
        if interrupt.is_triggered() {
            input_done = true; // take no more chunks; finish those already taken
        }
        while tasks.len() < max_tasks {
            let Some(batch) = mapper.next_batch(input_done || idle) else {
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
        idle = false;
        let can_take = !input_done && mapper.can_accept(max_tasks);
        let wait_idle = can_take && tasks.is_empty() && mapper.has_partial();
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
            // Created only when armed: a disabled branch's future is still built.
            () = async { tokio::time::sleep(IDLE_FLUSH).await }, if wait_idle => idle = true,
        }
    }
}

#[cfg(test)]
mod tests;
