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
//!   is read twice, and must not change in between (checked by fingerprint and by hash).
//!
//! The rules a nightly job relies on (README, "Nightly refresh"):
//! - presence is by key ([`join`]); null keys match no customer;
//! - a due identity whose remap fails keeps its last known raw EUID, with status `stale`
//!   (exit 2; the next refresh retries it);
//! - the new dataset keeps the state's columns unless `--allow-schema-change`;
//! - every count in the manifest describes the whole dataset, resumed parts included.

mod checks;
mod error;
mod export;
pub mod join;
mod key;
mod optout;
mod plan;
mod state;
mod state_only;
mod stream;

use plan::{settle, Plan, Plans, Tally};
use state::DuePolicy;
use stream::{send_state, Sinks};

use std::collections::HashMap;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::JobConfig;
use crate::config::MapSettings;
use crate::error::Error;
use crate::input::{self, ReadProgress};
use crate::output::{self, DatasetWriter};
use crate::pipeline::{self, Connection, Job, RunHandles, Stage, Summary};
use crate::record::IdentityChunk;

pub use error::RefreshError;
pub use state::StateRow;

/// Plans queued beside chunks (see `run_async`).
const PLANS_IN_FLIGHT: usize = 64;

/// Everything `euid-map refresh` needs.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// The previous run's output directory.
    pub state: crate::storage::Location,
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
    /// Refuse a refresh that would drop more than this fraction of the state's customers
    /// (an empty or truncated export); 1.0 allows anything.
    pub max_drop_fraction: f64,
    /// Allow kept columns (names or types) other than the state's.
    pub allow_schema_change: bool,
    /// Check every carried raw EUID with `/v2/optout/status` (on by default).
    pub optout_sweep: bool,
    /// `/v2/optout/status` requests in flight (1: the endpoint asks for one at a time).
    pub optout_concurrency: usize,
}

/// Default of [`RefreshConfig::max_drop_fraction`]: losing more than a tenth of the
/// customers overnight is far more often a broken export than real churn.
pub const DEFAULT_MAX_DROP_FRACTION: f64 = 0.1;

/// Runs `euid-map refresh`.
///
/// # Errors
/// A run-level failure; committed parts stay for `--resume`, and `_SUCCESS` is not written.
pub fn run_refresh(cfg: &RefreshConfig, run: &RunHandles) -> Result<Summary, Error> {
    pipeline::block_on(run_async(cfg, run))
}

/// What a mode hands the common part of the run: the chunks to map come through `sinks`
/// from `producer`; `writer` writes them.
struct Started {
    columns: Vec<input::ResolvedColumns>,
    writer: DatasetWriter,
    producer: Stage<Result<(), Error>>,
}

/// What both modes share once the output is open: the state, the policy, the channels.
struct Common<'a> {
    cfg: &'a RefreshConfig,
    /// The state is a lookup table (`map --distinct`), and so is the new dataset.
    lookup: bool,
    /// The job with its kept columns settled (the state's, unless changed on purpose).
    job: Job<'a>,
    /// The output directory, locked and checked before any request.
    locked: pipeline::Locked,
    parts: Vec<crate::storage::Location>,
    state_rows: u64,
    /// When the state's night ran, Unix ms, if known (`carried_since`).
    state_night_ms: Option<i64>,
    kept: Vec<(String, arrow_schema::DataType)>,
    policy: DuePolicy,
    sinks: Sinks,
    tally: Arc<Mutex<Tally>>,
    read_progress: Arc<ReadProgress>,
}

/// The job description of a refresh: the state's version is part of it too, so that a
/// resumed refresh never continues against another state.
fn describe(
    cfg: &RefreshConfig,
    job: &JobConfig,
    st: &state::State,
    now_in_job: bool,
) -> Result<output::JobDescription, Error> {
    let mut options = serde_json::json!({
        "env": cfg.mapping.env,
        "api": format!("{:?}", cfg.mapping.client.api),
        "state": cfg.state.url(),
        "state_manifest_sha256": st.identity,
        "key_col": cfg.key_col,
        "keep_missing": cfg.keep_missing,
        "optout_sweep": cfg.optout_sweep,
    });
    if now_in_job {
        options["now_ms"] = cfg.now_ms.into();
    }
    Ok(job.describe("refresh", options)?)
}

/// The "now" a `--resume` must decide at: the first attempt's, recorded in the directory's
/// job file, so that every row of the night is decided at one time (`None`: no earlier
/// attempt, or one by a version that did not record it, whose job is then described
/// without it so that it still resumes).
fn first_attempt_now(job: &JobConfig) -> Result<Option<Option<i64>>, Error> {
    if !job.resume {
        return Ok(None);
    }
    let Ok(text) = job.out_dir.join(output::JOB_FILE).read_all() else {
        return Ok(None);
    };
    let Ok(previous) = serde_json::from_slice::<output::JobDescription>(&text) else {
        return Ok(None);
    };
    if previous.command != "refresh" {
        return Ok(None);
    }
    Ok(Some(
        previous.options.get("now_ms").and_then(|v| v.as_i64()),
    ))
}

/// The kept columns of the new dataset: the state's, in the state's order. `--keep-col`
/// naming another set is refused unless `--allow-schema-change`; the key column is always
/// kept. Returns the job with its kept columns settled.
fn settle_kept(
    cfg: &RefreshConfig,
    state_kept: &[(String, arrow_schema::DataType)],
) -> Result<JobConfig, Error> {
    let mut job = cfg.job.clone();
    let state_names: Vec<String> = state_kept.iter().map(|(n, _)| n.clone()).collect();
    let mut asked = job.columns.keep.clone();
    if let Some(k) = &cfg.key_col {
        if !asked.is_empty() && !asked.contains(k) {
            asked.insert(0, k.clone());
        }
    }
    let same_set = {
        let (mut a, mut b) = (asked.clone(), state_names.clone());
        a.sort();
        b.sort();
        a == b
    };
    job.columns.keep = if asked.is_empty() || same_set {
        state_names
    } else if cfg.allow_schema_change && !job.inputs.is_empty() {
        asked
    } else {
        return Err(RefreshError::SchemaChange {
            state: state_names.join(", "),
            asked: asked.join(", "),
        }
        .into());
    };
    Ok(job)
}

/// The v2 policy needs the buckets rotated since the state was mapped; v3 compares
/// `refresh_from` with now.
async fn due_policy(
    cfg: &RefreshConfig,
    conn: &Connection,
    parts: &[crate::storage::Location],
) -> Result<DuePolicy, Error> {
    let rotated = if cfg.mapping.client.api == crate::client::Api::V2 {
        if !state::has_bucket_ids(parts) {
            return Err(RefreshError::NotAV2State.into());
        }
        let since = state::earliest_mapping(parts)?.unwrap_or(cfg.now_ms);
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
    Ok(DuePolicy {
        now_ms: cfg.now_ms,
        rotated,
    })
}

async fn run_async(cfg: &RefreshConfig, run: &RunHandles) -> Result<Summary, Error> {
    let started = Instant::now();
    if !cfg.job.inputs.is_empty() && cfg.key_col.is_none() {
        return Err(RefreshError::KeyColumnNeeded.into());
    }
    if cfg.job.inputs.is_empty() && cfg.key_col.is_some() {
        return Err(RefreshError::InputNeeded.into());
    }
    let st = state::open(&cfg.state)?;
    let parts = st.parts.clone();
    let lookup = state::is_lookup(&parts);
    if lookup && !cfg.job.inputs.is_empty() {
        return Err(RefreshError::LookupWithExport.into());
    }
    let kept = state::kept_columns(&cfg.state, &parts)?;
    if let Some(k) = &cfg.key_col {
        match kept.iter().find(|(n, _)| n == k) {
            Some((_, t)) => key::check(k, "the state", t)?,
            None => {
                return Err(RefreshError::NoKeyColumn {
                    key_col: k.clone(),
                    kept: kept
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
                .into())
            }
        }
    }
    let job_owned = settle_kept(cfg, &kept)?;
    let j = Job::started_at(&job_owned, run, started);
    let job = &job_owned;
    // A resumed night decides at its first attempt's time.
    let (adopted, now_in_job) = match first_attempt_now(job)? {
        Some(Some(first)) if first != cfg.now_ms => {
            if !job.quiet {
                tracing::info!(
                    now = %chrono::DateTime::from_timestamp_millis(first).map(|t| t.to_rfc3339()).unwrap_or_default(),
                    "resuming: deciding what is due at the first attempt's time"
                );
            }
            (
                Some(RefreshConfig {
                    now_ms: first,
                    ..cfg.clone()
                }),
                true,
            )
        }
        Some(None) => (None, false),
        _ => (None, true),
    };
    let cfg = adopted.as_ref().unwrap_or(cfg);
    let description = describe(cfg, job, &st, now_in_job)?;
    // A finished night run again: nothing to do, before any request (the sweep's).
    if job.resume && output::finished_same_job(&job.out_dir, &description)? {
        return j.already_complete();
    }
    // Every check before the first request: tonight's columns against the state's, then the
    // output directory locked and checked (an overlapping run, another job), so that a
    // refused run has sent nothing, the opt-out sweep's thousands of requests included.
    let export_columns = if job.inputs.is_empty() {
        None
    } else {
        Some(export::check(cfg, job, &kept)?)
    };
    let locked = j.lock(&description)?;
    if locked.dir == output::DirState::Complete {
        return j.already_complete();
    }
    let conn = Connection::open(&cfg.mapping).await?;
    let policy = due_policy(cfg, &conn, &parts).await?;
    let opted_out = if cfg.optout_sweep {
        let estimate = st.rows.div_ceil(optout::IDS_PER_REQUEST as u64);
        if !job.quiet {
            tracing::info!(
            state_rows = st.rows,
            "opt-out sweep: checking every carried raw EUID with /v2/optout/status, at most {estimate} requests of 5,000, {} at a time",
            cfg.optout_concurrency.max(1)
            );
        }
        let reused = (locked.dir == output::DirState::Resume)
            .then(|| optout::saved(&job.out_dir))
            .flatten();
        let swept = match reused {
            Some(swept) => {
                tracing::info!("resuming: the opt-out sweep of the first attempt is used again");
                swept
            }
            None => {
                let swept = optout::sweep(
                    &conn.client,
                    &parts,
                    st.rows,
                    &policy,
                    cfg.optout_concurrency,
                    &run.interrupt,
                    job.quiet,
                )
                .await?;
                optout::save(&job.out_dir, &swept)?;
                swept
            }
        };
        if !job.quiet {
            tracing::info!(
                checked = swept.checked,
                opted_out = swept.opted_out.len(),
                requests = swept.requests,
                "opt-out sweep done"
            );
        }
        run.metrics
            .set_optout(swept.checked, swept.opted_out.len() as u64);
        Some(swept)
    } else {
        None
    };
    let mstats = Arc::new(crate::mapper::MapperStats::default());
    let tally = Arc::new(Mutex::new(Tally {
        sweep: opted_out
            .as_ref()
            .map(|s| (s.checked, s.opted_out.len() as u64, s.requests)),
        ..Tally::default()
    }));
    let opted_out = Arc::new(opted_out.map(|s| s.opted_out).unwrap_or_default());
    let (tx, rx) = pipeline::to_mapper();
    // Plans travel beside their chunks; this queue must never be the one that blocks, so it
    // holds more than every chunk that can be in flight between the producer and the writer
    // (channels and the mapper's reorder buffer: about 25).
    let (plans_tx, plans_rx) = sync_channel::<Plans>(PLANS_IN_FLIGHT);
    let common = Common {
        cfg,
        lookup,
        job: j,
        locked,
        parts,
        state_rows: st.rows,
        state_night_ms: st.night_ms,
        kept,
        policy,
        sinks: Sinks {
            chunks: tx,
            plans: plans_tx,
            interrupt: run.interrupt.clone(),
        },
        tally: Arc::clone(&tally),
        read_progress: Arc::new(ReadProgress::default()),
    };
    let read_progress = Arc::clone(&common.read_progress);
    conn.attach_metrics(&j, &mstats);
    // The join's first read of the export counts too.
    run.metrics.attach_reader(Arc::clone(&read_progress));
    let opened = match export_columns {
        None => state_only::start(common)?,
        Some(checked) => export::start(common, checked, &description)?,
    };
    let Some(Started {
        columns,
        writer,
        producer,
    }) = opened
    else {
        conn.close().await;
        return j.already_complete();
    };

    let progress = j.progress(&read_progress, Some(conn.progress_extra(&mstats)));
    let tap = move |r: &mut IdentityChunk| {
        if let Ok(plans) = plans_rx.recv() {
            settle(plans, r, &opted_out);
        }
    };
    let written = pipeline::map_and_write(
        &conn,
        &j,
        &cfg.mapping,
        rx,
        writer,
        Arc::clone(&mstats),
        tap,
    )
    .await;
    let produced = producer.finish().await;
    progress.finish();
    let mut writer = written?;
    produced??;
    writer.finish()?;
    let mut manifest = j.manifest("refresh", &writer, &columns);
    conn.annotate(&mut manifest, &cfg.mapping, &mstats);
    let requests = conn
        .client
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    manifest.state = Some(cfg.state.url());
    if lookup {
        manifest.distinct = Some(true);
    }
    manifest.now = Some(
        chrono::DateTime::from_timestamp_millis(cfg.now_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
    );
    let counts = tally.lock().expect("tally lock").counts(&writer, requests);
    run.metrics.set_refresh(counts.clone());
    manifest.refresh = Some(counts);
    conn.close().await;
    let published = j.publish(&writer, manifest)?;
    optout::forget(&job.out_dir);
    Ok(published)
}
