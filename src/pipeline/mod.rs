//! The jobs: `run_hash` and `run_map` here, on the skeleton every command runs the same way
//! (`job.rs`: open, stages, publish), with the stage threads and channels of `stages.rs`
//! (whose capacities are set here) and, for `map --dedupe exact`, `exact.rs`.
//!
//! ```text
//! hash:  reader thread ──chunks──▶ hasher thread (rayon) ──resolved──▶ writer (caller's thread)
//! map:   reader thread ──chunks──▶ hasher thread (rayon) ──hashed──▶ mapper (tokio: dedupe,
//!        batch, client) ──resolved, in input order──▶ writer thread
//! ```
//!
//! Every channel is bounded, so peak memory ≈ Σ (capacity × chunk bytes), independent of the
//! input size. With 32 Ki-row chunks of two identities: about 3 MB per chunk before mapping
//! ([`CHUNKS_IN_FLIGHT`] = 2 on the reader's hop and on the hasher's, which hands its chunks
//! straight to the mapper's channel, plus one in each thread: ≈ 20 MB) and about 10 MB per
//! mapped chunk (the mapper's reorder window of at most 150,000 identities waiting for answers
//! plus a chunk, [`MAPPED_CHUNKS_QUEUED`] = 1 for the writer, one being written: ≈ 50 MB; a
//! `refresh`, whose window holds up to 600,000 identities while few wait for answers, adds
//! ≈ 60 MB), plus the mapper's table of hashes in flight (≈ 15 MB), the
//! writer's row group (≈ 15 MB), the requests in flight (24 × ≈ 1.5 MB) and the answer cache
//! (`--dedupe-memory`, 32 MiB). `scripts/bench_map.sh` measures the total: ≤ 256 MiB.

mod connection;
mod exact;
mod job;
mod optout;
mod stages;

pub use connection::start_embedded;
pub(crate) use connection::Connection;
pub use exact::SCRATCH_BYTES_PER_IDENTITY;
pub(crate) use job::{Job, Locked, Opened};
pub use job::{RunHandles, Summary};
pub use optout::{run_optout, OptoutConfig};
pub(crate) use stages::{
    block_on, map_and_write, read_and_hash, read_and_hash_sync, to_mapper, Stage,
};

use std::sync::Arc;

use crate::config::{DedupeMode, JobConfig, MapConfig};
use crate::error::Error;
use crate::input::ReadProgress;
use crate::output::{DirState, OutputKind};

/// Chunks queued between two stages. Enough to keep each stage busy while its neighbour
/// works on one chunk; small enough to keep memory flat (4 cost `map` 30 MiB of peak RSS
/// and no speed).
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// Mapped chunks queued for the writer. A mapped chunk is the largest message (about 10 MB
/// per 32 Ki rows of two identities, answers included) and the writer keeps up easily.
pub const MAPPED_CHUNKS_QUEUED: usize = 1;

/// Runs `euid-map hash`: read → hash → write the dataset.
///
/// # Errors
/// A run-level failure; committed parts stay for `--resume`.
pub fn run_hash(cfg: &JobConfig, run: &RunHandles) -> Result<Summary, Error> {
    let job = Job::new(cfg, run);
    let (columns, opened) = job.prepare(OutputKind::Hash, "hash", serde_json::json!({}))?;
    let Opened {
        mut writer,
        dir,
        start,
    } = opened;
    if dir == DirState::Complete {
        return job.already_complete();
    }
    let read_progress = Arc::new(ReadProgress::default());
    let progress = job.progress(&read_progress, None);
    let (rx, reader, hasher) = read_and_hash_sync(&job, &columns, start, read_progress);
    let mut write_result = Ok(());
    for resolved in rx.iter() {
        if let Err(e) = writer.write(resolved) {
            write_result = Err(e);
            break;
        }
    }
    drop(rx);
    let read_result = reader.join()?;
    hasher.join()?;
    progress.finish();
    write_result?;
    read_result?;
    writer.finish()?;
    let manifest = job.manifest("hash", &writer, &columns);
    job.publish(&writer, manifest)
}

/// The options that make a `map` job (what `--resume` must share): the environment and the
/// API (integ and prod ids must never mix, nor v2 parts with v3 ones), and the lookup
/// table; the URL is not, so a run can resume against a restarted operator or another host
/// of the same env.
fn map_options(settings: &crate::config::MapSettings) -> serde_json::Value {
    let mut o =
        serde_json::json!({"env": settings.env, "api": format!("{:?}", settings.client.api)});
    // Written only when set, so that directories from before it existed still resume.
    if settings.distinct {
        o["distinct"] = true.into();
    }
    o
}

/// Runs `euid-map map`: read → hash → dedupe → batch → map → write.
///
/// # Errors
/// A run-level failure (bad input, authentication refused, clock skew, output I/O); parts
/// committed before it stay for `--resume`, and `_SUCCESS` is not written.
pub fn run_map(cfg: &MapConfig, run: &RunHandles) -> Result<Summary, Error> {
    block_on(run_map_async(cfg, run))
}

async fn run_map_async(cfg: &MapConfig, run: &RunHandles) -> Result<Summary, Error> {
    let settings = &cfg.mapping;
    // The lookup table is one part, committed when complete: its rows come partition by
    // partition, so a part boundary would not be a point a resumed run could continue from.
    let distinct_job;
    let job_cfg = if settings.distinct {
        distinct_job = JobConfig {
            part_rows: u64::MAX,
            ..cfg.job.clone()
        };
        &distinct_job
    } else {
        &cfg.job
    };
    let job = Job::new(job_cfg, run);
    // The environment and the API are part of the job (integ and prod ids must never mix,
    // nor v2 parts with v3 ones); the URL is not, so a run can resume against a restarted
    // operator or another host of the same env.
    let (columns, opened) = job.prepare(settings.output_kind(), "map", map_options(settings))?;
    let Opened { writer, dir, start } = opened;
    if dir == DirState::Complete {
        return job.already_complete();
    }
    if settings.distinct && start != crate::input::Position::default() {
        // The table's one part is committed only when complete, so this is a run that
        // failed after the commit (writing the manifest): its part is whole.
        return Err(crate::output::OutputError::CannotResume {
            path: cfg.job.out_dir.url(),
            why: "the lookup table's part is committed but the run that wrote it did not finish; remove the directory and run again".into(),
        }
        .into());
    }
    let conn = Connection::open(settings).await?;
    let mstats = Arc::new(crate::mapper::MapperStats::default());
    conn.attach_metrics(&job, &mstats);
    let input_bytes = cfg.job.inputs.iter().map(|f| f.size()).sum();
    if let (DedupeMode::Exact, guess) = settings.dedupe_for(input_bytes) {
        let scratch = crate::spill::scratch_dir(
            &cfg.job.out_dir,
            settings.tmp_dir.as_deref(),
            ".dedupe.tmp",
            "dedupe",
        );
        let (mut writer, report) = exact::map_exact(
            &conn,
            &job,
            settings,
            &columns,
            start,
            writer,
            Arc::clone(&mstats),
            scratch,
            guess,
            settings.distinct,
        )
        .await?;
        exact::note_deduplicated(&mstats, report.valid_identities);
        if report.interrupted {
            // A partial lookup table is never committed: dropping the writer removes its
            // open part, and --resume maps the table again.
            let manifest = job.manifest("map", &writer, &columns);
            let published = job.publish_interrupted(manifest); // still holding the lock
            drop(writer);
            conn.close().await;
            return Err(published.expect_err("interrupted"));
        }
        writer.finish()?;
        let mut manifest = job.manifest("map", &writer, &columns);
        conn.annotate(&mut manifest, settings, &mstats);
        // Every distinct identity of the run was sent once: the count is exact.
        manifest.unique_hashes_sent = manifest.hashes_sent;
        manifest.dedupe = Some("exact".into());
        manifest.dedupe_scratch_bytes = Some(report.scratch_bytes);
        manifest.dedupe_units = Some(report.units);
        manifest.dedupe_peak_identities = Some(report.peak_identities);
        manifest.dedupe_sent_early = Some(report.sent_early);
        if settings.distinct {
            // The table holds each distinct identity once; the counts are the input's.
            manifest.input_rows = report.input_rows;
            manifest.counts = crate::output::counts_map(&report.input_counts);
            manifest.distinct = Some(true);
        }
        conn.close().await;
        let mut summary = job.publish(&writer, manifest)?;
        if settings.distinct {
            // The summary says what the manifest says: the input's rows and statuses.
            summary.counts = report.input_counts.clone();
            summary.input_rows = report.input_rows;
        }
        return Ok(summary);
    }
    let read_progress = Arc::new(ReadProgress::default());
    let progress = job.progress(&read_progress, Some(conn.progress_extra(&mstats)));
    let (tx, rx) = to_mapper();
    let (reader, hasher) = read_and_hash(&job, &columns, start, read_progress, move |c| {
        tx.blocking_send(c).is_ok()
    });
    let written = map_and_write(
        &conn,
        &job,
        settings,
        rx,
        writer,
        Arc::clone(&mstats),
        |_| {},
    )
    .await;
    let hashed = hasher.finish().await;
    let read = reader.finish().await;
    progress.finish();
    let mut writer = written?;
    hashed?;
    read??;
    writer.finish()?;
    let mut manifest = job.manifest("map", &writer, &columns);
    conn.annotate(&mut manifest, settings, &mstats);
    manifest.dedupe = Some("window".into());
    let resent = mstats.resent_estimate();
    manifest.resent_estimate = Some(resent);
    let sent = manifest.hashes_sent.unwrap_or(0);
    // Worth a word when a twentieth of the requests went to identities already sent.
    if resent >= 10_000 && resent * 20 >= sent {
        tracing::warn!(
            resent,
            sent,
            "about {resent} of the {sent} identities sent were sent more than once: their repeats are further apart than the answer cache remembers (--dedupe-memory). --dedupe exact sends each distinct identity once (two reads of the input)"
        );
    }
    conn.close().await;
    job.publish(&writer, manifest)
}
