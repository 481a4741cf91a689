//! The stages between a job's open output and its publish step, and the threads they run on:
//!
//! ```text
//! reader thread ──chunks──▶ hasher thread (rayon) ──hashed──▶ (hash: the caller writes)
//!                                                  └─────────▶ mapper (tokio) ──▶ writer thread
//! ```
//!
//! The hasher hands its chunks straight to whoever consumes them, through the `send` it is
//! given (a std channel for a thread, a tokio channel for the mapper): no thread in between.
//! **A request is retried** in one place, `client::retry` (the loop beside its policy).

use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use super::job::Job;
use super::{Connection, CHUNKS_IN_FLIGHT, MAPPED_CHUNKS_QUEUED};
use crate::config::MapSettings;
use crate::error::Error;
use crate::input::{self, Chunk, Position, ReadProgress, ResolvedColumns};
use crate::output::DatasetWriter;
use crate::record::IdentityChunk;

/// A stage running on a thread of its own, joined with one rule: a panic is an
/// [`Error::Internal`] naming the stage.
pub(crate) struct Stage<T> {
    name: &'static str,
    handle: std::thread::JoinHandle<T>,
}

impl<T: Send + 'static> Stage<T> {
    /// Runs `f` on a thread named `name`.
    pub(crate) fn spawn(name: &'static str, f: impl FnOnce() -> T + Send + 'static) -> Stage<T> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .expect("spawning a thread only fails when the OS is out of resources");
        Stage { name, handle }
    }

    /// Waits for the stage (from a thread that may block).
    ///
    /// # Errors
    /// The stage panicked.
    pub(crate) fn join(self) -> Result<T, Error> {
        let name = self.name;
        self.handle.join().map_err(|_| panicked(name))
    }

    /// Waits for the stage without blocking the async runtime.
    ///
    /// # Errors
    /// The stage panicked.
    pub(crate) async fn finish(self) -> Result<T, Error> {
        tokio::task::spawn_blocking(move || self.join())
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }
}

fn panicked(stage: &str) -> Error {
    Error::Internal(format!("the {stage} thread panicked"))
}

/// The reader and hasher threads of a job: the reader yields chunks from `start` on, the
/// hasher normalizes and hashes them (rayon) and hands each to `send`, which returns
/// `false` when its consumer is gone. An interrupt stops reading between chunks; what was
/// read is still passed on.
pub(crate) fn read_and_hash(
    job: &Job<'_>,
    columns: &[ResolvedColumns],
    start: Position,
    progress: Arc<ReadProgress>,
    mut send: impl FnMut(IdentityChunk) -> bool + Send + 'static,
) -> (Stage<Result<(), Error>>, Stage<()>) {
    let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let inputs = job.cfg.inputs.clone();
    let cols = columns.to_vec();
    let interrupt = job.interrupt().clone();
    let reader = Stage::spawn("reader", move || {
        input::read_all(&inputs, &cols, start, &progress, &mut |c| {
            !interrupt.is_triggered() && chunk_tx.send(c).is_ok()
        })?;
        Ok(())
    });
    let cols = columns.to_vec();
    let names: Vec<_> = columns
        .iter()
        .map(ResolvedColumns::identity_names)
        .collect();
    let hasher = Stage::spawn("hasher", move || {
        for chunk in chunk_rx {
            let c = &cols[chunk.file];
            let ids = crate::normalize::chunk(&chunk, c);
            // The raw cells are dropped here, before the send may wait: what flows on holds
            // only what later stages need.
            let Chunk {
                file,
                first_row,
                len,
                kept,
                bad_kept,
                ..
            } = chunk;
            let mut hashed =
                IdentityChunk::new(file, first_row, len, c.identities.len(), kept, ids);
            hashed.slot_names = Arc::clone(&names[file]);
            hashed.bad_kept = bad_kept;
            if !send(hashed) {
                break;
            }
        }
    });
    (reader, hasher)
}

/// [`read_and_hash`] into a std channel, for a consumer on a thread.
pub(crate) fn read_and_hash_sync(
    job: &Job<'_>,
    columns: &[ResolvedColumns],
    start: Position,
    progress: Arc<ReadProgress>,
) -> (
    std::sync::mpsc::Receiver<IdentityChunk>,
    Stage<Result<(), Error>>,
    Stage<()>,
) {
    let (tx, rx) = sync_channel::<IdentityChunk>(CHUNKS_IN_FLIGHT);
    let (reader, hasher) =
        read_and_hash(job, columns, start, progress, move |c| tx.send(c).is_ok());
    (rx, reader, hasher)
}

/// The channel into the mapper: producers on threads send with `blocking_send`.
pub(crate) fn to_mapper() -> (
    tokio::sync::mpsc::Sender<IdentityChunk>,
    tokio::sync::mpsc::Receiver<IdentityChunk>,
) {
    tokio::sync::mpsc::channel::<IdentityChunk>(CHUNKS_IN_FLIGHT)
}

/// Maps every chunk `source` yields (identities already hashed; outcomes already filled are
/// kept) and writes them in order. `tap` sees (and may amend) each chunk just before it is
/// written.
/// Returns the writer (parts not yet committed stay open). When the job is interrupted, the
/// chunks answered within the grace period are written and the rest dropped.
///
/// # Errors
/// A fatal client error, a write error, or a stage that panicked.
pub(crate) async fn map_and_write(
    conn: &Connection,
    job: &Job<'_>,
    settings: &MapSettings,
    source: tokio::sync::mpsc::Receiver<IdentityChunk>,
    mut writer: DatasetWriter,
    mstats: Arc<crate::mapper::MapperStats>,
    mut tap: impl FnMut(&mut IdentityChunk) + Send + 'static,
) -> Result<DatasetWriter, Error> {
    let (to_writer, mut writer_rx) =
        tokio::sync::mpsc::channel::<IdentityChunk>(MAPPED_CHUNKS_QUEUED);
    let writer_stage = Stage::spawn("writer", move || -> Result<DatasetWriter, Error> {
        while let Some(mut r) = writer_rx.blocking_recv() {
            tap(&mut r);
            writer.write(r)?;
        }
        Ok(writer)
    });
    let mapper = crate::mapper::Mapper::new(settings.batch_size, settings.cache_bytes, mstats);
    // The mapper's receiver is dropped when it returns, which unblocks the producers behind
    // it; the writer sees its channel close.
    let mapped = crate::mapper::run(
        Arc::clone(&conn.client),
        source,
        to_writer,
        mapper,
        job.interrupt().clone(),
    )
    .await;
    let written = writer_stage.finish().await?;
    mapped?;
    written
}

/// Runs an async job on a small runtime of its own (the CPU stages run on their own threads).
pub(crate) fn block_on<T>(
    f: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("euid-map-io")
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?
        .block_on(f)
}
