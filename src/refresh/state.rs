//! Reading a previous output dataset (of `map` or `refresh`) as state: part by part, record
//! batch by record batch, so a state larger than memory streams through.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use crate::input::CHUNK_ROWS;
use crate::output::{OutputError, RowReader};
use crate::record::{Hashed, Identity, MapOutcome, RowStatus};
use crate::storage::{Location, ParquetFile};

/// Whether the dataset is a lookup table (`map --distinct`): no `source`, one row per
/// identity.
pub(super) fn is_lookup(parts: &[Location]) -> bool {
    parts
        .first()
        .and_then(|p| ParquetFile::open(p).ok())
        .is_some_and(|b| {
            let s = b.schema();
            s.field_with_name(crate::output::col::SOURCE).is_err()
                && s.field_with_name(crate::output::col::IDENTITY_HASH).is_ok()
        })
}

fn bad(path: &Location, why: impl Into<String>) -> OutputError {
    OutputError::BadState {
        path: path.url(),
        why: why.into(),
    }
}

/// The parts of a state dataset and how many rows they hold.
#[derive(Debug, Clone)]
pub(super) struct State {
    /// The parts, in order.
    pub parts: Vec<Location>,
    /// Rows over all parts.
    pub rows: u64,
    /// What identifies this version of the state, for the job description (the manifest's
    /// sample hash, or the parts' names, sizes and times for a dataset without one).
    pub identity: String,
    /// When the state's night ran (its manifest's `now`, else its start), Unix ms; unknown
    /// for a dataset without a manifest.
    pub night_ms: Option<i64>,
}

/// Opens a state dataset. One written by euid-map (it has `_job.json` or `_manifest.json`)
/// must be finished (`_SUCCESS`) and complete: its parts numbered from 0 without a gap, their
/// rows adding up to the manifest's `output_rows`. A dataset written by another engine (the
/// parts compacted by Spark, DuckDB or Polars, a copy without the metadata files) is read as
/// data: every `*.parquet` file in name order, with a warning.
///
/// # Errors
/// The directory is missing or empty, unfinished, has a part missing, or cannot be read.
pub(super) fn open(dir: &Location) -> Result<State, OutputError> {
    use crate::output::{JOB_FILE, MANIFEST_FILE, SUCCESS_FILE};
    let names = dir.list_names()?;
    if names.is_empty() {
        return Err(bad(
            dir,
            "no such state: the directory or prefix does not exist or is empty (--state names the output of an earlier map or refresh)",
        ));
    }
    let has = |n: &str| names.iter().any(|x| x == n);
    // Parts with euid-map's footers make it an euid-map dataset even when its metadata
    // files are gone: then it must be checked, and cannot be.
    let our_parts = names.iter().any(|n| n.starts_with("part-"))
        && crate::output::committed_parts(dir).is_ok_and(|p| !p.is_empty());
    if has(JOB_FILE) || has(MANIFEST_FILE) || our_parts {
        if !has(MANIFEST_FILE) && has(SUCCESS_FILE) {
            return Err(bad(
                dir,
                format!("the state was written by euid-map but its {MANIFEST_FILE} is missing, so its parts cannot be checked for a gap; restore it, or use the last complete night"),
            ));
        }
        if !has(SUCCESS_FILE) {
            return Err(bad(
                dir,
                "the state is not a finished run (no _SUCCESS); finish it with --resume, or use the last night that finished",
            ));
        }
        let manifest = crate::output::Manifest::read(dir)?;
        let infos = crate::output::committed_parts(dir)?;
        for (i, p) in infos.iter().enumerate() {
            if p.part as usize != i {
                return Err(bad(
                    dir,
                    format!(
                        "the state is incomplete: {} is missing (its parts must be numbered from 0 without a gap)",
                        crate::output::part_name(i as u32)
                    ),
                ));
            }
        }
        let rows: u64 = infos.iter().map(|p| p.rows).sum();
        if rows != manifest.output_rows {
            return Err(bad(
                dir,
                format!(
                    "the state is incomplete: its parts hold {rows} rows but its {MANIFEST_FILE} says {} (a part was removed or replaced)",
                    manifest.output_rows
                ),
            ));
        }
        let manifest_loc = dir.join(MANIFEST_FILE);
        let f = crate::input::InputFile::at(&manifest_loc.url(), manifest_loc, None);
        let identity = crate::input::Fingerprint::of(&f)
            .map(|fp| fp.sample_sha256)
            .map_err(|e| bad(dir, e.to_string()))?;
        let night_ms = manifest
            .now
            .as_deref()
            .unwrap_or(&manifest.started_at)
            .parse::<chrono::DateTime<chrono::Utc>>()
            .ok()
            .map(|t| t.timestamp_millis());
        return Ok(State {
            parts: infos
                .iter()
                .map(|p| dir.join(&crate::output::part_name(p.part)))
                .collect(),
            rows,
            identity,
            night_ms,
        });
    }
    let mut files: Vec<&String> = names
        .iter()
        .filter(|n| n.ends_with(".parquet") && !n.starts_with('.') && !n.starts_with('_'))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad(
            dir,
            "no Parquet files: --state names the output of an earlier map or refresh",
        ));
    }
    tracing::warn!(
        state = %dir.url(),
        files = files.len(),
        "the state has no {MANIFEST_FILE} (written or compacted by another engine?): reading its Parquet files as data, without checking that none is missing"
    );
    let mut parts = Vec::new();
    let (mut rows, mut identity) = (0u64, String::new());
    let mut first_columns: Option<Vec<String>> = None;
    for n in files {
        let loc = dir.join(n);
        let meta = loc.meta()?;
        let b = ParquetFile::open(&loc).map_err(|e| bad(&loc, e))?;
        // Every file must have the first one's columns (they are read by name).
        let mut cols: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        cols.sort();
        match &first_columns {
            None => first_columns = Some(cols),
            Some(first) if *first != cols => {
                let missing: Vec<&String> = first.iter().filter(|c| !cols.contains(c)).collect();
                let extra: Vec<&String> = cols.iter().filter(|c| !first.contains(c)).collect();
                return Err(bad(
                    &loc,
                    format!("its columns differ from the state's first file (missing {missing:?}, extra {extra:?}): the files of a state must share their columns"),
                ));
            }
            Some(_) => {}
        }
        rows += b.metadata().file_metadata().num_rows().max(0) as u64;
        identity.push_str(&format!("{n}:{}:{};", meta.size, meta.modified));
        parts.push(loc);
    }
    Ok(State {
        parts,
        rows,
        identity,
        night_ms: None,
    })
}

/// The kept columns of a state dataset, with types: every column that is not an output
/// column, in the file's order (found by name, so a state rewritten by another engine with
/// its columns reordered reads the same).
///
/// # Errors
/// The dataset lacks one of the output columns.
pub(super) fn kept_columns(
    dir: &Location,
    parts: &[Location],
) -> Result<Vec<(String, DataType)>, OutputError> {
    let Some(first) = parts.first() else {
        return Ok(Vec::new());
    };
    let b = ParquetFile::open(first).map_err(|e| bad(first, e))?;
    let names: Vec<(String, DataType)> = b
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let fixed: &[&str] = if is_lookup(parts) {
        &crate::output::LOOKUP_COLUMNS
    } else {
        &crate::output::STATE_COLUMNS
    };
    for col in fixed {
        if !names.iter().any(|(n, _)| n == *col) {
            return Err(bad(
                dir,
                format!("column {col:?} is missing from {}: --state must be the output of map or refresh", first.url()),
            ));
        }
    }
    Ok(names
        .into_iter()
        .filter(|(n, _)| !crate::output::OUTPUT_COLUMNS.contains(&n.as_str()))
        .map(|(n, t)| (n, crate::text::kept_type(&t)))
        .collect())
}

/// Calls `f` with every record batch of the dataset, in order, with the index of its first
/// row over the whole dataset.
///
/// # Errors
/// A part cannot be read, or `f` failed.
pub(super) fn for_each_batch<E: From<OutputError>>(
    parts: &[Location],
    mut f: impl FnMut(u64, RecordBatch) -> Result<bool, E>,
) -> Result<(), E> {
    let mut row = 0u64;
    for p in parts {
        let reader = ParquetFile::open(p)
            .and_then(|b| b.batches(None, CHUNK_ROWS, 0))
            .map_err(|e| bad(p, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(p, e))?;
            let n = batch.num_rows() as u64;
            if !f(row, batch)? {
                return Ok(());
            }
            row += n;
        }
    }
    Ok(())
}

/// One state row, decoded.
#[derive(Debug, Clone)]
pub struct StateRow {
    /// The identity and its hash (or why there is none).
    pub identity: Identity,
    /// The previous answer, when the row is carried as is.
    pub carried: Option<MapOutcome>,
    /// Whether the identity must be mapped again (refresh time passed, failed, stale…).
    pub due: bool,
    /// The last known answer with a raw EUID (a `mapped` or `stale` row), if any: a due
    /// row whose remap fails keeps it (status `stale`).
    pub last: Option<MapOutcome>,
    /// The input column it was read from, as the join compares it (`None` in states written
    /// before it was recorded).
    pub column: Option<u64>,
    /// `carried_since`, Unix ms.
    pub carried_since_ms: Option<i64>,
}

impl StateRow {
    /// The previous raw EUID, if any.
    pub fn old_raw(&self) -> Option<Arc<str>> {
        self.last.as_ref().and_then(MapOutcome::raw_id_arc)
    }
}

/// The state's `source` column as the output's `Utf8`, whatever string type another
/// engine wrote it with.
pub(super) fn origin_source(a: &ArrayRef) -> ArrayRef {
    if a.data_type() == &DataType::Utf8 {
        return Arc::clone(a);
    }
    Arc::new(arrow_array::StringArray::from_iter(
        (0..a.len()).map(|i| crate::text::at(a.as_ref(), i)),
    ))
}

/// The state's `row` column as the output's type, from any integer type another engine
/// (or an older version, which wrote `uint64`) wrote it with.
pub(super) fn origin_row(a: &ArrayRef) -> ArrayRef {
    use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
    let target = crate::output::ROW_TYPE;
    if a.data_type() == &target {
        return Arc::clone(a);
    }
    let v = |i: usize| -> Option<i64> {
        if a.is_null(i) {
            return None;
        }
        match a.data_type() {
            DataType::Int64 => Some(a.as_primitive::<Int64Type>().value(i)),
            DataType::Int32 => Some(i64::from(a.as_primitive::<Int32Type>().value(i))),
            DataType::UInt64 => i64::try_from(a.as_primitive::<UInt64Type>().value(i)).ok(),
            DataType::UInt32 => Some(i64::from(a.as_primitive::<UInt32Type>().value(i))),
            _ => None,
        }
    };
    match target {
        DataType::UInt64 => Arc::new(arrow_array::UInt64Array::from_iter(
            (0..a.len()).map(|i| v(i).map(|x| x as u64)),
        )),
        _ => Arc::new(arrow_array::Int64Array::from_iter((0..a.len()).map(v))),
    }
}

/// What makes a mapped row due.
#[derive(Debug, Clone)]
pub(super) struct DuePolicy {
    /// v3: rows whose `refresh_from` is at or before this time (Unix ms).
    pub now_ms: i64,
    /// v2: buckets rotated since the state was mapped, with their rotation time (Unix ms);
    /// a row is due when its bucket rotated after it was mapped.
    pub rotated: Option<Arc<std::collections::HashMap<String, i64>>>,
}

/// The earliest `mapped_at` of a dataset (Unix ms): the "previous run's time" for v2.
///
/// # Errors
/// A part cannot be read.
pub(super) fn earliest_mapping(parts: &[Location]) -> Result<Option<i64>, OutputError> {
    let mut min: Option<i64> = None;
    for_each_batch(parts, |_, batch| -> Result<bool, OutputError> {
        let rows = RowReader::new(&batch);
        for i in 0..batch.num_rows() {
            if let Some(t) = rows.mapped_at(i) {
                min = Some(min.map_or(t, |m| m.min(t)));
            }
        }
        Ok(true)
    })?;
    Ok(min)
}

/// Whether the dataset has the legacy v2 `bucket_id` column.
pub(super) fn has_bucket_ids(parts: &[Location]) -> bool {
    parts
        .first()
        .and_then(|p| ParquetFile::open(p).ok())
        .is_some_and(|b| {
            b.schema()
                .field_with_name(crate::output::col::BUCKET_ID)
                .is_ok()
        })
}

/// Decodes every row of a state batch (the row codec's [`RowReader`]); `policy` decides
/// what is due.
pub(super) fn decode(batch: &RecordBatch, policy: &DuePolicy) -> Vec<StateRow> {
    let now_ms = policy.now_ms;
    let rows = RowReader::new(batch);
    (0..batch.num_rows())
        .map(|i| {
            let r = rows.row(i);
            let fresh = match &policy.rotated {
                None => r.refresh_from_ms.is_some_and(|t| t > now_ms),
                Some(rotated) => r.bucket_id.as_deref().is_some_and(|b: &str| {
                    rotated.get(b).is_none_or(|changed| *changed <= r.mapped_at)
                }),
            };
            let (carried, due) = match (&r.hashed, r.status) {
                (Hashed::Ok(_), Some(RowStatus::Mapped)) => match &r.last {
                    Some(m) if fresh => (Some(m.clone()), false),
                    _ => (None, true),
                },
                (Hashed::Ok(_), Some(RowStatus::Optout)) => (
                    Some(MapOutcome::Optout {
                        mapped_at: r.mapped_at,
                        since: r.reason.and_then(crate::output::swept_since),
                    }),
                    false,
                ),
                (Hashed::Ok(_), Some(RowStatus::Invalid)) => (Some(MapOutcome::Invalid), false),
                // failed, stale, unmapped, or hashed (a `hash` output used as state): map them.
                (Hashed::Ok(_), _) => (None, true),
                _ => (None, false),
            };
            StateRow {
                identity: Identity {
                    kind: r.kind,
                    hashed: r.hashed,
                    phone_form: Default::default(),
                },
                carried,
                due,
                last: r.last,
                column: r.column.map(super::join::column_id),
                carried_since_ms: r.carried_since_ms,
            }
        })
        .collect()
}
