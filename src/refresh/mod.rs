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

mod error;
mod export;
pub mod join;
mod key;
mod optout;
mod state;
mod state_only;

use state::DuePolicy;

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::JobConfig;
use crate::config::MapSettings;
use crate::error::Error;
use crate::input::{self, ReadProgress};
use crate::output::{self, DatasetWriter, RefreshCounts};
use crate::pipeline::{self, Connection, Job, RunHandles, Stage, Summary};
use crate::record::{Hashed, MapOutcome, RefreshMark};
use crate::record::{IdentityChunk, Origin};

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

/// What happened to one identity of the new dataset.
#[derive(Debug, Clone)]
enum Plan {
    /// Written with the previous answer.
    Carried,
    /// Remapped because it was due; the last known answer with a raw id, if any.
    Due(Option<MapOutcome>),
    /// Remapped because the customer's value changed; the previous raw id.
    Changed(Option<Arc<str>>),
    /// Mapped for the first time.
    New,
    /// Invalid or missing: nothing to map.
    Local,
}

/// Decides each identity's [`RefreshMark`] once its answer is known, turns a due identity
/// whose remap failed into `stale` with its last known answer, and a carried raw EUID the
/// opt-out sweep found opted out into `optout`.
fn settle(plans: Vec<Plan>, r: &mut IdentityChunk, opted_out: &HashMap<String, i64>) {
    let outcomes = r.outcomes.get_or_insert_with(|| vec![None; r.ids.len()]);
    let mut marks = Vec::with_capacity(plans.len());
    for (i, plan) in plans.into_iter().enumerate() {
        let slot = &mut outcomes[i];
        let (mark, old) = match plan {
            Plan::Carried => {
                let swept = match &*slot {
                    Some(MapOutcome::Mapped {
                        raw_euid,
                        mapped_at,
                        ..
                    }) => opted_out
                        .get(raw_euid.as_str())
                        .map(|since| (*mapped_at, *since)),
                    _ => None,
                };
                if let Some((mapped_at, since)) = swept {
                    *slot = Some(MapOutcome::Optout {
                        mapped_at,
                        since: Some(since),
                    });
                    marks.push(RefreshMark::CARRIED.with(RefreshMark::SWEPT_OPTOUT));
                    continue;
                }
                (RefreshMark::CARRIED, None)
            }
            Plan::Local => (RefreshMark::default(), None),
            Plan::New => (RefreshMark::NEW, None),
            Plan::Changed(old) => (RefreshMark::VALUE_CHANGED, old),
            Plan::Due(last) => {
                let failed = match slot {
                    None => Some(Arc::from(crate::record::NO_ANSWER)),
                    Some(MapOutcome::Failed(why)) => Some(Arc::clone(why)),
                    Some(_) => None,
                };
                let old = match &last {
                    Some(MapOutcome::Mapped { raw_euid, .. }) => Some(Arc::from(raw_euid.as_str())),
                    _ => None,
                };
                let last_opted_out = match &last {
                    Some(MapOutcome::Mapped {
                        raw_euid,
                        mapped_at,
                        ..
                    }) => opted_out
                        .get(raw_euid.as_str())
                        .map(|since| (*mapped_at, *since)),
                    _ => None,
                };
                match (failed, last) {
                    // The remap failed, but the sweep says the last known id opted out:
                    // never keep it.
                    (Some(_), Some(_)) if last_opted_out.is_some() => {
                        let (mapped_at, since) = last_opted_out.expect("checked");
                        *slot = Some(MapOutcome::Optout {
                            mapped_at,
                            since: Some(since),
                        });
                        marks.push(RefreshMark::DUE.with(RefreshMark::SWEPT_OPTOUT));
                        continue;
                    }
                    (Some(why), Some(last)) => {
                        *slot = Some(MapOutcome::Stale {
                            last: Box::new(last),
                            why: Arc::from(format!(
                                "refresh failed, last known raw EUID kept: {why}"
                            )),
                        });
                        marks.push(RefreshMark::DUE.with(RefreshMark::STALE));
                        continue;
                    }
                    _ => (RefreshMark::DUE, old),
                }
            }
        };
        let mark = match (&old, &*slot) {
            (Some(o), Some(MapOutcome::Mapped { raw_euid, .. })) if **o != **raw_euid => {
                mark.with(RefreshMark::CHANGED_ID)
            }
            (Some(_), Some(MapOutcome::Optout { .. })) => mark.with(RefreshMark::NEWLY_OPTED_OUT),
            _ => mark,
        };
        marks.push(mark);
    }
    r.marks = Some(marks);
}

/// Counts of the join, for the manifest (whole-run: the join runs in full on every
/// invocation, `--resume` included).
#[derive(Debug, Default, Clone)]
struct Tally {
    /// The opt-out sweep (this invocation), when it ran.
    sweep: Option<(u64, u64, u64)>,
    dropped: u64,
    state_customers: u64,
    missing_customers: u64,
    lost_ids: u64,
    state_null_key_rows: u64,
    export_null_key_identities: u64,
}

impl Tally {
    /// The manifest's counts: the decisions of every part (`writer`), the join's counts,
    /// and this invocation's requests.
    fn counts(&self, writer: &DatasetWriter, requests: u64) -> RefreshCounts {
        let t = &writer.refresh_totals;
        let (due, value_changed, new) = (t.get("due"), t.get("value_changed"), t.get("new"));
        RefreshCounts {
            carried: t.get("carried"),
            due,
            value_changed,
            new,
            remapped: due + value_changed + new,
            changed_ids: t.get("changed_ids"),
            newly_opted_out: t.get("newly_opted_out"),
            stale: t.get("stale"),
            optout_sweep: self.sweep.is_some(),
            optout_checked: self.sweep.map_or(0, |s| s.0),
            optout_found: self.sweep.map_or(0, |s| s.1),
            optout_requests: self.sweep.map_or(0, |s| s.2),
            optout_swept: t.get("optout_swept"),
            dropped: self.dropped,
            state_customers: self.state_customers,
            missing_customers: self.missing_customers,
            lost_ids: self.lost_ids,
            state_null_key_rows: self.state_null_key_rows,
            export_null_key_identities: self.export_null_key_identities,
            requests,
        }
    }
}

/// Runs `euid-map refresh`.
///
/// # Errors
/// A run-level failure; committed parts stay for `--resume`, and `_SUCCESS` is not written.
pub fn run_refresh(cfg: &RefreshConfig, run: &RunHandles) -> Result<Summary, Error> {
    pipeline::block_on(run_async(cfg, run))
}

type Plans = Vec<Plan>;

/// Where a producer sends chunks, and beside them (same order) their plans for the tally.
struct Sinks {
    chunks: tokio::sync::mpsc::Sender<IdentityChunk>,
    plans: SyncSender<Plans>,
    interrupt: crate::interrupt::Interrupt,
}

impl Sinks {
    /// Sends one chunk; `false` when the consumer is gone or the run is interrupted.
    fn send(&self, r: IdentityChunk, plans: Plans) -> bool {
        !self.interrupt.is_triggered()
            && self.plans.send(plans).is_ok()
            && self.chunks.blocking_send(r).is_ok()
    }
}

/// Turns a state batch into a chunk to map: carried answers filled in, due ones left empty,
/// `source` and `row` kept from the state. `kept` names the output's kept columns, in the
/// output's order: they are taken from the state by name, never by position.
fn state_chunk(
    file: usize,
    first_row: u64,
    batch: &arrow_array::RecordBatch,
    kept: &[String],
    policy: &DuePolicy,
) -> (IdentityChunk, Plans) {
    let rows = state::decode(batch, policy);
    let mut ids = Vec::with_capacity(rows.len());
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut plans = Vec::with_capacity(rows.len());
    for r in rows {
        // Every row of the state that is not due is written as it was, invalid and missing
        // ones too; only identities with an answer count as carried.
        plans.push(match (&r.identity.hashed, r.due) {
            (Hashed::Ok(_), true) => Plan::Due(r.last.clone()),
            (Hashed::Ok(_), false) => Plan::Carried,
            _ => Plan::Local,
        });
        ids.push(r.identity);
        outcomes.push(r.carried);
    }
    let col = |n: &str| {
        crate::text::to_utf8(
            batch
                .column_by_name(n)
                .expect("checked by state::kept_columns and check_kept_match"),
        )
    };
    let mut chunk = IdentityChunk::new(
        file,
        first_row,
        batch.num_rows(),
        1,
        kept.iter().map(|n| col(n)).collect(),
        ids,
    );
    chunk.outcomes = Some(outcomes);
    chunk.origin = Some(Origin {
        source: state::origin_source(&col(crate::output::col::SOURCE)),
        row: state::origin_row(&col(crate::output::col::ROW)),
    });
    (chunk, plans)
}

/// Streams state rows from `skip` on (optionally only those `keep` accepts) as chunks.
fn send_state(
    parts: &[crate::storage::Location],
    file: usize,
    skip: u64,
    kept: &[String],
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
    /// The job with its kept columns settled (the state's, unless changed on purpose).
    job: Job<'a>,
    parts: Vec<crate::storage::Location>,
    state_rows: u64,
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
) -> Result<output::JobDescription, Error> {
    Ok(job.describe(
        "refresh",
        serde_json::json!({
            "env": cfg.mapping.env,
            "api": format!("{:?}", cfg.mapping.client.api),
            "state": cfg.state.url(),
            "state_manifest_sha256": st.identity,
            "key_col": cfg.key_col,
            "keep_missing": cfg.keep_missing,
            "optout_sweep": cfg.optout_sweep,
        }),
    )?)
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
    let j = Job {
        cfg: &job_owned,
        run,
        started,
    };
    let job = &job_owned;
    let description = describe(cfg, job, &st)?;
    // A finished night run again: nothing to do, before any request (the sweep's).
    if job.resume && output::finished_same_job(&job.out_dir, &description)? {
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
        job: j,
        parts,
        state_rows: st.rows,
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
    let opened = if job.inputs.is_empty() {
        state_only::start(common, &description)?
    } else {
        export::start(common, &description)?
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
    manifest.now = Some(
        chrono::DateTime::from_timestamp_millis(cfg.now_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
    );
    let counts = tally.lock().expect("tally lock").counts(&writer, requests);
    run.metrics.set_refresh(counts.clone());
    manifest.refresh = Some(counts);
    conn.close().await;
    j.publish(&writer, manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Hashed, Identity, IdentityKind, RawId};

    fn chunk(outcomes: Vec<Option<MapOutcome>>) -> IdentityChunk {
        let n = outcomes.len();
        IdentityChunk {
            file: 0,
            first_row: 0,
            len: n,
            per_row: 1,
            kept: Vec::new(),
            ids: (0..n)
                .map(|i| Identity {
                    kind: IdentityKind::Email,
                    hashed: Hashed::Ok(crate::normalize::sha256(&[i as u8])),
                    phone_form: Default::default(),
                })
                .collect(),
            outcomes: Some(outcomes),
            origin: None,
            marks: None,
        }
    }

    fn mapped(u: &str) -> MapOutcome {
        MapOutcome::Mapped {
            raw_euid: RawId::from(u),
            previous: None,
            refresh_from: Some(1),
            bucket_id: None,
            mapped_at: 7,
        }
    }

    /// A carried id the sweep found opted out becomes `optout`; a due one whose remap failed
    /// keeps its last id as `stale`, unless that id opted out: then it is `optout` too.
    #[test]
    fn settle_never_keeps_an_opted_out_raw_id() {
        let opted: HashMap<String, i64> = [("gone".to_string(), 99)].into();
        let mut r = chunk(vec![
            Some(mapped("gone")),
            Some(mapped("kept")),
            Some(MapOutcome::Failed(Arc::from("HTTP 503"))),
            Some(MapOutcome::Failed(Arc::from("HTTP 503"))),
        ]);
        let plans = vec![
            Plan::Carried,
            Plan::Carried,
            Plan::Due(Some(mapped("gone"))),
            Plan::Due(Some(mapped("old"))),
        ];
        settle(plans, &mut r, &opted);
        let out = r.outcomes.expect("outcomes");
        let optout = MapOutcome::Optout {
            mapped_at: 7,
            since: Some(99),
        };
        assert_eq!(out[0], Some(optout.clone()));
        assert_eq!(out[1], Some(mapped("kept")));
        assert_eq!(out[2], Some(optout), "never stale with an opted-out id");
        assert!(matches!(out[3], Some(MapOutcome::Stale { .. })));
        let marks = r.marks.expect("marks");
        assert!(marks[0].has(RefreshMark::SWEPT_OPTOUT) && marks[2].has(RefreshMark::SWEPT_OPTOUT));
        assert!(marks[3].has(RefreshMark::STALE));
    }
}
