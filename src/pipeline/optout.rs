//! `euid-map optout`: the opt-out status of datasets that hold only raw EUIDs (clean rooms,
//! activation tables, where the emails are gone). Reads the id column, asks
//! `/v2/optout/status` (at most 5,000 ids a request, one request at a time unless told
//! otherwise), and writes the same kind of dataset as the other commands: each row's raw
//! EUID as stored, `status` `active` / `optout` / `invalid`, and `opted_out_since`.
//!
//! ```text
//! reader thread ──chunks──▶ (async) distinct unseen ids → /v2/optout/status → rows → writer
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use base64::Engine;
use futures_util::StreamExt;

use super::{Connection, Job, Opened, RunHandles, Stage, Summary};
use crate::config::{JobConfig, MapSettings};
use crate::error::Error;
use crate::input::{self, Chunk, ReadProgress};
use crate::output::{self, DirState, OutputKind, Schema};
use crate::record::RowStatus;

/// Raw ids per `/v2/optout/status` request (the endpoint's limit).
const IDS_PER_REQUEST: usize = 5_000;

/// Answers remembered, so that a repeated raw id is sent once (about 100 bytes each); past
/// it the memory starts again.
const REMEMBERED: usize = 400_000;

/// Everything `euid-map optout` needs.
#[derive(Debug, Clone)]
pub struct OptoutConfig {
    /// Inputs, columns (the id column first among the kept ones), output.
    pub job: JobConfig,
    /// The operator.
    pub mapping: MapSettings,
    /// The column holding raw EUIDs.
    pub id_col: String,
    /// Requests in flight (1: the endpoint asks for one at a time).
    pub concurrency: usize,
}

/// Why a raw id cell is not checked, or `None` when it is a raw id to check. The id is
/// never re-encoded: only standard, padded base64 is taken, byte-exact.
fn invalid(id: Option<&str>) -> Option<&'static str> {
    match id {
        None | Some("") => Some("empty"),
        Some(s) if base64::engine::general_purpose::STANDARD.decode(s).is_err() => {
            Some("not standard base64")
        }
        _ => None,
    }
}

/// The answers for one chunk's distinct ids not yet known: `since` for the opted-out ones.
async fn check(
    conn: &Connection,
    ids: Vec<String>,
    concurrency: usize,
) -> Result<(Vec<String>, HashMap<String, i64>, u64), Error> {
    let mut found = HashMap::new();
    let mut requests = 0u64;
    let mut answers = futures_util::stream::iter(ids.chunks(IDS_PER_REQUEST).map(|b| {
        let client = Arc::clone(&conn.client);
        let batch: Vec<String> = b.to_vec();
        async move {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            client.optout_status(&refs).await
        }
    }))
    .buffered(concurrency.max(1));
    while let Some(got) = answers.next().await {
        requests += 1;
        found.extend(got?);
    }
    drop(answers);
    Ok((ids, found, requests))
}

/// Runs `euid-map optout`.
///
/// # Errors
/// A run-level failure; committed parts stay for `--resume`, and `_SUCCESS` is not written.
pub fn run_optout(cfg: &OptoutConfig, run: &RunHandles) -> Result<Summary, Error> {
    super::block_on(run_async(cfg, run))
}

async fn run_async(cfg: &OptoutConfig, run: &RunHandles) -> Result<Summary, Error> {
    let job = Job::new(&cfg.job, run);
    let columns = input::resolve_all(&cfg.job.inputs, &cfg.job.columns)?;
    let id_type = columns
        .first()
        .map(|c| c.keep_types[0].1.clone())
        .unwrap_or(arrow_schema::DataType::Utf8);
    if !crate::text::is_text(&id_type) {
        return Err(crate::config::ConfigError::IdColumnNotText {
            column: cfg.id_col.clone(),
            found: id_type.to_string(),
        }
        .into());
    }
    // The id column is read as the first kept column and written as `raw_euid`.
    let kept: Vec<(String, arrow_schema::DataType)> = columns
        .first()
        .map(|c| c.keep_types[1..].to_vec())
        .unwrap_or_default();
    let description = cfg.job.describe(
        "optout",
        serde_json::json!({"env": cfg.mapping.env, "id_col": cfg.id_col}),
    )?;
    let schema = Schema::new(OutputKind::Optout, &kept);
    let arrow = Arc::clone(&schema.arrow);
    let Opened {
        mut writer,
        dir,
        start,
    } = job.open(&description, schema, job.sources())?;
    if dir == DirState::Complete {
        return job.already_complete();
    }
    let conn = Connection::open(&cfg.mapping).await?;
    run.metrics.attach_client(Arc::clone(&conn.client.stats));
    let read_progress = Arc::new(ReadProgress::default());
    let progress = job.progress(&read_progress, None);

    // No identities to hash: the reader's chunks come straight here.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(super::CHUNKS_IN_FLIGHT);
    let (inputs, cols, interrupt) = (
        cfg.job.inputs.clone(),
        columns.clone(),
        run.interrupt.clone(),
    );
    let reader = Stage::spawn("reader", move || {
        input::read_all(&inputs, &cols, start, &read_progress, &mut |c| {
            !interrupt.is_triggered() && tx.blocking_send(c).is_ok()
        })
    });

    let mut known: HashMap<String, Option<i64>> = HashMap::new();
    let (mut checked, mut found, mut requests) = (0u64, 0u64, 0u64);
    let mut result: Result<(), Error> = Ok(());
    while let Some(chunk) = rx.recv().await {
        // Room for this chunk's answers first: clearing after `ask` was built would forget
        // answers this chunk's rows still need.
        if known.len() + chunk.len > REMEMBERED {
            known.clear();
        }
        let ids = &chunk.kept[0];
        let cell = |i: usize| crate::text::at(ids.as_ref(), i);
        // The distinct valid ids of this chunk not answered yet.
        let mut ask: Vec<String> = Vec::new();
        let mut asked = std::collections::HashSet::new();
        for i in 0..chunk.len {
            let id = cell(i);
            if invalid(id).is_none() {
                let id = id.expect("checked");
                if !known.contains_key(id) && asked.insert(id) {
                    ask.push(id.to_string());
                }
            }
        }
        if !ask.is_empty() {
            match check(&conn, ask, cfg.concurrency).await {
                Ok((ids, opted, n)) => {
                    checked += ids.len() as u64;
                    found += opted.len() as u64;
                    requests += n;
                    for id in ids {
                        let since = opted.get(&id).copied();
                        known.insert(id, since);
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let (batch, statuses) = match rows(&arrow, &writer, &chunk, &known) {
            Ok(b) => b,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if let Err(e) = writer.write_batch(chunk.file, chunk.first_row, &batch, &statuses) {
            result = Err(e.into());
            break;
        }
    }
    drop(rx);
    let read = reader.finish().await;
    progress.finish();
    result?;
    read??;
    writer.finish()?;
    run.metrics.set_optout(checked, found);
    let mut manifest = job.manifest("optout", &writer, &columns);
    manifest.environment = Some(cfg.mapping.env.clone());
    manifest.key_id = Some(crate::credentials::key_id(&cfg.mapping.client.api_key));
    manifest.client = Some(conn.client.stats.report());
    manifest.optout = Some(output::OptoutCounts {
        checked,
        found,
        requests,
    });
    conn.close().await;
    job.publish(&writer, manifest)
}

/// One chunk's output rows (the row codec's [`output::encode_optout`]): each raw id as
/// stored, with its status and reason, and when it opted out.
fn rows(
    arrow: &arrow_schema::SchemaRef,
    writer: &output::DatasetWriter,
    chunk: &Chunk,
    known: &HashMap<String, Option<i64>>,
) -> Result<(RecordBatch, Vec<RowStatus>), Error> {
    output::encode_optout(
        arrow,
        writer.source(chunk.file),
        chunk.first_row,
        &chunk.kept[0],
        &chunk.kept[1..],
        |id| match invalid(id) {
            Some(why) => (RowStatus::Invalid, Some(why), None),
            None => match known.get(id.expect("valid")).copied().flatten() {
                Some(t) => (RowStatus::Optout, None, Some(t)),
                None => (RowStatus::Active, None, None),
            },
        },
    )
    .map_err(|e| Error::Internal(format!("optout rows: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_ids_are_checked_only_as_standard_base64() {
        assert_eq!(super::invalid(None), Some("empty"));
        assert_eq!(super::invalid(Some("")), Some("empty"));
        assert_eq!(super::invalid(Some("a-b_c")), Some("not standard base64"));
        assert_eq!(super::invalid(Some("AAAA")), None);
    }
}
