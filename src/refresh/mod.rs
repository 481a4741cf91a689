//! `euid-map refresh`: the nightly incremental job. Reads the previous output dataset as
//! state; remaps only identities whose `refresh_from` has passed (or that failed, or are
//! new or changed in today's export), carries every other row over unchanged, and writes a
//! new dataset with the same guarantees as `map` (order, resume, exit codes, manifest).
//!
//! Two modes:
//! - **state only** (`refresh --state PREV -o NEW`): the state streams through part by part,
//!   so memory does not grow with its size.
//! - **state + today's export** (`… INPUT... --key-col ID`): state and export are joined by
//!   key through hash partitions on disk ([`join`]), so memory stays bounded too; the export
//!   is read twice.

pub mod join;
mod state;

use state::DuePolicy;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::JobConfig;
use crate::error::Error;
use crate::input::{self, Chunk, Position, ReadProgress};
use crate::output::{self, DatasetWriter, Origin, Resolved, Schema};
use crate::pipeline::{self, Connection, MapSettings, Summary, CHUNKS_IN_FLIGHT};
use crate::progress::Progress;
use crate::record::{Hashed, MapOutcome};

pub use state::StateRow;

/// Plans queued beside chunks (see `run_async`).
const PLANS_IN_FLIGHT: usize = 64;

/// Everything `euid-map refresh` needs.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// The previous run's output directory.
    pub state: PathBuf,
    /// Today's export (may be empty), columns, the new output directory.
    pub job: JobConfig,
    /// The column that identifies a customer, joining state and export.
    pub key_col: Option<String>,
    /// Keep customers that are gone from today's export.
    pub keep_missing: bool,
    /// What "now" is when deciding what is due, Unix ms.
    pub now_ms: i64,
    /// Operator and batching.
    pub mapping: MapSettings,
    /// State rows per join partition (memory of the export mode); see [`join`].
    pub partition_rows: u64,
}

/// What happened to one identity of the new dataset, for the manifest's counts.
#[derive(Debug, Clone)]
enum Plan {
    /// Written with the previous answer.
    Carried,
    /// Remapped because it was due; the previous raw id.
    Due(Option<Arc<str>>),
    /// Remapped because the customer's value changed; the previous raw id.
    Changed(Option<Arc<str>>),
    /// Mapped for the first time.
    New,
    /// Invalid or missing: nothing to map.
    Local,
}

/// Counts for the manifest (this invocation).
#[derive(Debug, Default, Clone)]
struct Tally {
    carried: u64,
    due: u64,
    value_changed: u64,
    new: u64,
    changed_ids: u64,
    newly_opted_out: u64,
    dropped: u64,
}

impl Tally {
    fn note(&mut self, plans: &[Plan], r: &Resolved) {
        let outcomes = r.outcomes.as_deref().unwrap_or(&[]);
        for (i, plan) in plans.iter().enumerate() {
            let new = outcomes.get(i).and_then(Option::as_ref);
            let old = match plan {
                Plan::Carried => {
                    self.carried += 1;
                    continue;
                }
                Plan::Local => continue,
                Plan::New => {
                    self.new += 1;
                    continue;
                }
                Plan::Due(old) => {
                    self.due += 1;
                    old
                }
                Plan::Changed(old) => {
                    self.value_changed += 1;
                    old
                }
            };
            match (old, new) {
                (Some(o), Some(MapOutcome::Mapped { raw_euid, .. })) if **o != **raw_euid => {
                    self.changed_ids += 1
                }
                (Some(_), Some(MapOutcome::Optout { .. })) => self.newly_opted_out += 1,
                _ => {}
            }
        }
    }

    fn to_json(&self, requests: u64) -> serde_json::Value {
        serde_json::json!({
            "carried": self.carried,
            "due": self.due,
            "value_changed": self.value_changed,
            "new": self.new,
            "remapped": self.due + self.value_changed + self.new,
            "changed_ids": self.changed_ids,
            "newly_opted_out": self.newly_opted_out,
            "dropped": self.dropped,
            "requests": requests,
        })
    }
}

/// Runs `euid-map refresh`.
///
/// # Errors
/// A run-level failure; committed parts stay for `--resume`, and `_SUCCESS` is not written.
pub fn run_refresh(cfg: &RefreshConfig) -> Result<Summary, Error> {
    pipeline::block_on(run_async(cfg))
}

type Plans = Vec<Plan>;

/// Where a producer sends chunks, and beside them (same order) their plans for the tally.
struct Sinks {
    chunks: SyncSender<Resolved>,
    plans: SyncSender<Plans>,
}

impl Sinks {
    /// Sends one chunk; `false` when the consumer is gone.
    fn send(&self, r: Resolved, plans: Plans) -> bool {
        self.plans.send(plans).is_ok() && self.chunks.send(r).is_ok()
    }
}

/// Turns a state batch into a chunk to map: carried answers filled in, due ones left empty,
/// `source` and `row` kept from the state.
fn state_chunk(
    file: usize,
    first_row: u64,
    batch: &arrow_array::RecordBatch,
    kept: &[(String, arrow_schema::DataType)],
    policy: &DuePolicy,
) -> (Resolved, Plans) {
    let rows = state::decode(batch, policy);
    let mut ids = Vec::with_capacity(rows.len());
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut plans = Vec::with_capacity(rows.len());
    for r in rows {
        // Every row of the state that is not due is carried, invalid and missing ones too.
        plans.push(match (&r.identity.hashed, r.due) {
            (Hashed::Ok(_), true) => Plan::Due(r.old_raw.clone()),
            _ => Plan::Carried,
        });
        ids.push(r.identity);
        outcomes.push(r.carried);
    }
    let col = |n: &str| {
        batch
            .column_by_name(n)
            .cloned()
            .expect("checked by state::kept_columns")
    };
    let chunk = Chunk {
        file,
        first_row,
        len: batch.num_rows(),
        identities: Vec::new(),
        broken: Vec::new(),
        kept: kept.iter().map(|(n, _)| col(n)).collect(),
    };
    let origin = Some(Origin {
        source: col("source"),
        row: col("row"),
    });
    (
        Resolved {
            chunk,
            ids,
            outcomes: Some(outcomes),
            origin,
        },
        plans,
    )
}

/// Streams state rows from `skip` on (optionally only those `keep` accepts) as chunks.
fn send_state(
    parts: &[PathBuf],
    file: usize,
    skip: u64,
    kept: &[(String, arrow_schema::DataType)],
    policy: &DuePolicy,
    keep: &dyn Fn(u64) -> bool,
    sinks: &Sinks,
) -> Result<(), Error> {
    let mut out_row = 0u64; // position among the rows this pass emits
    state::for_each_batch(parts, |state_row, batch| -> Result<bool, Error> {
        let mask: Vec<usize> = (0..batch.num_rows())
            .filter(|&i| keep(state_row + i as u64))
            .collect();
        let batch = if mask.len() == batch.num_rows() {
            batch
        } else {
            let idx = arrow_array::UInt32Array::from_iter_values(mask.iter().map(|&i| i as u32));
            let cols = batch
                .columns()
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), &idx, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(e.to_string()))?;
            arrow_array::RecordBatch::try_new(batch.schema(), cols)
                .map_err(|e| Error::Internal(e.to_string()))?
        };
        let n = batch.num_rows() as u64;
        let first = out_row;
        out_row += n;
        if out_row <= skip || n == 0 {
            return Ok(true);
        }
        let batch = if first < skip {
            batch.slice((skip - first) as usize, (out_row - skip) as usize)
        } else {
            batch
        };
        let first = first.max(skip);
        let (resolved, plans) = state_chunk(file, first, &batch, kept, policy);
        Ok(sinks.send(resolved, plans))
    })
}

async fn run_async(cfg: &RefreshConfig) -> Result<Summary, Error> {
    let started = Instant::now();
    let job = &cfg.job;
    let parts = state::parts(&cfg.state)?;
    let kept = state::kept_columns(&cfg.state, &parts)?;
    let description = job.describe(
        "refresh",
        serde_json::json!({
            "env": cfg.mapping.env,
            "state": cfg.state.display().to_string(),
            "key_col": cfg.key_col,
            "keep_missing": cfg.keep_missing,
        }),
    );
    let conn = Connection::open(&cfg.mapping).await?;
    let mstats = Arc::new(crate::mapper::MapperStats::default());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (tx, rx) = sync_channel::<Resolved>(CHUNKS_IN_FLIGHT);
    // Plans travel beside their chunks; this queue must never be the one that blocks, so it
    // holds more than every chunk that can be in flight between the producer and the writer
    // (channels and the mapper's reorder buffer: about 25).
    let (plans_tx, plans_rx) = sync_channel::<Plans>(PLANS_IN_FLIGHT);
    let sinks = Sinks {
        chunks: tx,
        plans: plans_tx,
    };
    let read_progress = Arc::new(ReadProgress::default());
    // What is due: v3 compares refresh_from with now; v2 asks which buckets rotated since the
    // state was mapped.
    let rotated = if cfg.mapping.client.api == crate::client::Api::V2 {
        if !state::has_bucket_ids(&parts) {
            return Err(Error::Config(
                "--api v2 needs a state written with --api v2 (it has no bucket_id column)".into(),
            ));
        }
        let since = state::earliest_mapping(&parts)?.unwrap_or(cfg.now_ms);
        let buckets = conn.client.rotated_buckets(since).await?;
        tracing::info!(
            since_ms = since,
            rotated = buckets.len(),
            "buckets rotated since the state was mapped"
        );
        Some(Arc::new(
            buckets.into_iter().collect::<HashMap<String, i64>>(),
        ))
    } else {
        None
    };
    let policy = DuePolicy {
        now_ms: cfg.now_ms,
        rotated,
    };

    let (columns, writer, producer): (
        Vec<input::ResolvedColumns>,
        DatasetWriter,
        std::thread::JoinHandle<Result<(), Error>>,
    ) = if job.inputs.is_empty() {
        if cfg.key_col.is_some() {
            return Err(Error::Config(
                "--key-col joins today's export with the state: give the export's INPUT files too"
                    .into(),
            ));
        }
        output::prepare_dir(&job.out_dir, &description, job.resume)?;
        let committed = output::committed_parts(&job.out_dir)?;
        let start = committed.last().map(|p| p.end).unwrap_or_default();
        let writer = DatasetWriter::new(
            &job.out_dir,
            Schema::new(cfg.mapping.output_kind(), &kept),
            vec![cfg.state.display().to_string()],
            job.part_rows,
            &committed,
        );
        let kept2 = kept.clone();
        let producer = std::thread::Builder::new()
            .name("state".into())
            .spawn(move || send_state(&parts, 0, start.row, &kept2, &policy, &|_| true, &sinks))
            .expect("spawning a thread only fails when the OS is out of resources");
        (Vec::new(), writer, producer)
    } else {
        let key_col = cfg.key_col.clone().ok_or_else(|| {
            Error::Config("with INPUT files, --key-col names the column that identifies a customer (e.g. customer_id)".into())
        })?;
        if !kept.iter().any(|(n, _)| *n == key_col) {
            return Err(Error::Config(format!(
                "the state has no column {key_col:?}: it must have been kept with --keep-col {key_col} (state columns kept: {})",
                kept.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut job = job.clone();
        if !job.columns.keep.contains(&key_col) {
            job.columns.keep.insert(0, key_col.clone());
        }
        let key_idx = job
            .columns
            .keep
            .iter()
            .position(|k| *k == key_col)
            .expect("inserted above");
        let columns = input::resolve_all(&job.inputs, &job.columns)?;
        let out_kept = columns
            .first()
            .map(|c| c.keep_types.clone())
            .unwrap_or_default();
        output::prepare_dir(&job.out_dir, &description, job.resume)?;
        let committed = output::committed_parts(&job.out_dir)?;
        let start = committed.last().map(|p| p.end).unwrap_or_default();
        let n_inputs = job.inputs.len();
        let n_ids: Vec<u64> = columns.iter().map(|c| c.identities.len() as u64).collect();

        // Pass 1 over the export: partition it with the state and decide (bounded memory).
        let state_rows: u64 = output::committed_parts(&cfg.state)?
            .iter()
            .map(|p| p.rows)
            .sum();
        let tmp = job.out_dir.join(".refresh-tmp");
        let mut file_rows = vec![0u64; n_inputs];
        let joined = join::build(
            &tmp,
            &parts,
            &key_col,
            &policy,
            state_rows,
            cfg.partition_rows,
            |sink| {
                let (rx, reader, hasher) = pipeline::spawn_read_and_hash(
                    &job,
                    &columns,
                    Position::default(),
                    Arc::new(ReadProgress::default()),
                );
                let mut result = Ok(());
                for r in rx.iter() {
                    let c = &r.chunk;
                    file_rows[c.file] += c.len as u64;
                    let base: u64 = (0..c.file).map(|g| file_rows[g] * n_ids[g]).sum();
                    let n = n_ids[c.file] as usize;
                    let keys = &c.kept[key_idx];
                    for k in 0..c.len {
                        let key = state::key_at(keys, k);
                        for j in 0..n {
                            let id = &r.ids[k * n + j];
                            if let Hashed::Ok(hash) = id.hashed {
                                let ordinal = base + (c.first_row + k as u64) * n as u64 + j as u64;
                                result = result.and_then(|()| {
                                    sink(join::ExportIdentity {
                                        ordinal,
                                        key: key.as_deref(),
                                        kind: id.kind,
                                        hash,
                                    })
                                });
                            }
                        }
                    }
                    if result.is_err() {
                        break;
                    }
                }
                drop(rx);
                let _ = hasher.join();
                reader
                    .join()
                    .map_err(|_| Error::Internal("the reader thread panicked".into()))??;
                result
            },
        )?;
        let bases: Vec<u64> = (0..n_inputs)
            .map(|f| (0..f).map(|g| file_rows[g] * n_ids[g]).sum())
            .collect();

        // Pass 2: the export again, with the decisions merged back in order.
        let mut merged = joined.merge()?;
        let mut sources: Vec<String> = job.inputs.iter().map(|f| f.given.clone()).collect();
        sources.push(cfg.state.display().to_string());
        let writer = DatasetWriter::new(
            &job.out_dir,
            Schema::new(cfg.mapping.output_kind(), &out_kept),
            sources,
            job.part_rows,
            &committed,
        );
        let (hashed_rx, reader, hasher) = pipeline::spawn_read_and_hash(
            &job,
            &columns,
            start.min(Position {
                file: n_inputs,
                row: 0,
            }),
            Arc::clone(&read_progress),
        );
        let keep_missing = cfg.keep_missing;
        let tally2 = Arc::clone(&tally);
        let kept2 = kept.clone();
        let producer = std::thread::Builder::new()
            .name("join".into())
            .spawn(move || -> Result<(), Error> {
                for mut r in hashed_rx {
                    let n = n_ids[r.chunk.file] as usize;
                    let base = bases[r.chunk.file];
                    let mut outcomes = vec![None; r.ids.len()];
                    let mut plans = Vec::with_capacity(r.ids.len());
                    for (i, id) in r.ids.iter().enumerate() {
                        if !matches!(id.hashed, Hashed::Ok(_)) {
                            plans.push(Plan::Local);
                            continue;
                        }
                        let ordinal = base + r.chunk.first_row * n as u64 + i as u64;
                        plans.push(match merged.take(ordinal)? {
                            Some(join::Decision::Carried(o)) => {
                                outcomes[i] = Some(o);
                                Plan::Carried
                            }
                            Some(join::Decision::Due(old)) => Plan::Due(old),
                            Some(join::Decision::Changed(old)) => Plan::Changed(old),
                            Some(join::Decision::New) | None => Plan::New,
                        });
                    }
                    r.outcomes = Some(outcomes);
                    if !sinks.send(r, plans) {
                        return Ok(());
                    }
                }
                let _ = hasher.join();
                reader
                    .join()
                    .map_err(|_| Error::Internal("the reader thread panicked".into()))??;
                // Customers gone from today's export.
                let missing = &joined.missing;
                if keep_missing {
                    let skip = if start.file == n_inputs { start.row } else { 0 };
                    let keep = |row: u64| missing.binary_search(&row).is_ok();
                    send_state(&parts, n_inputs, skip, &kept2, &policy, &keep, &sinks)?;
                } else {
                    tally2.lock().expect("tally lock").dropped = missing.len() as u64;
                }
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(())
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        (columns, writer, producer)
    };

    let total_bytes: u64 = job.inputs.iter().map(|f| f.size()).sum();
    let progress = Progress::start(
        job.quiet,
        total_bytes,
        Arc::clone(&read_progress),
        Some(conn.progress_extra(&mstats)),
    );
    let tally_w = Arc::clone(&tally);
    let tap = move |r: &Resolved| {
        if let Ok(plans) = plans_rx.recv() {
            tally_w.lock().expect("tally lock").note(&plans, r);
        }
    };
    let written =
        pipeline::map_and_write(&conn, &cfg.mapping, rx, writer, Arc::clone(&mstats), tap).await;
    let produced = pipeline::join_thread(producer, "state reader").await?;
    progress.finish();
    let mut writer = written?;
    produced?;
    writer.finish()?;
    let mut manifest = pipeline::manifest_base(job, "refresh", &writer, &columns, started);
    conn.annotate(&mut manifest, &cfg.mapping, &mstats);
    let requests = conn
        .client
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    manifest["state"] = cfg.state.display().to_string().into();
    manifest["now"] = chrono::DateTime::from_timestamp_millis(cfg.now_ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
        .into();
    manifest["refresh"] = tally.lock().expect("tally lock").to_json(requests);
    conn.close().await;
    pipeline::publish(job, &writer, manifest, started)
}
