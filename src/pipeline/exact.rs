//! `map --dedupe exact`: each distinct (identity type, hash) is sent exactly once per run,
//! however far apart its repeats are in the input, with memory bounded as in a window run.
//!
//! ```text
//! pass 1 (spill):   read → hash → (ordinal, type, hash) of each valid identity → h-P files
//! mapping:          per partition, its distinct identities → mapper (batches, client) → the
//!                   partition's answers, by ordinal → a-P files
//! pass 2 (join):    read → hash again → each identity's answer, merged back by ordinal
//!                   (checked against its type and hash) → writer, in input order
//! ```
//!
//! The output is the window run's, row for row; only fewer requests are sent. The scratch
//! folder (about [`SCRATCH_BYTES_PER_IDENTITY`] bytes per valid identity at its peak) is
//! private (0700), beside the output or under `--tmp-dir`, and removed at the end, also
//! after a failure; one a killed run left is removed by the next. `--resume` starts all
//! three passes at the first row no committed part holds.

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

/// Distinct identities of one partition held in memory while it is mapped (with their
/// answers: about 150 bytes each).
const PARTITION_IDENTITIES: u64 = 200_000;

/// Most partitions (files open at once per side).
const MAX_PARTITIONS: u64 = 1024;

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
    /// `--distinct`: the input's identities by status (each repeat counted, invalid and
    /// missing ones included), as the lookup table answers them.
    pub input_counts: StatusCounts,
}

/// The partition of a hash. The digest's first bytes key the mapper's tables; these are
/// independent of them.
fn partition_of(hash: &IdentityHash, n: usize) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash.0[8..16]);
    (u64::from_le_bytes(b) % n as u64) as usize
}

/// Partitions for about `identities` identities.
fn partitions_for(identities: u64) -> usize {
    identities
        .div_ceil(PARTITION_IDENTITIES)
        .clamp(1, MAX_PARTITIONS) as usize
}

fn changed(path: &str, why: &str) -> Error {
    InputError::ChangedBetweenReads {
        path: path.to_string(),
        why: why.to_string(),
    }
    .into()
}

/// Runs the three passes and returns the writer (parts not yet committed stay open), or
/// `None` when the run was interrupted before pass 2 wrote anything.
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
    let parts = Arc::new(Partitions {
        dir: scratch.path().to_path_buf(),
        n: partitions_for(estimated_identities),
    });
    let mut report = ExactReport::default();
    if !job.cfg.quiet {
        tracing::info!(
            partitions = parts.n,
            scratch = %parts.dir.display(),
            "exact dedupe: pass 1 of 2 spills the hashed identities, then each distinct one is mapped once"
        );
    }

    // Pass 1: spill every valid identity, by partition, in input order.
    let read = Arc::new(ReadProgress::default());
    let progress = job.progress(&read, Some(Box::new(|| ", pass 1 of 2 (dedupe)".into())));
    let (rx, reader, hasher) = read_and_hash_sync(job, columns, start, read);
    let spill_parts = Arc::clone(&parts);
    let spill = Stage::spawn(
        "spill",
        move || -> Result<(u64, u64, StatusCounts), Error> {
            let mut ws = spill_parts.writers("h")?;
            let (mut ordinal, mut valid, mut rows) = (0u64, 0u64, 0u64);
            let mut local = StatusCounts::default();
            for chunk in rx {
                rows += chunk.len as u64;
                for id in &chunk.ids {
                    if !matches!(id.hashed, Hashed::Ok(_)) {
                        local.add(RowStatus::decide(&id.hashed, None, true).0);
                    }
                    if let Hashed::Ok(hash) = id.hashed {
                        let p = partition_of(&hash, spill_parts.n);
                        let seen = Seen {
                            ordinal,
                            kind: id.kind,
                            hash,
                        };
                        put(&mut ws[p], &seen).map_err(io(&spill_parts.dir))?;
                        valid += 1;
                    }
                    ordinal += 1;
                }
                abort_at("spill");
            }
            finish(ws, &spill_parts.dir)?;
            Ok((valid, rows, local))
        },
    );
    let spilled = spill.finish().await;
    let hashed = hasher.finish().await;
    let read = reader.finish().await;
    progress.finish();
    (
        report.valid_identities,
        report.input_rows,
        report.input_counts,
    ) = spilled??;
    hashed?;
    read??;
    if job.run.interrupt.is_triggered() {
        return Ok((writer, report));
    }
    report.scratch_bytes = dir_bytes(&parts.dir);

    // Mapping: each partition's distinct identities, once; `--distinct` writes them.
    let (kept, lookup) = if distinct {
        (None, Some(writer))
    } else {
        (Some(writer), None)
    };
    let (returned, counts) =
        map_partitions(conn, job, settings, &parts, Arc::clone(&mstats), lookup).await?;
    report.scratch_bytes = report.scratch_bytes.max(dir_bytes(&parts.dir));
    if let Some(w) = returned {
        report.input_counts.merge(&counts);
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
    let join = Stage::spawn("join", move || -> Result<DatasetWriter, Error> {
        let mut merge = Merge::<Answer>::open(&join_parts, "a", 0)?;
        let (mut ordinal, mut written) = (0u64, 0u32);
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
            writer.write(chunk)?;
            written += 1;
            if written == 2 {
                abort_at("join"); // past a part boundary: a committed part to resume after
            }
        }
        if merge.any_left()? {
            return Err(changed(
                &sources.join(", "),
                "it has fewer rows than in the first read",
            ));
        }
        Ok(writer)
    });
    let written = join.finish().await;
    let hashed = hasher.finish().await;
    let read = reader.finish().await;
    progress.finish();
    let writer = written??;
    hashed?;
    read??;
    drop(scratch);
    Ok((writer, report))
}

/// Bytes of the files in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Maps the distinct identities of every partition through one mapper run (so requests
/// stay in flight across partition boundaries) and writes each partition's answers, in
/// ordinal order, as soon as all of its identities are answered.
async fn map_partitions(
    conn: &Connection,
    job: &Job<'_>,
    settings: &MapSettings,
    parts: &Arc<Partitions>,
    mstats: Arc<MapperStats>,
    mut lookup: Option<DatasetWriter>,
) -> Result<(Option<DatasetWriter>, StatusCounts), Error> {
    let (tx, rx) = to_mapper();
    let producer_parts = Arc::clone(parts);
    let interrupt = job.run.interrupt.clone();
    let producer = Stage::spawn("distinct", move || -> Result<(), Error> {
        let mut buf = Vec::new();
        for p in 0..producer_parts.n {
            let mut seen: DigestMap<Key, ()> = DigestMap::default();
            let mut keys: Vec<Key> = Vec::new();
            let mut r = producer_parts.reader("h", p)?;
            while next_frame(&mut r, &mut buf).map_err(io(&producer_parts.dir))? {
                let s: Seen = crate::spill::decode(&buf).map_err(io(&producer_parts.dir))?;
                if seen.insert((s.kind, s.hash), ()).is_none() {
                    keys.push((s.kind, s.hash));
                }
            }
            drop(seen);
            for (k, part) in keys.chunks(MAP_CHUNK).enumerate() {
                if interrupt.is_triggered()
                    || tx
                        .blocking_send(keys_chunk(p, (k * MAP_CHUNK) as u64, part))
                        .is_err()
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    });
    let (to_answers, mut answers_rx) = tokio::sync::mpsc::channel::<IdentityChunk>(1);
    let answer_parts = Arc::clone(parts);
    let answers = Stage::spawn("answers", move || -> Result<Answered, Error> {
        // Chunks come in partition order; a partition without identities sends none, and
        // gets its (empty) answers when a later one starts.
        let mut sink = Sink {
            parts: &answer_parts,
            lookup: lookup.take(),
            counts: StatusCounts::default(),
            done: 0,
        };
        let mut current: Option<(usize, Answers)> = None;
        while let Some(chunk) = answers_rx.blocking_recv() {
            if current.as_ref().map(|(p, _)| *p) != Some(chunk.file) {
                if let Some((p, got)) = current.take() {
                    sink.partition(p, got)?;
                    abort_at("mapping");
                }
                while sink.done < chunk.file {
                    sink.partition(sink.done, Vec::new())?;
                }
            }
            let (_, got) = current.get_or_insert_with(|| (chunk.file, Vec::new()));
            let outcomes = chunk.outcomes.unwrap_or_default();
            for (id, o) in chunk.ids.iter().zip(outcomes) {
                if let Hashed::Ok(h) = &id.hashed {
                    got.push(((id.kind, *h), o));
                }
            }
        }
        if let Some((p, got)) = current.take() {
            sink.partition(p, got)?;
            abort_at("mapping");
        }
        Ok((sink.done, sink.lookup, sink.counts))
    });
    let mapper = crate::mapper::Mapper::new(settings.batch_size, 0, mstats);
    let mapped = crate::mapper::run(
        Arc::clone(&conn.client),
        rx,
        to_answers,
        mapper,
        job.run.interrupt.clone(),
    )
    .await;
    let answered = answers.finish().await;
    let produced = producer.finish().await;
    mapped?;
    let (done, lookup, counts) = answered??;
    produced??;
    let mut sink = Sink {
        parts,
        lookup,
        counts,
        done,
    };
    if !job.run.interrupt.is_triggered() {
        // Partitions after the last one answered had no identity at all.
        while sink.done < parts.n {
            sink.partition(sink.done, Vec::new())?;
        }
    }
    Ok((sink.lookup, sink.counts))
}

/// A partition's distinct identities with their answers, in the order they were sent.
type Answers = Vec<(Key, Option<MapOutcome>)>;

/// What the answers stage hands back: partitions done, the lookup table's writer, the
/// input's identities by status.
type Answered = (usize, Option<DatasetWriter>, StatusCounts);

/// Where a mapped partition goes: its answers file, by ordinal (for pass 2), or with
/// `--distinct` the lookup table's rows (and the input's counts, each repeat counted).
struct Sink<'a> {
    parts: &'a Partitions,
    lookup: Option<DatasetWriter>,
    counts: StatusCounts,
    done: usize,
}

impl Sink<'_> {
    fn partition(&mut self, p: usize, got: Answers) -> Result<(), Error> {
        match self.lookup.as_mut() {
            None => {
                let answers: DigestMap<Key, MapOutcome> =
                    got.into_iter().filter_map(|(k, o)| Some((k, o?))).collect();
                write_answers(self.parts, p, &answers)?;
            }
            Some(writer) => {
                // Each input identity counts with the status of its row in the table.
                let statuses: DigestMap<Key, RowStatus> = got
                    .iter()
                    .map(|((kind, h), o)| {
                        let hashed = Hashed::Ok(*h);
                        (*kind, *h, RowStatus::decide(&hashed, o.as_ref(), true).0)
                    })
                    .map(|(kind, h, st)| ((kind, h), st))
                    .collect();
                let mut r = self.parts.reader("h", p)?;
                let mut buf = Vec::new();
                while next_frame(&mut r, &mut buf).map_err(io(&self.parts.dir))? {
                    let s: Seen = crate::spill::decode(&buf).map_err(io(&self.parts.dir))?;
                    if let Some(st) = statuses.get(&(s.kind, s.hash)) {
                        self.counts.add(*st);
                    }
                }
                drop(statuses);
                for (k, part) in got.chunks(MAP_CHUNK).enumerate() {
                    let keys: Vec<Key> = part.iter().map(|(key, _)| *key).collect();
                    let mut chunk = keys_chunk(p, (k * MAP_CHUNK) as u64, &keys);
                    chunk.outcomes = Some(part.iter().map(|(_, o)| o.clone()).collect());
                    writer.write(chunk)?;
                }
                let _ = std::fs::remove_file(self.parts.path("h", p));
            }
        }
        self.done = p + 1;
        Ok(())
    }
}

/// A chunk of distinct identities for the mapper: `file` is the partition, `first_row` the
/// offset among its distinct identities.
fn keys_chunk(p: usize, first: u64, keys: &[Key]) -> IdentityChunk {
    let ids = keys
        .iter()
        .map(|(kind, hash)| Identity {
            kind: *kind,
            hashed: Hashed::Ok(*hash),
            phone_form: Default::default(),
        })
        .collect::<Vec<_>>();
    IdentityChunk::new(p, first, ids.len(), 1, Vec::new(), ids)
}

/// Writes partition `p`'s answers: one record per identity pass 1 saw, by ordinal.
fn write_answers(
    parts: &Partitions,
    p: usize,
    got: &DigestMap<Key, MapOutcome>,
) -> Result<(), Error> {
    let mut r = parts.reader("h", p)?;
    let mut w = parts.writer("a", p)?;
    let mut buf = Vec::new();
    while next_frame(&mut r, &mut buf).map_err(io(&parts.dir))? {
        let s: Seen = crate::spill::decode(&buf).map_err(io(&parts.dir))?;
        let answer = Answer {
            ordinal: s.ordinal,
            kind: s.kind,
            hash: s.hash,
            outcome: got.get(&(s.kind, s.hash)).cloned(),
        };
        put(&mut w, &answer).map_err(io(&parts.dir))?;
    }
    finish(vec![w], &parts.dir)?;
    // The spill of this partition is no longer needed.
    let _ = std::fs::remove_file(parts.path("h", p));
    Ok(())
}

/// Counts for the manifest: the identities answered without a request.
pub(crate) fn note_deduplicated(mstats: &MapperStats, valid_identities: u64) {
    let sent = mstats.unique_sent.load(Ordering::Relaxed);
    mstats
        .deduplicated
        .store(valid_identities.saturating_sub(sent), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `map --help` and README say what the scratch folder costs.
    #[test]
    fn the_scratch_space_is_what_the_help_says() {
        assert_eq!(
            SCRATCH_BYTES_PER_IDENTITY, 160,
            "the help and README say 160 bytes"
        );
        let seen = postcard::to_stdvec(&Seen {
            ordinal: u64::MAX,
            kind: IdentityKind::Email,
            hash: crate::normalize::sha256(b"x"),
        })
        .expect("encodes");
        assert!(
            seen.len() + 4 <= 48,
            "pass 1 record: {} bytes",
            seen.len() + 4
        );
    }

    #[test]
    fn partitions_scale_with_the_input_and_spread_hashes() {
        assert_eq!(partitions_for(0), 1);
        assert_eq!(partitions_for(30_000_000), 150);
        assert_eq!(partitions_for(u64::MAX), MAX_PARTITIONS as usize);
        let mut counts = [0u32; 8];
        for i in 0..8000u32 {
            counts[partition_of(&crate::normalize::sha256(&i.to_le_bytes()), 8)] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
