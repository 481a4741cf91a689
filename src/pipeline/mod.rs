//! Wires the stages together and owns the channel capacities.
//!
//! ```text
//! hash:  reader thread ──chunks──▶ hasher thread (rayon) ──resolved──▶ writer (caller's thread)
//! map:   reader thread ──chunks──▶ hasher thread (rayon) ──hashed──▶ mapper (tokio: dedupe,
//!        batch, client) ──resolved, in input order──▶ writer thread
//! ```
//!
//! Every channel is bounded, so peak memory ≈ Σ (capacity × chunk bytes), independent of the
//! input size. With 32 Ki-row chunks of two identities: about 3 MB per chunk before mapping
//! ([`CHUNKS_IN_FLIGHT`] = 2 on the reader's and the hasher's hop, 1 into the mapper, plus one
//! in each thread: ≈ 25 MB) and about 10 MB per mapped chunk (the mapper's reorder window of
//! at most 150,000 identities waiting for answers plus a chunk, [`MAPPED_CHUNKS_QUEUED`] = 1
//! for the writer, one being written: ≈ 50 MB; a `refresh`, whose window holds up to 600,000 identities while few wait for
//! answers, adds ≈ 60 MB), plus the mapper's table of hashes in flight (≈ 15 MB), the
//! writer's row group (≈ 15 MB), the requests in flight (24 × ≈ 1.5 MB) and the answer cache
//! (`--dedupe-memory`, 32 MiB). `scripts/bench_map.sh` measures the total: ≤ 256 MiB.

mod connection;
mod optout;

pub(crate) use connection::Connection;
pub use optout::{run_optout, OptoutConfig};

use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{JobConfig, MapConfig, MapSettings};
use crate::error::Error;
use crate::input::{self, Chunk, Position, ReadProgress, ResolvedColumns};
use crate::normalize;
use crate::output::{
    self, DatasetWriter, DirLock, DirState, JobDescription, Manifest, OutputKind, RunState, Schema,
};
use crate::progress::Progress;
use crate::record::{IdentityChunk, StatusCounts};

/// Chunks queued between two stages. Enough to keep each stage busy while its neighbour
/// works on one chunk; small enough to keep memory flat (4 cost `map` 30 MiB of peak RSS
/// and no speed).
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// Mapped chunks queued for the writer. A mapped chunk is the largest message (about 10 MB
/// per 32 Ki rows of two identities, answers included) and the writer keeps up easily.
pub const MAPPED_CHUNKS_QUEUED: usize = 1;

/// Waits for a stage thread without blocking the async runtime.
pub(crate) async fn join_thread<T: Send + 'static>(
    handle: std::thread::JoinHandle<T>,
    what: &str,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|_| Error::Internal(format!("the {what} thread panicked")))
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Output rows per status, over the whole dataset (including resumed parts).
    pub counts: StatusCounts,
    /// Input rows covered.
    pub input_rows: u64,
    /// Wall time of this invocation, seconds.
    pub elapsed_s: f64,
    /// The manifest as written.
    pub manifest: Manifest,
    /// `--resume` found the run already complete and changed nothing.
    pub already_complete: bool,
}

/// Prepared state shared by `hash` and `map`: resolved columns, the output directory locked
/// and checked or resumed, and where to start reading.
pub(crate) struct Prepared {
    pub columns: Vec<ResolvedColumns>,
    pub start: Position,
    pub writer: DatasetWriter,
    pub dir: DirState,
}

/// Locks the output directory, checks it against the job (or the job it holds, on
/// `--resume`) and lists its committed parts. The lock is taken before anything in the
/// directory is read or written, and lives in the writer until the run ends.
///
/// # Errors
/// Another run holds the directory, it holds another job or changed inputs, or I/O failed.
pub(crate) fn open_output(
    job: &JobConfig,
    description: &JobDescription,
    schema: Schema,
    sources: Vec<String>,
) -> Result<(DatasetWriter, DirState, Position), Error> {
    Schema::check_kept_names(&schema.kept_columns())?;
    if let Some(p) = job.out_dir.local_path() {
        if p.exists() && !p.is_dir() {
            return Err(output::OutputError::NotADirectory {
                path: job.out_dir.url(),
            }
            .into());
        }
    }
    let lock = DirLock::acquire(&job.out_dir, &description.command)?;
    let dir = output::prepare_dir(&job.out_dir, description, job.resume)?;
    let parts = output::committed_parts(&job.out_dir)?;
    let start = parts.last().map(|p| p.end).unwrap_or_default();
    if dir == DirState::Resume && !job.quiet {
        let rows: u64 = parts.iter().map(|p| p.input_rows).sum();
        match parts.last() {
            Some(p) => tracing::info!(
                part = p.part,
                input_rows = rows,
                "resuming after part {}, {rows} input rows committed",
                p.part
            ),
            None => tracing::info!("resuming from the start: no part was committed"),
        }
    }
    let mut writer = DatasetWriter::new(&job.out_dir, schema, sources, job.part_rows, &parts, lock);
    job.metrics.set_command(&description.command);
    writer.report_to(Arc::clone(&job.metrics));
    Ok((writer, dir, start))
}

/// Checks inputs, locks and prepares the output directory and finds the resume point.
pub(crate) fn prepare(
    job: &JobConfig,
    kind: OutputKind,
    command: &str,
    options: serde_json::Value,
) -> Result<Prepared, Error> {
    let columns = input::resolve_all(&job.inputs, &job.columns)?;
    let kept = columns
        .first()
        .map(|c| c.keep_types.clone())
        .unwrap_or_default();
    let description = job.describe(command, options)?;
    let sources = job.inputs.iter().map(|f| f.given.clone()).collect();
    let (writer, dir, start) = open_output(job, &description, Schema::new(kind, &kept), sources)?;
    Ok(Prepared {
        columns,
        start,
        writer,
        dir,
    })
}

/// The summary of a run that `--resume` found complete: nothing is read or rewritten.
pub(crate) fn already_complete(job: &JobConfig, started: Instant) -> Result<Summary, Error> {
    let manifest = Manifest::read(&job.out_dir)?;
    let parts = output::committed_parts(&job.out_dir)?;
    let mut counts = StatusCounts::default();
    parts.iter().for_each(|p| counts.merge(&p.counts));
    Ok(Summary {
        counts,
        input_rows: parts.iter().map(|p| p.input_rows).sum(),
        elapsed_s: started.elapsed().as_secs_f64(),
        manifest,
        already_complete: true,
    })
}

/// The last step of every job. A complete run writes the manifest and then `_SUCCESS`; an
/// interrupted one writes the manifest marked `interrupted` and no `_SUCCESS`, and fails
/// with [`Error::Interrupted`].
///
/// # Errors
/// Writing failed, or the run was interrupted.
pub(crate) fn publish(
    job: &JobConfig,
    writer: &DatasetWriter,
    mut manifest: Manifest,
    started: Instant,
) -> Result<Summary, Error> {
    if let Some(signal) = job.interrupt.signal() {
        manifest.status = RunState::Interrupted;
        output::write_json(&job.out_dir, output::MANIFEST_FILE, &manifest)?;
        return Err(Error::Interrupted { signal });
    }
    writer.check_lock()?;
    manifest.publish(&job.out_dir)?;
    Ok(Summary {
        counts: writer.totals.clone(),
        input_rows: writer.input_rows,
        elapsed_s: started.elapsed().as_secs_f64(),
        manifest,
        already_complete: false,
    })
}

/// Spawns the reader and hasher threads; returns the receiver of hashed chunks.
pub(crate) fn spawn_read_and_hash(
    job: &JobConfig,
    columns: &[ResolvedColumns],
    start: Position,
    progress: Arc<ReadProgress>,
) -> (
    std::sync::mpsc::Receiver<IdentityChunk>,
    std::thread::JoinHandle<Result<(), Error>>,
    std::thread::JoinHandle<()>,
) {
    let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let (hashed_tx, hashed_rx) = sync_channel::<IdentityChunk>(CHUNKS_IN_FLIGHT);
    let inputs = job.inputs.clone();
    let cols = columns.to_vec();
    let interrupt = job.interrupt.clone();
    let reader = std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || {
            // An interrupt stops reading between chunks; what was read is still mapped.
            input::read_all(&inputs, &cols, start, &progress, &mut |c| {
                !interrupt.is_triggered() && chunk_tx.send(c).is_ok()
            })?;
            Ok(())
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    let cols = columns.to_vec();
    let hasher = std::thread::Builder::new()
        .name("hasher".into())
        .spawn(move || {
            for mut chunk in chunk_rx {
                let ids = normalize::chunk(&chunk, &cols[chunk.file]);
                chunk.identities.clear(); // raw cells are not needed downstream
                if hashed_tx
                    .send(IdentityChunk {
                        origin: None,
                        marks: None,
                        chunk,
                        ids,
                        outcomes: None,
                    })
                    .is_err()
                {
                    break;
                }
            }
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    (hashed_rx, reader, hasher)
}

/// Runs `euid-map hash`: read → hash → write the dataset.
///
/// # Errors
/// A run-level failure; committed parts stay for `--resume`.
pub fn run_hash(job: &JobConfig) -> Result<Summary, Error> {
    let started = Instant::now();
    let Prepared {
        columns,
        start,
        mut writer,
        dir,
    } = prepare(job, OutputKind::Hash, "hash", serde_json::json!({}))?;
    if dir == DirState::Complete {
        return already_complete(job, started);
    }
    let read_progress = Arc::new(ReadProgress::default());
    job.metrics.attach_reader(Arc::clone(&read_progress));
    let total_bytes: u64 = job.inputs.iter().map(|f| f.size()).sum();
    let progress = Progress::start(job.quiet, total_bytes, Arc::clone(&read_progress), None);
    let (rx, reader, hasher) = spawn_read_and_hash(job, &columns, start, read_progress);
    let mut write_result = Ok(());
    for resolved in rx.iter() {
        if let Err(e) = writer.write(resolved) {
            write_result = Err(e);
            break;
        }
    }
    drop(rx);
    let read_result = reader
        .join()
        .map_err(|_| Error::Internal("the reader thread panicked".into()))?;
    hasher
        .join()
        .map_err(|_| Error::Internal("the hasher thread panicked".into()))?;
    progress.finish();
    write_result?;
    read_result?;
    writer.finish()?;
    let manifest = Manifest::new(job, "hash", &writer, &columns, started);
    publish(job, &writer, manifest, started)
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

/// Runs `euid-map map`: read → hash → dedupe → batch → map → write.
///
/// # Errors
/// A run-level failure (bad input, authentication refused, clock skew, output I/O); parts
/// committed before it stay for `--resume`, and `_SUCCESS` is not written.
pub fn run_map(cfg: &MapConfig) -> Result<Summary, Error> {
    block_on(run_map_async(cfg))
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
    job: &JobConfig,
    settings: &MapSettings,
    source: std::sync::mpsc::Receiver<IdentityChunk>,
    mut writer: DatasetWriter,
    mstats: Arc<crate::mapper::MapperStats>,
    mut tap: impl FnMut(&mut IdentityChunk) + Send + 'static,
) -> Result<DatasetWriter, Error> {
    // The bridge's own queue is the channel before it: one more here is enough.
    let (to_mapper, mapper_rx) = tokio::sync::mpsc::channel::<IdentityChunk>(1);
    let bridge = std::thread::Builder::new()
        .name("bridge".into())
        .spawn(move || {
            for r in source {
                if to_mapper.blocking_send(r).is_err() {
                    break;
                }
            }
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    let (to_writer, mut writer_rx) =
        tokio::sync::mpsc::channel::<IdentityChunk>(MAPPED_CHUNKS_QUEUED);
    let writer_thread = std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || -> Result<DatasetWriter, Error> {
            while let Some(mut r) = writer_rx.blocking_recv() {
                tap(&mut r);
                writer.write(r)?;
            }
            Ok(writer)
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    let mapper = crate::mapper::Mapper::new(settings.batch_size, settings.cache_entries(), mstats);
    let mapped = crate::mapper::run(
        Arc::clone(&conn.client),
        mapper_rx,
        to_writer,
        mapper,
        job.interrupt.clone(),
    )
    .await;
    // The mapper's receiver is dropped with it, which unblocks the bridge and the producers
    // behind it; the writer sees its channel close.
    let bridged = join_thread(bridge, "bridge").await;
    let written = join_thread(writer_thread, "writer").await?;
    mapped?;
    bridged?;
    written
}

async fn run_map_async(cfg: &MapConfig) -> Result<Summary, Error> {
    let started = Instant::now();
    let job = &cfg.job;
    let settings = &cfg.mapping;
    // The environment and the API are part of the job (integ and prod ids must never mix,
    // nor v2 parts with v3 ones); the URL is not, so a run can resume against a restarted
    // operator or another host of the same env.
    let Prepared {
        columns,
        start,
        writer,
        dir,
    } = prepare(
        job,
        settings.output_kind(),
        "map",
        serde_json::json!({"env": settings.env, "api": format!("{:?}", settings.client.api)}),
    )?;
    if dir == DirState::Complete {
        return already_complete(job, started);
    }
    let conn = Connection::open(settings).await?;
    let mstats = Arc::new(crate::mapper::MapperStats::default());
    let read_progress = Arc::new(ReadProgress::default());
    conn.attach_metrics(job, &mstats, &read_progress);
    let total_bytes: u64 = job.inputs.iter().map(|f| f.size()).sum();
    let progress = Progress::start(
        job.quiet,
        total_bytes,
        Arc::clone(&read_progress),
        Some(conn.progress_extra(&mstats)),
    );
    let (hashed_rx, reader, hasher) = spawn_read_and_hash(job, &columns, start, read_progress);
    let written = map_and_write(
        &conn,
        job,
        settings,
        hashed_rx,
        writer,
        Arc::clone(&mstats),
        |_| {},
    )
    .await;
    let hashed = join_thread(hasher, "hasher").await;
    let read = join_thread(reader, "reader").await;
    progress.finish();
    let mut writer = written?;
    hashed?;
    read??;
    writer.finish()?;
    let mut manifest = Manifest::new(job, "map", &writer, &columns, started);
    conn.annotate(&mut manifest, settings, &mstats);
    conn.close().await;
    publish(job, &writer, manifest, started)
}
