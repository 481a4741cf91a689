//! `map --dedupe exact`: each distinct (identity type, hash) is sent exactly once per run,
//! however far apart its repeats are in the input, with memory bounded as in a window run.
//!
//! ```text
//! pass 1 (spill):   read → hash → (ordinal, type, hash) of each valid identity → h-P files
//!                   └→ identities a filter proves new → mapper, at once → e-P files
//! mapping:          per partition, its distinct identities not sent yet → mapper → with the
//!                   early answers, the partition's answers, by ordinal → a-P files
//! pass 2 (join):    read → hash again → each identity's answer, merged back by ordinal
//!                   (checked against its type and hash) → writer, in input order
//! ```
//!
//! Pass 1 sends every identity it has certainly not seen before (`filter.rs`), so the
//! network works while the input is read: only repeats (and the filter's rare false
//! positives) wait for the mapping pass, which sends the few of them no earlier occurrence
//! was sent for.
//!
//! The output is the window run's, row for row; only fewer requests are sent. The scratch
//! folder (about [`SCRATCH_BYTES_PER_IDENTITY`] bytes per valid identity at its peak) is
//! private (0700), beside the output or under `--tmp-dir`, and removed at the end, also
//! after a failure; one a killed run left is removed by the next. `--resume` starts all
//! three passes at the first row no committed part holds.

mod filter;
mod mapping;
mod pass1;
mod split;

use mapping::{keys_chunk, map_partitions};
use pass1::{early_stage, spill_stage};

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::job::Job;
use super::stages::{read_and_hash_sync, to_mapper, Stage};
use super::Connection;
use crate::config::MapSettings;
use crate::error::Error;
use crate::input::{InputError, Position, ReadProgress, ResolvedColumns};
use crate::mapper::{Key, MapperStats};
use crate::output::DatasetWriter;
use crate::record::{
    DigestMap, Hashed, Identity, IdentityChunk, IdentityHash, IdentityKind, MapOutcome, RowStatus,
    StatusCounts,
};
use crate::spill::{finish, io, next_frame, put, Merge, Ordered, Partitions, Scratch};

/// Scratch bytes per valid identity at the peak (pass 1's record, about 42 bytes, and the
/// mapping's answer, about 110 with a raw EUID and its refresh time, side by side until the
/// run ends). `map --help` and README say so.
pub const SCRATCH_BYTES_PER_IDENTITY: u64 = 160;

/// Distinct identities of one unit held in memory while it is mapped (with their answers:
/// about 150 bytes each). Two whole partitions' answers are written at once while the next
/// is gathered; a split partition's sub-partitions one at a time. A partition with more
/// pass-1 records than this (the partitions are capped at 512, so above about 100M
/// identities) is mapped in sub-partitions that hold no more (`split.rs`).
const PARTITION_IDENTITIES: u64 = 200_000;

/// The mapping pass's budget: distinct identities held at once, and the most partitions
/// pass 1 spills into ([`PARTITION_IDENTITIES`] and the open-file limit). The test hook
/// `EUID_MAP_EXACT_BUDGET=IDENTITIES,PARTITIONS` sets both small, so that a test input
/// stands in for billions of identities; unset in every real run.
fn budget() -> (u64, usize) {
    let hook = std::env::var("EUID_MAP_EXACT_BUDGET").ok();
    let mut it = hook.as_deref().unwrap_or("").split(',');
    let identities = it.next().and_then(|v| v.parse().ok());
    let partitions = it.next().and_then(|v| v.parse().ok());
    (
        identities.unwrap_or(PARTITION_IDENTITIES).max(1),
        partitions.unwrap_or(usize::MAX).max(1),
    )
}

/// Distinct identities per chunk handed to the mapper.
const MAP_CHUNK: usize = crate::input::CHUNK_ROWS;

/// Test hook for the kill -9 tests: `EUID_MAP_ABORT_AT=spill|mapping|join` aborts the
/// process (no cleanup, as kill -9) once that pass has done part of its work. Unset in
/// every real run.
fn abort_at(point: &str) {
    if std::env::var_os("EUID_MAP_ABORT_AT").is_some_and(|p| p == point) {
        std::process::abort();
    }
}

/// A valid identity seen by pass 1.
#[derive(Serialize, Deserialize)]
struct Seen {
    ordinal: u64,
    kind: IdentityKind,
    hash: IdentityHash,
}

/// The answer for an identity pass 1 sent as soon as it saw it (by partition, in the order
/// the answers came).
#[derive(Serialize, Deserialize)]
struct Early {
    kind: IdentityKind,
    hash: IdentityHash,
    outcome: Option<MapOutcome>,
}

/// The answer for one identity of the input, by its ordinal.
#[derive(Serialize, Deserialize)]
struct Answer {
    ordinal: u64,
    kind: IdentityKind,
    hash: IdentityHash,
    outcome: Option<MapOutcome>,
}

impl Ordered for Answer {
    fn ordinal(&self) -> u64 {
        self.ordinal
    }
}

/// What an exact run reports beside the writer.
#[derive(Debug, Default, Clone)]
pub(crate) struct ExactReport {
    /// Scratch bytes at the peak (about: the larger of the two sides).
    pub scratch_bytes: u64,
    /// Valid identities read (from the resume point on).
    pub valid_identities: u64,
    /// Input rows read.
    pub input_rows: u64,
    /// `--distinct`: the run was interrupted while the table was being written, so its part
    /// must not be committed (it would be a partial table).
    pub interrupted: bool,
    /// `--distinct`: the input's identities by status (each repeat counted, invalid and
    /// missing ones included), as the lookup table answers them.
    pub input_counts: StatusCounts,
    /// Units of the mapping pass (partitions, or their sub-partitions).
    pub units: u64,
    /// Most distinct identities one unit held in memory.
    pub peak_identities: u64,
    /// Identities pass 1 sent while it read (the rest of those sent waited for it to end).
    pub sent_early: u64,
}

/// The partition of a hash. The digest's first bytes key the mapper's tables; these are
/// independent of them.
fn partition_of(hash: &IdentityHash, n: usize) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash.0[8..16]);
    (u64::from_le_bytes(b) % n as u64) as usize
}

/// Partitions for about `identities` identities, `budget` of them in each: at most half
/// the open-file room, as pass 1 writes two sides at once (the records and the early
/// answers).
fn partitions_for(identities: u64, (budget, most): (u64, usize)) -> usize {
    let wanted = usize::try_from(identities.div_ceil(budget)).unwrap_or(usize::MAX);
    crate::spill::partitions_for_sides(wanted, 2).min(most)
}

fn changed(path: &str, why: &str) -> Error {
    InputError::ChangedBetweenReads {
        path: path.to_string(),
        why: why.to_string(),
    }
    .into()
}

/// Runs the three passes and returns the writer (parts not yet committed stay open); when the
/// run is interrupted it returns early with what was committed.
///
/// # Errors
/// A fatal client error, an input that changed between its reads, scratch or output I/O.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn map_exact(
    conn: &Connection,
    job: &Job<'_>,
    settings: &MapSettings,
    columns: &[ResolvedColumns],
    start: Position,
    writer: DatasetWriter,
    mstats: Arc<MapperStats>,
    scratch_dir: std::path::PathBuf,
    estimated_identities: u64,
    distinct: bool,
) -> Result<(DatasetWriter, ExactReport), Error> {
    let scratch = Scratch::create(scratch_dir)?;
    let budget = budget();
    let parts = Arc::new(Partitions {
        dir: scratch.path().to_path_buf(),
        n: partitions_for(estimated_identities, budget),
    });
    let mut report = ExactReport::default();
    let began = std::time::Instant::now();
    if !job.cfg.quiet {
        tracing::info!(
            partitions = parts.n,
            scratch = %parts.dir.display(),
            "exact dedupe: pass 1 of 2 spills the hashed identities, then each distinct one is mapped once"
        );
    }

    // Pass 1: spill every valid identity, by partition, in input order; send each one the
    // filter proves new at once, and keep its answer for the mapping pass.
    let read = Arc::new(ReadProgress::default());
    let progress = job.progress(&read, Some(Box::new(|| ", pass 1 of 2 (dedupe)".into())));
    let (rx, reader, hasher) = read_and_hash_sync(job, columns, start, read);
    let (early_tx, early_rx) = to_mapper();
    let spill = spill_stage(Arc::clone(&parts), rx, early_tx, estimated_identities);
    let (to_early, early_answers) = tokio::sync::mpsc::channel::<IdentityChunk>(1);
    let early = early_stage(Arc::clone(&parts), early_answers);
    let mapper = crate::mapper::Mapper::new(settings.batch_size, 0, Arc::clone(&mstats));
    let mapped = crate::mapper::run(
        Arc::clone(&conn.client),
        early_rx,
        to_early,
        mapper,
        job.run.interrupt.clone(),
    )
    .await;
    let spilled = spill.finish().await;
    let hashed = hasher.finish().await;
    let read = reader.finish().await;
    let answered = early.finish().await;
    progress.finish();
    mapped?;
    answered??;
    let spilled = spilled??;
    hashed?;
    read??;
    if job.run.interrupt.is_triggered() {
        // Pass 1 sends too: a lookup table stopped here is as partial as one stopped later.
        report.interrupted = distinct;
        return Ok((writer, report));
    }
    if spilled.cut_short {
        return Err(Error::Internal(
            "exact dedupe: the mapping of pass 1 stopped before its input ended".into(),
        ));
    }
    tracing::debug!(
        secs = began.elapsed().as_secs_f32(),
        "exact dedupe: pass 1 done"
    );
    let counts = spilled.counts;
    report.valid_identities = spilled.valid;
    report.input_rows = spilled.rows;
    report.input_counts = spilled.local;
    report.sent_early = spilled.sent_early;
    report.scratch_bytes = dir_bytes(&parts.dir);

    // Mapping: each partition's distinct identities, once; `--distinct` writes them.
    let (kept, lookup) = if distinct {
        (None, Some(writer))
    } else {
        (Some(writer), None)
    };
    // Split by the distinct identities a unit will hold, not its records (a partition of
    // repeats needs no split).
    let distinct: Vec<u64> = counts
        .iter()
        .zip(&spilled.early)
        .map(|(&n, &e)| filter::distinct_estimate(n, e, spilled.false_positives))
        .collect();
    let units = split::plan(&distinct, budget.0);
    report.units = units.len() as u64;
    let (returned, counts, peak) = map_partitions(
        conn,
        job,
        settings,
        &parts,
        (units, spilled.early),
        Arc::clone(&mstats),
        lookup,
    )
    .await?;
    report.peak_identities = peak;
    tracing::debug!(
        secs = began.elapsed().as_secs_f32(),
        "exact dedupe: mapping pass done"
    );
    report.scratch_bytes = report.scratch_bytes.max(dir_bytes(&parts.dir));
    if let Some(w) = returned {
        report.input_counts.merge(&counts);
        report.interrupted = job.run.interrupt.is_triggered();
        drop(scratch);
        return Ok((w, report));
    }
    let mut writer = kept.expect("the writer stays here unless --distinct");
    if job.run.interrupt.is_triggered() {
        return Ok((writer, report));
    }

    // Pass 2: the answers back in input order.
    let read = Arc::new(ReadProgress::default());
    let progress = job.progress(&read, Some(Box::new(|| ", pass 2 of 2 (writing)".into())));
    let (rx, reader, hasher) = read_and_hash_sync(job, columns, start, read);
    let sources: Vec<String> = job.sources();
    let join_parts = Arc::clone(&parts);
    let interrupt = job.run.interrupt.clone();
    // The merge and the Parquet encoding each take about half of this pass's CPU: on
    // threads of their own they overlap (the channel holds one chunk, memory stays flat).
    let (to_writer, from_join) = std::sync::mpsc::sync_channel::<IdentityChunk>(1);
    let join = Stage::spawn("join", move || -> Result<(), Error> {
        let mut merge = Merge::<Answer>::open(&join_parts, "a", 0)?;
        let mut ordinal = 0u64;
        for mut chunk in rx {
            let mut outcomes = Vec::with_capacity(chunk.ids.len());
            for (i, id) in chunk.ids.iter().enumerate() {
                let outcome = match id.hashed {
                    Hashed::Ok(hash) => match merge.take(ordinal)? {
                        Some(a) if a.kind == id.kind && a.hash == hash && merge.orphans == 0 => {
                            a.outcome
                        }
                        _ => {
                            let row = chunk.first_row + (i / chunk.per_row.max(1)) as u64;
                            return Err(changed(
                                &sources[chunk.file],
                                &format!("row {row} is not what the first read saw"),
                            ));
                        }
                    },
                    _ => None,
                };
                outcomes.push(outcome);
                ordinal += 1;
            }
            chunk.outcomes = Some(outcomes);
            if to_writer.send(chunk).is_err() {
                return Ok(()); // the writer failed: its error is the run's
            }
        }
        // An interrupt stops the reader between chunks: the answers left are not a changed
        // input, and --resume continues after the committed parts.
        if interrupt.is_triggered() {
            return Ok(());
        }
        if merge.any_left()? {
            return Err(changed(
                &sources.join(", "),
                "it has fewer rows than in the first read",
            ));
        }
        Ok(())
    });
    let write = Stage::spawn("writer", move || -> Result<DatasetWriter, Error> {
        for (written, chunk) in from_join.into_iter().enumerate() {
            writer.write(chunk)?;
            if written == 1 {
                abort_at("join"); // past a part boundary: a committed part to resume after
            }
        }
        Ok(writer)
    });
    let joined = join.finish().await;
    let written = write.finish().await;
    let hashed = hasher.finish().await;
    let read = reader.finish().await;
    progress.finish();
    let writer = written??;
    joined??;
    hashed?;
    read??;
    tracing::debug!(
        secs = began.elapsed().as_secs_f32(),
        "exact dedupe: pass 2 done"
    );
    drop(scratch);
    Ok((writer, report))
}

/// Bytes of the files in `dir` and its folders (a split partition's).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
                .map(|(p, m)| if m.is_dir() { dir_bytes(&p) } else { m.len() })
                .sum()
        })
        .unwrap_or(0)
}

/// Counts for the manifest: the identities answered without a request.
pub(crate) fn note_deduplicated(mstats: &MapperStats, valid_identities: u64) {
    let sent = mstats.unique_sent.load(Ordering::Relaxed);
    mstats
        .deduplicated
        .store(valid_identities.saturating_sub(sent), Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
